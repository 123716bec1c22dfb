-- +goose Up
-- Statement-level change-log triggers for the tables a contacts import
-- fills (issue 4): contacts, consents, consent_events, list_members and
-- blocklist. The row-level relais_backup_change (00009) runs PL/pgSQL, a
-- look-up of backup_restoring, to_jsonb of the whole row (sealed fields
-- and all) and an INSERT for every row: about 22 µs of server CPU per
-- contact, more than the rest of the upsert (bench/README.md). These
-- triggers log the same keys, into the same backup_changes rows, with one
-- INSERT ... SELECT per statement over its transition tables (static SQL
-- for each key the tracked tables have; the router's tables, 00026, use
-- the same function). A backup
-- reads the changed keys as a set (SELECT DISTINCT tbl, pk), so the log
-- says the same: every key inserted, every key updated (its new key, and
-- its old one when it changed), every key deleted, nothing while the tenant
-- is being restored, nothing for rows without a tenant. A trigger with
-- transition tables serves one event, hence three triggers per table; the
-- INSERT one keeps the name backup_change (the backup schema reader's
-- mark of a tracked table).
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key constant text := array_to_string(TG_ARGV, ',');
BEGIN
    -- An upsert fires the UPDATE trigger even when it updated nothing: an
    -- empty statement logs nothing.
    IF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM backup_old LIMIT 1;
    ELSE
        PERFORM 1 FROM backup_new LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Static statements, one set per key (PL/pgSQL keeps each one's plan
    -- per table; a statement built and run with EXECUTE was planned at
    -- every call, several times the row trigger's cost for a one-row
    -- statement). keys: the rows' keys, new ones for an INSERT, old ones
    -- for a DELETE, both for an UPDATE (the key set a backup reads).
    IF key = 'id' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.id)::text
            FROM (SELECT n.tenant_id, n.id FROM backup_new n) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.id)::text
            FROM (SELECT n.tenant_id, n.id FROM backup_new n UNION SELECT o.tenant_id, o.id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSE
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.id)::text
            FROM (SELECT o.tenant_id, o.id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        END IF;
    ELSIF key = 'message_id' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.message_id)::text
            FROM (SELECT n.tenant_id, n.message_id FROM backup_new n) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.message_id)::text
            FROM (SELECT n.tenant_id, n.message_id FROM backup_new n UNION SELECT o.tenant_id, o.message_id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSE
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.message_id)::text
            FROM (SELECT o.tenant_id, o.message_id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        END IF;
    ELSIF key = 'contact_id,channel,purpose' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.contact_id, k.channel, k.purpose)::text
            FROM (SELECT n.tenant_id, n.contact_id, n.channel, n.purpose FROM backup_new n) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.contact_id, k.channel, k.purpose)::text
            FROM (SELECT n.tenant_id, n.contact_id, n.channel, n.purpose FROM backup_new n UNION SELECT o.tenant_id, o.contact_id, o.channel, o.purpose FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSE
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.contact_id, k.channel, k.purpose)::text
            FROM (SELECT o.tenant_id, o.contact_id, o.channel, o.purpose FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        END IF;
    ELSIF key = 'list_id,contact_id' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.list_id, k.contact_id)::text
            FROM (SELECT n.tenant_id, n.list_id, n.contact_id FROM backup_new n) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.list_id, k.contact_id)::text
            FROM (SELECT n.tenant_id, n.list_id, n.contact_id FROM backup_new n UNION SELECT o.tenant_id, o.list_id, o.contact_id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSE
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.list_id, k.contact_id)::text
            FROM (SELECT o.tenant_id, o.list_id, o.contact_id FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        END IF;
    ELSIF key = 'kind,value_bidx' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.kind, k.value_bidx)::text
            FROM (SELECT n.tenant_id, n.kind, n.value_bidx FROM backup_new n) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.kind, k.value_bidx)::text
            FROM (SELECT n.tenant_id, n.kind, n.value_bidx FROM backup_new n UNION SELECT o.tenant_id, o.kind, o.value_bidx FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        ELSE
            INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.kind, k.value_bidx)::text
            FROM (SELECT o.tenant_id, o.kind, o.value_bidx FROM backup_old o) k
            WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
        END IF;
    ELSE
        RAISE EXCEPTION 'relais_backup_change_rows: no statements for the key (%) of %', key, TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER backup_change ON contacts;
CREATE TRIGGER backup_change AFTER INSERT ON contacts REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON contacts REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON contacts REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');

DROP TRIGGER backup_change ON consents;
CREATE TRIGGER backup_change AFTER INSERT ON consents REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('contact_id', 'channel', 'purpose');
CREATE TRIGGER backup_change_update AFTER UPDATE ON consents REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('contact_id', 'channel', 'purpose');
CREATE TRIGGER backup_change_delete AFTER DELETE ON consents REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('contact_id', 'channel', 'purpose');

DROP TRIGGER backup_change ON consent_events;
CREATE TRIGGER backup_change AFTER INSERT ON consent_events REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON consent_events REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON consent_events REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');

DROP TRIGGER backup_change ON list_members;
CREATE TRIGGER backup_change AFTER INSERT ON list_members REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('list_id', 'contact_id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON list_members REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('list_id', 'contact_id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON list_members REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('list_id', 'contact_id');

DROP TRIGGER backup_change ON blocklist;
CREATE TRIGGER backup_change AFTER INSERT ON blocklist REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('kind', 'value_bidx');
CREATE TRIGGER backup_change_update AFTER UPDATE ON blocklist REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('kind', 'value_bidx');
CREATE TRIGGER backup_change_delete AFTER DELETE ON blocklist REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('kind', 'value_bidx');

-- +goose Down
DROP TRIGGER backup_change ON contacts;
DROP TRIGGER backup_change_update ON contacts;
DROP TRIGGER backup_change_delete ON contacts;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
DROP TRIGGER backup_change ON consents;
DROP TRIGGER backup_change_update ON consents;
DROP TRIGGER backup_change_delete ON consents;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('contact_id', 'channel', 'purpose');
DROP TRIGGER backup_change ON consent_events;
DROP TRIGGER backup_change_update ON consent_events;
DROP TRIGGER backup_change_delete ON consent_events;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
DROP TRIGGER backup_change ON list_members;
DROP TRIGGER backup_change_update ON list_members;
DROP TRIGGER backup_change_delete ON list_members;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON list_members
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('list_id', 'contact_id');
DROP TRIGGER backup_change ON blocklist;
DROP TRIGGER backup_change_update ON blocklist;
DROP TRIGGER backup_change_delete ON blocklist;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON blocklist
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('kind', 'value_bidx');
DROP FUNCTION relais_backup_change_rows();

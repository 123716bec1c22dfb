-- +goose Up
-- The backup change log of audit_events written once per statement instead
-- of once per row (issue 6): the sequencer inserts events 100 rows per
-- statement, and the row-level function of 00009 (a look-up of
-- backup_restoring, to_jsonb of the whole event, one INSERT) ran for each.
-- Same rows as before: (tenant_id, 'audit_events', the seq as a JSON
-- array's text), the new keys of an insert, the new and old keys of an
-- update (the old only differ if seq changed), the old keys of a delete;
-- nothing for the operator's log (tenant '') nor for a tenant being
-- restored. Static statements (PL/pgSQL keeps their plans), as in
-- relais_backup_change_rows (00024), in a function of their own for this
-- key shape: replacing the shared function here would drop the key shapes
-- any other migration adds to it. The INSERT trigger keeps the name
-- backup_change (the backup's schema reads tracked tables by it).
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.seq)::text
        FROM (SELECT n.tenant_id, n.seq FROM backup_new n) k
        WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.seq)::text
        FROM (SELECT n.tenant_id, n.seq FROM backup_new n UNION SELECT o.tenant_id, o.seq FROM backup_old o) k
        WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
    ELSE
        INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT k.tenant_id, TG_TABLE_NAME, jsonb_build_array(k.seq)::text
        FROM (SELECT o.tenant_id, o.seq FROM backup_old o) k
        WHERE k.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = k.tenant_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER backup_change ON audit_events;
CREATE TRIGGER backup_change AFTER INSERT ON audit_events REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_seq();
CREATE TRIGGER backup_change_update AFTER UPDATE ON audit_events REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_seq();
CREATE TRIGGER backup_change_delete AFTER DELETE ON audit_events REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_seq();

-- +goose Down
DROP TRIGGER backup_change ON audit_events;
DROP TRIGGER backup_change_update ON audit_events;
DROP TRIGGER backup_change_delete ON audit_events;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('seq');
DROP FUNCTION relais_backup_change_seq();

-- +goose Up
-- The backup change log of the router's three tables (messages,
-- message_events, message_contents) written once per statement instead of
-- once per row (issue 5, ingestion speed). The row-level function of
-- 00009 turns every row into JSON (to_jsonb) to pick its key: two thirds of
-- the server time of accepting a batch of 1,000 messages went to it. These
-- triggers read the statement's transition tables and log the same
-- (tenant_id, tbl, pk) rows, pk as the same JSON array text, with one
-- INSERT ... SELECT per statement (a plan PL/pgSQL keeps). As before: the
-- operator's rows (tenant '') and a tenant being restored are not logged;
-- an update logs the new key, and the old one when it changed; a delete
-- the old key. The trigger keeps the name backup_change (the backup's
-- schema reads tracked tables by it).
DROP TRIGGER backup_change ON messages;
DROP TRIGGER backup_change ON message_events;
DROP TRIGGER backup_change ON message_contents;

-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT n.tenant_id, 'messages', jsonb_build_array(n.id)::text FROM new_rows n
            WHERE n.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = n.tenant_id);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'messages', jsonb_build_array(o.id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id)
              AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.tenant_id = o.tenant_id AND n.id = o.id);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'messages', jsonb_build_array(o.id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT n.tenant_id, 'message_events', jsonb_build_array(n.id)::text FROM new_rows n
            WHERE n.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = n.tenant_id);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'message_events', jsonb_build_array(o.id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id)
              AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.tenant_id = o.tenant_id AND n.id = o.id);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'message_events', jsonb_build_array(o.id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change_message_contents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT n.tenant_id, 'message_contents', jsonb_build_array(n.message_id)::text FROM new_rows n
            WHERE n.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = n.tenant_id);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'message_contents', jsonb_build_array(o.message_id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id)
              AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.tenant_id = o.tenant_id AND n.message_id = o.message_id);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO backup_changes (tenant_id, tbl, pk)
            SELECT o.tenant_id, 'message_contents', jsonb_build_array(o.message_id)::text FROM old_rows o
            WHERE o.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring b WHERE b.tenant_id = o.tenant_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER backup_change AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_messages();
CREATE TRIGGER backup_change_u AFTER UPDATE ON messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_messages();
CREATE TRIGGER backup_change_d AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_messages();
CREATE TRIGGER backup_change AFTER INSERT ON message_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_events();
CREATE TRIGGER backup_change_u AFTER UPDATE ON message_events REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_events();
CREATE TRIGGER backup_change_d AFTER DELETE ON message_events REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_events();
CREATE TRIGGER backup_change AFTER INSERT ON message_contents REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_contents();
CREATE TRIGGER backup_change_u AFTER UPDATE ON message_contents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_contents();
CREATE TRIGGER backup_change_d AFTER DELETE ON message_contents REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_message_contents();

-- +goose Down
DROP TRIGGER backup_change ON messages;
DROP TRIGGER backup_change_u ON messages;
DROP TRIGGER backup_change_d ON messages;
DROP TRIGGER backup_change ON message_events;
DROP TRIGGER backup_change_u ON message_events;
DROP TRIGGER backup_change_d ON message_events;
DROP TRIGGER backup_change ON message_contents;
DROP TRIGGER backup_change_u ON message_contents;
DROP TRIGGER backup_change_d ON message_contents;
DROP FUNCTION relais_backup_change_messages();
DROP FUNCTION relais_backup_change_message_events();
DROP FUNCTION relais_backup_change_message_contents();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_contents
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('message_id');

-- +goose Up
-- The backup change log of the router's three tables (messages,
-- message_events, message_contents) written once per statement instead of
-- once per row (issue 5, ingestion speed). The row-level function of
-- 00009 turns every row into JSON (to_jsonb) to pick its key: two thirds of
-- the server time of accepting a batch of 1,000 messages went to it. These
-- triggers run 00024's relais_backup_change_rows over the statement's
-- transition tables: the same (tenant_id, tbl, pk) rows, pk as the same
-- JSON array text; as before, the operator's rows (tenant '') and a tenant
-- being restored are not logged. The INSERT trigger keeps the name
-- backup_change (the backup's schema reads tracked tables by it).
DROP TRIGGER backup_change ON messages;
DROP TRIGGER backup_change ON message_events;
DROP TRIGGER backup_change ON message_contents;

CREATE TRIGGER backup_change AFTER INSERT ON messages REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON messages REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON messages REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');

CREATE TRIGGER backup_change AFTER INSERT ON message_events REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON message_events REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON message_events REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('id');

CREATE TRIGGER backup_change AFTER INSERT ON message_contents REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('message_id');
CREATE TRIGGER backup_change_update AFTER UPDATE ON message_contents REFERENCING OLD TABLE AS backup_old NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('message_id');
CREATE TRIGGER backup_change_delete AFTER DELETE ON message_contents REFERENCING OLD TABLE AS backup_old
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('message_id');

-- +goose Down
DROP TRIGGER backup_change ON messages;
DROP TRIGGER backup_change_update ON messages;
DROP TRIGGER backup_change_delete ON messages;
DROP TRIGGER backup_change ON message_events;
DROP TRIGGER backup_change_update ON message_events;
DROP TRIGGER backup_change_delete ON message_events;
DROP TRIGGER backup_change ON message_contents;
DROP TRIGGER backup_change_update ON message_contents;
DROP TRIGGER backup_change_delete ON message_contents;
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_contents
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('message_id');

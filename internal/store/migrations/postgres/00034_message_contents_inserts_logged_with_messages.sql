-- +goose Up
-- Ingestion speed (issue 5): the insert of a message_contents row is no
-- longer logged in backup_changes on its own. A content row is only ever
-- inserted with its message, in the same statement (router.insertMessages),
-- under the same key (message_id = messages.id), and the message's insert
-- is logged: an incremental backup reads, for every logged key of
-- messages, the content row of that key too (backup.insertsLoggedWith).
-- Updates and deletes of message_contents are still logged
-- (backup_change_update, backup_change_delete of 00026).
DROP TRIGGER backup_change ON message_contents;

-- +goose Down
CREATE TRIGGER backup_change AFTER INSERT ON message_contents REFERENCING NEW TABLE AS backup_new
    FOR EACH STATEMENT EXECUTE FUNCTION relais_backup_change_rows('message_id');

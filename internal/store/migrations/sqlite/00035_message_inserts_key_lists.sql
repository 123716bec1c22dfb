-- +goose Up
-- Ingestion speed (issue 5): the inserts of a batch of messages are logged
-- in one backup_changes row naming all their keys (a key list: pk is a JSON
-- array of keys, '[["id1"],["id2"]]'), instead of one row per message (a
-- row and an index entry each, a tenth of the cost of accepting a batch).
-- SQLite has no statement-level triggers: the router's insert path
-- (router.insertMessages) logs the list itself. Around its INSERT INTO
-- messages it holds a backup_self_logged row for its tenant, which turns
-- the row trigger off; it then writes the list of the ids the statement
-- created (none while the tenant is being restored, as the triggers), and
-- deletes the row before anything else runs in its transaction. Every
-- other writer of messages is logged by the row trigger as before. The row
-- cannot outlive its statement: its guard column references a key that
-- never exists (''), checked at commit (deferred), so a transaction that
-- still holds one cannot commit. An incremental backup reads a key list
-- as its keys (backup.changedKeys).
CREATE TABLE backup_self_logged (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    guard     TEXT NOT NULL DEFAULT '' REFERENCES backup_self_logged (tenant_id) DEFERRABLE INITIALLY DEFERRED
);

DROP TRIGGER backup_change_messages_i;
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_i AFTER INSERT ON messages WHEN NOT EXISTS (SELECT 1 FROM backup_self_logged s WHERE s.tenant_id = NEW.tenant_id)
    AND NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(NEW.id));
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER backup_change_messages_i;
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_i AFTER INSERT ON messages WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(NEW.id));
END;
-- +goose StatementEnd
DROP TABLE backup_self_logged;

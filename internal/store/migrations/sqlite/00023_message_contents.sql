-- +goose Up
-- A message's sealed content (about 5 kB for an email) in its own table,
-- written once when the message is accepted (issue 5): the queue row in
-- messages shrinks to a few hundred bytes, so that each change of state
-- (claim, outcome, retry) rewrites a small row instead of the content's
-- overflow pages. The engine reads the content of the messages it claimed
-- by key; privacy erasure and retention overwrite it here. A rowid table:
-- WITHOUT ROWID keeps rows in an index b-tree, where anything above about
-- 1 kB overflows to other pages.
CREATE TABLE message_contents (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    message_id  TEXT NOT NULL,
    content_enc BLOB NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
INSERT INTO message_contents (tenant_id, message_id, content_enc) SELECT tenant_id, id, content_enc FROM messages;
ALTER TABLE messages DROP COLUMN content_enc;
-- Backup change log (see 00009_backup.sql).
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_contents_i AFTER INSERT ON message_contents WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'message_contents', json_array(NEW.message_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_contents_u AFTER UPDATE ON message_contents WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'message_contents', json_array(NEW.message_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'message_contents', json_array(OLD.message_id) WHERE json_array(OLD.message_id) <> json_array(NEW.message_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_contents_d AFTER DELETE ON message_contents WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'message_contents', json_array(OLD.message_id));
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER backup_change_message_contents_i;
DROP TRIGGER backup_change_message_contents_u;
DROP TRIGGER backup_change_message_contents_d;
ALTER TABLE messages ADD COLUMN content_enc BLOB NOT NULL DEFAULT x'';
UPDATE messages SET content_enc = (SELECT c.content_enc FROM message_contents c WHERE c.tenant_id = messages.tenant_id AND c.message_id = messages.id)
    WHERE EXISTS (SELECT 1 FROM message_contents c WHERE c.tenant_id = messages.tenant_id AND c.message_id = messages.id);
DROP TABLE message_contents;

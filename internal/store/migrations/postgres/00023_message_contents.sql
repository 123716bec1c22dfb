-- +goose Up
-- A message's sealed content (about 5 kB for an email) in its own table,
-- written once when the message is accepted (issue 5): the queue row in
-- messages shrinks to a few hundred bytes, so that each change of state
-- (claim, outcome, retry) writes a small row version instead of copying
-- the content. The engine reads the content of the messages it claimed by
-- key; privacy erasure and retention overwrite it here.
CREATE TABLE message_contents (
    tenant_id   TEXT  NOT NULL REFERENCES tenants (id),
    message_id  TEXT  NOT NULL,
    content_enc BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
INSERT INTO message_contents (tenant_id, message_id, content_enc) SELECT tenant_id, id, content_enc FROM messages;
ALTER TABLE messages DROP COLUMN content_enc;
ALTER TABLE message_contents ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_contents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_contents USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
-- Backup change log (see 00009_backup.sql).
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_contents
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('message_id');

-- +goose Down
ALTER TABLE messages ADD COLUMN content_enc BYTEA NOT NULL DEFAULT '\x';
UPDATE messages m SET content_enc = c.content_enc FROM message_contents c WHERE c.tenant_id = m.tenant_id AND c.message_id = m.id;
DROP TABLE message_contents;

-- +goose Up
-- Backups (review of 00034): every insert into messages is logged as a key
-- list ('[["id"]]'), a message accepted alone too, and an update or delete
-- as a plain key ('["id"]'). An incremental reads a message's content only
-- for the messages inserted since the point before (the keys of key
-- lists): a content row changes only with its message's insert, or by its
-- own update and delete, which its own triggers log. Before, every logged
-- key of messages brought its content (about 5 kB) along, so a campaign's
-- receipts arriving after the point that carried its messages carried
-- every content again. The router's own lists (batches of 32 or more,
-- 00035) are unchanged. A migration makes the next point a full one, so
-- keys logged before it are never read with this rule.
DROP TRIGGER backup_change_messages_i;
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_i AFTER INSERT ON messages WHEN NOT EXISTS (SELECT 1 FROM backup_self_logged s WHERE s.tenant_id = NEW.tenant_id)
    AND NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(json_array(NEW.id)));
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER backup_change_messages_i;
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_i AFTER INSERT ON messages WHEN NOT EXISTS (SELECT 1 FROM backup_self_logged s WHERE s.tenant_id = NEW.tenant_id)
    AND NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(NEW.id));
END;
-- +goose StatementEnd

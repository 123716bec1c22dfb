-- +goose Up
-- The web interface's dashboard (issue 14) counts a tenant's messages
-- accepted today, by channel and state: without this index that is a scan
-- of every message the tenant ever sent, at each dashboard view.
CREATE INDEX messages_tenant_accepted ON messages (tenant_id, accepted_at);

-- +goose Down
DROP INDEX messages_tenant_accepted;

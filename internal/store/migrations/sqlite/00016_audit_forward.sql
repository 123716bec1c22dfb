-- +goose Up
-- How far each audit log has been forwarded to each external sink (syslog,
-- GELF: issue 6, LOG-6). The forwarder tails the logs from the store, so a
-- sink that is down delays forwarding but loses nothing, and requests never
-- wait for it.
CREATE TABLE audit_forward_cursors (
    tenant_id  TEXT    NOT NULL,
    sink       TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, sink)
);

-- +goose Down
DROP TABLE audit_forward_cursors;

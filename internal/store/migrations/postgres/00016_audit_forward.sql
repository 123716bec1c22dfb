-- +goose Up
-- How far each audit log has been forwarded to each external sink (syslog,
-- GELF: issue 6, LOG-6). The forwarder tails the logs from the store, so a
-- sink that is down delays forwarding but loses nothing, and requests never
-- wait for it.
CREATE TABLE audit_forward_cursors (
    tenant_id  TEXT   NOT NULL,
    sink       TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sink)
);

ALTER TABLE audit_forward_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_forward_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_forward_cursors
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
DROP TABLE audit_forward_cursors;

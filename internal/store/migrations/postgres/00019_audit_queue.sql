-- +goose Up
-- Deferred sequencing of the audit trail (issue 6): audit.Append only
-- queues the event here, in the transaction of the change it records; the
-- sequencer (internal/audit sequence.go) moves queued events into
-- audit_events in batches, numbering and hash-chaining them. No secondary
-- index: the queue is short (drained every 200 ms and before every read of
-- the log).
CREATE TABLE audit_queue (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id TEXT      NOT NULL,
    at        BIGINT    NOT NULL,
    event     TEXT      NOT NULL
);
ALTER TABLE audit_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_queue FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_queue USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
DROP TABLE audit_queue;

-- +goose Up
-- Deferred sequencing of the audit trail (issue 6): audit.Append only
-- queues the event here, in the transaction of the change it records; the
-- sequencer (internal/audit sequence.go) moves queued events into
-- audit_events in batches, numbering and hash-chaining them. No secondary
-- index: the queue is short (drained every 200 ms and before every read of
-- the log). Append sets id to the time in microseconds, or one more than
-- the last id if that is larger (not AUTOINCREMENT, which writes one more
-- page per append): ids grow even when the queue empties, so a queued row
-- restored from a backup (every backup point copies the queue whole)
-- cannot collide with a live one, and sequencing follows commit order.
CREATE TABLE audit_queue (
    id        INTEGER PRIMARY KEY,
    tenant_id TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    event     TEXT    NOT NULL
);

-- +goose Down
DROP TABLE audit_queue;

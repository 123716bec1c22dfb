-- +goose Up
-- Nothing on SQLite: 00029 replaces PostgreSQL's row-level change-log
-- trigger of audit_events by statement-level ones (SQLite has no
-- statement-level triggers). The version is kept in step with PostgreSQL's.
SELECT 1;

-- +goose Down
SELECT 1;

-- +goose Up
-- Nothing on SQLite: PostgreSQL's 00032 drops message_contents' foreign key
-- to tenants (a per-row check there); SQLite keeps it (a cheap index probe
-- here, and dropping it would copy the whole table). The version is kept in
-- step with PostgreSQL's.
SELECT 1;

-- +goose Down
SELECT 1;

-- +goose Up
-- Ingestion speed (issue 5): a message's content row no longer has its own
-- foreign key to tenants. PostgreSQL checks a foreign key row by row (a
-- SELECT ... FOR KEY SHARE of the tenant's row per inserted row): 4-10 ms
-- of the 40-90 ms of accepting 1,000 messages. The key was redundant: the
-- router writes a content row in the statement that writes its message
-- (router.insertMessages, one statement with data-modifying WITHs), whose
-- messages row keeps its foreign key to tenants (a missing tenant fails
-- the whole statement); the other writers (a tenant import, an anonymised
-- copy, a restore) write into a tenant they created or checked; and the
-- row-level security policy pins tenant_id to the transaction's tenant. message_events has never had one. SQLite
-- keeps it (00032 is empty there): its check is a cheap index probe, and
-- dropping it would copy the whole table.
ALTER TABLE message_contents DROP CONSTRAINT message_contents_tenant_id_fkey;

-- +goose Down
ALTER TABLE message_contents ADD CONSTRAINT message_contents_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

-- +goose Up
-- The contacts' e-mail blind index becomes a named unique index, as on
-- SQLite (see sqlite/00020): the same rule, and ON CONFLICT (tenant_id,
-- email_bidx) still finds it.
ALTER TABLE contacts DROP CONSTRAINT contacts_tenant_id_email_bidx_key;
CREATE UNIQUE INDEX contacts_email ON contacts (tenant_id, email_bidx);

-- +goose Down
DROP INDEX contacts_email;
ALTER TABLE contacts ADD CONSTRAINT contacts_tenant_id_email_bidx_key UNIQUE (tenant_id, email_bidx);

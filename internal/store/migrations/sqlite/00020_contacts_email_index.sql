-- +goose NO TRANSACTION
-- +goose Up
-- The contacts' e-mail blind index becomes a named unique index (it was a
-- UNIQUE constraint of the table, issue 4): same rule, but an index that a
-- restore into an empty table can set aside and build once after loading
-- (internal/backup dropIndexes), instead of inserting a million random
-- keys one by one; a duplicate still fails the restore at that build.
--
-- SQLite cannot drop a table constraint: this is its documented table
-- rebuild (new table, copy, drop, rename, indexes and triggers again). It
-- runs outside goose's transaction because foreign keys must be off while
-- contacts is dropped (on, the drop would delete the rows of consents and
-- list_members through ON DELETE CASCADE), and that pragma is a no-op
-- inside a transaction; the rebuild itself is one transaction. Running it
-- twice (a crash before goose records the version) gives the same table.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE contacts_new (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    email_enc      BLOB,
    email_bidx     BLOB,
    phone_enc      BLOB,
    phone_bidx     BLOB,
    first_name_enc BLOB,
    last_name_enc  BLOB,
    locale         TEXT    NOT NULL DEFAULT '',
    timezone       TEXT    NOT NULL DEFAULT '',
    attributes_enc BLOB,
    attributes     TEXT    NOT NULL DEFAULT '{}',
    status         TEXT    NOT NULL CHECK (status IN ('active', 'unsubscribed', 'bounced', 'blocklisted')),
    source         TEXT    NOT NULL CHECK (source IN ('api', 'admin', 'form', 'import', 'seed')),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    erased_at      BIGINT,
    key_enc        BLOB,
    PRIMARY KEY (tenant_id, id)
);
INSERT INTO contacts_new (tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
    locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, erased_at, key_enc)
SELECT tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
    locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, erased_at, key_enc
FROM contacts ORDER BY tenant_id, id;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;
CREATE UNIQUE INDEX contacts_email ON contacts (tenant_id, email_bidx);
CREATE INDEX contacts_phone ON contacts (phone_bidx) WHERE phone_bidx IS NOT NULL;
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_i AFTER INSERT ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_u AFTER UPDATE ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'contacts', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_d AFTER DELETE ON contacts WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'contacts', json_array(OLD.id));
END;
-- +goose StatementEnd
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE contacts_new (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    email_enc      BLOB,
    email_bidx     BLOB,
    phone_enc      BLOB,
    phone_bidx     BLOB,
    first_name_enc BLOB,
    last_name_enc  BLOB,
    locale         TEXT    NOT NULL DEFAULT '',
    timezone       TEXT    NOT NULL DEFAULT '',
    attributes_enc BLOB,
    attributes     TEXT    NOT NULL DEFAULT '{}',
    status         TEXT    NOT NULL CHECK (status IN ('active', 'unsubscribed', 'bounced', 'blocklisted')),
    source         TEXT    NOT NULL CHECK (source IN ('api', 'admin', 'form', 'import', 'seed')),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    erased_at      BIGINT,
    key_enc        BLOB,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_bidx)
);
INSERT INTO contacts_new (tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
    locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, erased_at, key_enc)
SELECT tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
    locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, erased_at, key_enc
FROM contacts ORDER BY tenant_id, id;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;
CREATE INDEX contacts_phone ON contacts (phone_bidx) WHERE phone_bidx IS NOT NULL;
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_i AFTER INSERT ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_u AFTER UPDATE ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'contacts', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_d AFTER DELETE ON contacts WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'contacts', json_array(OLD.id));
END;
-- +goose StatementEnd
COMMIT;
PRAGMA foreign_keys = ON;

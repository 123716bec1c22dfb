-- +goose Up
-- Key management (issue 7): tenant data-key rotation progress, shredding
-- records, and per-contact keys.

-- One row per tenant data-key rotation: the background re-encryption of the
-- tenant's personal fields from every older key version to to_version, in
-- batches. cursor is where it stopped (JSON: table index and last primary
-- key), so an interrupted rotation resumes; the old versions stay usable for
-- reading until state is 'done'.
CREATE TABLE key_rotations (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    to_version  INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('running', 'done')),
    cursor      TEXT    NOT NULL DEFAULT '',
    rows_done   BIGINT  NOT NULL DEFAULT 0,
    started_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (tenant_id, to_version)
);

-- Crypto-shredding records: a tenant's keys (kind 'tenant') or one contact's
-- key (kind 'contact', subject_id = the contact ID) were destroyed. Kept
-- without a foreign key so that they outlive the data. A restore of an older
-- backup must re-apply every record made after that backup (delete the
-- wrapped keys they name), so that a restore never brings a shredded key
-- back (see docs/architecture.md, "Crypto-shredding").
CREATE TABLE shredding_records (
    tenant_id  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('tenant', 'contact')),
    subject_id TEXT    NOT NULL DEFAULT '',
    reason     TEXT    NOT NULL DEFAULT '',
    actor      TEXT    NOT NULL DEFAULT '',
    at         BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX shredding_records_subject ON shredding_records (tenant_id, kind, subject_id);

-- Per-contact keys: 32 random bytes sealed by the tenant's field cipher
-- (field "contact.key"). A contact's personal fields are sealed under it;
-- setting it to NULL shreds that one person (PRIV-4), backups included once
-- restores re-apply the shredding records. NULL also for contacts written
-- before per-contact keys (their fields are under the tenant key).
ALTER TABLE contacts ADD COLUMN key_enc BYTEA;
ALTER TABLE key_rotations ENABLE ROW LEVEL SECURITY;
ALTER TABLE key_rotations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON key_rotations USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE shredding_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE shredding_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON shredding_records USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
ALTER TABLE contacts DROP COLUMN key_enc;
DROP TABLE shredding_records;
DROP TABLE key_rotations;

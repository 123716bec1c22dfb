-- +goose Up
-- The audit trail's Merkle tree, signing keys, checkpoints and retention
-- (issue 6). See internal/audit for the formats.

-- body_hash: SHA-256 of the event's canonical body (format 2 leaves hash the
-- header and this digest, so that a purged event keeps a verifiable header);
-- NULL for format 1 events written before this migration.
-- purged_at: when retention removed the body (the leaf, chain and header stay).
ALTER TABLE audit_events ADD COLUMN body_hash BYTEA;
ALTER TABLE audit_events ADD COLUMN purged_at BIGINT;
CREATE INDEX audit_events_purges ON audit_events (tenant_id, seq) WHERE action = 'audit.purge';

CREATE TABLE audit_trees (
    tenant_id  TEXT   PRIMARY KEY,
    size       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE audit_tree_hashes (
    tenant_id TEXT   NOT NULL,
    idx       BIGINT NOT NULL,
    hash      BYTEA  NOT NULL,
    PRIMARY KEY (tenant_id, idx)
);

CREATE TABLE audit_signing_keys (
    tenant_id     TEXT   PRIMARY KEY,
    name          TEXT   NOT NULL,
    public_key    BYTEA  NOT NULL,
    master_key_id TEXT   NOT NULL,
    private_wrap  BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE audit_checkpoints (
    tenant_id  TEXT   NOT NULL,
    tree_size  BIGINT NOT NULL,
    root_hash  BYTEA  NOT NULL,
    note       TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, tree_size)
);

-- The operator's log is tenant id '' (platform scope only).
ALTER TABLE audit_trees ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_trees FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_trees USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE audit_tree_hashes ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_hashes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_hashes USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE audit_signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_signing_keys USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_checkpoints USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_signing_keys;
DROP TABLE audit_tree_hashes;
DROP TABLE audit_trees;
DROP INDEX audit_events_purges;
ALTER TABLE audit_events DROP COLUMN purged_at;
ALTER TABLE audit_events DROP COLUMN body_hash;

-- +goose Up
-- The audit trail's Merkle tree, signing keys, checkpoints and retention
-- (issue 6). See internal/audit for the formats.

-- body_hash: SHA-256 of the event's canonical body (format 2 leaves hash the
-- header and this digest, so that a purged event keeps a verifiable header);
-- NULL for format 1 events written before this migration.
-- purged_at: when retention removed the body (the leaf, chain and header stay).
ALTER TABLE audit_events ADD COLUMN body_hash BLOB;
ALTER TABLE audit_events ADD COLUMN purged_at INTEGER;
-- Purge reports are looked up by verification; the partial index costs
-- nothing to other appends.
CREATE INDEX audit_events_purges ON audit_events (tenant_id, seq) WHERE action = 'audit.purge';

-- How far each log's Merkle tree has been computed (tree hashes are written
-- by the checkpoint job, not by each append).
CREATE TABLE audit_trees (
    tenant_id  TEXT    PRIMARY KEY,
    size       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog StoredHashIndex order).
CREATE TABLE audit_tree_hashes (
    tenant_id TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, idx)
);

-- One Ed25519 checkpoint signing key per log; the private key (its seed) is
-- only stored wrapped by the master key, bound to the tenant and public key.
CREATE TABLE audit_signing_keys (
    tenant_id     TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    public_key    BLOB    NOT NULL,
    master_key_id TEXT    NOT NULL,
    private_wrap  BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Signed checkpoints (a note: origin, tree size, root hash, signature).
CREATE TABLE audit_checkpoints (
    tenant_id  TEXT    NOT NULL,
    tree_size  INTEGER NOT NULL,
    root_hash  BLOB    NOT NULL,
    note       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, tree_size)
);

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_signing_keys;
DROP TABLE audit_tree_hashes;
DROP TABLE audit_trees;
DROP INDEX audit_events_purges;
ALTER TABLE audit_events DROP COLUMN purged_at;
ALTER TABLE audit_events DROP COLUMN body_hash;

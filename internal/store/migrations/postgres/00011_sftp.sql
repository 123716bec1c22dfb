-- +goose Up
-- SFTP file exchange (issue 10, XFER-1..3). Nothing here is personal data:
-- ids, names, network ranges, public keys, sizes and states. File contents
-- live in the blob storage (<data_dir>/sftp by default), encrypted with the
-- tenant key; a row here is the only way to reach a blob.

-- An account logs in as "<tenant slug>.<name>". allow is a JSON array of
-- CIDRs checked before authentication; permissions a JSON array of
-- "upload" (write /inbox) and "download" (read /outbox); import is the JSON
-- contact-import options applied to files uploaded to /inbox.
CREATE TABLE sftp_accounts (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    allow          TEXT    NOT NULL,
    permissions    TEXT    NOT NULL,
    import         TEXT    NOT NULL DEFAULT '{}',
    quota_bytes    BIGINT  NOT NULL,
    max_file_bytes BIGINT  NOT NULL,
    done_marker    BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at     BIGINT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- An account's SSH public keys (authorized_keys form), by SHA-256
-- fingerprint.
CREATE TABLE sftp_keys (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    account_id  TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    algorithm   TEXT   NOT NULL,
    public_key  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id, fingerprint),
    FOREIGN KEY (tenant_id, account_id) REFERENCES sftp_accounts (tenant_id, id) ON DELETE CASCADE
);

-- The tenant's virtual tree: dir is 'inbox' or 'outbox'. state: 'writing'
-- (an upload in progress), 'uploaded' (closed, waiting for a rename or a
-- .done marker), 'pending' (to import), 'processing' (leased by a node until
-- lease_until), 'ready' (an outbox file). blob is the storage key.
CREATE TABLE sftp_files (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    id          TEXT    NOT NULL,
    dir         TEXT    NOT NULL CHECK (dir IN ('inbox', 'outbox')),
    name        TEXT    NOT NULL,
    account_id  TEXT    NOT NULL DEFAULT '',
    size        BIGINT  NOT NULL DEFAULT 0,
    blob        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('writing', 'uploaded', 'pending', 'processing', 'ready')),
    lease_owner TEXT    NOT NULL DEFAULT '',
    lease_until BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, dir, name)
);
CREATE INDEX sftp_files_state ON sftp_files (state, lease_until);
CREATE INDEX sftp_files_expiry ON sftp_files (expires_at);

ALTER TABLE sftp_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE sftp_accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sftp_accounts USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE sftp_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE sftp_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sftp_keys USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE sftp_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE sftp_files FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sftp_files USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- +goose Down
DROP TABLE sftp_files;
DROP TABLE sftp_keys;
DROP TABLE sftp_accounts;

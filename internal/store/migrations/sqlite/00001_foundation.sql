-- +goose Up
-- Timestamps are Unix microseconds (UTC) in both dialects, so that rows move
-- between SQLite and PostgreSQL (backups, exports) without conversion.

CREATE TABLE tenants (
    id          TEXT    PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A tenant's data keys, only ever stored wrapped by the master key.
CREATE TABLE tenant_keys (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    version       INTEGER NOT NULL,
    master_key_id TEXT    NOT NULL,
    wrapped       BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- Per-tenant overrides of the platform policy defaults (a JSON object).
CREATE TABLE tenant_settings (
    tenant_id  TEXT    PRIMARY KEY REFERENCES tenants (id),
    policy     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The head of each audit chain: serialises appends per tenant.
-- tenant_id '' is the operator's (platform) log.
CREATE TABLE audit_heads (
    tenant_id TEXT    PRIMARY KEY,
    seq       INTEGER NOT NULL,
    hash      BLOB    NOT NULL
);

CREATE TABLE audit_events (
    tenant_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    category    TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    actor_type  TEXT    NOT NULL,
    actor_id    TEXT    NOT NULL,
    object_type TEXT    NOT NULL,
    object_id   TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    leaf_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_object ON audit_events (tenant_id, object_type, object_id);

-- Operator API tokens (platform level): only a SHA-256 of the token is kept.
CREATE TABLE operator_tokens (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- +goose Down
DROP TABLE operator_tokens;
DROP TABLE audit_events;
DROP TABLE audit_heads;
DROP TABLE tenant_settings;
DROP TABLE tenant_keys;
DROP TABLE tenants;

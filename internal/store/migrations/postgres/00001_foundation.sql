-- +goose Up
-- Timestamps are Unix microseconds (UTC) in both dialects, so that rows move
-- between SQLite and PostgreSQL (backups, exports) without conversion.
--
-- Row-level security is the second wall behind the tenant-scoped handle:
-- every transaction sets relais.tenant_id (tenant work) or relais.scope =
-- 'platform' (operator work) with set_config(..., true), and each policy
-- admits only matching rows. FORCE makes the policies bind the table owner
-- too; the application role must not be a superuser nor BYPASSRLS (the store
-- warns at start when it is).

CREATE TABLE tenants (
    id          TEXT   PRIMARY KEY,
    slug        TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE tenant_keys (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    version       INTEGER NOT NULL,
    master_key_id TEXT    NOT NULL,
    wrapped       BYTEA   NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE tenant_settings (
    tenant_id  TEXT   PRIMARY KEY REFERENCES tenants (id),
    policy     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE audit_heads (
    tenant_id TEXT   PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      BYTEA  NOT NULL
);

CREATE TABLE audit_events (
    tenant_id   TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    category    TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    actor_type  TEXT   NOT NULL,
    actor_id    TEXT   NOT NULL,
    object_type TEXT   NOT NULL,
    object_id   TEXT   NOT NULL,
    ip          TEXT   NOT NULL,
    user_agent  TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    details     TEXT   NOT NULL,
    leaf_hash   BYTEA  NOT NULL,
    hash        BYTEA  NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_object ON audit_events (tenant_id, object_type, object_id);

CREATE TABLE operator_tokens (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    token_hash BYTEA  NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- relais_tenant() is the transaction's tenant, or NULL: an empty or unset
-- setting matches no row.
-- +goose StatementBegin
CREATE FUNCTION relais_tenant() RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('relais.tenant_id', true), '')
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION relais_platform() RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT COALESCE(current_setting('relais.scope', true), '') = 'platform'
$$;
-- +goose StatementEnd

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (relais_platform() OR id = relais_tenant())
    WITH CHECK (relais_platform() OR id = relais_tenant());

ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_heads
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE operator_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operator_tokens
    USING (relais_platform()) WITH CHECK (relais_platform());

-- +goose Down
DROP TABLE operator_tokens;
DROP TABLE audit_events;
DROP TABLE audit_heads;
DROP TABLE tenant_settings;
DROP TABLE tenant_keys;
DROP TABLE tenants;
DROP FUNCTION relais_platform();
DROP FUNCTION relais_tenant();

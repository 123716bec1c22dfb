-- +goose Up
-- Identity and access (issue 3). Personal fields of users (email, name) are
-- encrypted with the tenant's data key; email_bidx is the blind index used to
-- find a user at login.
CREATE TABLE users (
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id),
    id                   TEXT    NOT NULL,
    email_enc            BYTEA   NOT NULL,
    email_bidx           BYTEA   NOT NULL,
    name_enc             BYTEA   NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    source               TEXT    NOT NULL DEFAULT 'local',
    password_hash        TEXT,
    password_changed_at  BIGINT,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    failed_count         INTEGER NOT NULL DEFAULT 0,
    failed_window_start  BIGINT  NOT NULL DEFAULT 0,
    locked_until         BIGINT  NOT NULL DEFAULT 0,
    locked_permanent     BOOLEAN NOT NULL DEFAULT FALSE,
    lock_count           INTEGER NOT NULL DEFAULT 0,
    totp_secret_enc      BYTEA,
    totp_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    totp_last_step       BIGINT  NOT NULL DEFAULT 0,
    token_version        INTEGER NOT NULL DEFAULT 1,
    last_login_at        BIGINT,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_bidx)
);

CREATE TABLE password_history (
    tenant_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, created_at),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- One-time links: enrolment (set a first password) and password reset.
CREATE TABLE user_tokens (
    token_hash BYTEA  PRIMARY KEY,
    tenant_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    purpose    TEXT   NOT NULL CHECK (purpose IN ('enrol', 'reset')),
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Server-side sessions; only a SHA-256 of the session id is stored.
CREATE TABLE sessions (
    id_hash      BYTEA   PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    reauth_at    BIGINT  NOT NULL,
    ip           TEXT    NOT NULL,
    user_agent   TEXT    NOT NULL,
    revoked_at   BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);

-- Pending second-factor challenges after a correct password.
CREATE TABLE mfa_challenges (
    token_hash      BYTEA   PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    email_code_hash BYTEA,
    email_sent_at   BIGINT  NOT NULL DEFAULT 0,
    email_sends     INTEGER NOT NULL DEFAULT 0,
    used_at         BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE recovery_codes (
    tenant_id TEXT   NOT NULL,
    user_id   TEXT   NOT NULL,
    code_hash BYTEA  NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Failed attempts per source address (AUTH-4 per-IP limit).
CREATE TABLE ip_failures (
    tenant_id    TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, ip)
);

-- API credentials (service accounts): client id / hashed secret.
CREATE TABLE api_clients (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    token_version INTEGER NOT NULL DEFAULT 1,
    allow_cidrs   TEXT    NOT NULL DEFAULT '[]',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- RBAC (ACC-1): roles are sets of permissions; groups hold users and roles.
CREATE TABLE roles (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    permissions TEXT    NOT NULL,
    builtin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE groups (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    source      TEXT   NOT NULL DEFAULT 'local',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE group_members (
    tenant_id TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE group_roles (
    tenant_id TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    role_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, role_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE user_roles (
    tenant_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    role_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE client_roles (
    tenant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    role_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, client_id, role_id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES api_clients (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

-- JWT signing keys (platform level): private keys wrapped by the master key.
CREATE TABLE signing_keys (
    kid          TEXT   PRIMARY KEY,
    alg          TEXT   NOT NULL,
    public_key   BYTEA  NOT NULL,
    private_wrap BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL,
    retire_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- Row-level security: the second tenant wall (see 00001).
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE password_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON password_history USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE user_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_tokens USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE mfa_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mfa_challenges USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recovery_codes USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE ip_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE ip_failures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ip_failures USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE api_clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_clients FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_clients USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE groups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON groups USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE group_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE group_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON group_members USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE group_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE group_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON group_roles USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_roles USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE client_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE client_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON client_roles USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON signing_keys USING (relais_platform()) WITH CHECK (relais_platform());

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE client_roles;
DROP TABLE user_roles;
DROP TABLE group_roles;
DROP TABLE group_members;
DROP TABLE groups;
DROP TABLE roles;
DROP TABLE api_clients;
DROP TABLE ip_failures;
DROP TABLE recovery_codes;
DROP TABLE mfa_challenges;
DROP TABLE sessions;
DROP TABLE user_tokens;
DROP TABLE password_history;
DROP TABLE users;

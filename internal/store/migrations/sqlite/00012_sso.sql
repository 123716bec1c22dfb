-- +goose Up
-- Single sign-on (issue 11; AUTH-5, ACC-2, ACC-5). Per-tenant OpenID Connect
-- and SAML 2.0 identity providers, the rules that map their claims and
-- attributes to relais groups and roles, pending sign-in flows, the SAML
-- replay cache, the links from an IdP subject to a user, and SCIM tokens.
-- Secrets (OIDC client secret, SAML SP private key) are encrypted with the
-- tenant's data key; subjects are stored only as keyed blind indexes;
-- flow and SCIM secrets only as SHA-256.

-- One row per identity provider of a tenant. kind: 'oidc' or 'saml'.
-- config is JSON (sso.Config: issuer, client id, scopes, pinned algorithms,
-- IdP metadata, attribute names, JIT, MFA acceptance...).
CREATE TABLE sso_providers (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    id         TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('oidc', 'saml')),
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    config     TEXT    NOT NULL,
    secret_enc BLOB    ,
    sp_key_enc BLOB    ,
    sp_cert    BLOB    ,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- Mapping rules (ACC-2): when the IdP's claim or attribute `claim` has the
-- value `value` ('*': any value), the user joins group_id and/or holds
-- role_id. Evaluated at every sign-in.
CREATE TABLE sso_rules (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    provider_id TEXT   NOT NULL,
    claim       TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    group_id    TEXT,
    role_id     TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES sso_providers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

-- Memberships and role grants made by the mapping rules, so that the next
-- sign-in takes away exactly what the rules gave and nothing granted by hand.
-- kind: 'group' or 'role'.
CREATE TABLE sso_grants (
    tenant_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('group', 'role')),
    target_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, kind, target_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Per-tenant SSO settings: password_login FALSE refuses local passwords.
CREATE TABLE sso_settings (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    password_login BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- The IdP subject (OIDC sub, SAML NameID) of a user, as a blind index.
CREATE TABLE sso_links (
    tenant_id     TEXT     NOT NULL,
    provider_id   TEXT     NOT NULL,
    subject_bidx  BLOB     NOT NULL,
    user_id       TEXT     NOT NULL,
    created_at    BIGINT   NOT NULL,
    last_login_at BIGINT   NOT NULL,
    PRIMARY KEY (tenant_id, provider_id, subject_bidx),
    FOREIGN KEY (tenant_id, provider_id) REFERENCES sso_providers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Pending sign-ins: the flow secret (OIDC state, the browser's flow cookie)
-- as SHA-256; the PKCE verifier and the nonce derive from the secret, so
-- they are not stored. request_id is the SAML AuthnRequest ID.
CREATE TABLE sso_flows (
    tenant_id   TEXT     NOT NULL,
    id_hash     BLOB     NOT NULL,
    provider_id TEXT     NOT NULL,
    request_id  TEXT     NOT NULL DEFAULT '',
    return_to   TEXT     NOT NULL DEFAULT '',
    created_at  BIGINT   NOT NULL,
    expires_at  BIGINT   NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (tenant_id, id_hash)
);
CREATE INDEX sso_flows_expiry ON sso_flows (tenant_id, expires_at);

-- SAML assertion ids already accepted, kept until the assertion expires.
CREATE TABLE sso_replay (
    tenant_id    TEXT   NOT NULL,
    provider_id  TEXT   NOT NULL,
    assertion_id TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider_id, assertion_id)
);

-- SCIM 2.0 bearer tokens (ACC-5), stored as SHA-256.
CREATE TABLE scim_tokens (
    tenant_id    TEXT     NOT NULL REFERENCES tenants (id),
    id           TEXT     NOT NULL,
    name         TEXT     NOT NULL,
    token_hash   BLOB     NOT NULL,
    created_at   BIGINT   NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (token_hash)
);

-- SCIM externalId of users and groups provisioned by an IdP.
CREATE TABLE scim_external (
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    resource_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, resource_id)
);

-- +goose Down
DROP TABLE scim_external;
DROP TABLE scim_tokens;
DROP TABLE sso_replay;
DROP TABLE sso_flows;
DROP TABLE sso_links;
DROP TABLE sso_settings;
DROP TABLE sso_grants;
DROP TABLE sso_rules;
DROP TABLE sso_providers;

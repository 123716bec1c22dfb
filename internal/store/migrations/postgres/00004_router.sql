-- +goose Up
-- The message router (issue 5). The queue lives here: a message row is its
-- own queue entry, written in the transaction that accepts it.

-- Connectors of a tenant. config_enc holds the whole configuration,
-- secrets included, sealed with the tenant's data key (DATA-3);
-- config_public is the redacted copy shown back.
CREATE TABLE connectors (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    id              TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    config_enc      BYTEA   NOT NULL,
    config_public   TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- Routing rules: per tenant and channel, a primary connector and an
-- optional secondary used after a connector failure (MSG-2).
CREATE TABLE routes (
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    channel      TEXT   NOT NULL,
    primary_id   TEXT   NOT NULL,
    secondary_id TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);

-- Messages. recipient and content are personal data, sealed with the
-- tenant's key. shard = hash(tenant, id) mod the shard count; fence is the
-- lease fence of the claim that set state 'sending'.
CREATE TABLE messages (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    shard         INTEGER NOT NULL,
    idem_key      TEXT,
    campaign_id   TEXT,
    contact_id    TEXT,
    channel       TEXT    NOT NULL,
    recipient_enc BYTEA   NOT NULL,
    content_enc   BYTEA   NOT NULL,
    state         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    use_secondary BOOLEAN NOT NULL DEFAULT FALSE,
    due_at        BIGINT  NOT NULL,
    fence         BIGINT  NOT NULL DEFAULT 0,
    node          TEXT    NOT NULL DEFAULT '',
    connector_id  TEXT    NOT NULL DEFAULT '',
    provider_ref  TEXT    NOT NULL DEFAULT '',
    last_error    TEXT    NOT NULL DEFAULT '',
    accepted_at   BIGINT  NOT NULL,
    sent_at       BIGINT,
    delivered_at  BIGINT,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, idem_key)
);
CREATE INDEX messages_due ON messages (shard, state, due_at);
CREATE INDEX messages_campaign ON messages (tenant_id, campaign_id, state);
CREATE INDEX messages_provider ON messages (tenant_id, connector_id, provider_ref);

-- Each message's history (MSG-5).
CREATE TABLE message_events (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX message_events_message ON message_events (tenant_id, message_id, id);

-- Shard leases (platform level): which node works which shard, with a
-- fence that grows at every change of owner.
CREATE TABLE shard_leases (
    shard      INTEGER PRIMARY KEY,
    owner      TEXT    NOT NULL,
    fence      BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

-- Router nodes alive (platform level), to share the shards evenly.
CREATE TABLE router_nodes (
    id           TEXT   PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

ALTER TABLE connectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE connectors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connectors USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE routes ENABLE ROW LEVEL SECURITY;
ALTER TABLE routes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON routes USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON messages USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE message_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_events USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE shard_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE shard_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON shard_leases USING (relais_platform()) WITH CHECK (relais_platform());
ALTER TABLE router_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE router_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON router_nodes USING (relais_platform()) WITH CHECK (relais_platform());

-- +goose Down
DROP TABLE router_nodes;
DROP TABLE shard_leases;
DROP TABLE message_events;
DROP TABLE messages;
DROP TABLE routes;
DROP TABLE connectors;

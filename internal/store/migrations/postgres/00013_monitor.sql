-- +goose Up
-- Supervision (issue 12): feature flags, built-in alerts and their
-- silences, tenants' security contacts, the incident register, and the
-- clock check's excursions. See internal/monitor.

-- DEV-1: per-tenant feature flags; a missing row means the flag's default.
CREATE TABLE feature_flags (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    enabled    BOOLEAN NOT NULL,
    updated_at BIGINT  NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- AVL-5: built-in alerts. tenant_id '' is the platform (operator) scope.
-- One firing row at most per (tenant, rule, dedup key): that is the
-- de-duplication; a resolved alert that fires again is a new row.
CREATE TABLE monitor_alerts (
    tenant_id     TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    rule          TEXT    NOT NULL,
    dedup_key     TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('firing', 'resolved')),
    severity      TEXT    NOT NULL,
    summary       TEXT    NOT NULL,
    details       TEXT    NOT NULL,
    fired_at      BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    resolved_at   BIGINT ,
    silenced      BOOLEAN NOT NULL DEFAULT FALSE,
    notified      TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX monitor_alerts_open ON monitor_alerts (tenant_id, rule, dedup_key) WHERE state = 'firing';
CREATE INDEX monitor_alerts_fired ON monitor_alerts (tenant_id, fired_at);

-- Silences: while one matches (rule, and dedup key when not empty), an
-- alert still fires and resolves, but is not notified.
CREATE TABLE monitor_silences (
    tenant_id  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    dedup_key  TEXT    NOT NULL DEFAULT '',
    ends_at    BIGINT  NOT NULL,
    reason     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- INC-2: where a tenant's security notifications go.
CREATE TABLE security_contacts (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    emails      TEXT    NOT NULL DEFAULT '[]',
    webhook_url TEXT    NOT NULL DEFAULT '',
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- INC-1: the incident register (platform scope: the operator keeps it).
CREATE TABLE incidents (
    number      BIGINT  NOT NULL PRIMARY KEY,
    category    TEXT    NOT NULL,
    criticality TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    detected_at BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    closed_at   BIGINT ,
    report      TEXT    NOT NULL DEFAULT '',
    lessons     TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE incident_timeline (
    number BIGINT  NOT NULL REFERENCES incidents (number),
    seq    BIGINT  NOT NULL,
    at     BIGINT  NOT NULL,
    kind   TEXT    NOT NULL,
    text   TEXT    NOT NULL,
    actor  TEXT    NOT NULL,
    PRIMARY KEY (number, seq)
);
-- INC-2: one row per affected tenant, its deadline and its notification.
CREATE TABLE incident_tenants (
    number          BIGINT  NOT NULL REFERENCES incidents (number),
    affected_tenant TEXT    NOT NULL REFERENCES tenants (id),
    deadline_at     BIGINT  NOT NULL,
    notified_at     BIGINT ,
    notified_via    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (number, affected_tenant)
);
CREATE TABLE incident_alerts (
    number       BIGINT  NOT NULL REFERENCES incidents (number),
    alert_tenant TEXT    NOT NULL,
    alert_id     TEXT    NOT NULL,
    PRIMARY KEY (number, alert_tenant, alert_id)
);

-- LOG-5: periods when this node's clock was off by more than the
-- threshold; audit events written inside one are flagged.
CREATE TABLE clock_excursions (
    node        TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT ,
    max_offset_us BIGINT  NOT NULL,
    PRIMARY KEY (node, started_at)
);

ALTER TABLE feature_flags ENABLE ROW LEVEL SECURITY;
ALTER TABLE feature_flags FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feature_flags USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE monitor_alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE monitor_alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON monitor_alerts USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE monitor_silences ENABLE ROW LEVEL SECURITY;
ALTER TABLE monitor_silences FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON monitor_silences USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE security_contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE security_contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON security_contacts USING (relais_platform() OR tenant_id = relais_tenant()) WITH CHECK (relais_platform() OR tenant_id = relais_tenant());
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON incidents USING (relais_platform()) WITH CHECK (relais_platform());
ALTER TABLE incident_timeline ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_timeline FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON incident_timeline USING (relais_platform()) WITH CHECK (relais_platform());
ALTER TABLE incident_tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON incident_tenants USING (relais_platform()) WITH CHECK (relais_platform());
ALTER TABLE incident_alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON incident_alerts USING (relais_platform()) WITH CHECK (relais_platform());
ALTER TABLE clock_excursions ENABLE ROW LEVEL SECURITY;
ALTER TABLE clock_excursions FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON clock_excursions USING (relais_platform()) WITH CHECK (relais_platform());

-- Supervision reads messages by time across tenants (volume per hour,
-- sends in a window, deliverability and transit over 24 h): two indexes on
-- the router's table, the sent one partial (queued messages are not in it).
CREATE INDEX messages_accepted ON messages (accepted_at);
CREATE INDEX messages_sent ON messages (sent_at) WHERE sent_at IS NOT NULL;

-- +goose Down
DROP INDEX messages_sent;
DROP INDEX messages_accepted;
DROP TABLE clock_excursions;
DROP TABLE incident_alerts;
DROP TABLE incident_tenants;
DROP TABLE incident_timeline;
DROP TABLE incidents;
DROP TABLE security_contacts;
DROP TABLE monitor_silences;
DROP TABLE monitor_alerts;
DROP TABLE feature_flags;

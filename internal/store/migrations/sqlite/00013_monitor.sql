-- +goose Up
-- Supervision (issue 12): feature flags, built-in alerts and their
-- silences, tenants' security contacts, the incident register, and the
-- clock check's excursions. See internal/monitor.

-- DEV-1: per-tenant feature flags; a missing row means the flag's default.
CREATE TABLE feature_flags (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    enabled    BOOLEAN NOT NULL,
    updated_at INTEGER NOT NULL,
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
    fired_at      INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    resolved_at   INTEGER,
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
    ends_at    INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- INC-2: where a tenant's security notifications go.
CREATE TABLE security_contacts (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    emails      TEXT    NOT NULL DEFAULT '[]',
    webhook_url TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- INC-1: the incident register (platform scope: the operator keeps it).
CREATE TABLE incidents (
    number      INTEGER NOT NULL PRIMARY KEY,
    category    TEXT    NOT NULL,
    criticality TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    detected_at INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    closed_at   INTEGER,
    report      TEXT    NOT NULL DEFAULT '',
    lessons     TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE incident_timeline (
    number INTEGER NOT NULL REFERENCES incidents (number),
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    text   TEXT    NOT NULL,
    actor  TEXT    NOT NULL,
    PRIMARY KEY (number, seq)
);
-- INC-2: one row per affected tenant, its deadline and its notification.
CREATE TABLE incident_tenants (
    number          INTEGER NOT NULL REFERENCES incidents (number),
    affected_tenant TEXT    NOT NULL REFERENCES tenants (id),
    deadline_at     INTEGER NOT NULL,
    notified_at     INTEGER,
    notified_via    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (number, affected_tenant)
);
CREATE TABLE incident_alerts (
    number       INTEGER NOT NULL REFERENCES incidents (number),
    alert_tenant TEXT    NOT NULL,
    alert_id     TEXT    NOT NULL,
    PRIMARY KEY (number, alert_tenant, alert_id)
);

-- LOG-5: periods when this node's clock was off by more than the
-- threshold; audit events written inside one are flagged.
CREATE TABLE clock_excursions (
    node        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    max_offset_us INTEGER NOT NULL,
    PRIMARY KEY (node, started_at)
);

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
DROP INDEX monitor_alerts_fired;
DROP INDEX monitor_alerts_open;
DROP TABLE monitor_alerts;
DROP TABLE feature_flags;

-- +goose Up
-- Campaigns (issue 5, item 2). A campaign sends one pinned template version
-- to the eligible contacts of an audience (lists and segments). Its
-- messages are router messages (messages.campaign_id), created by the
-- expansion job with idempotency keys "campaign:<id>:<contact id>", so a
-- re-run of the expansion after a crash creates no duplicate.
-- Nothing here is personal data: ids, names, settings and counts.

-- One row per campaign. It is also the expansion's lease row: the node
-- that expands the campaign holds lease_owner until lease_until (Unix
-- microseconds) and renews it with each committed batch; expand_after is
-- the last contact id expanded (keyset cursor), advanced in the batch's
-- transaction, so a resumed expansion continues after it.
--
-- schedule_kind: 'now' (send_at is the schedule call), 'at' (send_at is the
-- instant), 'local' (local_time is a wall time, "2006-01-02T15:04", in each
-- contact's time zone; timezone is used for contacts without one).
-- template_version is pinned when the campaign is scheduled.
-- audience is JSON: {"list_ids": [...], "segment_ids": [...]}.
-- excluded is JSON: reason -> contacts excluded at expansion.
CREATE TABLE campaigns (
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    id                TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    channel           TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    purpose           TEXT    NOT NULL,
    template_id       TEXT    NOT NULL,
    template_version  INTEGER NOT NULL DEFAULT 0,
    audience          TEXT    NOT NULL,
    schedule_kind     TEXT    NOT NULL CHECK (schedule_kind IN ('now', 'at', 'local')),
    send_at           BIGINT,
    local_time        TEXT    NOT NULL DEFAULT '',
    timezone          TEXT    NOT NULL DEFAULT '',
    throttle          INTEGER NOT NULL DEFAULT 0,
    state             TEXT    NOT NULL CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'cancelled', 'done')),
    start_at          BIGINT,
    expand_after      TEXT    NOT NULL DEFAULT '',
    audience_matched  BIGINT  NOT NULL DEFAULT 0,
    enqueued          BIGINT  NOT NULL DEFAULT 0,
    excluded          TEXT    NOT NULL DEFAULT '{}',
    lease_owner       TEXT    NOT NULL DEFAULT '',
    lease_until       BIGINT  NOT NULL DEFAULT 0,
    scheduled_at      BIGINT,
    started_at        BIGINT,
    expanded_at       BIGINT,
    paused_at         BIGINT,
    finished_at       BIGINT,
    created_at        BIGINT  NOT NULL,
    created_by        TEXT    NOT NULL,
    updated_at        BIGINT  NOT NULL,
    updated_by        TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- The expansion job's scan (all tenants, platform scope): campaigns whose
-- expansion is due or unfinished.
CREATE INDEX campaigns_work ON campaigns (state, start_at);

-- Per-tenant campaign settings: quiet hours ("21:00" to "08:00" in each
-- contact's time zone; both empty: none) and the time zone used for
-- contacts without one.
CREATE TABLE campaign_settings (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    quiet_start TEXT   NOT NULL DEFAULT '',
    quiet_end   TEXT   NOT NULL DEFAULT '',
    timezone    TEXT   NOT NULL DEFAULT 'UTC',
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- Planner statistics for the queue (SQLite only; PostgreSQL gathers its
-- own). Without any, SQLite guesses that an equality on tenant_id is the
-- most selective test, so queries on the state of messages ("the due
-- messages of these shards", "the messages this node is handing off")
-- walk every message of the tenant, and the engine's claim walks the
-- whole (shard, state, due_at) index before sorting: each step then costs
-- time in proportion to every message ever sent. These figures describe
-- the intended shape (many messages per tenant and per campaign, few per
-- shard and state, ids unique) and steer the planner to the (shard, state,
-- due_at) index for those queries; a later ANALYZE replaces them with
-- measured ones. ANALYZE of the new, empty table only creates sqlite_stat1
-- if it does not exist yet; it reads nothing else.
ANALYZE campaign_settings;
DELETE FROM sqlite_stat1 WHERE tbl = 'messages';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('messages', 'messages_due', '1000000 15625 3000 2'),
    ('messages', 'messages_campaign', '1000000 1000000 10000 2000'),
    ('messages', 'messages_provider', '1000000 1000000 100000 1'),
    ('messages', 'sqlite_autoindex_messages_1', '1000000 1000000 1'),
    ('messages', 'sqlite_autoindex_messages_2', '1000000 1000000 1');
ANALYZE sqlite_schema;

-- +goose Down
DELETE FROM sqlite_stat1 WHERE tbl = 'messages';
DROP TABLE campaign_settings;
DROP TABLE campaigns;

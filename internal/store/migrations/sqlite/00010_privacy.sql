-- +goose Up
-- Privacy (issue 9): data-subject requests tracked with a deadline
-- (PRIV-4), retention rules per purpose (PRIV-3), and the two-step
-- destruction of a tenant at contract end (REV-3). tenant_destructions is an
-- operator table: it outlives the tenant it records (no foreign key to
-- tenants), and holds the signed destruction certificate.
CREATE TABLE privacy_requests (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    id           TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('access', 'portability', 'rectification', 'erasure', 'restriction', 'objection')),
    contact_id   TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('open', 'completed', 'rejected')),
    received_at  BIGINT  NOT NULL,
    due_at       BIGINT  NOT NULL,
    completed_at BIGINT,
    requested_by TEXT    NOT NULL DEFAULT '',
    note         TEXT    NOT NULL DEFAULT '',
    result       TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX privacy_requests_due ON privacy_requests (tenant_id, status, due_at);

CREATE TABLE retention_rules (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('inactive_contacts', 'message_content', 'bounced_contacts')),
    months     INTEGER NOT NULL CHECK (months > 0),
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

ALTER TABLE messages ADD COLUMN content_purged_at BIGINT;

CREATE TABLE tenant_destructions (
    tenant_id    TEXT    PRIMARY KEY,
    slug         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'cancelled', 'done')),
    code_hash    BLOB    NOT NULL,
    requested_at BIGINT  NOT NULL,
    due_at       BIGINT  NOT NULL,
    requested_by TEXT    NOT NULL DEFAULT '',
    confirmed_at BIGINT,
    done_at      BIGINT,
    certificate  TEXT    NOT NULL DEFAULT ''
);

-- +goose Down
ALTER TABLE messages DROP COLUMN content_purged_at;
DROP TABLE tenant_destructions;
DROP TABLE retention_rules;
DROP INDEX privacy_requests_due;
DROP TABLE privacy_requests;

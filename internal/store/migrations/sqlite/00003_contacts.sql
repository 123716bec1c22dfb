-- +goose Up
-- Contacts, consent, blocklist, lists, segments and imports (issue 4).
--
-- Personal fields (email, phone, names, personal attributes, the IP address
-- a consent came from) are sealed with the tenant's data key by the field
-- cipher before they reach the store (*_enc columns); email and phone also
-- get keyed blind indexes (*_bidx) for equality lookups, de-duplication and
-- the blocklist. Nothing personal is stored in clear: import error reasons
-- and audit events name columns and rules, never values.

-- One person known to a tenant. attributes holds the non-personal custom
-- attributes as plain JSON (filterable by segments); attributes_enc the
-- personal ones, as sealed JSON. erased_at marks a tombstone (issue 9).
CREATE TABLE contacts (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    id             TEXT    NOT NULL,
    email_enc      BLOB,
    email_bidx     BLOB,
    phone_enc      BLOB,
    phone_bidx     BLOB,
    first_name_enc BLOB,
    last_name_enc  BLOB,
    locale         TEXT    NOT NULL DEFAULT '',
    timezone       TEXT    NOT NULL DEFAULT '',
    attributes_enc BLOB,
    attributes     TEXT    NOT NULL DEFAULT '{}',
    status         TEXT    NOT NULL CHECK (status IN ('active', 'unsubscribed', 'bounced', 'blocklisted')),
    source         TEXT    NOT NULL CHECK (source IN ('api', 'admin', 'form', 'import', 'seed')),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    erased_at      BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_bidx)
);
-- The phone's blind index is keyed per tenant, so a tenant prefix would add
-- 40 bytes to every entry of this randomly-filled index for nothing; lookups
-- still filter on tenant_id (and RLS on PostgreSQL).
CREATE INDEX contacts_phone ON contacts (phone_bidx) WHERE phone_bidx IS NOT NULL;

-- The tenant's custom attributes: allowed keys, their types, and whether
-- they are personal (then encrypted, and not usable in segment filters).
CREATE TABLE attribute_schema (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    key         TEXT    NOT NULL,
    type        TEXT    NOT NULL CHECK (type IN ('string', 'number', 'bool', 'date')),
    personal    BOOLEAN NOT NULL DEFAULT FALSE,
    description TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- The wording shown when consent was asked, kept once per text (PRIV-5).
CREATE TABLE consent_wordings (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    hash       TEXT   NOT NULL,
    version    TEXT   NOT NULL DEFAULT '',
    text       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hash)
);

-- Current consent per contact, channel and purpose, with its latest proof.
CREATE TABLE consents (
    tenant_id       TEXT   NOT NULL,
    contact_id      TEXT   NOT NULL,
    channel         TEXT   NOT NULL CHECK (channel IN ('email', 'sms')),
    purpose         TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('granted', 'withdrawn', 'pending')),
    source          TEXT   NOT NULL CHECK (source IN ('form', 'import', 'api', 'admin', 'link')),
    source_ip_enc   BLOB,
    wording_hash    TEXT   NOT NULL DEFAULT '',
    wording_version TEXT   NOT NULL DEFAULT '',
    job_id          TEXT   NOT NULL DEFAULT '',
    confirmed_at    BIGINT,
    last_event_id   TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, channel, purpose),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);

-- Every consent change, append-only: the proof (when, how, from which IP,
-- which wording, when confirmed). Kept when the contact is deleted; the
-- subject_bidx (blind index of the address) ties it to the address.
CREATE TABLE consent_events (
    tenant_id       TEXT   NOT NULL,
    id              TEXT   NOT NULL,
    contact_id      TEXT   NOT NULL,
    subject_bidx    BLOB,
    channel         TEXT   NOT NULL CHECK (channel IN ('email', 'sms')),
    purpose         TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('granted', 'withdrawn', 'pending')),
    source          TEXT   NOT NULL CHECK (source IN ('form', 'import', 'api', 'admin', 'link')),
    source_ip_enc   BLOB,
    wording_hash    TEXT   NOT NULL DEFAULT '',
    wording_version TEXT   NOT NULL DEFAULT '',
    job_id          TEXT   NOT NULL DEFAULT '',
    confirmed_at    BIGINT,
    at              BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX consent_events_contact ON consent_events (tenant_id, contact_id, at);

-- Addresses that must never receive anything, by blind index; no import
-- or API call on contacts can override an entry.
CREATE TABLE blocklist (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    kind       TEXT   NOT NULL CHECK (kind IN ('email', 'phone')),
    value_bidx BLOB   NOT NULL,
    reason     TEXT   NOT NULL DEFAULT '',
    source     TEXT   NOT NULL DEFAULT 'api',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, value_bidx)
);

CREATE TABLE lists (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE list_members (
    tenant_id  TEXT   NOT NULL,
    list_id    TEXT   NOT NULL,
    contact_id TEXT   NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, list_id, contact_id),
    FOREIGN KEY (tenant_id, list_id) REFERENCES lists (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX list_members_contact ON list_members (tenant_id, contact_id);

-- Segments keep their filter text only; it is parsed, validated against the
-- attribute schema and compiled to parameterised SQL at each use.
CREATE TABLE segments (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    filter      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- CSV imports: counts, and the last committed line and byte offset, so
-- that a re-run of the same file (same SHA-256) resumes after it.
CREATE TABLE import_jobs (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    id            TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('running', 'interrupted', 'completed', 'failed')),
    mode          TEXT    NOT NULL CHECK (mode IN ('upsert', 'add', 'blocklist')),
    file_name     TEXT    NOT NULL DEFAULT '',
    file_sha256   BLOB    NOT NULL,
    file_size     BIGINT  NOT NULL,
    options       TEXT    NOT NULL DEFAULT '{}',
    processed     BIGINT  NOT NULL DEFAULT 0,
    created       BIGINT  NOT NULL DEFAULT 0,
    updated       BIGINT  NOT NULL DEFAULT 0,
    skipped       BIGINT  NOT NULL DEFAULT 0,
    failed        BIGINT  NOT NULL DEFAULT 0,
    last_line     BIGINT  NOT NULL DEFAULT 0,
    resume_offset BIGINT  NOT NULL DEFAULT 0,
    error         TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX import_jobs_file ON import_jobs (tenant_id, file_sha256);

-- The per-line error report of an import: line, column name, reason (never
-- the value).
CREATE TABLE import_errors (
    tenant_id   TEXT   NOT NULL,
    job_id      TEXT   NOT NULL,
    line        BIGINT NOT NULL,
    column_name TEXT   NOT NULL DEFAULT '',
    reason      TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, job_id, line),
    FOREIGN KEY (tenant_id, job_id) REFERENCES import_jobs (tenant_id, id) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE import_errors;
DROP TABLE import_jobs;
DROP TABLE segments;
DROP TABLE list_members;
DROP TABLE lists;
DROP TABLE blocklist;
DROP TABLE consent_events;
DROP TABLE consents;
DROP TABLE consent_wordings;
DROP TABLE attribute_schema;
DROP TABLE contacts;

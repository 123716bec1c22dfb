-- +goose Up
-- Message templates (issue 5, item 1). A template is a named, per-tenant
-- object whose content is versioned: every save adds a template_versions row
-- (and its per-locale variants) and never changes an older one, so a message
-- that names (template id, version) can always be rendered again as it was.
-- Template texts are authored content, not personal data: stored in clear.

-- One row per template. version is the latest version; archived_at marks a
-- soft delete (the history stays; the name becomes free again).
CREATE TABLE templates (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    channel     TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    version     INTEGER NOT NULL,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    archived_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX templates_name ON templates (tenant_id, name) WHERE archived_at IS NULL;

-- One row per saved version. transactional: the version was validated with
-- data.* fields allowed (transactional sends), not for campaigns.
CREATE TABLE template_versions (
    tenant_id      TEXT    NOT NULL,
    template_id    TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    default_locale TEXT    NOT NULL,
    transactional  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL,
    created_by     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version),
    FOREIGN KEY (tenant_id, template_id) REFERENCES templates (tenant_id, id)
);

-- The content of one version in one locale. Email: subject, html_body,
-- text_body (empty: derived from the HTML at render), optional from_addr and
-- reply_to. SMS: text_body only.
CREATE TABLE template_variants (
    tenant_id   TEXT    NOT NULL,
    template_id TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    locale      TEXT    NOT NULL,
    subject     TEXT    NOT NULL DEFAULT '',
    html_body   TEXT    NOT NULL DEFAULT '',
    text_body   TEXT    NOT NULL DEFAULT '',
    from_addr   TEXT    NOT NULL DEFAULT '',
    reply_to    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, template_id, version, locale),
    FOREIGN KEY (tenant_id, template_id, version) REFERENCES template_versions (tenant_id, template_id, version)
);

-- +goose Down
DROP TABLE template_variants;
DROP TABLE template_versions;
DROP TABLE templates;

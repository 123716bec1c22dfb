-- +goose Up
-- Backups (issue 8): see the SQLite migration for the design. On
-- PostgreSQL, sequence values are not handed out in commit order, so each
-- change also records its transaction id (xid); a backup point records its
-- snapshot (pg_current_snapshot()), and the next incremental takes the
-- changes whose transaction was not visible in that snapshot: exact even
-- with concurrent writers.
CREATE TABLE backup_changes (
    seq       BIGSERIAL PRIMARY KEY,
    tenant_id TEXT      NOT NULL,
    tbl       TEXT      NOT NULL,
    pk        TEXT      NOT NULL,
    xid       xid8      NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX backup_changes_tenant ON backup_changes (tenant_id, seq);

CREATE TABLE backup_state (
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    target            TEXT    NOT NULL,
    set_id            TEXT    NOT NULL DEFAULT '',
    last_full_at      BIGINT  NOT NULL DEFAULT 0,
    last_point_at     BIGINT  NOT NULL DEFAULT 0,
    watermark         TEXT    NOT NULL DEFAULT '',
    last_verify_at    BIGINT  NOT NULL DEFAULT 0,
    last_verify_ok    BOOLEAN NOT NULL DEFAULT FALSE,
    last_restore_at   BIGINT  NOT NULL DEFAULT 0,
    last_restore_ok   BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner       TEXT    NOT NULL DEFAULT '',
    lease_until       BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, target)
);

-- A restore in progress (inside its own transaction): the trigger logs
-- nothing for that tenant, since its change log starts empty after it.
CREATE TABLE backup_restoring (
    tenant_id TEXT PRIMARY KEY
);

ALTER TABLE backup_restoring ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_restoring FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backup_restoring
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE backup_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backup_changes
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

ALTER TABLE backup_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_state FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON backup_state
    USING (relais_platform() OR tenant_id = relais_tenant())
    WITH CHECK (relais_platform() OR tenant_id = relais_tenant());

-- The trigger function: its arguments name the primary-key columns after
-- tenant_id; it logs the new key (insert, update) and the old one (delete,
-- or an update that changed the key). The operator's audit log (tenant '')
-- is not a tenant's and is not logged.
-- +goose StatementBegin
CREATE FUNCTION relais_backup_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r    jsonb;
    i    int;
    knew jsonb := '[]'::jsonb;
    kold jsonb := '[]'::jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM backup_restoring b
               WHERE b.tenant_id = CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END) THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.tenant_id = '' THEN RETURN NULL; END IF;
        r := to_jsonb(NEW);
        FOR i IN 0 .. TG_NARGS - 1 LOOP knew := knew || jsonb_build_array(r -> TG_ARGV[i]); END LOOP;
        INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, TG_TABLE_NAME, knew::text);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        IF OLD.tenant_id = '' THEN RETURN NULL; END IF;
        r := to_jsonb(OLD);
        FOR i IN 0 .. TG_NARGS - 1 LOOP kold := kold || jsonb_build_array(r -> TG_ARGV[i]); END LOOP;
        IF TG_OP = 'DELETE' OR kold <> knew THEN
            INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, TG_TABLE_NAME, kold::text);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON tenant_keys
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('version');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON tenant_settings
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('seq');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON password_history
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('user_id', 'created_at');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON recovery_codes
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('user_id', 'code_hash');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON api_clients
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON groups
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('group_id', 'user_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON group_roles
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('group_id', 'role_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('user_id', 'role_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON client_roles
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('client_id', 'role_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON attribute_schema
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('key');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON consent_wordings
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('hash');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('contact_id', 'channel', 'purpose');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON blocklist
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('kind', 'value_bidx');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON lists
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON list_members
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('list_id', 'contact_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON segments
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON import_jobs
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON import_errors
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('job_id', 'line');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON connectors
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('channel');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON message_events
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON templates
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON template_versions
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('template_id', 'version');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON template_variants
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('template_id', 'version', 'locale');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_trees
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_tree_hashes
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('idx');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('tree_size');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON campaign_settings
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();

-- +goose Down
DROP TRIGGER backup_change ON tenant_keys;
DROP TRIGGER backup_change ON tenant_settings;
DROP TRIGGER backup_change ON audit_heads;
DROP TRIGGER backup_change ON audit_events;
DROP TRIGGER backup_change ON users;
DROP TRIGGER backup_change ON password_history;
DROP TRIGGER backup_change ON recovery_codes;
DROP TRIGGER backup_change ON api_clients;
DROP TRIGGER backup_change ON roles;
DROP TRIGGER backup_change ON groups;
DROP TRIGGER backup_change ON group_members;
DROP TRIGGER backup_change ON group_roles;
DROP TRIGGER backup_change ON user_roles;
DROP TRIGGER backup_change ON client_roles;
DROP TRIGGER backup_change ON contacts;
DROP TRIGGER backup_change ON attribute_schema;
DROP TRIGGER backup_change ON consent_wordings;
DROP TRIGGER backup_change ON consents;
DROP TRIGGER backup_change ON consent_events;
DROP TRIGGER backup_change ON blocklist;
DROP TRIGGER backup_change ON lists;
DROP TRIGGER backup_change ON list_members;
DROP TRIGGER backup_change ON segments;
DROP TRIGGER backup_change ON import_jobs;
DROP TRIGGER backup_change ON import_errors;
DROP TRIGGER backup_change ON connectors;
DROP TRIGGER backup_change ON routes;
DROP TRIGGER backup_change ON messages;
DROP TRIGGER backup_change ON message_events;
DROP TRIGGER backup_change ON templates;
DROP TRIGGER backup_change ON template_versions;
DROP TRIGGER backup_change ON template_variants;
DROP TRIGGER backup_change ON audit_trees;
DROP TRIGGER backup_change ON audit_tree_hashes;
DROP TRIGGER backup_change ON audit_signing_keys;
DROP TRIGGER backup_change ON audit_checkpoints;
DROP TRIGGER backup_change ON campaigns;
DROP TRIGGER backup_change ON campaign_settings;
DROP FUNCTION relais_backup_change();
DROP TABLE backup_restoring;
DROP TABLE backup_state;
DROP TABLE backup_changes;

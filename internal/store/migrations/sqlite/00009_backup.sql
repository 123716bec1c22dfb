-- +goose Up
-- Backups (issue 8). backup_changes is the change sequence that incremental
-- backups read: triggers on every backed-up tenant table append the primary
-- key (without tenant_id, as a JSON array; blobs as hex) of each inserted,
-- updated or deleted row, in commit order (SQLite has one writer, so seq is
-- commit order). An incremental backup reads, in one snapshot, the rows of
-- the keys logged since the previous backup point: a key whose row is gone
-- is a delete. A table without triggers (added later and not listed here)
-- is copied whole in every incremental: correct, only larger. Nothing
-- personal is logged: keys are ids, blind indexes or hashes.
CREATE TABLE backup_changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT    NOT NULL,
    tbl       TEXT    NOT NULL,
    pk        TEXT    NOT NULL,
    xid       INTEGER NOT NULL DEFAULT 0 -- PostgreSQL's transaction id; unused here
);
CREATE INDEX backup_changes_tenant ON backup_changes (tenant_id, seq);

-- Per tenant and backup target: when the last full and last point were
-- taken and the change-log watermark they reached, the last verification
-- and restore test, and the scheduler's lease (one node at a time).
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

-- A restore in progress (inside its own transaction): the triggers log
-- nothing for that tenant, since its change log starts empty after it.
CREATE TABLE backup_restoring (
    tenant_id TEXT PRIMARY KEY
);

-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_keys_i AFTER INSERT ON tenant_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'tenant_keys', json_array(NEW.version));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_keys_u AFTER UPDATE ON tenant_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'tenant_keys', json_array(NEW.version));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'tenant_keys', json_array(OLD.version) WHERE json_array(OLD.version) <> json_array(NEW.version);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_keys_d AFTER DELETE ON tenant_keys WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'tenant_keys', json_array(OLD.version));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_settings_i AFTER INSERT ON tenant_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'tenant_settings', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_settings_u AFTER UPDATE ON tenant_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'tenant_settings', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'tenant_settings', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_tenant_settings_d AFTER DELETE ON tenant_settings WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'tenant_settings', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_heads_i AFTER INSERT ON audit_heads WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_heads', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_heads_u AFTER UPDATE ON audit_heads WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_heads', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_heads', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_heads_d AFTER DELETE ON audit_heads WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_heads', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_events_i AFTER INSERT ON audit_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_events', json_array(NEW.seq));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_events_u AFTER UPDATE ON audit_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_events', json_array(NEW.seq));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_events', json_array(OLD.seq) WHERE json_array(OLD.seq) <> json_array(NEW.seq);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_events_d AFTER DELETE ON audit_events WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_events', json_array(OLD.seq));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_users_i AFTER INSERT ON users WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'users', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_users_u AFTER UPDATE ON users WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'users', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'users', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_users_d AFTER DELETE ON users WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'users', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_password_history_i AFTER INSERT ON password_history WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'password_history', json_array(NEW.user_id, NEW.created_at));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_password_history_u AFTER UPDATE ON password_history WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'password_history', json_array(NEW.user_id, NEW.created_at));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'password_history', json_array(OLD.user_id, OLD.created_at) WHERE json_array(OLD.user_id, OLD.created_at) <> json_array(NEW.user_id, NEW.created_at);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_password_history_d AFTER DELETE ON password_history WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'password_history', json_array(OLD.user_id, OLD.created_at));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_recovery_codes_i AFTER INSERT ON recovery_codes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'recovery_codes', json_array(NEW.user_id, hex(NEW.code_hash)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_recovery_codes_u AFTER UPDATE ON recovery_codes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'recovery_codes', json_array(NEW.user_id, hex(NEW.code_hash)));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'recovery_codes', json_array(OLD.user_id, hex(OLD.code_hash)) WHERE json_array(OLD.user_id, hex(OLD.code_hash)) <> json_array(NEW.user_id, hex(NEW.code_hash));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_recovery_codes_d AFTER DELETE ON recovery_codes WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'recovery_codes', json_array(OLD.user_id, hex(OLD.code_hash)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_api_clients_i AFTER INSERT ON api_clients WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'api_clients', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_api_clients_u AFTER UPDATE ON api_clients WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'api_clients', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'api_clients', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_api_clients_d AFTER DELETE ON api_clients WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'api_clients', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_roles_i AFTER INSERT ON roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'roles', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_roles_u AFTER UPDATE ON roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'roles', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'roles', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_roles_d AFTER DELETE ON roles WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'roles', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_groups_i AFTER INSERT ON groups WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'groups', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_groups_u AFTER UPDATE ON groups WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'groups', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'groups', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_groups_d AFTER DELETE ON groups WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'groups', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_members_i AFTER INSERT ON group_members WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'group_members', json_array(NEW.group_id, NEW.user_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_members_u AFTER UPDATE ON group_members WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'group_members', json_array(NEW.group_id, NEW.user_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'group_members', json_array(OLD.group_id, OLD.user_id) WHERE json_array(OLD.group_id, OLD.user_id) <> json_array(NEW.group_id, NEW.user_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_members_d AFTER DELETE ON group_members WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'group_members', json_array(OLD.group_id, OLD.user_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_roles_i AFTER INSERT ON group_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'group_roles', json_array(NEW.group_id, NEW.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_roles_u AFTER UPDATE ON group_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'group_roles', json_array(NEW.group_id, NEW.role_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'group_roles', json_array(OLD.group_id, OLD.role_id) WHERE json_array(OLD.group_id, OLD.role_id) <> json_array(NEW.group_id, NEW.role_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_group_roles_d AFTER DELETE ON group_roles WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'group_roles', json_array(OLD.group_id, OLD.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_user_roles_i AFTER INSERT ON user_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'user_roles', json_array(NEW.user_id, NEW.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_user_roles_u AFTER UPDATE ON user_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'user_roles', json_array(NEW.user_id, NEW.role_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'user_roles', json_array(OLD.user_id, OLD.role_id) WHERE json_array(OLD.user_id, OLD.role_id) <> json_array(NEW.user_id, NEW.role_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_user_roles_d AFTER DELETE ON user_roles WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'user_roles', json_array(OLD.user_id, OLD.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_client_roles_i AFTER INSERT ON client_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'client_roles', json_array(NEW.client_id, NEW.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_client_roles_u AFTER UPDATE ON client_roles WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'client_roles', json_array(NEW.client_id, NEW.role_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'client_roles', json_array(OLD.client_id, OLD.role_id) WHERE json_array(OLD.client_id, OLD.role_id) <> json_array(NEW.client_id, NEW.role_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_client_roles_d AFTER DELETE ON client_roles WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'client_roles', json_array(OLD.client_id, OLD.role_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_i AFTER INSERT ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_u AFTER UPDATE ON contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'contacts', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'contacts', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_contacts_d AFTER DELETE ON contacts WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'contacts', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_attribute_schema_i AFTER INSERT ON attribute_schema WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'attribute_schema', json_array(NEW.key));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_attribute_schema_u AFTER UPDATE ON attribute_schema WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'attribute_schema', json_array(NEW.key));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'attribute_schema', json_array(OLD.key) WHERE json_array(OLD.key) <> json_array(NEW.key);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_attribute_schema_d AFTER DELETE ON attribute_schema WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'attribute_schema', json_array(OLD.key));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_wordings_i AFTER INSERT ON consent_wordings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consent_wordings', json_array(NEW.hash));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_wordings_u AFTER UPDATE ON consent_wordings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consent_wordings', json_array(NEW.hash));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'consent_wordings', json_array(OLD.hash) WHERE json_array(OLD.hash) <> json_array(NEW.hash);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_wordings_d AFTER DELETE ON consent_wordings WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'consent_wordings', json_array(OLD.hash));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consents_i AFTER INSERT ON consents WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consents', json_array(NEW.contact_id, NEW.channel, NEW.purpose));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consents_u AFTER UPDATE ON consents WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consents', json_array(NEW.contact_id, NEW.channel, NEW.purpose));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'consents', json_array(OLD.contact_id, OLD.channel, OLD.purpose) WHERE json_array(OLD.contact_id, OLD.channel, OLD.purpose) <> json_array(NEW.contact_id, NEW.channel, NEW.purpose);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consents_d AFTER DELETE ON consents WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'consents', json_array(OLD.contact_id, OLD.channel, OLD.purpose));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_events_i AFTER INSERT ON consent_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consent_events', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_events_u AFTER UPDATE ON consent_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'consent_events', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'consent_events', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_consent_events_d AFTER DELETE ON consent_events WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'consent_events', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_blocklist_i AFTER INSERT ON blocklist WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'blocklist', json_array(NEW.kind, hex(NEW.value_bidx)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_blocklist_u AFTER UPDATE ON blocklist WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'blocklist', json_array(NEW.kind, hex(NEW.value_bidx)));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'blocklist', json_array(OLD.kind, hex(OLD.value_bidx)) WHERE json_array(OLD.kind, hex(OLD.value_bidx)) <> json_array(NEW.kind, hex(NEW.value_bidx));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_blocklist_d AFTER DELETE ON blocklist WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'blocklist', json_array(OLD.kind, hex(OLD.value_bidx)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_lists_i AFTER INSERT ON lists WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'lists', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_lists_u AFTER UPDATE ON lists WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'lists', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'lists', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_lists_d AFTER DELETE ON lists WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'lists', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_list_members_i AFTER INSERT ON list_members WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'list_members', json_array(NEW.list_id, NEW.contact_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_list_members_u AFTER UPDATE ON list_members WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'list_members', json_array(NEW.list_id, NEW.contact_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'list_members', json_array(OLD.list_id, OLD.contact_id) WHERE json_array(OLD.list_id, OLD.contact_id) <> json_array(NEW.list_id, NEW.contact_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_list_members_d AFTER DELETE ON list_members WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'list_members', json_array(OLD.list_id, OLD.contact_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_segments_i AFTER INSERT ON segments WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'segments', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_segments_u AFTER UPDATE ON segments WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'segments', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'segments', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_segments_d AFTER DELETE ON segments WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'segments', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_jobs_i AFTER INSERT ON import_jobs WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'import_jobs', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_jobs_u AFTER UPDATE ON import_jobs WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'import_jobs', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'import_jobs', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_jobs_d AFTER DELETE ON import_jobs WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'import_jobs', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_errors_i AFTER INSERT ON import_errors WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'import_errors', json_array(NEW.job_id, NEW.line));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_errors_u AFTER UPDATE ON import_errors WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'import_errors', json_array(NEW.job_id, NEW.line));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'import_errors', json_array(OLD.job_id, OLD.line) WHERE json_array(OLD.job_id, OLD.line) <> json_array(NEW.job_id, NEW.line);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_import_errors_d AFTER DELETE ON import_errors WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'import_errors', json_array(OLD.job_id, OLD.line));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_connectors_i AFTER INSERT ON connectors WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'connectors', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_connectors_u AFTER UPDATE ON connectors WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'connectors', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'connectors', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_connectors_d AFTER DELETE ON connectors WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'connectors', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_routes_i AFTER INSERT ON routes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'routes', json_array(NEW.channel));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_routes_u AFTER UPDATE ON routes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'routes', json_array(NEW.channel));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'routes', json_array(OLD.channel) WHERE json_array(OLD.channel) <> json_array(NEW.channel);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_routes_d AFTER DELETE ON routes WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'routes', json_array(OLD.channel));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_i AFTER INSERT ON messages WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_u AFTER UPDATE ON messages WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'messages', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'messages', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_messages_d AFTER DELETE ON messages WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'messages', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_events_i AFTER INSERT ON message_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'message_events', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_events_u AFTER UPDATE ON message_events WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'message_events', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'message_events', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_message_events_d AFTER DELETE ON message_events WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'message_events', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_templates_i AFTER INSERT ON templates WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'templates', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_templates_u AFTER UPDATE ON templates WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'templates', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'templates', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_templates_d AFTER DELETE ON templates WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'templates', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_versions_i AFTER INSERT ON template_versions WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'template_versions', json_array(NEW.template_id, NEW.version));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_versions_u AFTER UPDATE ON template_versions WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'template_versions', json_array(NEW.template_id, NEW.version));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'template_versions', json_array(OLD.template_id, OLD.version) WHERE json_array(OLD.template_id, OLD.version) <> json_array(NEW.template_id, NEW.version);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_versions_d AFTER DELETE ON template_versions WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'template_versions', json_array(OLD.template_id, OLD.version));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_variants_i AFTER INSERT ON template_variants WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'template_variants', json_array(NEW.template_id, NEW.version, NEW.locale));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_variants_u AFTER UPDATE ON template_variants WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'template_variants', json_array(NEW.template_id, NEW.version, NEW.locale));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'template_variants', json_array(OLD.template_id, OLD.version, OLD.locale) WHERE json_array(OLD.template_id, OLD.version, OLD.locale) <> json_array(NEW.template_id, NEW.version, NEW.locale);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_template_variants_d AFTER DELETE ON template_variants WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'template_variants', json_array(OLD.template_id, OLD.version, OLD.locale));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_trees_i AFTER INSERT ON audit_trees WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_trees', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_trees_u AFTER UPDATE ON audit_trees WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_trees', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_trees', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_trees_d AFTER DELETE ON audit_trees WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_trees', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_tree_hashes_i AFTER INSERT ON audit_tree_hashes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_tree_hashes', json_array(NEW.idx));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_tree_hashes_u AFTER UPDATE ON audit_tree_hashes WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_tree_hashes', json_array(NEW.idx));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_tree_hashes', json_array(OLD.idx) WHERE json_array(OLD.idx) <> json_array(NEW.idx);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_tree_hashes_d AFTER DELETE ON audit_tree_hashes WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_tree_hashes', json_array(OLD.idx));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_signing_keys_i AFTER INSERT ON audit_signing_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_signing_keys', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_signing_keys_u AFTER UPDATE ON audit_signing_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_signing_keys', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_signing_keys', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_signing_keys_d AFTER DELETE ON audit_signing_keys WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_signing_keys', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_checkpoints_i AFTER INSERT ON audit_checkpoints WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_checkpoints', json_array(NEW.tree_size));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_checkpoints_u AFTER UPDATE ON audit_checkpoints WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'audit_checkpoints', json_array(NEW.tree_size));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'audit_checkpoints', json_array(OLD.tree_size) WHERE json_array(OLD.tree_size) <> json_array(NEW.tree_size);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_audit_checkpoints_d AFTER DELETE ON audit_checkpoints WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'audit_checkpoints', json_array(OLD.tree_size));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaigns_i AFTER INSERT ON campaigns WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'campaigns', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaigns_u AFTER UPDATE ON campaigns WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'campaigns', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'campaigns', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaigns_d AFTER DELETE ON campaigns WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'campaigns', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaign_settings_i AFTER INSERT ON campaign_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'campaign_settings', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaign_settings_u AFTER UPDATE ON campaign_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'campaign_settings', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'campaign_settings', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_campaign_settings_d AFTER DELETE ON campaign_settings WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'campaign_settings', json_array());
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER backup_change_tenant_keys_i;
DROP TRIGGER backup_change_tenant_keys_u;
DROP TRIGGER backup_change_tenant_keys_d;
DROP TRIGGER backup_change_tenant_settings_i;
DROP TRIGGER backup_change_tenant_settings_u;
DROP TRIGGER backup_change_tenant_settings_d;
DROP TRIGGER backup_change_audit_heads_i;
DROP TRIGGER backup_change_audit_heads_u;
DROP TRIGGER backup_change_audit_heads_d;
DROP TRIGGER backup_change_audit_events_i;
DROP TRIGGER backup_change_audit_events_u;
DROP TRIGGER backup_change_audit_events_d;
DROP TRIGGER backup_change_users_i;
DROP TRIGGER backup_change_users_u;
DROP TRIGGER backup_change_users_d;
DROP TRIGGER backup_change_password_history_i;
DROP TRIGGER backup_change_password_history_u;
DROP TRIGGER backup_change_password_history_d;
DROP TRIGGER backup_change_recovery_codes_i;
DROP TRIGGER backup_change_recovery_codes_u;
DROP TRIGGER backup_change_recovery_codes_d;
DROP TRIGGER backup_change_api_clients_i;
DROP TRIGGER backup_change_api_clients_u;
DROP TRIGGER backup_change_api_clients_d;
DROP TRIGGER backup_change_roles_i;
DROP TRIGGER backup_change_roles_u;
DROP TRIGGER backup_change_roles_d;
DROP TRIGGER backup_change_groups_i;
DROP TRIGGER backup_change_groups_u;
DROP TRIGGER backup_change_groups_d;
DROP TRIGGER backup_change_group_members_i;
DROP TRIGGER backup_change_group_members_u;
DROP TRIGGER backup_change_group_members_d;
DROP TRIGGER backup_change_group_roles_i;
DROP TRIGGER backup_change_group_roles_u;
DROP TRIGGER backup_change_group_roles_d;
DROP TRIGGER backup_change_user_roles_i;
DROP TRIGGER backup_change_user_roles_u;
DROP TRIGGER backup_change_user_roles_d;
DROP TRIGGER backup_change_client_roles_i;
DROP TRIGGER backup_change_client_roles_u;
DROP TRIGGER backup_change_client_roles_d;
DROP TRIGGER backup_change_contacts_i;
DROP TRIGGER backup_change_contacts_u;
DROP TRIGGER backup_change_contacts_d;
DROP TRIGGER backup_change_attribute_schema_i;
DROP TRIGGER backup_change_attribute_schema_u;
DROP TRIGGER backup_change_attribute_schema_d;
DROP TRIGGER backup_change_consent_wordings_i;
DROP TRIGGER backup_change_consent_wordings_u;
DROP TRIGGER backup_change_consent_wordings_d;
DROP TRIGGER backup_change_consents_i;
DROP TRIGGER backup_change_consents_u;
DROP TRIGGER backup_change_consents_d;
DROP TRIGGER backup_change_consent_events_i;
DROP TRIGGER backup_change_consent_events_u;
DROP TRIGGER backup_change_consent_events_d;
DROP TRIGGER backup_change_blocklist_i;
DROP TRIGGER backup_change_blocklist_u;
DROP TRIGGER backup_change_blocklist_d;
DROP TRIGGER backup_change_lists_i;
DROP TRIGGER backup_change_lists_u;
DROP TRIGGER backup_change_lists_d;
DROP TRIGGER backup_change_list_members_i;
DROP TRIGGER backup_change_list_members_u;
DROP TRIGGER backup_change_list_members_d;
DROP TRIGGER backup_change_segments_i;
DROP TRIGGER backup_change_segments_u;
DROP TRIGGER backup_change_segments_d;
DROP TRIGGER backup_change_import_jobs_i;
DROP TRIGGER backup_change_import_jobs_u;
DROP TRIGGER backup_change_import_jobs_d;
DROP TRIGGER backup_change_import_errors_i;
DROP TRIGGER backup_change_import_errors_u;
DROP TRIGGER backup_change_import_errors_d;
DROP TRIGGER backup_change_connectors_i;
DROP TRIGGER backup_change_connectors_u;
DROP TRIGGER backup_change_connectors_d;
DROP TRIGGER backup_change_routes_i;
DROP TRIGGER backup_change_routes_u;
DROP TRIGGER backup_change_routes_d;
DROP TRIGGER backup_change_messages_i;
DROP TRIGGER backup_change_messages_u;
DROP TRIGGER backup_change_messages_d;
DROP TRIGGER backup_change_message_events_i;
DROP TRIGGER backup_change_message_events_u;
DROP TRIGGER backup_change_message_events_d;
DROP TRIGGER backup_change_templates_i;
DROP TRIGGER backup_change_templates_u;
DROP TRIGGER backup_change_templates_d;
DROP TRIGGER backup_change_template_versions_i;
DROP TRIGGER backup_change_template_versions_u;
DROP TRIGGER backup_change_template_versions_d;
DROP TRIGGER backup_change_template_variants_i;
DROP TRIGGER backup_change_template_variants_u;
DROP TRIGGER backup_change_template_variants_d;
DROP TRIGGER backup_change_audit_trees_i;
DROP TRIGGER backup_change_audit_trees_u;
DROP TRIGGER backup_change_audit_trees_d;
DROP TRIGGER backup_change_audit_tree_hashes_i;
DROP TRIGGER backup_change_audit_tree_hashes_u;
DROP TRIGGER backup_change_audit_tree_hashes_d;
DROP TRIGGER backup_change_audit_signing_keys_i;
DROP TRIGGER backup_change_audit_signing_keys_u;
DROP TRIGGER backup_change_audit_signing_keys_d;
DROP TRIGGER backup_change_audit_checkpoints_i;
DROP TRIGGER backup_change_audit_checkpoints_u;
DROP TRIGGER backup_change_audit_checkpoints_d;
DROP TRIGGER backup_change_campaigns_i;
DROP TRIGGER backup_change_campaigns_u;
DROP TRIGGER backup_change_campaigns_d;
DROP TRIGGER backup_change_campaign_settings_i;
DROP TRIGGER backup_change_campaign_settings_u;
DROP TRIGGER backup_change_campaign_settings_d;
DROP TABLE backup_restoring;
DROP TABLE backup_state;
DROP TABLE backup_changes;

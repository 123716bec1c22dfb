-- +goose Up
-- Backup change-log triggers (issue 8, see 00009_backup.sql) for the tenant
-- tables added by the features that landed beside it (keys, privacy, SFTP,
-- SSO, monitoring): without them an incremental backup would copy these
-- tables whole. Tables of transient or platform state are excluded from
-- backups instead (internal/backup/schema.go).
-- +goose StatementBegin
CREATE TRIGGER backup_change_feature_flags_i AFTER INSERT ON feature_flags WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'feature_flags', json_array(NEW.name));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_feature_flags_u AFTER UPDATE ON feature_flags WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'feature_flags', json_array(NEW.name));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'feature_flags', json_array(OLD.name) WHERE json_array(OLD.name) <> json_array(NEW.name);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_feature_flags_d AFTER DELETE ON feature_flags WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'feature_flags', json_array(OLD.name));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_monitor_silences_i AFTER INSERT ON monitor_silences WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'monitor_silences', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_monitor_silences_u AFTER UPDATE ON monitor_silences WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'monitor_silences', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'monitor_silences', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_monitor_silences_d AFTER DELETE ON monitor_silences WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'monitor_silences', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_privacy_requests_i AFTER INSERT ON privacy_requests WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'privacy_requests', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_privacy_requests_u AFTER UPDATE ON privacy_requests WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'privacy_requests', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'privacy_requests', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_privacy_requests_d AFTER DELETE ON privacy_requests WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'privacy_requests', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_retention_rules_i AFTER INSERT ON retention_rules WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'retention_rules', json_array(NEW.kind));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_retention_rules_u AFTER UPDATE ON retention_rules WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'retention_rules', json_array(NEW.kind));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'retention_rules', json_array(OLD.kind) WHERE json_array(OLD.kind) <> json_array(NEW.kind);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_retention_rules_d AFTER DELETE ON retention_rules WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'retention_rules', json_array(OLD.kind));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_external_i AFTER INSERT ON scim_external WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'scim_external', json_array(NEW.kind, NEW.resource_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_external_u AFTER UPDATE ON scim_external WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'scim_external', json_array(NEW.kind, NEW.resource_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'scim_external', json_array(OLD.kind, OLD.resource_id) WHERE json_array(OLD.kind, OLD.resource_id) <> json_array(NEW.kind, NEW.resource_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_external_d AFTER DELETE ON scim_external WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'scim_external', json_array(OLD.kind, OLD.resource_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_tokens_i AFTER INSERT ON scim_tokens WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'scim_tokens', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_tokens_u AFTER UPDATE ON scim_tokens WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'scim_tokens', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'scim_tokens', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_scim_tokens_d AFTER DELETE ON scim_tokens WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'scim_tokens', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_security_contacts_i AFTER INSERT ON security_contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'security_contacts', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_security_contacts_u AFTER UPDATE ON security_contacts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'security_contacts', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'security_contacts', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_security_contacts_d AFTER DELETE ON security_contacts WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'security_contacts', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_accounts_i AFTER INSERT ON sftp_accounts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sftp_accounts', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_accounts_u AFTER UPDATE ON sftp_accounts WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sftp_accounts', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sftp_accounts', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_accounts_d AFTER DELETE ON sftp_accounts WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sftp_accounts', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_keys_i AFTER INSERT ON sftp_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sftp_keys', json_array(NEW.account_id, NEW.fingerprint));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_keys_u AFTER UPDATE ON sftp_keys WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sftp_keys', json_array(NEW.account_id, NEW.fingerprint));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sftp_keys', json_array(OLD.account_id, OLD.fingerprint) WHERE json_array(OLD.account_id, OLD.fingerprint) <> json_array(NEW.account_id, NEW.fingerprint);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sftp_keys_d AFTER DELETE ON sftp_keys WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sftp_keys', json_array(OLD.account_id, OLD.fingerprint));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_grants_i AFTER INSERT ON sso_grants WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_grants', json_array(NEW.user_id, NEW.kind, NEW.target_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_grants_u AFTER UPDATE ON sso_grants WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_grants', json_array(NEW.user_id, NEW.kind, NEW.target_id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sso_grants', json_array(OLD.user_id, OLD.kind, OLD.target_id) WHERE json_array(OLD.user_id, OLD.kind, OLD.target_id) <> json_array(NEW.user_id, NEW.kind, NEW.target_id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_grants_d AFTER DELETE ON sso_grants WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sso_grants', json_array(OLD.user_id, OLD.kind, OLD.target_id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_links_i AFTER INSERT ON sso_links WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_links', json_array(NEW.provider_id, hex(NEW.subject_bidx)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_links_u AFTER UPDATE ON sso_links WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_links', json_array(NEW.provider_id, hex(NEW.subject_bidx)));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sso_links', json_array(OLD.provider_id, hex(OLD.subject_bidx)) WHERE json_array(OLD.provider_id, hex(OLD.subject_bidx)) <> json_array(NEW.provider_id, hex(NEW.subject_bidx));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_links_d AFTER DELETE ON sso_links WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sso_links', json_array(OLD.provider_id, hex(OLD.subject_bidx)));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_providers_i AFTER INSERT ON sso_providers WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_providers', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_providers_u AFTER UPDATE ON sso_providers WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_providers', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sso_providers', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_providers_d AFTER DELETE ON sso_providers WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sso_providers', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_rules_i AFTER INSERT ON sso_rules WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_rules', json_array(NEW.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_rules_u AFTER UPDATE ON sso_rules WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_rules', json_array(NEW.id));
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sso_rules', json_array(OLD.id) WHERE json_array(OLD.id) <> json_array(NEW.id);
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_rules_d AFTER DELETE ON sso_rules WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sso_rules', json_array(OLD.id));
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_settings_i AFTER INSERT ON sso_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_settings', json_array());
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_settings_u AFTER UPDATE ON sso_settings WHEN NEW.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = NEW.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (NEW.tenant_id, 'sso_settings', json_array());
    INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT OLD.tenant_id, 'sso_settings', json_array() WHERE json_array() <> json_array();
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER backup_change_sso_settings_d AFTER DELETE ON sso_settings WHEN OLD.tenant_id <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = OLD.tenant_id) BEGIN
    INSERT INTO backup_changes (tenant_id, tbl, pk) VALUES (OLD.tenant_id, 'sso_settings', json_array());
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER backup_change_feature_flags_i;
DROP TRIGGER backup_change_feature_flags_u;
DROP TRIGGER backup_change_feature_flags_d;
DROP TRIGGER backup_change_monitor_silences_i;
DROP TRIGGER backup_change_monitor_silences_u;
DROP TRIGGER backup_change_monitor_silences_d;
DROP TRIGGER backup_change_privacy_requests_i;
DROP TRIGGER backup_change_privacy_requests_u;
DROP TRIGGER backup_change_privacy_requests_d;
DROP TRIGGER backup_change_retention_rules_i;
DROP TRIGGER backup_change_retention_rules_u;
DROP TRIGGER backup_change_retention_rules_d;
DROP TRIGGER backup_change_scim_external_i;
DROP TRIGGER backup_change_scim_external_u;
DROP TRIGGER backup_change_scim_external_d;
DROP TRIGGER backup_change_scim_tokens_i;
DROP TRIGGER backup_change_scim_tokens_u;
DROP TRIGGER backup_change_scim_tokens_d;
DROP TRIGGER backup_change_security_contacts_i;
DROP TRIGGER backup_change_security_contacts_u;
DROP TRIGGER backup_change_security_contacts_d;
DROP TRIGGER backup_change_sftp_accounts_i;
DROP TRIGGER backup_change_sftp_accounts_u;
DROP TRIGGER backup_change_sftp_accounts_d;
DROP TRIGGER backup_change_sftp_keys_i;
DROP TRIGGER backup_change_sftp_keys_u;
DROP TRIGGER backup_change_sftp_keys_d;
DROP TRIGGER backup_change_sso_grants_i;
DROP TRIGGER backup_change_sso_grants_u;
DROP TRIGGER backup_change_sso_grants_d;
DROP TRIGGER backup_change_sso_links_i;
DROP TRIGGER backup_change_sso_links_u;
DROP TRIGGER backup_change_sso_links_d;
DROP TRIGGER backup_change_sso_providers_i;
DROP TRIGGER backup_change_sso_providers_u;
DROP TRIGGER backup_change_sso_providers_d;
DROP TRIGGER backup_change_sso_rules_i;
DROP TRIGGER backup_change_sso_rules_u;
DROP TRIGGER backup_change_sso_rules_d;
DROP TRIGGER backup_change_sso_settings_i;
DROP TRIGGER backup_change_sso_settings_u;
DROP TRIGGER backup_change_sso_settings_d;

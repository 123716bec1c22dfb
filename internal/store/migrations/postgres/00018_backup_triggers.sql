-- +goose Up
-- Backup change-log triggers (issue 8, see 00009_backup.sql) for the tenant
-- tables added by the features that landed beside it (keys, privacy, SFTP,
-- SSO, monitoring): without them an incremental backup would copy these
-- tables whole. Tables of transient or platform state are excluded from
-- backups instead (internal/backup/schema.go).
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON feature_flags
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('name');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON monitor_silences
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON privacy_requests
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON retention_rules
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('kind');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON scim_external
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('kind', 'resource_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON scim_tokens
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON security_contacts
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sftp_accounts
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sftp_keys
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('account_id', 'fingerprint');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sso_grants
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('user_id', 'kind', 'target_id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sso_links
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('provider_id', 'subject_bidx');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sso_providers
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sso_rules
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change('id');
CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON sso_settings
    FOR EACH ROW EXECUTE FUNCTION relais_backup_change();

-- +goose Down
DROP TRIGGER backup_change ON feature_flags;
DROP TRIGGER backup_change ON monitor_silences;
DROP TRIGGER backup_change ON privacy_requests;
DROP TRIGGER backup_change ON retention_rules;
DROP TRIGGER backup_change ON scim_external;
DROP TRIGGER backup_change ON scim_tokens;
DROP TRIGGER backup_change ON security_contacts;
DROP TRIGGER backup_change ON sftp_accounts;
DROP TRIGGER backup_change ON sftp_keys;
DROP TRIGGER backup_change ON sso_grants;
DROP TRIGGER backup_change ON sso_links;
DROP TRIGGER backup_change ON sso_providers;
DROP TRIGGER backup_change ON sso_rules;
DROP TRIGGER backup_change ON sso_settings;

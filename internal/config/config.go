// Package config holds Relais settings: their defaults (the figures of the
// security assurance plan the product implements), a TOML configuration file
// and RELAIS_* environment variables that override them.
//
// Precedence, lowest first: Default, the file named by --config, the
// environment, then command-line flags (applied by the caller). An unknown key
// in the file or an unknown RELAIS_* variable is an error that names it: a
// typo must never silently leave a security setting at a value the operator
// did not choose.
//
// Policy holds the per-tenant settings (password, lockout, session, second
// factor, retention, backup schedule). The values here are the platform
// defaults; each tenant starts from them and may override them in the store.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole effective configuration of a Relais process.
type Config struct {
	// DataDir holds the SQLite database, the master key file, the
	// self-signed certificate and other local state.
	DataDir string `toml:"data_dir" json:"data_dir"`
	// DatabaseURL selects PostgreSQL when set (postgres://...). Empty means
	// the embedded SQLite database in DataDir.
	DatabaseURL string `toml:"database_url" json:"database_url" secret:"url"`
	// MasterKeyFile is the path of the master key file; empty means
	// DataDir/master.key.
	MasterKeyFile string `toml:"master_key_file" json:"master_key_file"`
	// Listen is the HTTPS address of the UI and API.
	Listen string `toml:"listen" json:"listen"`
	// RedirectListen, when set, is a plain-HTTP address that only
	// redirects to HTTPS.
	RedirectListen string `toml:"redirect_listen" json:"redirect_listen"`
	// PublicURL is the address contacts and browsers reach Relais at
	// (https://relais.example.com, behind a load balancer or not), used
	// in the links put in messages (unsubscribe, confirmation). Empty:
	// https:// the first TLS host and the listen port.
	PublicURL string `toml:"public_url" json:"public_url"`
	// MetricsListen is the Prometheus metrics address (plain HTTP; keep it
	// on a loopback or management network). Empty disables it.
	MetricsListen string `toml:"metrics_listen" json:"metrics_listen"`

	// SQLite tunes the embedded store (ignored with database_url).
	SQLite SQLite        `toml:"sqlite" json:"sqlite"`
	TLS    TLS           `toml:"tls" json:"tls"`
	Auth   Auth          `toml:"auth" json:"auth"`
	Log    Log           `toml:"log" json:"log"`
	HTTP   HTTP          `toml:"http" json:"http"`
	SFTP   SFTP          `toml:"sftp" json:"sftp"`
	Keys   KeyManagement `toml:"keys" json:"keys"`
	Backup Backup        `toml:"backup" json:"backup"`
	Policy Policy        `toml:"policy" json:"policy"`
	// AuditForward copies the audit trail to a central log system.
	AuditForward AuditForward `toml:"audit_forward" json:"audit_forward"`
	// Monitor configures supervision: the clock check, the built-in
	// alerts and where they are notified (issue 12).
	Monitor Monitor `toml:"monitor" json:"monitor"`
	// Privacy configures retention runs and tenant destruction (issue 9).
	Privacy Privacy `toml:"privacy" json:"privacy"`
}

// SQLite tunes the embedded SQLite store's memory and write-ahead log.
type SQLite struct {
	// CacheMiB is each database connection's page cache (SQLite's own
	// default is 2). The blind indexes of contacts are written at random
	// places: a larger cache saves reads, and spills of changed pages in
	// the middle of a transaction. Pages are allocated as they are used,
	// with about as much again of overhead, by each of up to 8 connections.
	CacheMiB int `toml:"cache_mib" json:"cache_mib"`
	// WALAutocheckpoint is the size of the write-ahead log, in 4 KiB pages,
	// at which it is copied into the database file (each copy ends with
	// two fsyncs: a larger log makes fewer, larger copies).
	WALAutocheckpoint int `toml:"wal_autocheckpoint" json:"wal_autocheckpoint"`
	// PageSize is the page size, in bytes, of a store that does not exist
	// yet (a power of two from 4096 to 65536; an existing store keeps its
	// own). Larger pages mean fewer pages, write-ahead log frames and
	// system calls for bulk work (a restore: bench/README.md, Backups),
	// and larger frames for each small random write.
	PageSize int `toml:"page_size" json:"page_size"`
}

// AuditForward is LOG-6: live copies of every audit event to the
// operator's central log system. Both URLs empty: no forwarding.
type AuditForward struct {
	// Syslog is tls://host:port (RFC 5424 over TLS, RFC 5425) or
	// tcp://host:port (octet-counted, RFC 6587).
	Syslog string `toml:"syslog" json:"syslog"`
	// GELF is gelf+tls://host:port or gelf+tcp://host:port (Graylog TCP
	// input) or gelf+https://host:port/path (HTTP input, acknowledged).
	GELF string `toml:"gelf" json:"gelf"`
	// CAFile verifies the receivers' certificates (system roots when empty).
	CAFile string `toml:"ca_file" json:"ca_file"`
	// Every is how often new events are looked for.
	Every Duration `toml:"every" json:"every"`
	// Batch is the most events sent at once per log.
	Batch int `toml:"batch" json:"batch"`
}

// Monitor configures the clock check (LOG-5), the built-in business-rule
// alerts (AVL-5) and their notification, and incident deadlines (INC-2).
type Monitor struct {
	// NTPServers are the servers the clock is measured against ("host" or
	// "host:port"). Empty: the clock is not checked (and the compliance
	// report says so).
	NTPServers     []string `toml:"ntp_servers" json:"ntp_servers"`
	ClockMaxOffset Duration `toml:"clock_max_offset" json:"clock_max_offset"`
	ClockInterval  Duration `toml:"clock_interval" json:"clock_interval"`
	// AlertInterval is how often the built-in alerts are evaluated.
	AlertInterval Duration `toml:"alert_interval" json:"alert_interval"`
	// NotifyEmails receive the operator's alerts through SMTPAddr (a relay
	// accepting mail from MailFrom); WebhookURL receives them as JSON
	// signed with HMAC-SHA256 under the key in WebhookSecretFile.
	NotifyEmails      []string `toml:"notify_emails" json:"notify_emails"`
	SMTPAddr          string   `toml:"smtp_addr" json:"smtp_addr"`
	MailFrom          string   `toml:"mail_from" json:"mail_from"`
	WebhookURL        string   `toml:"webhook_url" json:"webhook_url"`
	WebhookSecretFile string   `toml:"webhook_secret_file" json:"webhook_secret_file"`
	// VolumeRatio: a tenant's hourly send requests above ratio times, or
	// below 1/ratio of, the same hour one week earlier fire an alert, when
	// either hour has at least VolumeMin requests.
	VolumeRatio int `toml:"volume_ratio" json:"volume_ratio"`
	VolumeMin   int `toml:"volume_min" json:"volume_min"`
	// ScheduleTolerancePct: sends in ScheduleWindow further than this from
	// what was scheduled for it fire an alert.
	ScheduleTolerancePct int      `toml:"schedule_tolerance_pct" json:"schedule_tolerance_pct"`
	ScheduleMin          int      `toml:"schedule_min" json:"schedule_min"`
	ScheduleWindow       Duration `toml:"schedule_window" json:"schedule_window"`
	// Failed logins in FailedLoginWindow: on one account, across many
	// accounts of a tenant, or from one address.
	FailedLoginWindow   Duration `toml:"failed_login_window" json:"failed_login_window"`
	FailedLoginsAccount int      `toml:"failed_logins_account" json:"failed_logins_account"`
	FailedLoginAccounts int      `toml:"failed_login_accounts" json:"failed_login_accounts"`
	FailedLoginsIP      int      `toml:"failed_logins_ip" json:"failed_logins_ip"`
	// AdminGrantActors are the actor types through which administrative
	// rights are expected to be granted (a self-grant never is).
	AdminGrantActors []string `toml:"admin_grant_actors" json:"admin_grant_actors"`
	AdminGrantWindow Duration `toml:"admin_grant_window" json:"admin_grant_window"`
	// CertWarn: a certificate expiring within this fires an alert.
	CertWarn Duration `toml:"cert_warn" json:"cert_warn"`
	// IncidentDeadline is how long after detection affected tenants must
	// be notified (INC-2).
	IncidentDeadline Duration `toml:"incident_deadline" json:"incident_deadline"`
}

// SFTP configures the SFTP file exchange (XFER-1..3).
type SFTP struct {
	// Listen is the SFTP address (SSH). Empty disables the server.
	Listen string `toml:"listen" json:"listen"`
	// Dir holds the (encrypted) exchanged files; empty means DataDir/sftp.
	// Several nodes share it (a shared directory) to run active-active.
	Dir string `toml:"dir" json:"dir"`
	// Retention is how long a file stays in /inbox or /outbox.
	Retention Duration `toml:"retention" json:"retention"`
	// QuotaBytes and MaxFileBytes are the defaults of new accounts.
	QuotaBytes   int64 `toml:"quota_bytes" json:"quota_bytes"`
	MaxFileBytes int64 `toml:"max_file_bytes" json:"max_file_bytes"`
}

// Privacy configures the privacy job and tenant destruction.
type Privacy struct {
	// DestroyDelay is the default delay between a confirmed tenant
	// destruction request and the destruction (REV-3), during which it can
	// be cancelled: 30 days.
	DestroyDelay Duration `toml:"destroy_delay" json:"destroy_delay"`
	// JobEvery is how often `serve` applies the tenants' retention rules
	// and destroys the tenants whose destruction is due: 6 hours.
	JobEvery Duration `toml:"job_every" json:"job_every"`
}

// KeyManagement chooses the master-key provider (DATA-2): "file" (master_key_file),
// "vault" (HashiCorp Vault / OpenBao transit) or "pkcs11" (an HSM; needs a
// binary built with cgo).
type KeyManagement struct {
	Provider string `toml:"provider" json:"provider"`
	// CacheTTL bounds how long an unwrapped tenant key stays in memory (and
	// how long another node keeps using a rotated or destroyed key).
	CacheTTL Duration   `toml:"cache_ttl" json:"cache_ttl"`
	Vault    VaultKeys  `toml:"vault" json:"vault"`
	PKCS11   PKCS11Keys `toml:"pkcs11" json:"pkcs11"`
}

// VaultKeys configures the transit provider. Give Token, or RoleID and
// SecretID (AppRole); prefer the environment (RELAIS_KEYS_VAULT_TOKEN,
// RELAIS_KEYS_VAULT_SECRET_ID) to the file for secrets.
type VaultKeys struct {
	Address   string   `toml:"address" json:"address"`
	Mount     string   `toml:"mount" json:"mount"`
	KeyPrefix string   `toml:"key_prefix" json:"key_prefix"`
	Token     string   `toml:"token" json:"token"`
	RoleID    string   `toml:"role_id" json:"role_id"`
	SecretID  string   `toml:"secret_id" json:"secret_id"`
	Namespace string   `toml:"namespace" json:"namespace"`
	CAFile    string   `toml:"ca_file" json:"ca_file"`
	Timeout   Duration `toml:"timeout" json:"timeout"`
}

// PKCS11Keys configures the HSM provider; give the PIN in the environment
// (RELAIS_KEYS_PKCS11_PIN).
type PKCS11Keys struct {
	Module         string `toml:"module" json:"module"`
	TokenLabel     string `toml:"token_label" json:"token_label"`
	PIN            string `toml:"pin" json:"pin"`
	KeyLabelPrefix string `toml:"key_label_prefix" json:"key_label_prefix"`
}

// Backup configures the scheduled per-tenant backups (BAK-1..6); the
// schedule itself is policy.backup (per tenant).
type Backup struct {
	// Target is where serve's scheduler writes every tenant's backups:
	// dir:///absolute/path or s3://bucket/prefix?endpoint=host:port (S3
	// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Empty:
	// no scheduled backups.
	Target string `toml:"target" json:"target"`
	// PGPRecipients is a file of OpenPGP public keys: each point is also
	// written as a tar encrypted to them (empty: none).
	PGPRecipients string `toml:"pgp_recipients" json:"pgp_recipients"`
	// KeepSets is how many backup sets (a full and its incrementals) are
	// kept per tenant; older ones are deleted after a new full.
	KeepSets int `toml:"keep_sets" json:"keep_sets"`
}

// TLS configures the HTTPS listener.
type TLS struct {
	// Cert and Key are PEM files. Both empty: a self-signed ECDSA P-256
	// certificate is created in DataDir/tls.
	Cert string `toml:"cert" json:"cert"`
	Key  string `toml:"key" json:"key"`
	// Hosts are the names and addresses of the self-signed certificate.
	Hosts []string `toml:"hosts" json:"hosts"`
	// TicketKeyRotation is how often session-ticket keys change (at most 24h).
	TicketKeyRotation Duration `toml:"ticket_key_rotation" json:"ticket_key_rotation"`
	// ACMEDomains, when set, obtains and renews the certificate from an
	// ACME CA (NET-3) instead of Cert/Key or the self-signed one.
	ACMEDomains []string `toml:"acme_domains" json:"acme_domains"`
	// ACMEDirectory is the CA's directory URL (Let's Encrypt by default).
	ACMEDirectory string `toml:"acme_directory" json:"acme_directory"`
	// ACMEEmail is the ACME account's contact address.
	ACMEEmail string `toml:"acme_email" json:"acme_email"`
	// ACMECAFile is a PEM bundle trusted for the ACME directory's own
	// HTTPS certificate (a private ACME CA); empty: the system's roots.
	ACMECAFile string `toml:"acme_ca_file" json:"acme_ca_file"`
	// ACMECheckInterval is how often each node checks whether the
	// certificate is due, or was renewed by another node.
	ACMECheckInterval Duration `toml:"acme_check_interval" json:"acme_check_interval"`
	// ClientAuthFile names the client-certificate authorities file (mTLS,
	// NET-4); empty: no client certificates are requested.
	ClientAuthFile string `toml:"client_auth_file" json:"client_auth_file"`
}

// Auth configures platform-wide authentication settings.
type Auth struct {
	// BreachCorpusDir is a directory of Have I Been Pwned range files
	// (offline breach check); BreachCheckURL a range API base URL such as
	// https://api.pwnedpasswords.com/range/ (online). The directory wins.
	BreachCorpusDir string `toml:"breach_corpus_dir" json:"breach_corpus_dir"`
	BreachCheckURL  string `toml:"breach_check_url" json:"breach_check_url"`
	// TokenIssuer is the "iss" of API access tokens.
	TokenIssuer string `toml:"token_issuer" json:"token_issuer"`
}

// Log configures structured logs.
type Log struct {
	Level  string `toml:"level" json:"level"`   // debug, info, warn, error
	Format string `toml:"format" json:"format"` // json or text
}

// HTTP holds server limits.
type HTTP struct {
	MaxBodyBytes int64 `toml:"max_body_bytes" json:"max_body_bytes"`
	// MaxImportBytes bounds contact files uploaded to the API.
	MaxImportBytes    int64    `toml:"max_import_bytes" json:"max_import_bytes"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout" json:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout" json:"read_timeout"`
	WriteTimeout      Duration `toml:"write_timeout" json:"write_timeout"`
	IdleTimeout       Duration `toml:"idle_timeout" json:"idle_timeout"`
	ShutdownTimeout   Duration `toml:"shutdown_timeout" json:"shutdown_timeout"`
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int `toml:"max_header_bytes" json:"max_header_bytes"`
	// RateLimit is the edge's request rate limit (0 disables a limit).
	RateLimit RateLimit `toml:"rate_limit" json:"rate_limit"`
	// ProxyProtocolFrom lists the TCP load balancers (CIDR prefixes) whose
	// connections start with a PROXY protocol header giving the client's
	// address; empty: none.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from" json:"proxy_protocol_from"`
}

// RateLimit holds the edge's token buckets: per client IP address (IPv6
// by /64) and per credential (Authorization header or session cookie).
type RateLimit struct {
	IPPerMinute         int `toml:"ip_per_minute" json:"ip_per_minute"`
	IPBurst             int `toml:"ip_burst" json:"ip_burst"`
	CredentialPerMinute int `toml:"credential_per_minute" json:"credential_per_minute"`
	CredentialBurst     int `toml:"credential_burst" json:"credential_burst"`
}

// Policy is the per-tenant security policy. Config.Policy holds the
// platform defaults; a tenant's stored overrides are merged over them.
type Policy struct {
	Password  PasswordPolicy  `toml:"password" json:"password"`
	Lockout   LockoutPolicy   `toml:"lockout" json:"lockout"`
	Session   SessionPolicy   `toml:"session" json:"session"`
	TwoFactor TwoFactorPolicy `toml:"two_factor" json:"two_factor"`
	Network   NetworkPolicy   `toml:"network" json:"network"`
	Audit     AuditPolicy     `toml:"audit" json:"audit"`
	Backup    BackupPolicy    `toml:"backup" json:"backup"`
	Monitor   MonitorPolicy   `toml:"monitor" json:"monitor"`
}

// MonitorPolicy is AVL-2: the tenant's latency alert threshold (the 95th
// percentile of its API requests over the last AlertWindow).
type MonitorPolicy struct {
	LatencyP95  Duration `toml:"latency_p95" json:"latency_p95"`
	AlertWindow Duration `toml:"alert_window" json:"alert_window"`
}

// PasswordPolicy is AUTH-9, AUTH-10 and AUTH-11. Preset "seed" applies the
// seed's composition and expiry rules; "nist" (SP 800-63B) applies length
// only: at least 15 characters, no composition rule, no expiry.
type PasswordPolicy struct {
	Preset              string `toml:"preset" json:"preset"`
	Algorithm           string `toml:"algorithm" json:"algorithm"`
	MinLength           int    `toml:"min_length" json:"min_length"`
	PrivilegedMinLength int    `toml:"privileged_min_length" json:"privileged_min_length"`
	MinClasses          int    `toml:"min_classes" json:"min_classes"`
	MaxAgeDays          int    `toml:"max_age_days" json:"max_age_days"`
	History             int    `toml:"history" json:"history"`
	PBKDF2Iterations    int    `toml:"pbkdf2_iterations" json:"pbkdf2_iterations"`
	BreachCheck         bool   `toml:"breach_check" json:"breach_check"`
}

// LockoutPolicy is AUTH-4.
type LockoutPolicy struct {
	MaxFailures      int      `toml:"max_failures" json:"max_failures"`
	MaxFailuresPerIP int      `toml:"max_failures_per_ip" json:"max_failures_per_ip"`
	Window           Duration `toml:"window" json:"window"`
	LockDuration     Duration `toml:"lock_duration" json:"lock_duration"`
	MaxLockDuration  Duration `toml:"max_lock_duration" json:"max_lock_duration"`
	// LockGrowth multiplies the lock duration at each new lock (1 = fixed).
	LockGrowth int  `toml:"lock_growth" json:"lock_growth"`
	Permanent  bool `toml:"permanent" json:"permanent"`
}

// SessionPolicy is AUTH-6.
type SessionPolicy struct {
	IdleTimeout      Duration `toml:"idle_timeout" json:"idle_timeout"`
	AbsoluteLifetime Duration `toml:"absolute_lifetime" json:"absolute_lifetime"`
}

// TwoFactorPolicy is AUTH-7: Required is "none", "admins" (users holding
// an administrative permission) or "all".
type TwoFactorPolicy struct {
	Required string `toml:"required" json:"required"`
	// AcceptIdPMFA lets an SSO login that reports MFA satisfy the policy.
	AcceptIdPMFA bool `toml:"accept_idp_mfa" json:"accept_idp_mfa"`
}

// NetworkPolicy is ACC-6: CIDR allow-lists (IPv4 and IPv6). Empty allows
// every address.
type NetworkPolicy struct {
	UIAllow  []string `toml:"ui_allow" json:"ui_allow"`
	APIAllow []string `toml:"api_allow" json:"api_allow"`
}

// AuditPolicy is LOG-3.
type AuditPolicy struct {
	Retention       Duration `toml:"retention" json:"retention"`
	AccessRetention Duration `toml:"access_retention" json:"access_retention"`
}

// BackupPolicy is BAK-4, BAK-5 and BAK-6.
type BackupPolicy struct {
	FullEvery           Duration `toml:"full_every" json:"full_every"`
	IncrementalEvery    Duration `toml:"incremental_every" json:"incremental_every"`
	IncrementalMaxBytes int64    `toml:"incremental_max_bytes" json:"incremental_max_bytes"`
	VerifyEvery         Duration `toml:"verify_every" json:"verify_every"`
	RestoreTestEvery    Duration `toml:"restore_test_every" json:"restore_test_every"`
}

const day = 24 * time.Hour

// Default returns the built-in configuration. The policy figures are the
// seed document's (see CONTROLS.md, AUD-2).
func Default() Config {
	return Config{
		DataDir:       "relais-data",
		Listen:        "127.0.0.1:8443",
		MetricsListen: "127.0.0.1:9464",
		TLS: TLS{
			Hosts:             []string{"localhost", "127.0.0.1", "::1"},
			TicketKeyRotation: Duration(day),
			ACMEDomains:       []string{},
			ACMECheckInterval: Duration(10 * time.Minute),
		},
		SQLite: SQLite{CacheMiB: 8, WALAutocheckpoint: 10000, PageSize: 4096},
		Log:    Log{Level: "info", Format: "json"},
		Auth:   Auth{TokenIssuer: "relais"},
		Keys: KeyManagement{Provider: "file", CacheTTL: Duration(5 * time.Minute),
			Vault:  VaultKeys{Mount: "transit", KeyPrefix: "relais-", Timeout: Duration(10 * time.Second)},
			PKCS11: PKCS11Keys{Module: "/usr/lib/softhsm/libsofthsm2.so", KeyLabelPrefix: "relais-"}},
		HTTP: HTTP{
			MaxBodyBytes:      1 << 20,
			MaxImportBytes:    1 << 30,
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			WriteTimeout:      Duration(120 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
			MaxHeaderBytes:    64 << 10,
			RateLimit:         RateLimit{IPPerMinute: 1200, IPBurst: 200, CredentialPerMinute: 1200, CredentialBurst: 200},
			ProxyProtocolFrom: []string{},
		},
		SFTP: SFTP{
			Listen:       "127.0.0.1:2222",
			Retention:    Duration(30 * day),
			QuotaBytes:   10 << 30,
			MaxFileBytes: 1 << 30,
		},
		Policy:       DefaultPolicy(),
		Backup:       Backup{KeepSets: 10},
		AuditForward: AuditForward{Every: Duration(time.Second), Batch: 500},
		Monitor:      DefaultMonitor(),
		Privacy:      Privacy{DestroyDelay: Duration(30 * day), JobEvery: Duration(6 * time.Hour)},
	}
}

// DefaultMonitor returns the supervision defaults.
func DefaultMonitor() Monitor {
	return Monitor{
		NTPServers:           []string{},
		ClockMaxOffset:       Duration(time.Second),
		ClockInterval:        Duration(5 * time.Minute),
		AlertInterval:        Duration(time.Minute),
		NotifyEmails:         []string{},
		MailFrom:             "relais@localhost",
		VolumeRatio:          3,
		VolumeMin:            100,
		ScheduleTolerancePct: 50,
		ScheduleMin:          50,
		ScheduleWindow:       Duration(time.Hour),
		FailedLoginWindow:    Duration(15 * time.Minute),
		FailedLoginsAccount:  10,
		FailedLoginAccounts:  5,
		FailedLoginsIP:       20,
		AdminGrantActors:     []string{"operator", "user"},
		AdminGrantWindow:     Duration(day),
		CertWarn:             Duration(21 * day),
		IncidentDeadline:     Duration(48 * time.Hour),
	}
}

// DefaultPolicy returns the seed's figures for the per-tenant policy.
func DefaultPolicy() Policy {
	return Policy{
		Password: PasswordPolicy{
			Preset:              "seed",
			Algorithm:           "pbkdf2-sha256",
			MinLength:           12,
			PrivilegedMinLength: 20,
			MinClasses:          3,
			MaxAgeDays:          90,
			History:             5,
			PBKDF2Iterations:    600_000,
			BreachCheck:         true,
		},
		Lockout: LockoutPolicy{
			MaxFailures:      5,
			MaxFailuresPerIP: 50,
			Window:           Duration(15 * time.Minute),
			LockDuration:     Duration(15 * time.Minute),
			MaxLockDuration:  Duration(day),
			LockGrowth:       2,
		},
		TwoFactor: TwoFactorPolicy{Required: "none"},
		Network:   NetworkPolicy{UIAllow: []string{}, APIAllow: []string{}},
		Session: SessionPolicy{
			IdleTimeout:      Duration(30 * time.Minute),
			AbsoluteLifetime: Duration(12 * time.Hour),
		},
		Audit: AuditPolicy{
			Retention:       Duration(365 * day),
			AccessRetention: Duration(183 * day),
		},
		Backup: BackupPolicy{
			FullEvery:           Duration(3 * day),
			IncrementalEvery:    Duration(2 * time.Hour),
			IncrementalMaxBytes: 1 << 30,
			VerifyEvery:         Duration(day),
			RestoreTestEvery:    Duration(60 * day),
		},
		Monitor: MonitorPolicy{LatencyP95: Duration(time.Second), AlertWindow: Duration(15 * time.Minute)},
	}
}

// EnvPrefix starts every environment variable Relais reads.
const EnvPrefix = "RELAIS_"

// envNotSettings are RELAIS_* variables that are not settings.
var envNotSettings = map[string]bool{"RELAIS_CONFIG": true}

// Load builds the configuration from the defaults, the TOML file at path
// (skipped when path is empty) and the environment (environ as os.Environ
// returns it).
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(environ, &cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator names the config file.
	if err != nil {
		return fmt.Errorf("config file %s: %w; check the --config path", path, unwrapPathError(err))
	}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return fmt.Errorf("config file %s: unknown setting %q; see `relais config print` for the valid keys", path, keys[0])
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// settingFields lists every leaf setting with its dotted key.
func settingFields(v reflect.Value, prefix string, out map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[Duration]() {
			settingFields(fv, key, out)
			continue
		}
		out[key] = fv
	}
}

// EnvName returns the environment variable for a dotted setting key:
// "policy.password.min_length" -> "RELAIS_POLICY_PASSWORD_MIN_LENGTH".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func applyEnv(environ []string, cfg *Config) error {
	fields := map[string]reflect.Value{}
	settingFields(reflect.ValueOf(cfg).Elem(), "", fields)
	byEnv := make(map[string]string, len(fields))
	for k := range fields {
		byEnv[EnvName(k)] = k
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || envNotSettings[name] {
			continue
		}
		key, known := byEnv[name]
		if !known {
			return fmt.Errorf("environment variable %s is not a Relais setting; unset it or fix its name (see `relais config print`)", name)
		}
		if err := setFromString(fields[key], value); err != nil {
			return fmt.Errorf("environment variable %s: %w", name, err)
		}
	}
	return nil
}

// Set assigns a setting by its dotted key from its text form, as flags and
// the environment do.
func (c *Config) Set(key, value string) error {
	fields := map[string]reflect.Value{}
	settingFields(reflect.ValueOf(c).Elem(), "", fields)
	f, ok := fields[key]
	if !ok {
		return fmt.Errorf("unknown setting %q", key)
	}
	if err := setFromString(f, value); err != nil {
		return fmt.Errorf("setting %s: %w", key, err)
	}
	return nil
}

func setFromString(f reflect.Value, s string) error {
	switch f.Interface().(type) {
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (use true or false)", s)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		f.SetInt(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", f.Kind())
	}
	return nil
}

// Validate checks ranges and the combinations that make no sense.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir must not be empty"))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("listen must not be empty"))
	}
	if c.DatabaseURL != "" {
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, errors.New("database_url must be a postgres:// URL (or empty for the embedded SQLite store)"))
		}
	}
	if c.SQLite.CacheMiB < 1 || c.SQLite.CacheMiB > 1024 {
		errs = append(errs, errors.New("sqlite.cache_mib must be 1 to 1024"))
	}
	if c.SQLite.WALAutocheckpoint < 100 || c.SQLite.WALAutocheckpoint > 1000000 {
		errs = append(errs, errors.New("sqlite.wal_autocheckpoint must be 100 to 1000000 pages"))
	}
	if ps := c.SQLite.PageSize; ps < 4096 || ps > 65536 || ps&(ps-1) != 0 {
		errs = append(errs, errors.New("sqlite.page_size must be a power of two from 4096 to 65536"))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, errors.New("public_url must be an https:// URL with a host and no query, as in https://relais.example.com"))
		}
	}
	if c.Backup.KeepSets < 1 || c.Backup.KeepSets > 1000 {
		errs = append(errs, errors.New("backup.keep_sets must be between 1 and 1000"))
	}
	if t := c.Backup.Target; t != "" && !strings.HasPrefix(t, "dir:///") && !strings.HasPrefix(t, "s3://") {
		errs = append(errs, errors.New("backup.target must be dir:///absolute/path or s3://bucket/prefix?endpoint=host:port"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls.cert and tls.key go together: set both, or neither for a self-signed certificate"))
	}
	if r := c.TLS.TicketKeyRotation.D(); r <= 0 || r > day {
		errs = append(errs, errors.New("tls.ticket_key_rotation must be between 1s and 24h"))
	}
	if c.HTTP.MaxHeaderBytes < 4096 || c.HTTP.MaxHeaderBytes > 1<<20 {
		errs = append(errs, errors.New("http.max_header_bytes must be between 4096 and 1048576"))
	}
	if rl := c.HTTP.RateLimit; rl.IPPerMinute < 0 || rl.IPBurst < 0 || rl.CredentialPerMinute < 0 || rl.CredentialBurst < 0 ||
		(rl.IPPerMinute > 0) != (rl.IPBurst > 0) || (rl.CredentialPerMinute > 0) != (rl.CredentialBurst > 0) {
		errs = append(errs, errors.New("http.rate_limit: rates and bursts must be >= 0, and a rate needs a burst (both 0 disables that limit)"))
	}
	for _, p := range c.HTTP.ProxyProtocolFrom {
		if _, err := netip.ParsePrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("http.proxy_protocol_from: %q is not a CIDR prefix (e.g. 10.0.0.5/32)", p))
		}
	}
	if len(c.TLS.ACMEDomains) > 0 && c.TLS.Cert != "" {
		errs = append(errs, errors.New("tls.acme_domains and tls.cert exclude each other: use ACME or certificate files"))
	}
	if d := c.TLS.ACMECheckInterval.D(); d < time.Second || d > day {
		errs = append(errs, errors.New("tls.acme_check_interval must be between 1s and 24h"))
	}
	if c.TLS.ACMEDirectory != "" && !strings.HasPrefix(c.TLS.ACMEDirectory, "https://") {
		errs = append(errs, errors.New("tls.acme_directory must be an https:// URL"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: use json or text", c.Log.Format))
	}
	if c.HTTP.MaxImportBytes < c.HTTP.MaxBodyBytes || c.HTTP.MaxImportBytes > 64<<30 {
		errs = append(errs, errors.New("http.max_import_bytes must be at least max_body_bytes and at most 64 GiB"))
	}
	if c.HTTP.MaxBodyBytes < 1024 || c.HTTP.MaxBodyBytes > 1<<30 {
		errs = append(errs, errors.New("http.max_body_bytes must be between 1024 and 1073741824"))
	}
	if r := c.SFTP.Retention.D(); r < time.Hour || r > 3650*day {
		errs = append(errs, errors.New("sftp.retention must be between 1h and 3650d"))
	}
	if c.SFTP.MaxFileBytes < 1 || c.SFTP.QuotaBytes < c.SFTP.MaxFileBytes {
		errs = append(errs, errors.New("sftp.max_file_bytes must be at least 1 and sftp.quota_bytes at least max_file_bytes"))
	}
	if d := c.Privacy.DestroyDelay.D(); d < time.Hour || d > 366*day {
		errs = append(errs, errors.New("privacy.destroy_delay must be between 1h and 366d (`relais tenant destroy --now` skips it)"))
	}
	if d := c.Privacy.JobEvery.D(); d < time.Minute || d > day {
		errs = append(errs, errors.New("privacy.job_every must be between 1m and 24h"))
	}
	switch c.Keys.Provider {
	case "file":
	case "vault":
		if !strings.HasPrefix(c.Keys.Vault.Address, "https://") {
			errs = append(errs, errors.New("keys.vault.address must be an https:// URL with the vault provider"))
		}
		if c.Keys.Vault.Token == "" && (c.Keys.Vault.RoleID == "" || c.Keys.Vault.SecretID == "") {
			errs = append(errs, errors.New("keys.vault: set token (RELAIS_KEYS_VAULT_TOKEN), or role_id and secret_id, with the vault provider"))
		}
	case "pkcs11":
		if c.Keys.PKCS11.Module == "" || c.Keys.PKCS11.TokenLabel == "" {
			errs = append(errs, errors.New("keys.pkcs11: set module and token_label with the pkcs11 provider"))
		}
	default:
		errs = append(errs, fmt.Errorf("keys.provider %q: use file, vault or pkcs11", c.Keys.Provider))
	}
	if t := c.Keys.CacheTTL.D(); t < time.Second || t > time.Hour {
		errs = append(errs, errors.New("keys.cache_ttl must be between 1s and 1h"))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.AuditForward.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Monitor.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f AuditForward) validate() error {
	var errs []error
	check := func(key, raw string, schemes ...string) {
		if raw == "" {
			return
		}
		u, err := url.Parse(raw)
		if err == nil {
			for _, s := range schemes {
				if u.Scheme == s && u.Host != "" && u.User == nil {
					return
				}
			}
		}
		errs = append(errs, fmt.Errorf("audit_forward.%s: use a %s://host:port URL without credentials", key, strings.Join(schemes, ":// or ")))
	}
	check("syslog", f.Syslog, "tls", "tcp")
	check("gelf", f.GELF, "gelf+tls", "gelf+tcp", "gelf+https", "gelf+http")
	if d := f.Every.D(); d < 100*time.Millisecond || d > time.Hour {
		errs = append(errs, errors.New("audit_forward.every must be between 100ms and 1h"))
	}
	if f.Batch < 1 || f.Batch > 1000 {
		errs = append(errs, errors.New("audit_forward.batch must be between 1 and 1000"))
	}
	return errors.Join(errs...)
}

// Validate checks the supervision settings.
func (m *Monitor) Validate() error {
	var errs []error
	if m.ClockMaxOffset.D() <= 0 || m.ClockInterval.D() < time.Second || m.AlertInterval.D() < time.Second {
		errs = append(errs, errors.New("monitor.clock_max_offset must be positive, monitor.clock_interval and monitor.alert_interval at least 1s"))
	}
	if m.VolumeRatio < 2 || m.VolumeMin < 1 || m.ScheduleTolerancePct < 1 || m.ScheduleMin < 1 || m.ScheduleWindow.D() < time.Minute {
		errs = append(errs, errors.New("monitor: volume_ratio must be at least 2, volume_min, schedule_tolerance_pct and schedule_min at least 1, schedule_window at least 1m"))
	}
	if m.FailedLoginWindow.D() < time.Minute || m.FailedLoginsAccount < 1 || m.FailedLoginAccounts < 1 || m.FailedLoginsIP < 1 {
		errs = append(errs, errors.New("monitor: failed_login_window must be at least 1m and the failed login thresholds at least 1"))
	}
	if m.AdminGrantWindow.D() < time.Minute || m.CertWarn.D() <= 0 || m.IncidentDeadline.D() <= 0 {
		errs = append(errs, errors.New("monitor: admin_grant_window must be at least 1m, cert_warn and incident_deadline positive"))
	}
	if m.WebhookURL != "" && !strings.HasPrefix(m.WebhookURL, "https://") && !strings.HasPrefix(m.WebhookURL, "http://") {
		errs = append(errs, errors.New("monitor.webhook_url must be an http(s) URL"))
	}
	if m.WebhookURL != "" && m.WebhookSecretFile == "" {
		errs = append(errs, errors.New("monitor.webhook_url needs monitor.webhook_secret_file (the HMAC key that signs the notifications)"))
	}
	return errors.Join(errs...)
}

// Validate checks a policy: the seed's figures are floors where the
// platform must not go below a sane minimum.
func (p *Policy) Validate() error {
	var errs []error
	pw := p.Password
	switch pw.Preset {
	case "seed":
	case "nist":
		if pw.MinLength < 15 {
			errs = append(errs, errors.New("policy.password.min_length must be at least 15 with the nist preset"))
		}
	default:
		errs = append(errs, fmt.Errorf("policy.password.preset %q: use seed or nist", pw.Preset))
	}
	if pw.Algorithm != "pbkdf2-sha256" && pw.Algorithm != "argon2id" {
		errs = append(errs, fmt.Errorf("policy.password.algorithm %q: use pbkdf2-sha256 or argon2id", pw.Algorithm))
	}
	if pw.MinLength < 8 || pw.MinLength > 128 {
		errs = append(errs, errors.New("policy.password.min_length must be between 8 and 128"))
	}
	if pw.PrivilegedMinLength < pw.MinLength || pw.PrivilegedMinLength > 128 {
		errs = append(errs, errors.New("policy.password.privileged_min_length must be at least min_length and at most 128"))
	}
	if pw.MinClasses < 1 || pw.MinClasses > 4 {
		errs = append(errs, errors.New("policy.password.min_classes must be between 1 and 4"))
	}
	if pw.MaxAgeDays < 0 || pw.History < 0 || pw.History > 24 {
		errs = append(errs, errors.New("policy.password.max_age_days must be >= 0 and history between 0 and 24"))
	}
	if pw.PBKDF2Iterations < 600_000 {
		errs = append(errs, errors.New("policy.password.pbkdf2_iterations must be at least 600000 (OWASP, AUTH-9)"))
	}
	lo := p.Lockout
	if lo.MaxFailures < 1 || lo.MaxFailuresPerIP < 1 {
		errs = append(errs, errors.New("policy.lockout.max_failures and max_failures_per_ip must be at least 1"))
	}
	if lo.LockGrowth < 1 || lo.LockGrowth > 10 {
		errs = append(errs, errors.New("policy.lockout.lock_growth must be between 1 and 10"))
	}
	switch p.TwoFactor.Required {
	case "none", "admins", "all":
	default:
		errs = append(errs, fmt.Errorf("policy.two_factor.required %q: use none, admins or all", p.TwoFactor.Required))
	}
	for _, list := range [][]string{p.Network.UIAllow, p.Network.APIAllow} {
		for _, c := range list {
			if _, err := netip.ParsePrefix(c); err != nil {
				errs = append(errs, fmt.Errorf("policy.network: %q is not a CIDR prefix (e.g. 192.0.2.0/24 or 2001:db8::/32)", c))
			}
		}
	}
	if lo.Window.D() <= 0 || lo.LockDuration.D() <= 0 || lo.MaxLockDuration.D() < lo.LockDuration.D() {
		errs = append(errs, errors.New("policy.lockout durations must be positive and max_lock_duration >= lock_duration"))
	}
	s := p.Session
	if s.IdleTimeout.D() < time.Minute || s.AbsoluteLifetime.D() < s.IdleTimeout.D() {
		errs = append(errs, errors.New("policy.session.idle_timeout must be at least 1m and absolute_lifetime at least idle_timeout"))
	}
	a := p.Audit
	if a.Retention.D() < day || a.AccessRetention.D() < day {
		errs = append(errs, errors.New("policy.audit retentions must be at least 1 day"))
	}
	b := p.Backup
	if b.FullEvery.D() <= 0 || b.IncrementalEvery.D() <= 0 || b.IncrementalMaxBytes <= 0 || b.VerifyEvery.D() <= 0 || b.RestoreTestEvery.D() <= 0 {
		errs = append(errs, errors.New("policy.backup intervals and sizes must be positive"))
	}
	if mp := p.Monitor; mp.LatencyP95.D() < time.Millisecond || mp.AlertWindow.D() < time.Minute {
		errs = append(errs, errors.New("policy.monitor.latency_p95 must be at least 1ms and alert_window at least 1m"))
	}
	return errors.Join(errs...)
}

// MasterKeyPath returns the effective master key file path.
func (c *Config) MasterKeyPath() string {
	if c.MasterKeyFile != "" {
		return c.MasterKeyFile
	}
	return c.DataDir + string(os.PathSeparator) + "master.key"
}

// Masked returns a copy safe to print or log: passwords in URLs are replaced.
func (c Config) Masked() Config {
	m := c
	m.DatabaseURL = MaskURL(c.DatabaseURL)
	for _, p := range []*string{&m.Keys.Vault.Token, &m.Keys.Vault.SecretID, &m.Keys.PKCS11.PIN} {
		if *p != "" {
			*p = "xxxxx"
		}
	}
	m.TLS.Hosts = append([]string(nil), c.TLS.Hosts...)
	m.TLS.ACMEDomains = append([]string{}, c.TLS.ACMEDomains...)
	m.HTTP.ProxyProtocolFrom = append([]string{}, c.HTTP.ProxyProtocolFrom...)
	return m
}

// MaskURL hides the password of a URL, and any password= query parameter.
func MaskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL hidden)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// TOML renders the configuration as a TOML document (mask it first).
func (c Config) TOML() (string, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	return buf.String(), nil
}

// Keys lists every dotted setting key with its environment variable.
func Keys() []string {
	cfg := Default()
	fields := map[string]reflect.Value{}
	settingFields(reflect.ValueOf(&cfg).Elem(), "", fields)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

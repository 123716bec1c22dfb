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
	// MetricsListen is the Prometheus metrics address (plain HTTP; keep it
	// on a loopback or management network). Empty disables it.
	MetricsListen string `toml:"metrics_listen" json:"metrics_listen"`

	TLS    TLS    `toml:"tls" json:"tls"`
	Auth   Auth   `toml:"auth" json:"auth"`
	Log    Log    `toml:"log" json:"log"`
	HTTP   HTTP   `toml:"http" json:"http"`
	Backup Backup `toml:"backup" json:"backup"`
	Policy Policy `toml:"policy" json:"policy"`
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
		},
		Log:  Log{Level: "info", Format: "json"},
		Auth: Auth{TokenIssuer: "relais"},
		HTTP: HTTP{
			MaxBodyBytes:      1 << 20,
			MaxImportBytes:    1 << 30,
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			WriteTimeout:      Duration(120 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
		},
		Backup: Backup{KeepSets: 10},
		Policy: DefaultPolicy(),
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
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
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
	m.TLS.Hosts = append([]string(nil), c.TLS.Hosts...)
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

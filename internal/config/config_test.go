package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreTheSeedFigures(t *testing.T) {
	c := Default()
	p := c.Policy
	checks := []struct {
		name      string
		got, want any
	}{
		{"password min length", p.Password.MinLength, 12},
		{"privileged min length", p.Password.PrivilegedMinLength, 20},
		{"character classes", p.Password.MinClasses, 3},
		{"max age days", p.Password.MaxAgeDays, 90},
		{"history", p.Password.History, 5},
		{"pbkdf2 iterations", p.Password.PBKDF2Iterations, 600000},
		{"lock after failures", p.Lockout.MaxFailures, 5},
		{"audit retention", p.Audit.Retention.D(), 365 * 24 * time.Hour},
		{"access trace retention", p.Audit.AccessRetention.D(), 183 * 24 * time.Hour},
		{"full backup", p.Backup.FullEvery.D(), 72 * time.Hour},
		{"incremental backup", p.Backup.IncrementalEvery.D(), 2 * time.Hour},
		{"incremental volume", p.Backup.IncrementalMaxBytes, int64(1 << 30)},
		{"verify daily", p.Backup.VerifyEvery.D(), 24 * time.Hour},
		{"restore test", p.Backup.RestoreTestEvery.D(), 60 * 24 * time.Hour},
		{"listen", c.Listen, "127.0.0.1:8443"},
		{"metrics", c.MetricsListen, "127.0.0.1:9464"},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relais.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileThenEnvOverride(t *testing.T) {
	p := writeFile(t, `
data_dir = "/srv/relais"
listen = "0.0.0.0:443"
[policy.password]
min_length = 14
[policy.session]
idle_timeout = "20m"
[policy.audit]
retention = "400d"
`)
	cfg, err := Load(p, []string{"RELAIS_LISTEN=127.0.0.1:9443", "RELAIS_POLICY_LOCKOUT_MAX_FAILURES=3", "PATH=/bin", "RELAIS_CONFIG=ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/relais" || cfg.Listen != "127.0.0.1:9443" {
		t.Errorf("data_dir/listen: %q %q", cfg.DataDir, cfg.Listen)
	}
	if cfg.Policy.Password.MinLength != 14 || cfg.Policy.Lockout.MaxFailures != 3 {
		t.Errorf("policy: %+v", cfg.Policy)
	}
	if cfg.Policy.Session.IdleTimeout.D() != 20*time.Minute || cfg.Policy.Audit.Retention.D() != 400*24*time.Hour {
		t.Errorf("durations: %v %v", cfg.Policy.Session.IdleTimeout, cfg.Policy.Audit.Retention)
	}
	// Untouched values keep their defaults.
	if cfg.Policy.Password.History != 5 {
		t.Errorf("history lost its default: %d", cfg.Policy.Password.History)
	}
}

func TestBadInputIsNamed(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		env     []string
		wantErr string
	}{
		{"unknown key", "lisen = \"x\"\n", nil, `unknown setting "lisen"`},
		{"unknown nested key", "[policy.password]\nmin_lenght = 3\n", nil, `unknown setting "policy.password.min_lenght"`},
		{"bad toml", "listen = \n", nil, "relais.toml"},
		{"wrong type", "listen = 5\n", nil, "listen"},
		{"unknown env", "", []string{"RELAIS_LISTN=x"}, "RELAIS_LISTN is not a Relais setting"},
		{"bad env int", "", []string{"RELAIS_POLICY_PASSWORD_MIN_LENGTH=twelve"}, "not a whole number"},
		{"bad env duration", "", []string{"RELAIS_POLICY_SESSION_IDLE_TIMEOUT=soon"}, "not a duration"},
		{"weak iterations", "[policy.password]\npbkdf2_iterations = 1000\n", nil, "at least 600000"},
		{"cert without key", "[tls]\ncert = \"a.pem\"\n", nil, "go together"},
		{"ticket rotation too long", "[tls]\nticket_key_rotation = \"48h\"\n", nil, "24h"},
		{"bad database url", "database_url = \"mysql://x\"\n", nil, "postgres://"},
		{"bad log level", "[log]\nlevel = \"loud\"\n", nil, "log.level"},
		{"nist needs 15", "[policy.password]\npreset = \"nist\"\n", nil, "at least 15 with the nist preset"},
		{"unknown preset", "[policy.password]\npreset = \"lax\"\n", nil, "use seed or nist"},
		{"unknown algorithm", "[policy.password]\nalgorithm = \"md5\"\n", nil, "pbkdf2-sha256 or argon2id"},
		{"two factor enum", "[policy.two_factor]\nrequired = \"yes\"\n", nil, "none, admins or all"},
		{"bad cidr", "[policy.network]\napi_allow = [\"10.0.0.300/8\"]\n", nil, "not a CIDR prefix"},
		{"bad env cidr", "", []string{"RELAIS_POLICY_NETWORK_UI_ALLOW=192.0.2.0/24,nope"}, "not a CIDR prefix"},
		{"plain http public url", "public_url = \"http://relais.example\"\n", nil, "public_url must be an https:// URL"},
		{"public url with query", "public_url = \"https://relais.example/?a=b\"\n", nil, "public_url must be an https:// URL"},
		{"syslog scheme", "[audit_forward]\nsyslog = \"udp://logs:514\"\n", nil, "audit_forward.syslog"},
		{"gelf credentials", "[audit_forward]\ngelf = \"gelf+https://u:p@graylog/gelf\"\n", nil, "without credentials"},
		{"forward batch", "[audit_forward]\nbatch = 0\n", nil, "audit_forward.batch"},
		{"page size not a power of two", "[sqlite]\npage_size = 5000\n", nil, "sqlite.page_size"},
		{"page size too large", "", []string{"RELAIS_SQLITE_PAGE_SIZE=131072"}, "sqlite.page_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			_, err := Load(path, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	if err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("want an error pointing at --config, got %v", err)
	}
}

func TestMaskedHidesPasswords(t *testing.T) {
	c := Default()
	c.DatabaseURL = "postgres://relais:s3cr3t-pw@db.example:5432/relais?sslmode=verify-full&password=other-secret"
	out, err := c.Masked().TOML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cr3t-pw") || strings.Contains(out, "other-secret") {
		t.Fatalf("secret leaked:\n%s", out)
	}
	if !strings.Contains(out, "db.example") || !strings.Contains(out, "min_length = 12") {
		t.Fatalf("masked output lost non-secret settings:\n%s", out)
	}
	// The original is untouched.
	if !strings.Contains(c.DatabaseURL, "s3cr3t-pw") {
		t.Fatal("Masked modified its receiver")
	}
}

func TestPrintedConfigLoadsBack(t *testing.T) {
	out, err := Default().TOML()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(writeFile(t, out), nil)
	if err != nil {
		t.Fatalf("printed config does not load back: %v\n%s", err, out)
	}
	if cfg.Policy.Backup.RestoreTestEvery != Default().Policy.Backup.RestoreTestEvery {
		t.Fatal("round trip changed a value")
	}
}

func TestEveryKeyHasAnEnvVariable(t *testing.T) {
	for _, k := range Keys() {
		c := Default()
		env := EnvName(k)
		if !strings.HasPrefix(env, "RELAIS_") || strings.Contains(env, ".") {
			t.Errorf("%s -> %s", k, env)
		}
		if err := c.Set(k, "1"); err != nil && strings.Contains(err.Error(), "unknown setting") {
			t.Errorf("Set(%s): %v", k, err)
		}
	}
}

func TestDurationText(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "2h": 2 * time.Hour, "1h30m": 90 * time.Minute} {
		d, err := ParseDuration(in)
		if err != nil || d.D() != want {
			t.Errorf("%s: %v %v", in, d, err)
		}
	}
	for _, bad := range []string{"", "-1h", "3x", "d", "-2d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The shipped example configuration must load and equal the defaults.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "deploy", "relais.example.toml"), nil)
	if err != nil {
		t.Fatalf("deploy/relais.example.toml: %v", err)
	}
	if !reflect.DeepEqual(cfg.Policy, Default().Policy) || cfg.Listen != Default().Listen {
		t.Fatal("the example configuration drifted from the defaults")
	}
}

// The several-node example's settings must load.
func TestSeveralNodesConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "deploy", "several-nodes", "relais.toml"), nil)
	if err != nil {
		t.Fatalf("deploy/several-nodes/relais.toml: %v", err)
	}
	if cfg.Listen != "0.0.0.0:8443" || cfg.TLS.Cert == "" {
		t.Fatalf("unexpected settings: %+v", cfg)
	}
}

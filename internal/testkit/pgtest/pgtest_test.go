package pgtest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// shared is the package-wide server, started by TestMain the way other
// packages are meant to (see the package documentation).
var (
	shared    *Server
	sharedErr error
)

func TestMain(m *testing.M) {
	var stop func()
	shared, stop, sharedErr = StartMain(Options{})
	if sharedErr != nil && !errors.Is(sharedErr, ErrNoBinaries) {
		fmt.Fprintln(os.Stderr, sharedErr)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func sharedServer(t *testing.T) *Server {
	t.Helper()
	if shared == nil {
		SkipOrFail(t, sharedErr)
	}
	return shared
}

func connect(t *testing.T, ctx context.Context, connURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatalf("connect %s: %v", connURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestAppRoleIsSubjectToRLS proves the role NewDatabase hands out is neither
// superuser nor BYPASSRLS, so row-level security policies filter its rows
// even on tables it owns (with FORCE ROW LEVEL SECURITY).
func TestAppRoleIsSubjectToRLS(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	ctx := testContext(t)
	conn := connect(t, ctx, srv.NewDatabase(t))

	var isSuper string
	if err := conn.QueryRow(ctx, "SELECT current_setting('is_superuser')").Scan(&isSuper); err != nil {
		t.Fatal(err)
	}
	if isSuper != "off" {
		t.Fatalf("is_superuser = %q, want off", isSuper)
	}
	var rolSuper, rolBypass bool
	if err := conn.QueryRow(ctx,
		"SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
	).Scan(&rolSuper, &rolBypass); err != nil {
		t.Fatal(err)
	}
	if rolSuper || rolBypass {
		t.Fatalf("rolsuper=%v rolbypassrls=%v, want both false", rolSuper, rolBypass)
	}

	for _, stmt := range []string{
		`CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`,
		`ALTER TABLE notes ENABLE ROW LEVEL SECURITY`,
		`ALTER TABLE notes FORCE ROW LEVEL SECURITY`,
		`CREATE POLICY tenant_isolation ON notes USING (tenant_id = current_setting('relais.tenant_id', true))`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	setTenant := func(id string) {
		t.Helper()
		if _, err := conn.Exec(ctx, "SELECT set_config('relais.tenant_id', $1, false)", id); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	setTenant("a")
	if _, err := conn.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ('a', 'hello')"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("tenant a sees %d rows, want 1", n)
	}

	setTenant("b")
	if n := count(); n != 0 {
		t.Fatalf("tenant b sees %d rows, want 0 (RLS not applied to the app role)", n)
	}
	// The policy's USING clause doubles as WITH CHECK: tenant b cannot
	// write tenant a's rows either.
	_, err := conn.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ('a', 'sneaky')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("insert of tenant a's row as tenant b: err = %v, want SQLSTATE 42501 (RLS violation)", err)
	}

	// No setting at all: current_setting(..., true) is NULL, nothing matches.
	if _, err := conn.Exec(ctx, "RESET relais.tenant_id"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("without a tenant %d rows are visible, want 0", n)
	}

	// The superuser, by contrast, bypasses RLS.
	dbName := conn.Config().Database
	su := connect(t, ctx, srv.SuperuserURL(dbName))
	var n int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("superuser sees %d rows, want 1", n)
	}
}

// TestNewDatabaseConcurrent creates databases on the shared server from
// parallel subtests and checks they are isolated and dropped afterwards.
func TestNewDatabaseConcurrent(t *testing.T) {
	t.Parallel()
	srv := sharedServer(t)
	ctx := testContext(t)
	names := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for i := range 4 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				conn := connect(t, ctx, srv.NewDatabase(t))
				if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
					t.Fatal(err)
				}
				var db, user string
				if err := conn.QueryRow(ctx, "SELECT current_database(), current_user").Scan(&db, &user); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(db, "t_testnewdatabaseconcurrent_") {
					t.Errorf("database name %q does not derive from the test name", db)
				}
				names <- db
			})
		}
	})
	close(names)
	su := connect(t, ctx, srv.SuperuserURL("postgres"))
	for db := range names {
		var exists bool
		if err := su.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test ended", db)
		}
	}
	var leftoverRoles int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 't_testnewdatabaseconcurrent_%'").Scan(&leftoverRoles); err != nil {
		t.Fatal(err)
	}
	if leftoverRoles != 0 {
		t.Errorf("%d app roles left after their tests ended", leftoverRoles)
	}
}

// TestTLS checks the TCP listener of a TLS server: verify-full with the
// server's CA works, a foreign CA is rejected, and plaintext is refused by
// pg_hba.conf.
func TestTLS(t *testing.T) {
	t.Parallel()
	srv := Start(t, Options{TLS: true})
	ctx := testContext(t)

	appURL := srv.NewDatabase(t)
	cfg, err := pgx.ParseConfig(appURL)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "127.0.0.1" || cfg.TLSConfig == nil || srv.CAFile() == "" ||
		!strings.Contains(appURL, "sslmode=verify-full") {
		t.Fatalf("app URL %q is not verify-full TCP (CAFile %q)", appURL, srv.CAFile())
	}

	t.Run("verify-full with server CA", func(t *testing.T) {
		conn := connect(t, ctx, appURL)
		var ssl bool
		var version string
		if err := conn.QueryRow(ctx,
			"SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
		).Scan(&ssl, &version); err != nil {
			t.Fatal(err)
		}
		if !ssl || (version != "TLSv1.2" && version != "TLSv1.3") {
			t.Fatalf("pg_stat_ssl: ssl=%v version=%q", ssl, version)
		}
		t.Logf("connected over %s", version)
	})

	t.Run("verify-full with foreign CA fails", func(t *testing.T) {
		other, err := newCA("some other CA")
		if err != nil {
			t.Fatal(err)
		}
		caFile := filepath.Join(t.TempDir(), "other-ca.crt")
		if err := os.WriteFile(caFile, other.certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, withQuery(t, appURL, "sslrootcert", caFile))
		if err == nil {
			conn.Close(ctx)
			t.Fatal("connection with a foreign CA succeeded")
		}
		var unknownAuthority x509.UnknownAuthorityError
		if !errors.As(err, &unknownAuthority) {
			t.Fatalf("err = %v, want a certificate (unknown authority) error", err)
		}
		t.Logf("rejected as expected: %v", err)
	})

	t.Run("sslmode=disable refused", func(t *testing.T) {
		// Credentials are valid (taken from the app URL); only the lack of
		// TLS makes pg_hba.conf refuse.
		conn, err := pgx.Connect(ctx, withQuery(t, appURL, "sslmode", "disable"))
		if err == nil {
			conn.Close(ctx)
			t.Fatal("plaintext TCP connection succeeded")
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28000" || !strings.Contains(pgErr.Message, "no pg_hba.conf entry") {
			t.Fatalf("err = %v, want SQLSTATE 28000 no pg_hba.conf entry", err)
		}
		t.Logf("refused as expected: %v", err)
	})

	t.Run("wrong password refused", func(t *testing.T) {
		user := cfg.User
		conn, err := pgx.Connect(ctx, srv.TCPURL(cfg.Database, user, "not-the-password", "verify-full"))
		if err == nil {
			conn.Close(ctx)
			t.Fatal("connection with a wrong password succeeded")
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("err = %v, want SQLSTATE 28P01 (password authentication failed)", err)
		}
	})
}

// TestStartStop checks that stopping removes everything and is idempotent,
// and that the socket-only server has no TLS.
func TestStartStop(t *testing.T) {
	t.Parallel()
	s, stop, err := StartMain(Options{})
	if err != nil {
		if errors.Is(err, ErrNoBinaries) {
			SkipOrFail(t, err)
		}
		t.Fatal(err)
	}
	if s.CAFile() != "" {
		t.Errorf("CAFile() = %q without TLS", s.CAFile())
	}
	if n := len(filepath.Join(s.dir, ".s.PGSQL.65535")); n > maxSocketPath {
		t.Errorf("socket path is %d bytes", n)
	}
	if _, err := os.Stat(filepath.Join(s.dir, fmt.Sprintf(".s.PGSQL.%d", s.port))); err != nil {
		t.Errorf("unix socket: %v", err)
	}
	pid := s.cmd.Process.Pid
	stop()
	stop()
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("server dir still there after stop: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
		t.Errorf("postgres (pid %d) still running after stop", pid)
	}
}

func TestFindBinaries(t *testing.T) {
	b, err := findBinaries()
	if errors.Is(err, ErrNoBinaries) {
		SkipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initdb=%s postgres=%s", b.initdb, b.postgres)
	if !isExecutable(b.initdb) || !isExecutable(b.postgres) {
		t.Fatalf("not executable: %+v", b)
	}
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"9.6", "10", true}, {"15", "16", true}, {"16", "15", false}, {"17", "17", false}, {"10", "9.6", false},
	} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if _, ok := parseVersion("main"); ok {
		t.Error(`parseVersion("main") ok`)
	}
}

// TestFindBinariesDebianLayout checks the fallback when nothing is on PATH:
// the highest version under the lib dir that has both programs wins.
func TestFindBinariesDebianLayout(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	lib := t.TempDir()
	if _, err := findBinariesIn(lib); !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("empty lib dir: err = %v, want ErrNoBinaries", err)
	}
	if _, err := findBinariesIn(filepath.Join(lib, "missing")); !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("missing lib dir: err = %v, want ErrNoBinaries", err)
	}
	for _, f := range []string{
		"9.6/bin/initdb", "9.6/bin/postgres",
		"13/bin/initdb", "13/bin/postgres",
		"16/bin/initdb", // incomplete: no postgres
		"main/bin/initdb", "main/bin/postgres",
	} {
		path := filepath.Join(lib, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := findBinariesIn(lib)
	if err != nil {
		t.Fatal(err)
	}
	want := binaries{initdb: filepath.Join(lib, "13/bin/initdb"), postgres: filepath.Join(lib, "13/bin/postgres")}
	if b != want {
		t.Fatalf("got %+v, want %+v", b, want)
	}
}

// fakeTB records how SkipOrFail ends a test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skipf(format string, a ...any)  { f.skipped = fmt.Sprintf(format, a...) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }

func TestSkipOrFail(t *testing.T) {
	t.Setenv("CI", "")
	var tb fakeTB
	SkipOrFail(&tb, ErrNoBinaries)
	if tb.skipped == "" || tb.failed != "" || !strings.Contains(tb.skipped, "apt-get install postgresql") {
		t.Errorf("outside CI: skipped=%q failed=%q", tb.skipped, tb.failed)
	}
	t.Setenv("CI", "true")
	tb = fakeTB{}
	SkipOrFail(&tb, ErrNoBinaries)
	if tb.failed == "" || tb.skipped != "" || !strings.Contains(tb.failed, "apt-get install postgresql") {
		t.Errorf("CI=true: skipped=%q failed=%q", tb.skipped, tb.failed)
	}
}

func TestSanitizeIdent(t *testing.T) {
	if got := sanitizeIdent("TestX/sub-test #1", 63); got != "testx_sub_test__1" {
		t.Errorf("got %q", got)
	}
	if got := sanitizeIdent(strings.Repeat("a", 100), 40); len(got) != 40 {
		t.Errorf("len %d", len(got))
	}
}

// withQuery returns rawURL with query parameter key set to value.
func withQuery(t *testing.T, rawURL, key, value string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

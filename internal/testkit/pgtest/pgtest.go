// Package pgtest runs throwaway PostgreSQL servers for tests.
//
// Each Server is its own cluster (initdb) in a fresh temporary directory,
// started from the PostgreSQL server binaries installed on the machine
// (PATH, or Debian's /usr/lib/postgresql/<version>/bin). It listens on a
// unix socket inside that directory and, with Options.TLS, also on
// 127.0.0.1 at a free port with TLS required.
//
// One server per test:
//
//	srv := pgtest.Start(t, pgtest.Options{})
//	url := srv.NewDatabase(t) // app role: not superuser, subject to RLS
//
// One server per package, kept by the caller (pgtest has no package state):
//
//	var srv *pgtest.Server
//	var srvErr error
//
//	func TestMain(m *testing.M) {
//		var stop func()
//		srv, stop, srvErr = pgtest.StartMain(pgtest.Options{})
//		if srvErr != nil && !errors.Is(srvErr, pgtest.ErrNoBinaries) {
//			fmt.Fprintln(os.Stderr, srvErr)
//			os.Exit(1)
//		}
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) {
//		if srv == nil {
//			pgtest.SkipOrFail(t, srvErr)
//		}
//		url := srv.NewDatabase(t)
//		...
//	}
//
// When the test process runs as root, initdb and postgres run as the
// "postgres" account (or "nobody" if that does not exist), since PostgreSQL
// refuses to run as root.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configures a Server.
type Options struct {
	// TLS additionally listens on 127.0.0.1 (free port) with ssl=on and
	// ssl_min_protocol_version=TLSv1.2, using a server certificate for
	// 127.0.0.1/localhost issued by a freshly generated private CA (ECDSA
	// P-256) whose certificate is at CAFile. pg_hba.conf allows TCP only
	// over TLS (hostssl) with scram-sha-256.
	TLS bool
}

// Superuser is the name of the bootstrap superuser of every Server.
const Superuser = "postgres"

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	// maxSocketPath keeps dir/.s.PGSQL.<port> within the unix socket path
	// limit (107 bytes on Linux, 103 on macOS).
	maxSocketPath = 100
)

// Server is a throwaway PostgreSQL cluster in a temp dir, listening on a
// unix socket in that dir (and, with TLS, on 127.0.0.1 with a free port).
// Its methods are safe for concurrent use.
type Server struct {
	dir     string // temp dir: socket, log, TLS files, data/
	dataDir string
	logFile string
	port    int
	tls     bool
	files   tlsFiles
	version string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the postgres process has exited
	waitErr error         // cmd.Wait result, valid after exited is closed

	stopOnce sync.Once
	stopErr  error
	stopped  atomic.Bool
}

// Start starts a server for the calling test (or benchmark) and registers a
// t.Cleanup that stops it and removes its directory. Parallel tests may each
// call Start; every call gets its own server.
//
// If the PostgreSQL binaries are missing the test is skipped, except when
// the environment variable CI is "true", where it fails instead (see
// SkipOrFail).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(opts)
	if err != nil {
		if errors.Is(err, ErrNoBinaries) {
			SkipOrFail(t, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("pgtest: stopping server: %v", err)
		}
	})
	t.Logf("pgtest: PostgreSQL %s running in %s", s.version, s.dir)
	return s
}

// StartMain starts a server to be shared by a whole package; call it from
// TestMain and keep the *Server in a variable of the test package. The
// returned stop function (never nil, safe to call more than once) stops the
// server and removes its directory; call it after m.Run. If the binaries are
// missing the error wraps ErrNoBinaries.
func StartMain(opts Options) (*Server, func(), error) {
	s, err := start(opts)
	if err != nil {
		return nil, func() {}, err
	}
	return s, func() {
		if err := s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping server: %v\n", err)
		}
	}, nil
}

// SkipOrFail ends the test because no server is available (err is typically
// the error StartMain returned): with t.Skip normally, with t.Fatal when the
// environment variable CI is "true", so that CI cannot silently skip the
// PostgreSQL tests.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		err = errors.New("pgtest: no PostgreSQL server available")
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: PostgreSQL tests must not be skipped in CI)", err)
		return
	}
	t.Skipf("skipping: %v", err)
}

// SuperuserURL returns a pgx URL for the superuser and database db over the
// unix socket.
func (s *Server) SuperuserURL(db string) string {
	return s.socketURL(url.User(Superuser), db)
}

func (s *Server) socketURL(user *url.Userinfo, db string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   user,
		Path:   "/" + db,
		RawQuery: url.Values{
			"host":    {s.dir},
			"port":    {strconv.Itoa(s.port)},
			"sslmode": {"disable"}, // TLS does not apply to unix sockets
		}.Encode(),
	}
	return u.String()
}

// TCPURL returns a pgx URL for 127.0.0.1 at the server's port. With sslmode
// verify-ca or verify-full, sslrootcert is set to CAFile. Only a server
// started with Options.TLS listens on TCP, and it accepts TLS connections
// only.
func (s *Server) TCPURL(db, user, password, sslmode string) string {
	q := url.Values{}
	if sslmode != "" {
		q.Set("sslmode", sslmode)
	}
	if (sslmode == "verify-ca" || sslmode == "verify-full") && s.tls {
		q.Set("sslrootcert", s.files.caFile)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// CAFile returns the path of the PEM certificate of the CA that issued the
// server certificate, or "" without Options.TLS.
func (s *Server) CAFile() string {
	if !s.tls {
		return ""
	}
	return s.files.caFile
}

// CreateDatabase creates database name owned by a fresh login role that is
// NOSUPERUSER and NOBYPASSRLS (so row-level security applies to it) with a
// random password, and returns a pgx URL connecting as that role: over TCP
// with sslmode=verify-full and the server's CA when the server has TLS,
// otherwise over the unix socket.
func (s *Server) CreateDatabase(ctx context.Context, name string) (appURL string, err error) {
	appURL, _, err = s.createDatabase(ctx, name)
	return appURL, err
}

func (s *Server) createDatabase(ctx context.Context, name string) (appURL, role string, err error) {
	if name == "" || len(name) > 63 || strings.ContainsRune(name, 0) {
		return "", "", fmt.Errorf("pgtest: invalid database name %q (1 to 63 bytes)", name)
	}
	role = sanitizeIdent(name, 40) + "_app_" + randomHex(4)
	password := randomHex(16)

	conn, err := pgx.Connect(ctx, s.SuperuserURL("postgres"))
	if err != nil {
		return "", "", fmt.Errorf("pgtest: connecting as superuser: %w", err)
	}
	defer conn.Close(context.Background())

	qRole := pgx.Identifier{role}.Sanitize()
	// The password is hex, so inlining it is safe; DDL takes no parameters.
	if _, err := conn.Exec(ctx, fmt.Sprintf(
		"CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '%s'",
		qRole, password)); err != nil {
		return "", "", fmt.Errorf("pgtest: creating role %s: %w", role, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s",
		pgx.Identifier{name}.Sanitize(), qRole)); err != nil {
		_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+qRole)
		return "", "", fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	if s.tls {
		return s.TCPURL(name, role, password, "verify-full"), role, nil
	}
	return s.socketURL(url.UserPassword(role, password), name), role, nil
}

// NewDatabase creates a database with a unique name derived from the test
// name as CreateDatabase does, drops it and its role when the test ends, and
// returns the app role's URL. It fails the test on error.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "t_" + sanitizeIdent(t.Name(), 40) + "_" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	appURL, role, err := s.createDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.stopped.Load() {
			return // the whole cluster is gone already
		}
		if err := s.dropDatabase(name, role); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return appURL
}

func (s *Server) dropDatabase(name, role string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.SuperuserURL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting as superuser to drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	// FORCE terminates sessions the test left open.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
		return fmt.Errorf("dropping role %s: %w", role, err)
	}
	return nil
}

// start creates, initializes and starts a cluster.
func start(opts Options) (_ *Server, err error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := makeDir(as != nil)
	if err != nil {
		return nil, err
	}
	s := &Server{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "postgres.log"),
		tls:     opts.TLS,
	}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()

	if opts.TLS {
		if s.files, err = writeTLS(dir); err != nil {
			return nil, err
		}
	}
	if err := chownAll(dir, as); err != nil {
		return nil, fmt.Errorf("pgtest: handing %s to user %s: %w", dir, as.name, err)
	}

	initdb := exec.Command(bins.initdb, "-D", s.dataDir, "-U", Superuser,
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions") // #nosec G204 -- initdb is found by findBinaries (PATH or the Debian PostgreSQL directory); the arguments are fixed or paths this package made
	initdb.Dir = dir
	initdb.Env = serverEnv()
	initdb.SysProcAttr = as.sysProcAttr()
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: %s failed%s: %w\n%s", bins.initdb, asSuffix(as), err, tail(string(out), 30))
	}

	// Local (unix socket) connections are trusted; TCP only over TLS and
	// with a password.
	hba := "local all all trust\n"
	if opts.TLS {
		hba += "hostssl all all 127.0.0.1/32 scram-sha-256\n"
	}
	hbaFile := filepath.Join(s.dataDir, "pg_hba.conf")
	if err := os.WriteFile(hbaFile, []byte(hba), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := chownAll(hbaFile, as); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}

	// With TCP, the free port we pick may be taken by someone else before
	// postgres binds it; retry with another one.
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		err = s.launch(bins, as)
		if err == nil {
			return s, nil
		}
		if !opts.TLS || attempt == 3 || !s.addrInUse() {
			return nil, err
		}
	}
}

// launch starts postgres on s.port and waits until it accepts connections.
func (s *Server) launch(bins binaries, as *runAs) error {
	listen := ""
	if s.tls {
		listen = "127.0.0.1"
	}
	args := []string{
		"-D", s.dataDir,
		"-k", s.dir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=" + listen,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=100",
		"-c", "shared_buffers=32MB",
	}
	if s.tls {
		args = append(args,
			"-c", "ssl=on",
			"-c", "ssl_cert_file="+s.files.certFile,
			"-c", "ssl_key_file="+s.files.keyFile,
			"-c", "ssl_min_protocol_version=TLSv1.2",
		)
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close() // the child has its own descriptor

	cmd := exec.Command(bins.postgres, args...) // #nosec G204 -- postgres is found by findBinaries beside initdb; args are built above from fixed settings and paths this package made
	cmd.Dir = s.dir
	cmd.Env = serverEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = as.sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: starting %s%s: %w", bins.postgres, asSuffix(as), err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var lastErr error
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, s.SuperuserURL("postgres"))
		if err == nil {
			err = conn.QueryRow(attemptCtx, "SHOW server_version").Scan(&s.version)
			_ = conn.Close(context.Background()) // a failed close of this probe connection changes nothing
		}
		attemptCancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during startup (%v)%s\n%s", s.waitErr, asSuffix(as), s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres not ready after %v: %v\n%s", startTimeout, lastErr, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop shuts the server down (SIGINT: fast shutdown; SIGKILL if that takes
// too long) and removes its directory. Idempotent.
func (s *Server) stop() error {
	s.stopOnce.Do(func() {
		s.stopped.Store(true)
		var errs []error
		if s.cmd != nil {
			select {
			case <-s.exited:
				errs = append(errs, fmt.Errorf("postgres had already exited (%v)\n%s", s.waitErr, s.logTail()))
			default:
				_ = s.cmd.Process.Signal(os.Interrupt)
				select {
				case <-s.exited:
					if s.waitErr != nil {
						errs = append(errs, fmt.Errorf("postgres shutdown: %v\n%s", s.waitErr, s.logTail()))
					}
				case <-time.After(stopTimeout):
					_ = s.cmd.Process.Kill()
					<-s.exited
					errs = append(errs, fmt.Errorf("postgres did not shut down within %v; killed\n%s", stopTimeout, s.logTail()))
				}
			}
		}
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, err)
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

func (s *Server) addrInUse() bool {
	b, _ := os.ReadFile(s.logFile)
	return strings.Contains(string(b), "Address already in use") ||
		strings.Contains(string(b), "could not bind IPv4 address")
}

// logTail returns the last lines of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return "server log (" + s.logFile + ", tail):\n" + tail(string(b), 30)
}

func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func asSuffix(as *runAs) string {
	if as == nil {
		return ""
	}
	return " as user " + as.name + " (test process is root)"
}

// makeDir creates the server's temp dir, short enough for the unix socket
// path and, when the server runs as another user, reachable by it.
func makeDir(otherUser bool) (string, error) {
	base := os.TempDir()
	if otherUser && !othersCanTraverse(filepath.Join(base, "x")) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "pg")
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if len(filepath.Join(dir, ".s.PGSQL.65535")) > maxSocketPath && base != "/tmp" {
		_ = os.Remove(dir)
		if dir, err = os.MkdirTemp("/tmp", "pg"); err != nil {
			return "", fmt.Errorf("pgtest: %w", err)
		}
	}
	return dir, nil
}

// freePort asks the kernel for a currently unused TCP port on 127.0.0.1. It
// is also used for socket-only servers, where it just makes the socket name
// and PostgreSQL's shared memory key differ between clusters.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverEnv is the environment minus PG* variables (PGDATA, PGPORT, ...),
// which would otherwise leak the developer's settings into the cluster.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// sanitizeIdent lowercases s and keeps [a-z0-9_], at most max bytes.
func sanitizeIdent(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= max {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// binary is the relais executable built once for this package's tests:
// the tests run it as an operator would, as a separate process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relais-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "relais")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build relais:", err)
		os.Exit(1)
	}
	code := storetest.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the environment without any RELAIS_ variable.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAIS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

type result struct {
	code           int
	stdout, stderr string
}

func relais(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run relais %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a running `relais serve` process.
type server struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	lines  chan string
	stderr *bytes.Buffer
}

func startServe(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	// Tests that choose their ports get no SFTP listener unless they ask
	// for one, so that they never compete for 127.0.0.1:2222.
	if len(args) > 0 && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--sftp-listen") }) {
		args = append(args, "--sftp-listen=")
	}
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, lines: make(chan string, 100), stderr: &errb}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return s
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The test checks the certificate by its fingerprint instead.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, // #nosec G402 -- pinned by fingerprint below
	}}
}

// TestServeOnAFreshMachine: `relais serve` with no flags, in an empty
// directory, serves https://127.0.0.1:8443/healthz within 5 s with the
// self-signed certificate whose fingerprint it printed; a CLI command works
// against the same data directory while it runs; SIGTERM stops it cleanly.
func TestServeOnAFreshMachine(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("HOME=" + dir)
	start := time.Now()
	srv := startServe(t, dir, env)
	client := insecureClient()
	var res *http.Response
	var err error
	for time.Since(start) < 5*time.Second {
		res, err = client.Get("https://127.0.0.1:8443/healthz")
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no answer on https://127.0.0.1:8443/healthz within 5 s: %v\nstderr: %s", err, srv.stderr)
	}
	elapsed := time.Since(start)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "ok") {
		t.Fatalf("healthz: %d %s", res.StatusCode, body)
	}
	t.Logf("healthy after %v", elapsed)
	if res.TLS == nil || len(res.TLS.PeerCertificates) == 0 {
		t.Fatal("not TLS")
	}
	sum := sha256.Sum256(res.TLS.PeerCertificates[0].Raw)
	var fp string
	for line := range srv.lines {
		if after, ok := strings.CutPrefix(line, "TLS certificate SHA-256 fingerprint: "); ok {
			fp = after
			break
		}
	}
	want := strings.ToUpper(strings.ReplaceAll(fmt.Sprintf("% x", sum[:]), " ", ":"))
	if fp != want {
		t.Fatalf("printed fingerprint %q, served certificate %q", fp, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "relais-data", "relais.db")); err != nil {
		t.Fatalf("default data directory not used: %v", err)
	}

	// A CLI command against the same data directory while serve runs.
	r := relais(t, dir, env, "", "tenant", "create", "--name", "Acme", "--slug", "acme", "--json")
	if r.code != 0 {
		t.Fatalf("tenant create while serving: %d %s", r.code, r.stderr)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created["slug"] != "acme" {
		t.Fatalf("--json output: %v %s", err, r.stdout)
	}
	res, err = client.Get("https://127.0.0.1:8443/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v", err)
	}
	res.Body.Close()
	// Metrics on their own listener.
	mres, err := http.Get("http://127.0.0.1:9464/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	if !strings.Contains(string(mbody), `relais_http_requests_total{code="200",method="GET",route="GET /healthz"}`) {
		t.Fatalf("metrics lack the healthz counter")
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- srv.cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM: %s", err, srv.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if !strings.Contains(srv.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged: %s", srv.stderr)
	}
}

func TestPlainHTTPOnlyRedirects(t *testing.T) {
	dir := t.TempDir()
	https, redirect := freePort(t), freePort(t)
	srv := startServe(t, dir, cleanEnv(), "--listen", https, "--redirect-listen", redirect, "--metrics-listen", "")
	waitHealthy(t, srv, "https://"+https)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Post("http://"+redirect+"/api/v1/tenants?x=1", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	_, port, _ := net.SplitHostPort(https)
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "https://127.0.0.1:"+port+"/api/v1/tenants?x=1" {
		t.Fatalf("redirect: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP")
	}
	// Plain HTTP to the HTTPS port is not served.
	if res, err := http.Get("http://" + https + "/healthz"); err == nil && res.StatusCode == 200 {
		t.Fatal("the HTTPS port answered plain HTTP")
	}
}

func waitHealthy(t *testing.T, srv *server, base string) {
	t.Helper()
	client := insecureClient()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := client.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server at %s not healthy: %s", base, srv.stderr)
}

func TestPostgresMode(t *testing.T) {
	url := storetest.PostgresURL(t)
	dir := t.TempDir()
	env := cleanEnv("RELAIS_DATABASE_URL=" + url)
	if r := relais(t, dir, env, "", "migrate"); r.code != 0 || !strings.Contains(r.stdout, "PostgreSQL") {
		t.Fatalf("migrate: %+v", r)
	}
	if strings.Contains(relais(t, dir, env, "", "migrate").stdout, "password=") {
		t.Fatal("password printed")
	}
	if r := relais(t, dir, env, "", "tenant", "create", "--name", "Acme", "--slug", "acme"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	https := freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	waitHealthy(t, srv, "https://"+https)
	res, err := insecureClient().Get("https://" + https + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "postgres") {
		t.Fatalf("readyz: %s", body)
	}
	if r := relais(t, dir, env, "", "tenant", "list", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"acme"`) {
		t.Fatalf("list: %+v", r)
	}
}

func TestCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv()
	badConfig := filepath.Join(dir, "bad.toml")
	_ = os.WriteFile(badConfig, []byte("lisen = \"x\"\n"), 0o600)
	unreadable := filepath.Join(dir, "nope.toml")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
		// fresh: the data directory must not exist afterwards.
		fresh bool
	}{
		{"unknown flag", env, []string{"serve", "--lisen", "x"}, 2, "relais serve --help", true},
		{"unknown command", env, []string{"serv"}, 2, "unknown command", true},
		{"missing tenant flags", env, []string{"tenant", "create", "--name", "A"}, 2, "--slug are required", true},
		{"extra argument", env, []string{"tenant", "show"}, 2, "give the tenant's slug or id", true},
		{"unknown setting", env, []string{"--config", badConfig, "tenant", "list"}, 1, `unknown setting "lisen"`, true},
		{"unreadable config", env, []string{"--config", unreadable, "tenant", "list"}, 1, "check the --config path", true},
		{"unknown env", cleanEnv("RELAIS_LISTN=x"), []string{"tenant", "list"}, 1, "RELAIS_LISTN is not a Relais setting", true},
		{"bad database url", cleanEnv("RELAIS_DATABASE_URL=mysql://u:pw@h/db"), []string{"tenant", "list"}, 1, "postgres://", true},
		{"unreachable database", cleanEnv("RELAIS_DATABASE_URL=postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2"), []string{"tenant", "list"}, 1, "check RELAIS_DATABASE_URL", true},
		{"cert without key", env, []string{"serve", "--tls-cert", "x.pem"}, 1, "go together", true},
		{"missing cert files", env, []string{"serve", "--tls-cert", "x.pem", "--tls-key", "y.pem", "--listen", "127.0.0.1:0", "--metrics-listen", ""}, 1, "--tls-cert", true},
		{"port in use", env, []string{"serve", "--listen", busy.Addr().String(), "--metrics-listen", ""}, 1, "already in use", false},
		{"metrics port in use", env, []string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", busy.Addr().String()}, 1, "--metrics-listen", false},
		{"bad slug", env, []string{"tenant", "create", "--name", "A", "--slug", "Not A Slug"}, 1, "slug", false},
		{"unknown tenant", env, []string{"tenant", "show", "ghost"}, 1, "relais tenant list", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wd := t.TempDir()
			r := relais(t, wd, tc.env, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "relais: ") ||
				strings.Count(r.stderr, "relais: ") != 1 {
				t.Errorf("error is not a one-line `relais: ...` message: %q", r.stderr)
			}
			for _, secret := range []string{"hunter2", ":pw@"} {
				if strings.Contains(r.stderr, secret) {
					t.Errorf("error leaks a secret: %s", r.stderr)
				}
			}
			if tc.fresh {
				if _, err := os.Stat(filepath.Join(wd, "relais-data")); !os.IsNotExist(err) {
					t.Errorf("a failed command created the data directory")
				}
			}
		})
	}
}

func TestConfigPrint(t *testing.T) {
	dir := t.TempDir()
	r := relais(t, dir, cleanEnv("RELAIS_DATABASE_URL=postgres://relais:topsecret@db:5432/relais", "RELAIS_POLICY_PASSWORD_MIN_LENGTH=14"), "", "config", "print")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if strings.Contains(r.stdout, "topsecret") || !strings.Contains(r.stdout, "min_length = 14") || !strings.Contains(r.stdout, "db:5432") {
		t.Fatalf("config print:\n%s", r.stdout)
	}
	// The printed document is itself a valid --config file.
	path := filepath.Join(dir, "printed.toml")
	_ = os.WriteFile(path, []byte(strings.Replace(r.stdout, `database_url = "postgres://relais:xxxxx@db:5432/relais"`, `database_url = ""`, 1)), 0o600)
	if r := relais(t, dir, cleanEnv(), "", "--config", path, "config", "print"); r.code != 0 {
		t.Fatalf("printed config does not load: %+v", r)
	}
}

func TestHelpExplainsEveryCommand(t *testing.T) {
	root := newRoot(nil, io.Discard, io.Discard)
	for _, path := range commandPaths(root, nil) {
		r := relais(t, t.TempDir(), cleanEnv(), "", append(path, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v --help: %+v", path, r)
		}
		if strings.Contains(r.stdout, "Usage:\n\nFlags") {
			t.Errorf("%v --help has no description", path)
		}
	}
	if r := relais(t, t.TempDir(), cleanEnv(), "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "relais ") {
		t.Errorf("version: %+v", r)
	}
}

// commandPaths lists every command's argument path ([] for the root).
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	out := [][]string{prefix}
	for _, sub := range c.Commands() {
		if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		out = append(out, commandPaths(sub, append(append([]string(nil), prefix...), sub.Name()))...)
	}
	return out
}

package sftpd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var bg = context.Background()

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)} }

// env is a running SFTP server on a real store, with two tenants.
type env struct {
	t          *testing.T
	db         *store.DB
	svc        *sftpd.Service
	ten        *tenants.Service
	contacts   *contacts.Service
	a, b       tenants.Tenant
	clk        *clock
	dir        string
	port       string
	knownHosts string
	hostKeys   []ssh.Signer
}

func newEnv(t *testing.T, db *store.DB, clk *clock) *env {
	t.Helper()
	if _, err := exec.LookPath("sftp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("OpenSSH's sftp client is not installed: CI must install openssh-client")
		}
		t.Skip("OpenSSH's sftp client is not installed (apt-get install openssh-client)")
	}
	dir := t.TempDir()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, clk: clk, dir: dir}
	e.ten = &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	if e.a, err = e.ten.Create(bg, "Acme", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.b, err = e.ten.Create(bg, "Beta", "beta"); err != nil {
		t.Fatal(err)
	}
	kr := tenants.NewKeyring(db, mk, 0)
	e.contacts = &contacts.Service{DB: db, Keyring: kr, Now: clk.Now}
	e.svc = newService(db, kr, e.ten, e.contacts, clk, filepath.Join(dir, "blobs"))
	if e.hostKeys, _, err = sftpd.LoadOrCreateHostKeys(filepath.Join(dir, "ssh")); err != nil {
		t.Fatal(err)
	}
	e.port = e.serve(e.svc)
	return e
}

func newService(db *store.DB, kr *tenants.Keyring, ten *tenants.Service, cs *contacts.Service, clk *clock, blobs string) *sftpd.Service {
	cfg := config.Default().SFTP
	return &sftpd.Service{DB: db, Keyring: kr, Tenants: ten, Contacts: cs, Blobs: sftpd.DirBlobs{Root: blobs}, Config: cfg, Now: clk.Now,
		HandshakeTimeout: 20 * time.Second}
}

// serve starts svc on a fresh loopback port and pins the host keys in a
// known_hosts file for that port.
func (e *env) serve(svc *sftpd.Service) string {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, l, e.hostKeys) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	var kh strings.Builder
	for _, k := range e.hostKeys {
		fmt.Fprintf(&kh, "[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(k.PublicKey()))
	}
	e.knownHosts = filepath.Join(e.dir, "known_hosts_"+port)
	if err := os.WriteFile(e.knownHosts, []byte(kh.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return port
}

// keygen makes a client key pair with ssh-keygen; it returns the private
// key's path and the public key line.
func (e *env) keygen(name, typ string, bits int) (string, string) {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	args := []string{"-q", "-t", typ, "-N", "", "-C", name, "-f", p}
	if bits > 0 {
		args = append(args, "-b", fmt.Sprint(bits))
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		e.t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		e.t.Fatal(err)
	}
	return p, string(pub)
}

func (e *env) addAccount(tenantID string, na sftpd.NewAccount) sftpd.Account {
	e.t.Helper()
	a, err := e.svc.AddAccount(bg, tenantID, na)
	if err != nil {
		e.t.Fatalf("add account: %v", err)
	}
	return a
}

// sftp runs OpenSSH's sftp client in batch mode, with no user
// configuration, agent or default identities, and the server's host keys
// pinned. A command prefixed with "-" may fail without ending the batch.
func (e *env) sftp(port, key, user, batch string, opts ...string) (string, error) {
	e.t.Helper()
	bf := filepath.Join(e.dir, fmt.Sprintf("batch-%d", time.Now().UnixNano()))
	if err := os.WriteFile(bf, []byte(batch), 0o600); err != nil {
		e.t.Fatal(err)
	}
	args := []string{"-b", bf, "-F", "/dev/null", "-P", port, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + e.knownHostsFor(port),
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"}
	if key != "" {
		args = append(args, "-i", key)
	}
	args = append(args, opts...)
	args = append(args, user+"@127.0.0.1")
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sftp", args...)
	cmd.Dir = e.dir
	cmd.Env = []string{"HOME=" + e.dir, "PATH=" + os.Getenv("PATH")}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	e.t.Logf("sftp %s %s: %v in %v", user, strings.ReplaceAll(batch, "\n", "; "), err, time.Since(start))
	return string(out), err
}

func (e *env) knownHostsFor(port string) string {
	return filepath.Join(e.dir, "known_hosts_"+port)
}

// events returns a log's sftp events (tenant "" for the operator's).
func (e *env) events(tenantID string) []audit.Record {
	e.t.Helper()
	var out []audit.Record
	read := func(tx *store.Tx) error {
		recs, err := audit.List(bg, tx, 0, 1000)
		for _, r := range recs {
			if strings.HasPrefix(r.Action, "sftp") {
				out = append(out, r)
			}
		}
		return err
	}
	var err error
	if tenantID == "" {
		err = e.db.Platform(bg, func(p *store.PlatformTx) error { return read(p.Tenant("")) })
	} else {
		err = e.db.Tenant(tenantID).Tx(bg, read)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// find returns the events of an action whose details contain every part.
func find(recs []audit.Record, action string, parts ...string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Action != action {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(string(r.Details), p)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// eventually waits (up to 20 s) until cond holds: the server records a
// connection's end after the client has gone.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not seen", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failures is an address's failure count in a tenant's counter.
func (e *env) failures(tenantID string) int {
	var n int
	read := func(tx *store.Tx) error {
		return tx.QueryRow(bg, `SELECT count FROM ip_failures WHERE tenant_id = $1 AND ip = '127.0.0.1'`).Scan(&n)
	}
	if tenantID == "" {
		_ = e.db.Platform(bg, func(p *store.PlatformTx) error { return read(p.Tenant("")) })
	} else {
		_ = e.db.Tenant(tenantID).Tx(bg, read)
	}
	return n
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// goClient opens an SSH connection with Go's client and the given
// algorithms (nil: the defaults).
func (e *env) goClient(port, user string, auth []ssh.AuthMethod, c ssh.Config) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: user, Auth: auth, Config: c, Timeout: 20 * time.Second,
		HostKeyCallback: ssh.FixedHostKey(e.hostKeys[0].PublicKey()), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	return ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", port), cfg)
}

func signerFrom(t *testing.T, path string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(path) // #nosec G304 -- test key
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

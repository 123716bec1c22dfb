package sftpd_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestRemovedAccountLosesItsOpenSession is the attack of a key holder whose
// account was removed (a leaked key, a departed partner) and who keeps the
// SFTP session opened before: it must not upload, download or list any
// more.
func TestRemovedAccountLosesItsOpenSession(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	if _, err := e.svc.Deliver(bg, e.a.ID, "export.csv", strings.NewReader("email\nx@example.com\n")); err != nil {
		t.Fatal(err)
	}
	c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Close() }()
	if _, err := sc.ReadDir("/outbox"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemoveAccount(bg, e.a.ID, "crm"); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ReadDir("/outbox"); err == nil {
		t.Fatal("a removed account listed /outbox in its open session")
	}
	if f, err := sc.Open("/outbox/export.csv"); err == nil {
		_ = f.Close()
		t.Fatal("a removed account downloaded in its open session")
	}
	if f, err := sc.Create("/inbox/late.csv"); err == nil {
		_ = f.Close()
		t.Fatal("a removed account uploaded in its open session")
	}
	if len(find(e.events(e.a.ID), "sftp.op.refused", `"reason":"account_removed"`)) < 1 {
		t.Fatal("refusals after removal not audited")
	}
}

// TestDisabledTenantLosesItsOpenSessions: disabling a tenant ends what its
// accounts' open sessions may do.
func TestDisabledTenantLosesItsOpenSessions(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Close() }()
	if _, err := sc.ReadDir("/inbox"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ten.SetStatus(bg, e.a.ID, tenants.StatusDisabled); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ReadDir("/inbox"); err == nil {
		t.Fatal("an account of a disabled tenant listed /inbox in its open session")
	}
	if f, err := sc.Create("/inbox/late.csv"); err == nil {
		_ = f.Close()
		t.Fatal("an account of a disabled tenant uploaded in its open session")
	}
}

// TestConcurrentUploadsCannotExceedQuota is the attack of an account that
// opens several uploads at once: each saw the same free space when it was
// opened, so together they stored more than the quota. The quota is
// checked again when an upload is committed.
func TestConcurrentUploadsCannotExceedQuota(t *testing.T) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		concurrentUploads(t, newEnv(t, db, clk))
	})
}

func concurrentUploads(t *testing.T, e *env) {
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}, MaxFileBytes: 1000, QuotaBytes: 1500,
		DoneMarker: true})
	c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Close() }()
	body := "email\n" + strings.Repeat("a@example.com\n", 60) // 846 bytes
	var files []*sftp.File
	for _, n := range []string{"a.csv", "b.csv", "c.csv"} {
		f, err := sc.Create("/inbox/" + n)
		if err != nil {
			t.Fatalf("open %s: %v", n, err)
		}
		files = append(files, f)
	}
	for _, f := range files {
		_, _ = f.Write([]byte(body))
	}
	var wg sync.WaitGroup // the commits race each other
	for _, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.Close()
		}()
	}
	wg.Wait()
	list, err := e.svc.Files(bg, e.a.ID, sftpd.DirInbox)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range list {
		total += f.Size
	}
	if total > 1500 {
		t.Fatalf("the account stored %d bytes in %d files over its quota of 1500", total, len(list))
	}
	if len(list) != 1 {
		t.Fatalf("inbox: %+v", list)
	}
}

// TestOpenUploadsAreBounded is the attack of an account that opens upload
// after upload without closing them: each may hold up to 16 MiB of
// out-of-order writes in memory and a temporary file on disk, so their
// number is bounded per account; closing one frees its place.
func TestOpenUploadsAreBounded(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	signer := signerFrom(t, key)
	var open []*sftp.File
	// Two connections of the same account share the bound.
	for c := range 2 {
		conn, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signer)}, ssh.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		sc, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sc.Close() }()
		for i := range sftpd.MaxOpenUploads {
			f, err := sc.Create(fmt.Sprintf("/inbox/f%d-%d.csv.part", c, i))
			if err != nil {
				break
			}
			open = append(open, f)
		}
	}
	if len(open) != sftpd.MaxOpenUploads {
		t.Fatalf("%d uploads open at once, want at most %d", len(open), sftpd.MaxOpenUploads)
	}
	if len(find(e.events(e.a.ID), "sftp.op.refused", `"reason":"too_many_open_uploads"`)) == 0 {
		t.Fatal("refusal not audited")
	}
	if err := open[0].Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signer)}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	sc, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sc.Close() }()
	f, err := sc.Create("/inbox/after.csv.part")
	if err != nil {
		t.Fatalf("no upload possible after one was closed: %v", err)
	}
	_ = f.Close()
}

// TestHandshakeFailuresThrottled is the attack of a client in an allowed
// network that opens connection after connection and never authenticates
// (it closes, or speaks no SSH): each wrote two events in the operator's
// trail and none counted as a failure, so the trail and the database
// could be flooded without end. Failed handshakes count on the operator's
// per-address counter; over its limit the address is refused before the
// handshake (with rate-limited events).
func TestHandshakeFailuresThrottled(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	e.ten.Defaults.Lockout.MaxFailuresPerIP = 3
	_, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	for i := range 10 {
		c, err := net.Dial("tcp", "127.0.0.1:"+e.port)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_ = c.(*net.TCPConn).CloseWrite() // no SSH version will come
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.ReadAll(c)
		_ = c.Close()
		if i < 3 {
			e.eventually("failure counted", func() bool { return e.failures("") == i+1 })
		}
	}
	e.eventually("refusal audited", func() bool {
		return len(find(e.events(""), "sftp.connect", `"reason":"too_many_failures"`)) == 1
	})
	if n := len(find(e.events(""), "sftp.handshake")); n != 3 {
		t.Fatalf("%d failed handshakes recorded, want 3 (then refused)", n)
	}
}

// TestUploadOfRemovedAccountNotImportedWithDefaults: a file waiting for
// import when its account is removed was imported with the default
// settings instead of the account's: a blocklist file became an upsert
// (the people who asked to be blocked were added as contacts). Such a
// file is rejected.
func TestUploadOfRemovedAccountNotImportedWithDefaults(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"},
		Import: sftpd.ImportSettings{Mode: "blocklist"}})
	e.write("block.csv", "email\nstop@example.com\n")
	if out, err := e.sftp(e.port, key, "acme.crm", "put block.csv /inbox/block.csv\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	if _, err := e.svc.RemoveAccount(bg, e.a.ID, "crm"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ProcessPending(bg); err != nil {
		t.Fatal(err)
	}
	if c, err := e.contacts.FindByEmail(bg, e.a.ID, "stop@example.com"); err == nil {
		t.Fatalf("the blocklist file of a removed account was imported as contacts: %+v", c)
	}
	if len(find(e.events(e.a.ID), "sftp.file.import", `"status":"rejected"`)) != 1 {
		t.Fatal("rejection not recorded")
	}
}

// TestSessionChannelsBounded is the attack of an authenticated client that
// opens channel after channel on one connection: each runs an SFTP server
// with its own buffers (up to 2 MiB of window each), so their number is
// bounded per connection.
func TestSessionChannelsBounded(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var sessions []*ssh.Session
	for range sftpd.MaxChannels + 3 {
		s, err := c.NewSession()
		if err != nil {
			break
		}
		sessions = append(sessions, s)
	}
	if len(sessions) != sftpd.MaxChannels {
		t.Fatalf("%d channels open on one connection, want at most %d", len(sessions), sftpd.MaxChannels)
	}
	_ = sessions[0].Close()
	e.eventually("a channel can open after one closed", func() bool {
		s, err := c.NewSession()
		if err != nil {
			return false
		}
		_ = s.Close()
		return true
	})
}

package sftpd_test

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestOpenSSHUploadImportDownload (XFER-1, XFER-3): with the right key,
// OpenSSH's sftp uploads a CSV to /inbox; the upload is imported with the
// account's mapping; the report appears in /outbox and downloads. The
// file is encrypted at rest, the inbox copy is gone after the import, the
// other tenant sees none of it, and every step is in the tenant's audit
// trail with the address and the key fingerprint.
func TestOpenSSHUploadImportDownload(t *testing.T) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, clk)
		key, pub := e.keygen("crm", "ed25519", 0)
		acct := e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"},
			Import: sftpd.ImportSettings{Mapping: map[string]string{"Mail": "email", "Prenom": "first_name"}}, DoneMarker: false})
		bkey, bpub := e.keygen("other", "ecdsa", 256)
		e.addAccount(e.b.ID, sftpd.NewAccount{Name: "feed", Keys: []string{bpub}, Allow: []string{"127.0.0.0/8"}})

		const csv = "Mail,Prenom\nalice@example.com,Alice\nnot-an-email,Bob\nbob@example.org,Bob\n"
		e.write("contacts.csv", csv)
		out, err := e.sftp(e.port, key, "acme.crm", "put contacts.csv /inbox/contacts.csv\nls -l /inbox\n")
		if err != nil {
			t.Fatalf("upload: %v\n%s", err, out)
		}
		// At rest: only ciphertext in the blob directory.
		var blobs []string
		_ = filepath.Walk(filepath.Join(e.dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				blobs = append(blobs, p)
			}
			return nil
		})
		if len(blobs) != 1 {
			t.Fatalf("blobs after upload: %v", blobs)
		}
		raw, _ := os.ReadFile(blobs[0])
		if strings.Contains(string(raw), "alice@example.com") || !strings.HasPrefix(string(raw), "RELAIS-SFTP-1\n") {
			t.Fatalf("stored upload is not encrypted: %q", raw[:min(len(raw), 80)])
		}

		n, err := e.svc.ProcessPending(bg)
		if err != nil || n != 1 {
			t.Fatalf("process: %d, %v", n, err)
		}
		if c, err := e.contacts.FindByEmail(bg, e.a.ID, "alice@example.com"); err != nil || c.FirstName != "Alice" {
			t.Fatalf("imported contact: %+v, %v", c, err)
		}

		out, err = e.sftp(e.port, key, "acme.crm", "ls -l /inbox\nget /outbox/contacts.csv.report.json report.json\n")
		if err != nil {
			t.Fatalf("download: %v\n%s", err, out)
		}
		var rep sftpd.Report
		b, _ := os.ReadFile(filepath.Join(e.dir, "report.json"))
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("report %s: %v", b, err)
		}
		if rep.Status != "completed" || rep.Job == nil || rep.Job.Created != 2 || rep.Job.Failed != 1 || len(rep.Errors) != 1 ||
			rep.Errors[0].Line != 3 || rep.Errors[0].Column != "Mail" {
			t.Fatalf("report %s", b)
		}
		if strings.Contains(out, "contacts.csv\n") && !strings.Contains(out, "report") {
			t.Fatalf("inbox still lists the imported file:\n%s", out)
		}
		if files, _ := e.svc.Files(bg, e.a.ID, sftpd.DirInbox); len(files) != 0 {
			t.Fatalf("inbox after import: %+v", files)
		}

		// The other tenant's account sees an empty tree.
		out, err = e.sftp(e.port, bkey, "beta.feed", "ls -1 /outbox\n-get /outbox/contacts.csv.report.json stolen.json\n")
		if err != nil || strings.Contains(out, "contacts.csv.report.json\n") {
			t.Fatalf("other tenant: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "stolen.json")); err == nil {
			t.Fatal("the other tenant downloaded the report")
		}

		evs := e.events(e.a.ID)
		fp := acct.Keys[0].Fingerprint
		for _, want := range [][]string{
			{"sftp.auth", `"outcome":"success"`, fp, `"method":"publickey"`},
			{"sftp.file.upload", `"path":"/inbox/contacts.csv"`, `"outcome":"success"`},
			{"sftp.file.import", `"status":"completed"`},
			{"sftp.file.deliver", `"name":"contacts.csv.report.json"`},
			{"sftp.file.download", `"path":"/outbox/contacts.csv.report.json"`, fp},
			{"sftp.dir.list", `"path":"/inbox"`},
			{"sftp.disconnect"},
		} {
			recs := find(evs, want[0], want[1:]...)
			if len(recs) == 0 {
				t.Fatalf("no %v event in %d events", want, len(evs))
			}
			if want[0] != "sftp.file.import" && want[0] != "sftp.file.deliver" && recs[0].IP != "127.0.0.1" {
				t.Fatalf("%s event without the address: %+v", want[0], recs[0])
			}
		}
		if len(find(e.events(""), "sftp.connect", `"outcome":"accepted"`)) < 3 {
			t.Fatal("connections are not in the operator's log")
		}
	})
}

// TestRefusedBeforeAuthentication (XFER-1, XFER-2): a wrong key, a
// password, an address outside the account's networks, an expired
// account and an address over its failure limit are refused, each
// audited with its reason; failures count per address.
func TestRefusedBeforeAuthentication(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	wrong, _ := e.keygen("wrong", "ed25519", 0)
	exp := clk.Now().Add(48 * time.Hour)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32", "2001:db8::/32"}, ExpiresAt: &exp})
	// Same key, but allowed only from elsewhere.
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "far", Keys: []string{pub}, Allow: []string{"198.51.100.0/24"}})

	if out, err := e.sftp(e.port, key, "acme.crm", "ls /\n"); err != nil {
		t.Fatalf("right key: %v\n%s", err, out)
	}
	if out, err := e.sftp(e.port, wrong, "acme.crm", "ls /\n"); err == nil {
		t.Fatalf("wrong key accepted:\n%s", out)
	}
	if out, err := e.sftp(e.port, "", "acme.crm", "ls /\n", "-o", "PreferredAuthentications=password,keyboard-interactive",
		"-o", "PubkeyAuthentication=no"); err == nil || !strings.Contains(out, "Permission denied (publickey)") {
		t.Fatalf("password: %v\n%s", err, out)
	}
	if out, err := e.sftp(e.port, key, "acme.far", "ls /\n"); err == nil {
		t.Fatalf("account from a refused address accepted:\n%s", out)
	}
	// Go's client does send a password: refused too.
	if c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.Password("secret")}, ssh.Config{}); err == nil {
		_ = c.Close()
		t.Fatal("password accepted")
	}
	e.eventually("4 failures counted", func() bool { return e.failures(e.a.ID) == 4 })
	evs := e.events(e.a.ID)
	if len(find(evs, "sftp.auth", `"reason":"unknown_key"`, `"outcome":"failure"`, `"username":"acme.crm"`, "SHA256:")) == 0 {
		t.Fatalf("wrong key not audited: %v", evs)
	}
	// The key of acme.far is right, but the address is checked first.
	if len(find(evs, "sftp.auth", `"reason":"address_not_allowed"`, `"username":"acme.far"`)) == 0 {
		t.Fatal("refused address not audited")
	}
	if len(find(evs, "sftp.auth", `"reason":"no_acceptable_method"`, `"method":"none"`, `"username":"acme.crm"`)) < 2 {
		t.Fatal("password-only attempts not audited")
	}

	// Failures count per address in the tenant's brute-force counter: over
	// the limit, even the right key is refused.
	if _, err := e.ten.SetPolicy(bg, e.a.ID, json.RawMessage(`{"lockout":{"max_failures_per_ip":4}}`)); err != nil {
		t.Fatal(err)
	}
	_, _ = e.sftp(e.port, wrong, "acme.crm", "ls /\n")
	e.eventually("failures counted", func() bool { return e.failures(e.a.ID) == 5 })
	if out, err := e.sftp(e.port, key, "acme.crm", "ls /\n"); err == nil {
		t.Fatalf("right key accepted over the failure limit:\n%s", out)
	}
	e.eventually("failure limit audited", func() bool { return len(find(e.events(e.a.ID), "sftp.auth", `"reason":"too_many_failures"`)) > 0 })
	clk.Add(20 * time.Minute) // the window (15 min) passes
	if out, err := e.sftp(e.port, key, "acme.crm", "ls /\n"); err != nil {
		t.Fatalf("after the window: %v\n%s", err, out)
	}
	clk.Add(48 * time.Hour)
	if out, err := e.sftp(e.port, key, "acme.crm", "ls /\n"); err == nil {
		t.Fatalf("expired account accepted:\n%s", out)
	}
	e.eventually("expiry audited", func() bool { return len(find(e.events(e.a.ID), "sftp.auth", `"reason":"account_expired"`)) > 0 })
}

// TestAddressRefusedBeforeHandshake (XFER-2): when no account allows the
// address, the connection is closed before the SSH version exchange, so
// nothing of SSH (not even a banner) reaches it; the refusal is audited.
func TestAddressRefusedBeforeHandshake(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"10.0.0.0/8", "192.0.2.1"}})
	out, err := e.sftp(e.port, key, "acme.crm", "ls /\n")
	if err == nil {
		t.Fatalf("accepted from a refused address:\n%s", out)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+e.port)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	b, _ := io.ReadAll(c)
	_ = c.Close()
	if len(b) != 0 {
		t.Fatalf("the server said %q to a refused address", b)
	}
	// One event per address per minute, with the count of the others (a
	// scan cannot flood the trail).
	e.eventually("refused connection audited", func() bool {
		return len(find(e.events(""), "sftp.connect", `"outcome":"refused"`, `"reason":"address_not_allowed"`)) == 1
	})
	clk.Add(61 * time.Second)
	if c, err := net.Dial("tcp", "127.0.0.1:"+e.port); err == nil {
		_, _ = io.ReadAll(c)
		_ = c.Close()
	}
	e.eventually("next refusal audited with the count", func() bool {
		return len(find(e.events(""), "sftp.connect", `"reason":"address_not_allowed"`, `"refused_since_last_event":1`)) == 1
	})
	if len(find(e.events(e.a.ID), "sftp.auth")) != 0 {
		t.Fatal("an authentication was attempted from a refused address")
	}
}

// TestUnknownUsersThrottled: failures with unknown user names count on
// the operator's per-address counter; over its limit the address is
// refused before the handshake.
func TestUnknownUsersThrottled(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	e.ten.Defaults.Lockout.MaxFailuresPerIP = 2
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	for _, user := range []string{"ghost.x", "nobody"} {
		if out, err := e.sftp(e.port, key, user, "ls /\n"); err == nil {
			t.Fatalf("%s accepted: %s", user, out)
		}
	}
	e.eventually("operator counter", func() bool { return e.failures("") == 2 })
	c, err := net.Dial("tcp", "127.0.0.1:"+e.port)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("the server answered %q", b)
	}
	_ = c.Close()
	e.eventually("refusal audited", func() bool {
		return len(find(e.events(""), "sftp.connect", `"reason":"too_many_failures"`)) == 1 &&
			len(find(e.events(""), "sftp.auth", `"reason":"unknown_account"`, `"username":"ghost.x"`)) == 1
	})
}

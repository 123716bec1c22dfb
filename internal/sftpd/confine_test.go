package sftpd_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestPathEscapesRefusedAndAudited (XFER-3): "../" climbs, absolute paths
// elsewhere, symlinks, hard links, directories and writes to /outbox are
// refused, through OpenSSH's client and through raw SFTP requests (Go's
// client sends paths as given); each refusal is audited and nothing leaves
// the tree.
func TestPathEscapesRefusedAndAudited(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}, DoneMarker: true})
	e.write("c.csv", "email\na@example.com\n")
	secret := e.write("secret.txt", "top secret\n")
	batch := strings.Join([]string{
		"-get /inbox/../../etc/passwd passwd1",
		"-get ../../../etc/hostname hostname1",
		"-get " + secret + " secret1",
		"-put c.csv /etc/c.csv",
		"-put c.csv ../c.csv",
		"-put c.csv /inbox/../../tmp/c.csv",
		"-symlink /etc/passwd /inbox/link",
		"-ln /inbox/c.csv /outbox/c.csv",
		"-mkdir /inbox/sub",
		"-put c.csv /outbox/c.csv",
		"-put c.csv /inbox/.hidden",
		"put c.csv /inbox/c.csv",
		"-rename /inbox/c.csv /outbox/c.csv",
		"-rename /inbox/c.csv ../../c.csv",
		"ls -1 /inbox",
	}, "\n") + "\n"
	out, err := e.sftp(e.port, key, "acme.crm", batch)
	if err != nil {
		t.Fatalf("batch: %v\n%s", err, out)
	}
	for _, f := range []string{"passwd1", "hostname1", "secret1"} {
		if _, err := os.Stat(filepath.Join(e.dir, f)); err == nil {
			t.Fatalf("%s was downloaded", f)
		}
	}

	// Raw requests: Go's SFTP client sends the path as given.
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
	for _, p := range []string{"../../../etc/passwd", "/inbox/../../etc/passwd", "inbox/../../relais.db", secret, "//etc/passwd", "/outbox/./../../etc/shadow"} {
		if f, err := sc.Open(p); err == nil {
			b, _ := io.ReadAll(f)
			t.Fatalf("opened %s: %q", p, b[:min(len(b), 40)])
		}
		if _, err := sc.Stat(p); err == nil {
			t.Fatalf("stat %s succeeded", p)
		}
	}
	if _, err := sc.ReadLink("/inbox/c.csv"); err == nil {
		t.Fatal("readlink answered")
	}
	if err := sc.Symlink("/etc/passwd", "/outbox/x"); err == nil {
		t.Fatal("symlink created")
	}
	if _, err := sc.Create("/inbox/a/b.csv"); err == nil {
		t.Fatal("created a file in a sub-directory")
	}
	// The upload went to /inbox only; nothing else exists in the tree.
	entries, err := sc.ReadDir("/inbox")
	if err != nil || len(entries) != 1 || entries[0].Name() != "c.csv" {
		t.Fatalf("inbox: %v %v", entries, err)
	}
	if entries, _ := sc.ReadDir("/outbox"); len(entries) != 0 {
		t.Fatalf("outbox: %v", entries)
	}
	if _, err := sc.ReadDir("/"); err != nil {
		t.Fatal(err)
	}
	_ = sc.Close()
	_ = c.Close()

	e.eventually("refusals audited", func() bool {
		evs := e.events(e.a.ID)
		return len(find(evs, "sftp.path.refused", `"reason":"outside_tree"`)) >= 10 &&
			len(find(evs, "sftp.path.refused", `"reason":"links_not_allowed"`)) >= 3 &&
			len(find(evs, "sftp.path.refused", `"path":"/etc/passwd"`)) >= 1 &&
			len(find(evs, "sftp.op.refused", `"reason":"directories_are_fixed"`)) >= 1 &&
			len(find(evs, "sftp.op.refused", `"reason":"outbox_is_read_only"`)) >= 1 &&
			len(find(evs, "sftp.op.refused", `"reason":"rename_only_in_inbox"`)) >= 1
	})
	for _, r := range find(e.events(e.a.ID), "sftp.path.refused") {
		if r.IP != "127.0.0.1" || !strings.Contains(string(r.Details), `"key_fingerprint":"SHA256:`) {
			t.Fatalf("refusal without address or key: %+v", r)
		}
	}
}

// TestUploadRulesQuotaRetention: the maximum file size and the quota stop
// an upload (nothing kept); a temporary name or a .done marker holds the
// import until the rename or the marker; a file past its retention is
// removed with its stored copy.
func TestUploadRulesQuotaRetention(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}, MaxFileBytes: 1000, QuotaBytes: 1500})
	mkey, mpub := e.keygen("marker", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "marker", Keys: []string{mpub}, Allow: []string{"127.0.0.1/32"}, DoneMarker: true})
	small := "email\n" + strings.Repeat("a@example.com\n", 50) // 706 bytes
	e.write("small.csv", small)
	e.write("big.csv", "email\n"+strings.Repeat("b@example.com\n", 100))
	e.write("done", "")

	if out, err := e.sftp(e.port, key, "acme.crm", "put big.csv /inbox/big.csv\n"); err == nil {
		t.Fatalf("file over the maximum size accepted:\n%s", out)
	}
	// A temporary name waits; the rename completes it.
	out, err := e.sftp(e.port, key, "acme.crm", "put small.csv /inbox/one.csv.part\nput small.csv /inbox/two.csv.part\n-put small.csv /inbox/three.csv\nls -1 /inbox\n")
	if err != nil {
		t.Fatalf("uploads: %v\n%s", err, out)
	}
	files, _ := e.svc.Files(bg, e.a.ID, sftpd.DirInbox)
	if len(files) != 2 {
		t.Fatalf("inbox (the third upload is over the quota): %+v", files)
	}
	if n, _ := e.svc.ProcessPending(bg); n != 0 {
		t.Fatalf("temporary names imported: %d", n)
	}
	if out, err := e.sftp(e.port, key, "acme.crm", "rename /inbox/one.csv.part /inbox/one.csv\n"); err != nil {
		t.Fatalf("rename: %v\n%s", err, out)
	}
	if n, err := e.svc.ProcessPending(bg); n != 1 || err != nil {
		t.Fatalf("after the rename: %d %v", n, err)
	}
	e.eventually("over-size and quota refusals audited", func() bool {
		evs := e.events(e.a.ID)
		return len(find(evs, "sftp.file.upload", `"outcome":"failure"`, "exceeds the account's maximum file size")) == 1 &&
			len(find(evs, "sftp.op.refused", `"reason":"quota_exhausted"`))+len(find(evs, "sftp.file.upload", `"outcome":"failure"`, "quota")) >= 1
	})

	// The .done marker account: the import waits for the marker.
	if out, err := e.sftp(e.port, mkey, "acme.marker", "put small.csv /inbox/m.csv\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	if n, _ := e.svc.ProcessPending(bg); n != 0 {
		t.Fatal("imported before the marker")
	}
	if out, err := e.sftp(e.port, mkey, "acme.marker", "put done /inbox/m.csv.done\n-put done /inbox/nothing.csv.done\n"); err != nil {
		t.Fatalf("marker: %v\n%s", err, out)
	}
	if n, err := e.svc.ProcessPending(bg); n != 1 || err != nil {
		t.Fatalf("after the marker: %d %v", n, err)
	}
	outbox, _ := e.svc.Files(bg, e.a.ID, sftpd.DirOutbox)
	if len(outbox) != 2 || outbox[0].Name != "m.csv.report.json" || outbox[1].Name != "one.csv.report.json" {
		t.Fatalf("outbox: %+v", outbox)
	}

	// Retention: 30 days by default.
	clk.Add(29 * 24 * time.Hour)
	if n, _ := e.svc.Expire(bg); n != 0 {
		t.Fatalf("expired early: %d", n)
	}
	clk.Add(2 * 24 * time.Hour)
	n, err := e.svc.Expire(bg)
	if err != nil || n != 3 { // two reports and two.csv.part
		t.Fatalf("expire: %d %v", n, err)
	}
	var left []string
	_ = filepath.Walk(filepath.Join(e.dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Fatalf("stored files left after retention: %v", left)
	}
	if len(find(e.events(e.a.ID), "sftp.file.expire")) != 3 {
		t.Fatal("expiry not audited")
	}
}

// TestDeliverAndTwoNodes (XFER-3): Deliver puts a file in /outbox; a second
// node sharing the store and the blob directory serves the same tree, and
// an upload through one node is imported by the other.
func TestDeliverAndTwoNodes(t *testing.T) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, clk)
		key, pub := e.keygen("crm", "ed25519", 0)
		e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
		if _, err := e.svc.Deliver(bg, e.a.ID, "export-2026-11.csv.gpg", bytes.NewReader([]byte("exported\n"))); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Deliver(bg, e.a.ID, "../escape", bytes.NewReader(nil)); err == nil {
			t.Fatal("delivered under a bad name")
		}
		node2 := newService(db, e.svc.Keyring, e.ten, e.contacts, clk, filepath.Join(e.dir, "blobs"))
		port2 := e.serve(node2)
		e.write("c.csv", "email\nnode@example.com\n")
		out, err := e.sftp(port2, key, "acme.crm", "get /outbox/export-2026-11.csv.gpg export.csv.gpg\nput c.csv /inbox/c.csv\n")
		if err != nil {
			t.Fatalf("node 2: %v\n%s", err, out)
		}
		if b, _ := os.ReadFile(filepath.Join(e.dir, "export.csv.gpg")); string(b) != "exported\n" {
			t.Fatalf("delivered file read back as %q", b)
		}
		if n, err := e.svc.ProcessPending(bg); n != 1 || err != nil { // node 1 imports node 2's upload
			t.Fatalf("process on node 1: %d %v", n, err)
		}
		if n, _ := node2.ProcessPending(bg); n != 0 {
			t.Fatal("imported twice")
		}
		if out, err := e.sftp(e.port, key, "acme.crm", "get /outbox/c.csv.report.json r.json\n"); err != nil {
			t.Fatalf("report via node 1: %v\n%s", err, out)
		}
	})
}

// TestAlgorithms is an ssh-audit-style check: the server's KEXINIT offers
// no SHA-1, CBC, CTR, weak key exchange or weak host key; clients that
// offer only weak algorithms fail; the post-quantum hybrid works; RSA keys
// under 3072 bits and SHA-1 RSA signatures are refused.
func TestAlgorithms(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})

	kex := readKexInit(t, e.port)
	bad := []string{"sha1", "cbc", "ctr", "arcfour", "3des", "group1", "group14", "group-exchange", "nistp", "ssh-rsa", "ssh-dss", "md5", "umac", "none"}
	for i, list := range kex {
		for _, alg := range strings.Split(list, ",") {
			for _, b := range bad {
				if strings.Contains(alg, b) && !strings.HasPrefix(alg, "kex-strict") && !strings.HasPrefix(alg, "ext-info") {
					if b == "nistp" && i == 1 && alg == "ecdsa-sha2-nistp256" {
						continue // the ECDSA P-256 host key, SHA-256
					}
					if b == "none" && (i == 6 || i == 7) {
						continue // compression none
					}
					t.Errorf("KEXINIT list %d offers %s", i, alg)
				}
			}
		}
	}
	if !strings.Contains(kex[0], "mlkem768x25519-sha256") || !strings.Contains(kex[0], "curve25519-sha256") || !strings.Contains(kex[2], "chacha20-poly1305@openssh.com") {
		t.Fatalf("KEXINIT: %q", kex)
	}
	t.Logf("server KEXINIT: kex %s | host keys %s | ciphers %s | macs %s", kex[0], kex[1], kex[2], kex[4])

	auth := []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}
	for name, cfg := range map[string]ssh.Config{
		"weak kex":     {KeyExchanges: []string{"diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"}},
		"cbc/ctr only": {Ciphers: []string{"aes128-cbc", "3des-cbc", "aes128-ctr", "aes256-ctr"}},
	} {
		if c, err := e.goClient(e.port, "acme.crm", auth, cfg); err == nil {
			_ = c.Close()
			t.Errorf("%s: connected", name)
		}
	}
	c, err := e.goClient(e.port, "acme.crm", auth, ssh.Config{KeyExchanges: []string{ssh.KeyExchangeMLKEM768X25519}, Ciphers: []string{ssh.CipherAES256GCM}})
	if err != nil {
		t.Fatalf("ML-KEM hybrid: %v", err)
	}
	_ = c.Close()

	for _, opt := range [][]string{
		{"-o", "KexAlgorithms=diffie-hellman-group14-sha1,diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1"},
		{"-o", "Ciphers=aes128-cbc,aes256-cbc,3des-cbc"},
		{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"},
		{"-o", "HostKeyAlgorithms=ssh-rsa,ssh-dss"},
	} {
		if out, err := e.sftp(e.port, key, "acme.crm", "ls /\n", opt...); err == nil {
			t.Errorf("OpenSSH with %v connected:\n%s", opt, out)
		}
	}

	// RSA: 2048 bits refused at enrolment; 3072 accepted, but not with
	// SHA-1 signatures (ssh-rsa).
	_, rsa2048 := e.keygen("rsa2048", "rsa", 2048)
	if _, err := e.svc.AddAccount(bg, e.a.ID, sftpd.NewAccount{Name: "weak", Keys: []string{rsa2048}, Allow: []string{"127.0.0.1/32"}}); err == nil ||
		!strings.Contains(err.Error(), "3072") {
		t.Fatalf("RSA 2048: %v", err)
	}
	_, dsa := e.keygen("ecdsa-sk-like", "ecdsa", 384)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "p384", Keys: []string{dsa}, Allow: []string{"127.0.0.1/32"}})
	rkey, rpub := e.keygen("rsa3072", "rsa", 3072)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "rsa", Keys: []string{rpub}, Allow: []string{"127.0.0.1/32"}})
	if out, err := e.sftp(e.port, rkey, "acme.rsa", "ls /\n"); err != nil {
		t.Fatalf("RSA 3072 with rsa-sha2: %v\n%s", err, out)
	}
	if out, err := e.sftp(e.port, rkey, "acme.rsa", "ls /\n", "-o", "PubkeyAcceptedAlgorithms=ssh-rsa"); err == nil {
		t.Fatalf("RSA with SHA-1 signatures accepted:\n%s", out)
	}
}

// readKexInit connects, exchanges versions and returns the ten name-lists
// of the server's SSH_MSG_KEXINIT (RFC 4253 section 7.1), as ssh-audit
// does.
func readKexInit(t *testing.T, port string) []string {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("SSH-2.0-relais-audit\r\n")); err != nil {
		t.Fatal(err)
	}
	var line []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(line, []byte("\n")) {
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("version: %v (%q)", err, line)
		}
		line = append(line, b[0])
	}
	if !bytes.HasPrefix(line, []byte("SSH-2.0-")) {
		t.Fatalf("version line %q", line)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > 64<<10 {
		t.Fatalf("packet length %d", n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	payload := body[:len(body)-int(hdr[4])]
	if payload[0] != 20 {
		t.Fatalf("first packet type %d, want KEXINIT", payload[0])
	}
	p := payload[17:] // type + 16-byte cookie
	var lists []string
	for range 10 {
		l := binary.BigEndian.Uint32(p[:4])
		lists = append(lists, string(p[4:4+l]))
		p = p[4+l:]
	}
	return lists
}

// TestOnlyTheSFTPSubsystem: shells, commands, other subsystems and port
// forwarding are refused (and audited); an upload cut off by a broken
// connection is discarded, never imported half-way; pipelined writes
// arriving out of order are reassembled (the import sees every line).
func TestOnlyTheSFTPSubsystem(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"},
		Import: sftpd.ImportSettings{Mapping: map[string]string{"pad": "-"}}})
	auth := []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}
	c, err := e.goClient(e.port, "acme.crm", auth, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, try := range map[string]func(*ssh.Session) error{
		"exec":      func(s *ssh.Session) error { return s.Run("id") },
		"shell":     func(s *ssh.Session) error { return s.Shell() },
		"subsystem": func(s *ssh.Session) error { return s.RequestSubsystem("netconf") },
	} {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := try(s); err == nil {
			t.Errorf("%s accepted", name)
		}
		_ = s.Close()
	}
	if _, err := c.Dial("tcp", "127.0.0.1:"+e.port); err == nil {
		t.Error("port forwarding accepted")
	}

	// An upload cut off: the connection closes with the file open.
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("/inbox/cut.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("email\na@example.com\nb@exa")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	e.eventually("interrupted upload audited", func() bool {
		return len(find(e.events(e.a.ID), "sftp.file.upload", `"outcome":"failure"`, "transfer interrupted")) == 1
	})
	if files, _ := e.svc.Files(bg, e.a.ID, sftpd.DirInbox); len(files) != 0 {
		t.Fatalf("the cut upload was kept: %+v", files)
	}

	// Pipelined writes (concurrent, out of order) of a 700 KB file.
	c, err = e.goClient(e.port, "acme.crm", auth, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sc, err = sftp.NewClient(c, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("email,pad\n")
	pad := strings.Repeat("x", 200)
	for i := range 3000 {
		fmt.Fprintf(&csv, "user%d@example.com,%s\n", i, pad)
	}
	f, err = sc.Create("/inbox/big.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(strings.NewReader(csv.String())); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.ProcessPending(bg); n != 1 || err != nil {
		t.Fatalf("process: %d %v", n, err)
	}
	r, err := sc.Open("/outbox/big.csv.report.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep sftpd.Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil || rep.Job == nil || rep.Job.Created != 3000 || rep.Job.Failed != 0 {
		t.Fatalf("report: %+v %v", rep, err)
	}
	e.eventually("refused requests audited", func() bool {
		evs := e.events(e.a.ID)
		return len(find(evs, "sftp.request.refused", `"request":"exec"`)) == 1 && len(find(evs, "sftp.request.refused", `"request":"shell"`)) == 1 &&
			len(find(evs, "sftp.request.refused", `"request":"channel:direct-tcpip"`)) == 1
	})
}

// TestSessionStopsAtExpiry: a session opened before the account's expiry
// can do nothing after it.
func TestSessionStopsAtExpiry(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	key, pub := e.keygen("crm", "ed25519", 0)
	exp := clk.Now().Add(time.Hour)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}, ExpiresAt: &exp})
	c, err := e.goClient(e.port, "acme.crm", []ssh.AuthMethod{ssh.PublicKeys(signerFrom(t, key))}, ssh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.ReadDir("/inbox"); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	if _, err := sc.ReadDir("/inbox"); err == nil {
		t.Fatal("listed after expiry")
	}
	if _, err := sc.Create("/inbox/late.csv"); err == nil {
		t.Fatal("uploaded after expiry")
	}
	if len(find(e.events(e.a.ID), "sftp.op.refused", `"reason":"account_expired"`)) < 2 {
		t.Fatal("refusals after expiry not audited")
	}
}

// TestHandshakeDeadlineIsAbsolute: a client that trickles bytes cannot
// hold a connection open past the handshake timeout; the failed handshake
// is audited.
func TestHandshakeDeadlineIsAbsolute(t *testing.T) {
	clk := newClock()
	e := newEnv(t, storetest.OpenSQLite(t, storetest.Options{Now: clk.Now}), clk)
	_, pub := e.keygen("crm", "ed25519", 0)
	e.addAccount(e.a.ID, sftpd.NewAccount{Name: "crm", Keys: []string{pub}, Allow: []string{"127.0.0.1/32"}})
	slow := newService(e.db, e.svc.Keyring, e.ten, e.contacts, clk, filepath.Join(e.dir, "blobs"))
	slow.HandshakeTimeout = 500 * time.Millisecond
	port := e.serve(slow)
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c) // returns when the server closes
		close(closed)
	}()
	// One byte of a version line every 100 ms, for up to 30 s.
	line := []byte("SSH-2.0-" + strings.Repeat("x", 300))
	for i := 0; ; i++ {
		select {
		case <-closed:
			e.eventually("handshake failure audited", func() bool {
				return len(find(e.events(""), "sftp.handshake", `"outcome":"failure"`)) == 1
			})
			return
		case <-time.After(100 * time.Millisecond):
		}
		if i == 300 {
			t.Fatal("the trickling client held the connection for 30 s")
		}
		_, _ = c.Write(line[i%len(line) : i%len(line)+1])
	}
}

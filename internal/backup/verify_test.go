package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// pgpKey makes a test OpenPGP key (RSA, which every gpg reads).
func pgpKey(t *testing.T) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity("Backup Test", "", "backup-test@example.net", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var priv bytes.Buffer
	w, err := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	return e, priv.Bytes()
}

// backedUp is a store with a full and an incremental point (with OpenPGP
// copies) in a directory target.
func backedUp(t *testing.T) (*env, *DirTarget, []byte) {
	t.Helper()
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 20)
	ent, priv := pgpKey(t)
	target := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{PGP: openpgp.EntityList{ent}}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "later.person@example.net", LastName: "Laterperson"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{PGP: openpgp.EntityList{ent}}); err != nil {
		t.Fatal(err)
	}
	return e, target, priv
}

// TestVerifyNamesTheAlteredObject: flipping one byte of any stored object
// makes verification fail naming exactly that object, with the alert (metric,
// audit event, notification); a missing chunk is named too; a restore
// through an altered chunk fails and leaves nothing.
func TestVerifyNamesTheAlteredObject(t *testing.T) {
	e, target, _ := backedUp(t)
	var alerts []Alert
	e.svc.Notify = func(_ context.Context, a Alert) { alerts = append(alerts, a) }
	rep, err := e.svc.Verify(bg, e.acme.ID, target)
	if err != nil || rep.Points != 2 || rep.Objects < 6 {
		t.Fatalf("clean verify: %+v %v", rep, err)
	}
	names, err := target.List(bg, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		path := filepath.Join(target.Root, filepath.FromSlash(name))
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []int{0, len(orig) / 2, len(orig) - 1} {
			bad := append([]byte(nil), orig...)
			bad[at] ^= 0x01
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			alerts = nil
			_, err := e.svc.Verify(bg, e.acme.ID, target)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("%s byte %d flipped: verify said %v", name, at, err)
			}
			if len(ve.Failed) != 1 || ve.Failed[0].Object != name {
				t.Fatalf("%s byte %d flipped: verify named %+v", name, at, ve.Failed)
			}
			if len(alerts) != 1 || alerts[0].Object != name {
				t.Fatalf("alerts: %+v", alerts)
			}
		}
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The alert's audit event names the object.
	var details string
	if err := e.db.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		if err := audit.SequenceLog(bg, tx); err != nil {
			return err
		}
		return tx.QueryRow(bg, `SELECT details FROM audit_events WHERE tenant_id = $1 AND action = 'backup.verify.fail' ORDER BY seq DESC LIMIT 1`).Scan(&details)
	}); err != nil || !strings.Contains(details, "tenants/") {
		t.Fatalf("verify failure audit event: %q %v", details, err)
	}
	// A missing chunk.
	var chunk string
	for _, n := range names {
		if strings.Contains(n, "/chunks/") {
			chunk = n
			break
		}
	}
	path := filepath.Join(target.Root, filepath.FromSlash(chunk))
	orig, _ := os.ReadFile(path)
	_ = os.Remove(path)
	_, err = e.svc.Verify(bg, e.acme.ID, target)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Failed[0].Object != chunk || ve.Failed[0].Reason != "missing" {
		t.Fatalf("missing chunk: %v", err)
	}
	// A restore through a damaged chunk fails and leaves nothing.
	bad := append([]byte(nil), orig...)
	bad[len(bad)/2] ^= 0x80
	_ = os.WriteFile(path, bad, 0o600)
	dest := storetest.OpenSQLite(t, storetest.Options{Now: e.clk.Now})
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); err == nil || !strings.Contains(err.Error(), chunk) {
		t.Fatalf("restore through a damaged chunk: %v", err)
	}
	var n int
	_ = dest.Platform(bg, func(p *store.PlatformTx) error {
		return p.QueryRow(bg, `SELECT count(*) FROM tenants`).Scan(&n)
	})
	if n != 0 {
		t.Fatal("a failed restore left a tenant")
	}
}

// TestNoPlaintextInTarget: no personal field appears in clear anywhere in
// the target (chunks, manifests, OpenPGP copies).
func TestNoPlaintextInTarget(t *testing.T) {
	e, target, _ := backedUp(t)
	secrets := []string{"jeanne.secret@example.net", "Secretname", "+33612345678", "33612345678", "203.0.113.9",
		"later.person@example.net", "Laterperson", "blocked.person@example.org"}
	page, err := e.contacts.List(bg, e.acme.ID, contacts.ListOptions{Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range page.Contacts {
		for _, v := range []string{c.Email, c.FirstName, c.LastName, c.Phone} {
			// Six characters at least: a shorter string turns up in
			// base64 or ciphertext by chance.
			if len(v) >= 6 {
				secrets = append(secrets, v)
			}
		}
	}
	if len(secrets) < 15 {
		t.Fatalf("only %d values to look for", len(secrets))
	}
	names, _ := target.List(bg, "")
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(target.Root, filepath.FromSlash(n)))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q in clear", n, s)
			}
		}
	}
}

// TestGPGDecryptsTheBackup: the OpenPGP copy of a point opens with the
// stock gpg binary and the recipient's private key: a tar with the manifest
// and the chunks (personal fields still sealed by the tenant key).
func TestGPGDecryptsTheBackup(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gpg not found: install Debian's gnupg")
		}
		t.Skip("gpg not found")
	}
	e, target, priv := backedUp(t)
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() // #nosec G204 -- test
		_ = os.RemoveAll(home)
	})
	run := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command(gpg, append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...) // #nosec G204 -- test
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	run(priv, "--import")
	names, _ := target.List(bg, "")
	var pgps []string
	for _, n := range names {
		if strings.HasSuffix(n, ".tar.pgp") {
			pgps = append(pgps, n)
		}
	}
	if len(pgps) != 2 {
		t.Fatalf("OpenPGP copies: %v", pgps)
	}
	plain := run(nil, "--decrypt", filepath.Join(target.Root, filepath.FromSlash(pgps[0])))
	tr := tar.NewReader(bytes.NewReader(plain))
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	if !bytes.Contains(files["manifest.json"], []byte(`"tenant_id": "`+e.acme.ID+`"`)) {
		t.Fatalf("manifest.json missing or wrong: %d files", len(files))
	}
	found := false
	for n, b := range files {
		if strings.HasPrefix(n, "tables/contacts/") && bytes.Contains(b, []byte(`"table":"contacts"`)) {
			found = true
		}
	}
	if !found {
		t.Fatal("no contacts chunk in the OpenPGP copy")
	}
}

package privacy_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

func exportAES(t *testing.T, e *env, ten tenants.Tenant, key []byte) ([]byte, privacy.ExportResult) {
	t.Helper()
	var buf bytes.Buffer
	w, err := privacy.NewAESWriter(&buf, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Export(bg, ten, w, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

func dataSums(m privacy.Manifest) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "data/") {
			out[f.Path] = f.SHA256
		}
	}
	return out
}

// TestExportImportRoundTrip: a tenant export re-imported into an empty
// tenant reproduces the same counts and checksums (REV-2), the manifest's
// counts equal the store's, and the export is encrypted.
func TestExportImportRoundTrip(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		key := bytes.Repeat([]byte{7}, 32)
		blob, res := exportAES(t, e, e.a, key)
		for _, p := range ps {
			if bytes.Contains(blob, []byte(p.email)) || bytes.Contains(blob, []byte(p.last)) {
				t.Fatal("personal data in clear in the encrypted export")
			}
		}
		m := res.Manifest
		// The manifest's counts equal the store's.
		for table, n := range m.Counts {
			var got int64
			if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
				return tx.QueryRow(bg, `SELECT count(*) FROM `+table+` WHERE tenant_id = $1`).Scan(&got)
			}); err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Errorf("%s: manifest %d rows, store %d", table, n, got)
			}
		}
		if m.Counts["contacts"] != 3 || m.Counts["messages"] != 3 || m.Counts["blocklist"] != 2 || m.Counts["consent_events"] != 6 {
			t.Fatalf("counts %v", m.Counts)
		}
		// The audit trail in the archive verifies offline with the key the
		// manifest names.
		tr := tar.NewReader(bytes.NewReader(decryptAll(t, blob, key)))
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatal("no audit trail in the archive")
			}
			if h.Name == "audit/audit.jsonl" {
				rep, err := audit.VerifyExport(tr, m.AuditVerifierKey)
				if err != nil || rep.Events != m.AuditEvents {
					t.Fatalf("audit trail of the export: %+v %v", rep, err)
				}
				break
			}
		}
		open := func() (io.ReadCloser, error) {
			r, err := privacy.NewAESReader(bytes.NewReader(blob), key)
			return io.NopCloser(r), err
		}
		// A wrong key or a cut archive is refused before anything is written.
		if _, err := e.svc.Import(bg, e.b, func() (io.ReadCloser, error) {
			r, err := privacy.NewAESReader(bytes.NewReader(blob), bytes.Repeat([]byte{8}, 32))
			return io.NopCloser(r), err
		}); err == nil {
			t.Fatal("import with a wrong key succeeded")
		}
		if _, err := e.svc.Import(bg, e.b, func() (io.ReadCloser, error) {
			r, err := privacy.NewAESReader(bytes.NewReader(blob[:len(blob)/2]), key)
			return io.NopCloser(r), err
		}); err == nil {
			t.Fatal("import of a cut archive succeeded")
		}
		// Into a non-empty tenant: refused.
		populate(t, e, e.b.ID, ps[:1])
		if _, err := e.svc.Import(bg, e.b, open); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("import into a non-empty tenant: %v", err)
		}
		fresh, err := e.tenants.Create(bg, "Restored", "restored")
		if err != nil {
			t.Fatal(err)
		}
		ir, err := e.svc.Import(bg, fresh, open)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m.Counts {
			if ir.Counts[k] != v {
				t.Errorf("import %s: %d rows, export %d", k, ir.Counts[k], v)
			}
		}
		_, res2 := exportAES(t, e, fresh, key)
		a, b := dataSums(m), dataSums(res2.Manifest)
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("files %d vs %d", len(a), len(b))
		}
		for p, sum := range a {
			if b[p] != sum {
				t.Errorf("%s: checksum differs after the round trip", p)
			}
		}
		// The restored tenant works: its contact is found by email, and
		// read through the contact's own new key (per-contact keys, PRIV-4):
		// every restored person has a key of its own, never the source's.
		c, err := e.contacts.FindByEmail(bg, fresh.ID, ps[0].email)
		if err != nil || c.LastName != ps[0].last {
			t.Fatalf("restored contact: %+v %v", c, err)
		}
		withKey := `SELECT count(DISTINCT key_enc) FROM contacts WHERE tenant_id = $1 AND key_enc IS NOT NULL`
		if a, b := count(t, e, e.a.ID, withKey), count(t, e, fresh.ID, withKey); a != 3 || b != 3 {
			t.Fatalf("contacts with their own key: source %d, restored %d", a, b)
		}
		if _, res, err := e.svc.Erase(bg, fresh.ID, privacy.Subject{Email: ps[0].email}, privacy.EraseOptions{}); err != nil || res.ContactKeyShredded == "" {
			t.Fatalf("erasure in the restored tenant: %+v %v", res, err)
		}
		blocked, err := e.contacts.IsBlocked(bg, fresh.ID, "email", ps[2].email)
		if err != nil || !blocked {
			t.Fatalf("restored blocklist: %v %v", blocked, err)
		}
	})
}

// TestExportOpenPGP: an export encrypted to an OpenPGP key made by gpg is
// opened by the stock gpg binary, and by the importer with the secret key.
func TestExportOpenPGP(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not installed")
	}
	run(t, func(t *testing.T, e *env) {
		if e.db.Dialect() != store.SQLite {
			t.Skip("format test: one dialect is enough")
		}
		populate(t, e, e.a.ID, people()[:1])
		home := t.TempDir()
		gpg := func(args ...string) []byte {
			cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("gpg %v: %v %s", args, err, stderr)
			}
			return out
		}
		gpg("--quick-gen-key", "Acme DPO <dpo@acme.example>", "rsa3072", "encrypt,sign", "never")
		pub := filepath.Join(home, "pub.asc")
		if err := os.WriteFile(pub, gpg("--armor", "--export", "dpo@acme.example"), 0o600); err != nil {
			t.Fatal(err)
		}
		sec := filepath.Join(home, "sec.asc")
		if err := os.WriteFile(sec, gpg("--armor", "--export-secret-keys", "dpo@acme.example"), 0o600); err != nil {
			t.Fatal(err)
		}
		to, err := privacy.ReadPGPRecipients(pub)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "acme.tar.gpg")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		w, err := privacy.NewPGPWriter(f, to, "acme.tar")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Export(bg, e.a, w, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		plain := gpg("--decrypt", out)
		m, err := privacy.VerifyArchive(bytes.NewReader(plain))
		if err != nil {
			t.Fatalf("gpg-decrypted archive: %v", err)
		}
		if m.Counts["contacts"] != 1 {
			t.Fatalf("counts %v", m.Counts)
		}
		fresh, err := e.tenants.Create(bg, "Restored", "restored")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Import(bg, fresh, func() (io.ReadCloser, error) {
			f, err := os.Open(out)
			if err != nil {
				return nil, err
			}
			r, err := privacy.NewPGPReader(f, sec)
			return struct {
				io.Reader
				io.Closer
			}{r, f}, err
		}); err != nil {
			t.Fatal(err)
		}
	})
}

func decryptAll(t *testing.T, blob, key []byte) []byte {
	t.Helper()
	r, err := privacy.NewAESReader(bytes.NewReader(blob), key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// failAfter is a writer that breaks after n bytes (a full disk, a dropped
// connection).
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, io.ErrShortWrite
	}
	f.n -= len(p)
	return len(p), nil
}

// TestExportInterrupted: an export cut by its writer fails with an error;
// what was written does not pass for an archive; the store is unchanged
// apart from the export's own audit event.
func TestExportInterrupted(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		populate(t, e, e.a.ID, people())
		var buf bytes.Buffer
		w, err := privacy.NewAESWriter(&buf, bytes.Repeat([]byte{3}, 32))
		if err != nil {
			t.Fatal(err)
		}
		cut := &failAfter{n: 4096}
		if _, err := e.svc.Export(bg, e.a, io.MultiWriter(w, cut), t.TempDir()); err == nil {
			t.Fatal("an interrupted export succeeded")
		}
		_ = w.Close()
		if _, err := privacy.VerifyArchive(bytes.NewReader(decryptAll(t, buf.Bytes(), bytes.Repeat([]byte{3}, 32)))); err == nil {
			t.Fatal("a cut archive verifies")
		}
		if n, _ := e.contacts.Count(bg, e.a.ID); n != 3 {
			t.Fatal("the store changed")
		}
	})
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/relais-dev/relais/internal/privacy"
)

// TestPrivacyCommands runs issue 9's commands as an operator would: an
// import of contacts, access (JSON file), erasure, bad input, tenant export
// and import into an empty tenant, an anonymised copy, the two-step
// destruction with its certificate, and the certificate's verification
// (and a tampered one's failure).
func TestPrivacyCommands(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("HOME=" + dir)
	data := filepath.Join(dir, "data")
	run := func(args ...string) result {
		t.Helper()
		return relais(t, dir, env, "", append([]string{"--data-dir", data}, args...)...)
	}
	ok := func(r result, what string) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
		return r
	}
	fails := func(r result, code int, what, want string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%s: exit %d, stderr %q; want exit %d and %q on one line", what, r.code, r.stderr, code, want)
		}
	}
	ok(run("tenant", "create", "--name", "Acme", "--slug", "acme"), "create acme")
	ok(run("tenant", "create", "--name", "Beta", "--slug", "beta"), "create beta")
	csv := filepath.Join(dir, "people.csv")
	if err := os.WriteFile(csv, []byte("email,first_name,last_name,phone\nzebulonia@example.org,Zebulonia,Quaxworth,+33612345678\nottoline@example.net,Ottoline,Vrbanek,+442079460123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(run("contacts", "import", "--tenant", "acme", csv, "--consent", "email:granted"), "import")
	ok(run("contacts", "import", "--tenant", "beta", csv), "import beta")

	// Access: a JSON file of everything held on the person.
	accessFile := filepath.Join(dir, "access.json")
	ok(run("privacy", "access", "--tenant", "acme", "--email", "Zebulonia@example.org", "--out", accessFile), "access")
	var rep struct {
		Format  string
		Contact struct {
			LastName string `json:"last_name"`
		}
	}
	b, _ := os.ReadFile(accessFile)
	if err := json.Unmarshal(b, &rep); err != nil || rep.Contact.LastName != "Quaxworth" || rep.Format != "relais-subject-access/1" {
		t.Fatalf("access file %s: %v", b, err)
	}
	fails(run("privacy", "access", "--tenant", "acme", "--email", "nobody@example.org", "--out", filepath.Join(dir, "x.json")), 1, "unknown person", "not found")
	fails(run("privacy", "erase", "--tenant", "acme"), 2, "no person", "one of --email")
	fails(run("privacy", "erase", "--tenant", "acme", "--email", "a@example.org", "--phone", "+33612345678"), 2, "two persons", "one of --email")

	ok(run("privacy", "rectify", "--tenant", "acme", "--email", "ottoline@example.net", "--set", "last_name=Vrbanek-Smith"), "rectify")
	fails(run("privacy", "rectify", "--tenant", "acme", "--email", "ottoline@example.net", "--set", "email=not-an-email"), 1, "bad rectification", "--set email")
	fails(run("privacy", "rectify", "--tenant", "acme", "--email", "ottoline@example.net", "--set", "password=x"), 2, "unknown field", "the field must be")

	// Export before the erasure, to restore later.
	exp := filepath.Join(dir, "acme.tar.enc")
	ok(run("tenant", "export", "--tenant", "acme", "--out", exp), "export")
	if _, err := os.Stat(exp + ".key"); err != nil {
		t.Fatal("no key file")
	}
	// An export to an OpenPGP key: only its private key opens it.
	ent, err := openpgp.NewEntity("Acme DPO", "", "dpo@acme.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	aw, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := ent.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	_ = aw.Close()
	pubFile := filepath.Join(dir, "dpo.asc")
	if err := os.WriteFile(pubFile, pub.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	pgpOut := filepath.Join(dir, "acme.tar.gpg")
	ok(run("tenant", "export", "--tenant", "acme", "--out", pgpOut, "--pgp-recipient", pubFile), "export to a PGP key")
	f, err := os.Open(pgpOut)
	if err != nil {
		t.Fatal(err)
	}
	md, err := openpgp.ReadMessage(f, openpgp.EntityList{ent}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := privacy.VerifyArchive(md.UnverifiedBody); err != nil || m.Counts["contacts"] != 2 {
		t.Fatalf("PGP export: %v", err)
	}
	_ = f.Close()
	fails(run("tenant", "export", "--tenant", "acme", "--out", filepath.Join(dir, "x.gpg"), "--pgp-recipient", csv), 2, "not a key", "--pgp-recipient")
	fails(run("tenant", "export", "--tenant", "acme", "--out", pgpOut), 1, "existing file", "does not exist yet")

	ok(run("privacy", "erase", "--tenant", "acme", "--email", "zebulonia@example.org", "--suppress"), "erase")
	fails(run("privacy", "erase", "--tenant", "acme", "--email", "zebulonia@example.org"), 1, "erase twice", "not found")
	r := ok(run("privacy", "requests", "--tenant", "acme"), "requests")
	if !strings.Contains(r.stdout, `"kind": "erasure"`) || !strings.Contains(r.stdout, `"kind": "access"`) {
		t.Fatalf("requests: %s", r.stdout)
	}

	// Import into a non-empty tenant is refused; into a new one it works.
	fails(run("tenant", "import", "--tenant", "beta", "--in", exp, "--key", exp+".key"), 1, "import into beta", "not empty")
	ok(run("tenant", "create", "--name", "Restored", "--slug", "restored"), "create restored")
	fails(run("tenant", "import", "--tenant", "restored", "--in", exp), 2, "no key", "--key")
	ok(run("tenant", "import", "--tenant", "restored", "--in", exp, "--key", exp+".key"), "import")
	r = ok(run("contacts", "count", "--tenant", "restored"), "count")
	if !strings.Contains(r.stdout, "2") {
		t.Fatalf("restored count: %s", r.stdout)
	}

	r = ok(run("anonymize", "--tenant", "restored", "--into", "staging-acme"), "anonymize")
	if !strings.Contains(r.stdout, "staging-acme") {
		t.Fatalf("anonymize: %s", r.stdout)
	}
	fails(run("anonymize", "--tenant", "restored", "--into", "Bad Slug"), 2, "bad slug", "--into")
	staging := filepath.Join(dir, "staging")
	r = ok(run("anonymize", "--tenant", "restored", "--into", "staging-acme", "--into-data-dir", staging), "anonymize into another store")
	if !strings.Contains(r.stdout, "in the store in "+staging) {
		t.Fatalf("anonymize into: %s", r.stdout)
	}
	r = ok(relais(t, dir, env, "", "--data-dir", staging, "contacts", "count", "--tenant", "staging-acme"), "count in staging")
	if !strings.Contains(r.stdout, "2") {
		t.Fatalf("staging count: %s", r.stdout)
	}

	// Destruction: two steps, then the certificate.
	r = ok(run("tenant", "destroy", "--tenant", "acme"), "destroy request")
	i := strings.Index(r.stdout, "confirmation code: ")
	if i < 0 {
		t.Fatalf("no code: %s", r.stdout)
	}
	code := strings.Fields(r.stdout[i+len("confirmation code: "):])[0]
	fails(run("tenant", "destroy", "--tenant", "acme", "--confirm", "WRONG", "--now"), 1, "wrong code", "confirmation code")
	cert := filepath.Join(dir, "acme-destroyed.json")
	r = ok(run("tenant", "destroy", "--tenant", "acme", "--confirm", code, "--now", "--out", cert), "destroy")
	fails(run("contacts", "count", "--tenant", "acme"), 1, "destroyed tenant", "not found")
	opKey := ok(run("audit", "pubkey", "--operator"), "operator key")
	key := strings.TrimSpace(opKey.stdout)
	r = ok(relais(t, t.TempDir(), env, "", "certificate", "verify", cert, "--key", key), "verify")
	if !strings.Contains(r.stdout, "OK: destruction of tenant acme") {
		t.Fatalf("verify: %s", r.stdout)
	}
	ok(relais(t, t.TempDir(), env, "", "certificate", "verify", cert+".html"), "verify html")
	b, _ = os.ReadFile(cert)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), `"tenant_slug": "acme"`, `"tenant_slug": "acm3"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(relais(t, t.TempDir(), env, "", "certificate", "verify", bad), 1, "tampered", "does not verify")
	// Beta is still there.
	ok(run("contacts", "count", "--tenant", "beta"), "beta")
}

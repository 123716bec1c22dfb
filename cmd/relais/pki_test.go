package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPKI: `relais pki` makes a CA, a client certificate and a CRL that
// OpenSSL accepts (chain, purpose, CRL signature and revocation), never
// overwrites files, and answers usage mistakes with exit 2.
func TestPKI(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	env := cleanEnv()
	ok := func(args ...string) string {
		t.Helper()
		r := relais(t, dir, env, "", args...)
		if r.code != 0 {
			t.Fatalf("relais %v: exit %d: %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	out := ok("pki", "ca", "create", "--name", "Test client CA", "--out", dir, "--days", "30")
	if !strings.Contains(out, "SHA-256: ") {
		t.Fatalf("ca create: %s", out)
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", st, err)
	}
	out = ok("pki", "client", "issue", "--ca", dir, "--cn", "billing-bot", "--dns", "bot.example", "--email", "ops@example.com", "--out", dir)
	if !strings.Contains(out, `match = "sha256:`) {
		t.Fatalf("client issue: %s", out)
	}
	crt := filepath.Join(dir, "billing-bot.crt")
	fp := strings.TrimSpace(ok("pki", "fingerprint", crt))
	if len(fp) != 64 || !strings.Contains(out, fp) {
		t.Fatalf("fingerprint %q not in %s", fp, out)
	}
	openssl := func(args ...string) (string, error) {
		b, err := exec.Command("openssl", args...).CombinedOutput() // #nosec G204 -- fixed test arguments
		return string(b), err
	}
	ca := filepath.Join(dir, "ca.crt")
	if o, err := openssl("verify", "-purpose", "sslclient", "-CAfile", ca, crt); err != nil {
		t.Fatalf("openssl verify: %v %s", err, o)
	}
	if o, err := openssl("verify", "-purpose", "sslserver", "-CAfile", ca, crt); err == nil {
		t.Errorf("a client certificate is valid for servers: %s", o)
	}
	o, _ := openssl("x509", "-in", crt, "-noout", "-text")
	if !strings.Contains(o, "prime256v1") || !strings.Contains(o, "DNS:bot.example") || !strings.Contains(o, "email:ops@example.com") {
		t.Errorf("certificate: %s", o)
	}

	crl := filepath.Join(dir, "clients.crl")
	ok("pki", "crl", "--ca", dir, "--revoke", crt, "--number", "2", "--out", crl)
	if o, err := openssl("crl", "-in", crl, "-CAfile", ca, "-noout"); err != nil {
		t.Fatalf("openssl crl: %v %s", err, o)
	}
	if o, err := openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", ca, crt); err == nil || !strings.Contains(o, "revoked") {
		t.Errorf("openssl does not see the revocation: %v %s", err, o)
	}

	// Nothing is overwritten; usage mistakes exit 2.
	if r := relais(t, dir, env, "", "pki", "ca", "create", "--name", "again", "--out", dir); r.code != 1 || !strings.Contains(r.stderr, "exists already") {
		t.Errorf("overwrite: %d %s", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"pki", "ca", "create", "--out", dir},
		{"pki", "client", "issue", "--ca", dir, "--cn", "x", "--out", dir, "--days", "5000"},
		{"pki", "client", "issue", "--ca", dir, "--cn", "y", "--out", dir, "--uri", "not a uri"},
	} {
		if r := relais(t, dir, env, "", args...); r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

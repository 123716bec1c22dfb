package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCASharedByTwoAuthoritiesRefused is the mapping confusion of a CA
// listed by two authorities (two tenants using the same corporate or
// commercial CA): the first authority that verifies a certificate decides,
// so tenant t2's client certificate "cn:billing-bot" was mapped to tenant
// t1's service account, and bound tenant t1's stolen tokens. A CA may
// vouch for one authority only: such a file is refused.
func TestCASharedByTwoAuthoritiesRefused(t *testing.T) {
	p := newPKI(t)
	cfg := fmt.Sprintf(`
[[authority]]
name = "t1"
tenant = "t1"
ca_file = %q

[[authority.client]]
match = "cn:billing-bot"
service_account = "svc-1"

[[authority]]
name = "t2"
tenant = "t2"
ca_file = %q

[[authority.client]]
match = "cn:billing-bot"
service_account = "svc-9"
`, filepath.Join(p.dir, "a.crt"), filepath.Join(p.dir, "a.crt"))
	path := filepath.Join(p.dir, "shared.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := Load(path, nil)
	if err == nil {
		// What the confusion gave: t2's certificate is t1's account.
		t2cert := p.client(t, p.a, ClientRequest{CommonName: "billing-bot", Validity: time.Hour})
		got, ierr := v.Identify([]*x509.Certificate{t2cert.Leaf})
		t.Fatalf("authorities sharing a CA accepted; t2's certificate maps to %+v (%v)", got, ierr)
	}
	if !strings.Contains(err.Error(), "already") {
		t.Fatalf("error does not say the CA is already used: %v", err)
	}
}

// TestCAUnderAnotherAuthorityRefused: the same confusion with a tenant
// authority whose CA is an intermediate under the platform authority's
// root: a certificate it issues verifies under both.
func TestCAUnderAnotherAuthorityRefused(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	mk := func(name string, parent *CA) *CA {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		issuer, signer := tmpl, crypto.Signer(key)
		if parent != nil {
			issuer, signer = parent.Cert, parent.Key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := WritePair(dir, name, c, key); err != nil {
			t.Fatal(err)
		}
		return &CA{Cert: c, Key: key}
	}
	root := mk("root", nil)
	mk("inter", root)
	for _, order := range [][2]string{{"root", "inter"}, {"inter", "root"}} {
		cfg := ""
		for _, n := range order {
			tenant := ""
			if n == "inter" {
				tenant = "t2"
			}
			cfg += fmt.Sprintf("[[authority]]\nname = %q\ntenant = %q\nca_file = %q\n\n[[authority.client]]\nmatch = \"cn:bot\"\ntenant = \"t2\"\nservice_account = \"svc-%s\"\n\n",
				n, tenant, filepath.Join(dir, n+".crt"), n)
		}
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), "one authority only") {
			t.Fatalf("%v: intermediate of another authority's CA: %v", order, err)
		}
	}
}

// TestRevokedFingerprintSurvivesSignatureMalleability is the bypass of a
// fingerprint revocation: an ECDSA signature (r, s) is also valid as
// (r, n-s), so the holder of a revoked certificate can re-encode it with
// the other signature; the CA's signature still verifies, but the SHA-256
// of the certificate, which the revocation list holds, differs.
func TestRevokedFingerprintSurvivesSignatureMalleability(t *testing.T) {
	p := newPKI(t)
	revoked := p.client(t, p.a, ClientRequest{CommonName: "billing-bot"})
	v, err := Load(p.writeConfig(t, fmt.Sprintf("revoked = [%q]\n", Fingerprint(revoked.Leaf))), nil)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		TBS, Alg asn1.RawValue
		Sig      asn1.BitString
	}
	if _, err := asn1.Unmarshal(revoked.Leaf.Raw, &c); err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(c.Sig.Bytes, &sig); err != nil {
		t.Fatal(err)
	}
	sig.S.Sub(elliptic.P256().Params().N, sig.S)
	sb, err := asn1.Marshal(sig)
	if err != nil {
		t.Fatal(err)
	}
	c.Sig = asn1.BitString{Bytes: sb, BitLength: 8 * len(sb)}
	raw, err := asn1.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	mauled, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(mauled) == Fingerprint(revoked.Leaf) || mauled.CheckSignatureFrom(p.a.Cert) != nil {
		t.Fatal("the re-encoded certificate is not a distinct, validly signed one")
	}
	if id, err := v.Identify([]*x509.Certificate{revoked.Leaf}); err == nil {
		t.Fatalf("revoked certificate accepted: %+v", id)
	}
	if id, err := v.Identify([]*x509.Certificate{mauled}); err == nil {
		t.Fatalf("revoked certificate re-encoded with (r, n-s) accepted as %+v", id)
	}
}

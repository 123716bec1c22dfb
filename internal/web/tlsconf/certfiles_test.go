package tlsconf

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFingerprint(t *testing.T) {
	der := []byte("not really a certificate")
	sum := sha256.Sum256(der)
	got := Fingerprint(der)
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(got) {
		t.Fatalf("Fingerprint = %q, want 32 colon-separated uppercase hex bytes", got)
	}
	if strings.ReplaceAll(got, ":", "") != strings.ToUpper(hex.EncodeToString(sum[:])) {
		t.Fatalf("Fingerprint = %q is not SHA-256 of the DER", got)
	}
}

// TestSelfSignedCreateAndReload: the first call creates an ECDSA P-256
// certificate with the expected properties and a 0600 key; the second
// returns the same certificate without writing.
func TestSelfSignedCreateAndReload(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock(t0)
	cert, fp, created, err := LoadOrCreateSelfSigned(dir, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("created = false on an empty directory")
	}
	if fp != Fingerprint(cert.Certificate[0]) {
		t.Fatal("fingerprint does not match the certificate")
	}
	keyPath := filepath.Join(dir, "tls", "selfsigned.key")
	certPath := filepath.Join(dir, "tls", "selfsigned.crt")
	info, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", info.Mode().Perm())
	}
	if _, err := os.Stat(certPath); err != nil {
		t.Fatal(err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "tls", ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !leaf.NotAfter.Equal(t0.Add(90 * 24 * time.Hour)) {
		t.Errorf("NotAfter = %v, want now+90d", leaf.NotAfter)
	}
	if leaf.NotBefore.After(t0) {
		t.Errorf("NotBefore = %v is after now", leaf.NotBefore)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want serverAuth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("self-signed leaf is a CA")
	}
	if n := leaf.SerialNumber.BitLen(); n > 128 || n < 64 || leaf.SerialNumber.Sign() <= 0 {
		t.Errorf("serial has %d bits, want a positive random 128-bit number", n)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if !slices.Equal(ips, []string{"127.0.0.1", "::1"}) || !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("SANs = %v %v, want 127.0.0.1, ::1, localhost", ips, leaf.DNSNames)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%s): %v", name, err)
		}
	}

	clock.Advance(24 * time.Hour)
	cert2, fp2, created2, err := LoadOrCreateSelfSigned(dir, []string{"localhost", "::1", "127.0.0.1"}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if created2 || fp2 != fp || cert2.Leaf == nil {
		t.Fatalf("reload: created=%v fp=%s, want the same certificate %s", created2, fp2, fp)
	}
	// The stored pair also loads as operator files.
	if _, fp3, err := loadKeyPair(certPath, keyPath, clock.Now()); err != nil || fp3 != fp {
		t.Fatalf("loadKeyPair on the self-signed pair: %v %s", err, fp3)
	}
}

// TestSelfSignedRegenerated: expired, about to expire, different hosts, an
// exposed key and damaged files each lead to a new certificate.
func TestSelfSignedRegenerated(t *testing.T) {
	cases := []struct {
		name   string
		mangle func(t *testing.T, dir string, clock *fakeClock) []string // returns hosts
	}{
		{"expired", func(t *testing.T, dir string, c *fakeClock) []string { c.Advance(91 * 24 * time.Hour); return nil }},
		{"within 7 days of expiry", func(t *testing.T, dir string, c *fakeClock) []string {
			c.Advance(83*24*time.Hour + time.Minute)
			return nil
		}},
		{"not yet valid", func(t *testing.T, dir string, c *fakeClock) []string { c.Advance(-2 * time.Hour); return nil }},
		{"other hosts", func(t *testing.T, dir string, c *fakeClock) []string { return []string{"relais.example", "127.0.0.1"} }},
		{"key readable by others", func(t *testing.T, dir string, c *fakeClock) []string {
			if runtime.GOOS == "windows" {
				t.Skip("no POSIX modes")
			}
			if err := os.Chmod(filepath.Join(dir, "tls", "selfsigned.key"), 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"damaged key", func(t *testing.T, dir string, c *fakeClock) []string {
			if err := os.WriteFile(filepath.Join(dir, "tls", "selfsigned.key"), []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"missing cert", func(t *testing.T, dir string, c *fakeClock) []string {
			if err := os.Remove(filepath.Join(dir, "tls", "selfsigned.crt")); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newFakeClock(t0)
			_, fp, _, err := LoadOrCreateSelfSigned(dir, nil, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			hosts := tc.mangle(t, dir, clock)
			cert, fp2, created, err := LoadOrCreateSelfSigned(dir, hosts, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			if !created || fp2 == fp {
				t.Fatalf("created=%v, same fingerprint=%v; want a new certificate", created, fp2 == fp)
			}
			if !cert.Leaf.NotAfter.Equal(clock.Now().Add(90 * 24 * time.Hour)) {
				t.Errorf("new NotAfter = %v", cert.Leaf.NotAfter)
			}
			info, err := os.Stat(filepath.Join(dir, "tls", "selfsigned.key"))
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
				t.Errorf("key mode = %v", info.Mode().Perm())
			}
			// And it is stable again.
			if _, fp3, created, err := LoadOrCreateSelfSigned(dir, hosts, clock.Now); err != nil || created || fp3 != fp2 {
				t.Errorf("second load: created=%v err=%v", created, err)
			}
		})
	}
}

func TestSelfSignedBadHosts(t *testing.T) {
	for _, h := range []string{"bad host", "a..b", "-a.example", "fe80::1%eth0", "evil/x", ""} {
		if _, _, _, err := LoadOrCreateSelfSigned(t.TempDir(), []string{h}, nil); err == nil {
			t.Errorf("host %q accepted", h)
		}
	}
	_, _, _, err := LoadOrCreateSelfSigned(t.TempDir(), []string{"Relais.Example.", "[::1]", "::ffff:127.0.0.1"}, nil)
	if err != nil {
		t.Errorf("valid hosts refused: %v", err)
	}
}

// TestLoadKeyPairErrors: each operator mistake gets an error that names the
// file and says what to do.
func TestLoadKeyPairErrors(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	goodKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := signedCert(t, goodKey, now.Add(-time.Hour), now.Add(24*time.Hour))
	certFile, keyFile := writePair(t, t.TempDir(), good, goodKey)

	cert, fp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("good pair: %v", err)
	}
	if fp != Fingerprint(good.Certificate[0]) || cert.Leaf == nil {
		t.Error("good pair: wrong fingerprint or no leaf")
	}

	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mismatchCert, mismatchKey := writePair(t, t.TempDir(), good, otherKey)

	expired := signedCert(t, goodKey, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	expiredCert, expiredKey := writePair(t, t.TempDir(), expired, goodKey)

	future := signedCert(t, goodKey, now.Add(24*time.Hour), now.Add(48*time.Hour))
	futureCert, futureKey := writePair(t, t.TempDir(), future, goodKey)

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ed := signedCert(t, edKey, now.Add(-time.Hour), now.Add(time.Hour))
	edCert, edKeyFile := writePair(t, t.TempDir(), ed, edKey)

	small := rsaCert(t, 1024)
	smallCert, smallKey := writePair(t, t.TempDir(), small, small.PrivateKey)

	notPEM := filepath.Join(dir, "notpem.crt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name, cert, key string
		want            []string
	}{
		{"missing cert", missing, keyFile, []string{"tls cert file " + missing + ": no such file; pass --tls-cert/--tls-key or omit both for a self-signed certificate"}},
		{"missing key", certFile, missing, []string{"tls key file " + missing + ": no such file; pass --tls-cert/--tls-key or omit both"}},
		{"not PEM", notPEM, keyFile, []string{notPEM, "no PEM data"}},
		{"swapped", keyFile, certFile, []string{keyFile, `first PEM block is "PRIVATE KEY"`, "swapped"}},
		{"mismatched key", mismatchCert, mismatchKey, []string{mismatchKey, "is not the key of cert file", "does not match", "issued with this certificate"}},
		{"expired", expiredCert, expiredKey, []string{expiredCert, "expired on", "renewed certificate"}},
		{"not yet valid", futureCert, futureKey, []string{futureCert, "not valid before", "system clock"}},
		{"Ed25519", edCert, edKeyFile, []string{edCert, "Ed25519", "use an ECDSA P-256 certificate"}},
		{"RSA 1024", smallCert, smallKey, []string{smallCert, "1024-bit RSA", "2048"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := LoadKeyPair(tc.cert, tc.key)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

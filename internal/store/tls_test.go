package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/pgtest"
)

// TestPostgresVerifyFull (NET-5): the store connects to a PostgreSQL server
// that only accepts TLS, with sslmode=verify-full and the CA file in
// sslrootcert; the session is really encrypted (pg_stat_ssl). A CA file
// that did not issue the server's certificate, or a host name the
// certificate does not carry, is refused.
func TestPostgresVerifyFull(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{TLS: true})
	appURL := srv.NewDatabase(t)
	u, err := url.Parse(appURL)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("sslmode") != "verify-full" || q.Get("sslrootcert") != srv.CAFile() || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("not a verify-full TCP URL: %s", u.Redacted())
	}
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: appURL})
	if err != nil {
		t.Fatalf("open with verify-full: %v", err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ssl bool
	var version, cipher string
	if err := db.Platform(ctx, func(p *store.PlatformTx) error {
		return p.QueryRow(ctx, `SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version, &cipher)
	}); err != nil {
		t.Fatal(err)
	}
	if !ssl || (version != "TLSv1.3" && version != "TLSv1.2") {
		t.Fatalf("session not encrypted as required: ssl=%v version=%q cipher=%q", ssl, version, cipher)
	}
	t.Logf("store session: %s %s", version, cipher)

	// A CA that did not issue the server certificate.
	foreign := filepath.Join(t.TempDir(), "foreign-ca.pem")
	writeCA(t, foreign)
	q := u.Query()
	q.Set("sslrootcert", foreign)
	bad := *u
	bad.RawQuery = q.Encode()
	if db, err := store.Open(ctx, store.Options{URL: bad.String()}); err == nil {
		db.Close()
		t.Fatal("verify-full accepted a server certificate from an unknown CA")
	}
	// The right CA, but a host name the certificate does not carry: this
	// machine's own name when it resolves to 127.0.0.1 (the server listens
	// there only); the certificate names localhost and 127.0.0.1.
	name, _ := os.Hostname()
	if addrs, err := net.LookupHost(name); err != nil || !slices.Contains(addrs, "127.0.0.1") || name == "localhost" {
		t.Logf("host name check skipped: %q does not resolve to 127.0.0.1", name)
		return
	}
	wrongName := *u
	wrongName.Host = strings.Replace(u.Host, "127.0.0.1", name, 1)
	db2, err := store.Open(ctx, store.Options{URL: wrongName.String()})
	if err == nil {
		db2.Close()
		t.Fatal("verify-full accepted a certificate for another host name")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong host name refused for another reason: %v", err)
	}
}

func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "foreign"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

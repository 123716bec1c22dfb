package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/pebbletest"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/acme"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

const validity = 45 * 24 * time.Hour // a short-lived public certificate

type pebble = pebbletest.Server

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func startPebble(t *testing.T, tlsPort int) *pebble {
	t.Helper()
	return pebbletest.Start(t, tlsPort, validity)
}

type node struct {
	m   *acme.Manager
	reg *prometheus.Registry
}

func newNode(t *testing.T, st *store.DB, mk keys.MasterKey, p *pebble, name string, now func() time.Time) node {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := acme.New(acme.Options{Domains: []string{"localhost"}, DirectoryURL: p.DirectoryURL, DB: st, Master: mk,
		HTTPClient: p.Client, Node: name, Now: now, Registerer: reg, Email: "ops@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return node{m, reg}
}

// serveHTTPS serves "ok" on ln with the policy's TLS configuration and the
// manager as certificate source.
func serveHTTPS(t *testing.T, ln net.Listener, src tlsconf.CertSource) {
	t.Helper()
	cfg, err := tlsconf.ServerConfig(tlsconf.Options{Cert: src})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// served returns the leaf certificate a verifying client gets from addr.
func served(t *testing.T, addr string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("verifying TLS client: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func masterKey(t *testing.T) keys.MasterKey {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func expiryMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "relais_certificate_expiry_timestamp_seconds" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no expiry metric")
	return 0
}

// TestObtainServeRenew: a certificate is obtained from pebble through a
// real tls-alpn-01 validation of the server's own listener, served to a
// client that verifies it against pebble's root, shared with a second node
// through the store, renewed when forced and when two thirds of its life
// have passed, and never replaced by an RSA certificate.
//
// It runs on both dialects, each node with its own connection pool to the
// same database, as two processes would.
func TestObtainServeRenew(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		obtainServeRenew(t, openShared(t, store.Options{DataDir: dir}), openShared(t, store.Options{DataDir: dir}))
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresURL(t)
		obtainServeRenew(t, openShared(t, store.Options{URL: url}), openShared(t, store.Options{URL: url}))
	})
}

func openShared(t *testing.T, o store.Options) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func obtainServeRenew(t *testing.T, st, st2 *store.DB) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
	mk := masterKey(t)
	ctx := context.Background()
	a := newNode(t, st, mk, p, "node-a", nil)
	serveHTTPS(t, ln, a.m)
	addr := ln.Addr().String()

	// Before the first order, handshakes fail (no fallback certificate).
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}); err == nil { // #nosec G402 -- the test checks that no certificate at all is served
		c.Close()
		t.Fatal("a handshake succeeded before any certificate was obtained")
	}

	if err := a.m.Ensure(ctx); err != nil {
		t.Fatalf("obtain: %v", err)
	}
	if a.m.Issued() != 1 {
		t.Fatalf("issued %d certificates, want 1", a.m.Issued())
	}
	first := served(t, addr, p.Roots)
	pub, ok := first.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("served key %T, want ECDSA P-256", first.PublicKey)
	}
	if got := first.NotAfter.Sub(first.NotBefore); got < validity-time.Hour || got > validity+time.Hour {
		t.Errorf("lifetime %v, want about %v", got, validity)
	}
	if got := expiryMetric(t, a.reg); got != float64(first.NotAfter.Unix()) {
		t.Errorf("expiry metric %v, want %d", got, first.NotAfter.Unix())
	}
	// A second Ensure does nothing: the certificate is far from due.
	if err := a.m.Ensure(ctx); err != nil || a.m.Issued() != 1 {
		t.Fatalf("second Ensure: err %v, issued %d", err, a.m.Issued())
	}

	// A second node on the same store loads the certificate, orders nothing.
	b := newNode(t, st2, mk, p, "node-b", nil)
	if err := b.m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if b.m.Issued() != 0 || b.m.Leaf().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("node b: issued %d, serial %v, want 0 and %v", b.m.Issued(), b.m.Leaf().SerialNumber, first.SerialNumber)
	}

	// A client that cannot do ECDSA (TLS 1.2, RSA suites only) is refused;
	// no RSA certificate is ordered for it.
	rsaOnly := &tls.Config{ServerName: "localhost", RootCAs: p.Roots, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}}
	if c, err := tls.Dial("tcp", addr, rsaOnly); err == nil {
		t.Errorf("an RSA-only client got a connection with a %T certificate", c.ConnectionState().PeerCertificates[0].PublicKey)
		c.Close()
	}
	if a.m.Issued() != 1 {
		t.Fatal("a handshake triggered an order")
	}

	// Forced renewal: a new certificate, served at once, picked up by b.
	if err := a.m.Renew(ctx); err != nil {
		t.Fatalf("forced renewal: %v", err)
	}
	second := served(t, addr, p.Roots)
	if a.m.Issued() != 2 || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("after Renew: issued %d, serial unchanged %v", a.m.Issued(), second.SerialNumber.Cmp(first.SerialNumber) == 0)
	}
	if err := b.m.Ensure(ctx); err != nil || b.m.Leaf().SerialNumber.Cmp(second.SerialNumber) != 0 || b.m.Issued() != 0 {
		t.Fatalf("node b did not pick up the renewed certificate (err %v)", err)
	}

	// Renewal when due: a node whose clock is past two thirds of the
	// lifetime (15 days before the end of a 45-day certificate) renews.
	due := acme.RenewAt(second)
	if left := second.NotAfter.Sub(due); left < 14*24*time.Hour || left > 16*24*time.Hour {
		t.Errorf("renewal %v before expiry, want about 15 days for a 45-day certificate", left)
	}
	later := newNode(t, st2, mk, p, "node-c", func() time.Time { return due.Add(time.Minute) })
	if err := later.m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if later.m.Issued() != 1 || later.m.Leaf().SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatalf("a due certificate was not renewed (issued %d)", later.m.Issued())
	}
	// Node b, still before the due date, serves the renewed one next check.
	if err := b.m.Ensure(ctx); err != nil || b.m.Leaf().SerialNumber.Cmp(later.m.Leaf().SerialNumber) != 0 {
		t.Fatalf("node b did not pick up the third certificate (err %v)", err)
	}
}

// TestLease: while one node holds the renewal lease, another does not order
// and a forced renewal there says why.
func TestLease(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
	st := storetest.OpenSQLite(t, storetest.Options{})
	mk := masterKey(t)
	ctx := context.Background()
	a := newNode(t, st, mk, p, "node-a", nil)
	serveHTTPS(t, ln, a.m)
	// Another node took the lease and died: it holds it for 10 minutes.
	if err := st.Platform(ctx, func(tx *store.PlatformTx) error {
		_, err := tx.Exec(ctx, `INSERT INTO acme_state (name, public, secret_wrap, not_after, updated_at, lease_owner, lease_until)
			VALUES ($1, $2, $3, 0, 0, 'dead-node', $4)`, "lock:localhost", []byte{}, []byte{}, store.Micros(time.Now().Add(10*time.Minute)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("Ensure under a foreign lease: %v", err)
	}
	if err := a.m.Renew(ctx); err == nil || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("Renew under a foreign lease: %v", err)
	}
	// Once the lease has expired, the node orders.
	c := newNode(t, st, mk, p, "node-c", func() time.Time { return time.Now().Add(11 * time.Minute) })
	if err := c.m.Ensure(ctx); err != nil || c.m.Issued() != 1 {
		t.Fatalf("after the lease expired: err %v issued %d", err, c.m.Issued())
	}
}

func TestNewRejectsBadDomains(t *testing.T) {
	st := storetest.OpenSQLite(t, storetest.Options{})
	mk := masterKey(t)
	for _, d := range [][]string{nil, {""}, {"*.example.com"}, {"example.com."}, {"a b"}, {"https://x"}} {
		if _, err := acme.New(acme.Options{Domains: d, DB: st, Master: mk}); err == nil {
			t.Errorf("domains %q accepted", d)
		}
	}
}

// TestHTTP01: with Challenge "http-01", pebble validates through the
// plain-HTTP handler (served here on the port pebble's validation
// authority uses as port 80).
func TestHTTP01(t *testing.T) {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := pebbletest.StartHTTP01(t, httpLn.Addr().(*net.TCPAddr).Port, validity)
	st := storetest.OpenSQLite(t, storetest.Options{})
	m, err := acme.New(acme.Options{Domains: []string{"localhost"}, DirectoryURL: p.DirectoryURL, DB: st, Master: masterKey(t),
		HTTPClient: p.Client, Challenge: "http-01"})
	if err != nil {
		t.Fatal(err)
	}
	fallbackHit := false
	srv := &http.Server{Handler: m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fallbackHit = true
		http.Redirect(w, r, "https://localhost/", http.StatusPermanentRedirect)
	})), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(httpLn) }()
	t.Cleanup(func() { _ = srv.Close() })
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatalf("http-01 order: %v", err)
	}
	if m.Issued() != 1 || m.Leaf() == nil {
		t.Fatal("no certificate")
	}
	// Other paths still reach the fallback (the HTTPS redirect); unknown
	// tokens are 404.
	res, err := http.Get("http://" + httpLn.Addr().String() + "/.well-known/acme-challenge/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 || fallbackHit {
		t.Errorf("unknown token: %d (fallback %v)", res.StatusCode, fallbackHit)
	}
	if _, err := acme.New(acme.Options{Domains: []string{"localhost"}, DB: st, Master: masterKey(t), Challenge: "dns-01"}); err == nil {
		t.Error("dns-01 accepted")
	}
}

// TestConcurrentNodesOrderOnce: two nodes starting together on an empty
// store (each with its own connection pool) order one certificate between
// them, thanks to the lease, and end up serving the same one.
func TestConcurrentNodesOrderOnce(t *testing.T) {
	run := func(t *testing.T, st, st2 *store.DB) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
		mk := masterKey(t)
		a := newNode(t, st, mk, p, "node-a", nil)
		b := newNode(t, st2, mk, p, "node-b", nil)
		// The CA may validate through either node: both serve the same port
		// here through a source that asks each in turn.
		serveHTTPS(t, ln, either{a.m, b.m})
		ctx := context.Background()
		errs := make(chan error, 2)
		for _, n := range []node{a, b} {
			go func() { errs <- n.m.Ensure(ctx) }()
		}
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil && !strings.Contains(err.Error(), "another node") {
				t.Fatalf("Ensure: %v", err)
			}
		}
		if got := a.m.Issued() + b.m.Issued(); got != 1 {
			t.Fatalf("%d certificates ordered by two nodes starting together, want 1", got)
		}
		for _, n := range []node{a, b} {
			if err := n.m.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if a.m.Leaf().SerialNumber.Cmp(b.m.Leaf().SerialNumber) != 0 || a.m.Issued()+b.m.Issued() != 1 {
			t.Fatal("the nodes serve different certificates")
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		run(t, openShared(t, store.Options{DataDir: dir}), openShared(t, store.Options{DataDir: dir}))
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresURL(t)
		run(t, openShared(t, store.Options{URL: url}), openShared(t, store.Options{URL: url}))
	})
}

// either serves the first source that has a certificate (a stand-in for a
// load balancer in front of two nodes).
type either []*acme.Manager

func (e either) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var err error
	for _, m := range e {
		var c *tls.Certificate
		if c, err = m.GetCertificate(h); err == nil {
			return c, nil
		}
	}
	return nil, err
}

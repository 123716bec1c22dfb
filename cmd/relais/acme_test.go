package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/testkit/pebbletest"
)

// TestServeWithACME: `relais serve --acme-domain localhost` against a local
// pebble obtains a certificate through a tls-alpn-01 validation of its own
// HTTPS port and serves it (a client verifying against pebble's root
// accepts it); `relais tls acme-status` shows it and `relais tls acme-renew`
// renews it from another process.
func TestServeWithACME(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	tlsPort, _ := strconv.Atoi(port)
	peb := pebbletest.Start(t, tlsPort, 0)
	caFile := filepath.Join(dir, "acme-directory-ca.pem")
	if err := os.WriteFile(caFile, peb.DirectoryCAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := freePort(t)
	env := cleanEnv("HOME="+dir, "RELAIS_TLS_ACME_CA_FILE="+caFile, "RELAIS_TLS_ACME_CHECK_INTERVAL=1s")
	srv := startServe(t, dir, env,
		"--listen", addr, "--metrics-listen", metrics, "--acme-domain", "localhost", "--acme-directory", peb.DirectoryURL, "--acme-email", "ops@example.com")

	var state tls.ConnectionState
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: peb.Roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			state = c.ConnectionState()
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from pebble served within 60s (last error %v); server stderr:\n%s", err, srv.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	leaf := state.PeerCertificates[0]
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.DNSNames[0] != "localhost" {
		t.Fatalf("served certificate: %T %v", leaf.PublicKey, leaf.DNSNames)
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: peb.Roots, MinVersion: tls.VersionTLS12}}}
	res, err := cl.Get("https://localhost:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// The operator sees it and forces a renewal from another process: the
	// running server answers the CA's validation (the challenge is in the
	// store) and serves the new certificate at its next check.
	cliEnv := append(env, "RELAIS_TLS_ACME_DOMAINS=localhost", "RELAIS_TLS_ACME_DIRECTORY="+peb.DirectoryURL)
	r := relais(t, dir, cliEnv, "", "tls", "acme-status")
	if r.code != 0 || !strings.Contains(r.stdout, leaf.SerialNumber.Text(16)) || !strings.Contains(r.stdout, "renewal from:") {
		t.Fatalf("acme-status: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = relais(t, dir, cliEnv, "", "tls", "acme-renew")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "renewed: serial ") {
		t.Fatalf("acme-renew: %d %s %s", r.code, r.stdout, r.stderr)
	}
	newSerial := strings.TrimSuffix(strings.Fields(r.stdout)[2], ",")
	if newSerial == leaf.SerialNumber.Text(16) {
		t.Fatal("acme-renew kept the serial")
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: peb.Roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
		c.Close()
		if got == newSerial {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still serves %s, not the renewed %s", got, newSerial)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

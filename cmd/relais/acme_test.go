package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"io"
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
// HTTPS port, serves it (a client verifying against pebble's root accepts
// it), and exposes its expiry as a metric.
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
	res, err = http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `relais_tls_certificate_expiry_timestamp_seconds{source="acme"}`) {
			found = true
			v, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			if err != nil || int64(v) != leaf.NotAfter.Unix() {
				t.Errorf("expiry metric %q, want %d", line, leaf.NotAfter.Unix())
			}
		}
	}
	if !found {
		t.Errorf("no ACME expiry metric in:\n%s", body)
	}

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

// TestCertificateExpiryMetric: without ACME, the expiry of the served
// (self-signed) certificate is a metric too.
func TestCertificateExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	addr, metrics := freePort(t), freePort(t)
	srv := startServe(t, dir, cleanEnv("HOME="+dir), "--listen", addr, "--metrics-listen", metrics)
	waitHealthy(t, srv, "https://"+addr)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- reads the self-signed certificate's date
	if err != nil {
		t.Fatal(err)
	}
	notAfter := c.ConnectionState().PeerCertificates[0].NotAfter.Unix()
	c.Close()
	res, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, `relais_tls_certificate_expiry_timestamp_seconds{source="self-signed"}`) {
			v, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			if err != nil || int64(v) != notAfter {
				t.Fatalf("metric %q, want %d", line, notAfter)
			}
			return
		}
	}
	t.Fatalf("no self-signed expiry metric in:\n%s", body)
}

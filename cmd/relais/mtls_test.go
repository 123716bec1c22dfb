package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeWithClientCertificates: `relais serve` with tls.client_auth_file
// naming a platform authority that requires certificates asks clients for
// one; the API refuses a client without it, or with a certificate of
// another CA, and lets one with a mapped certificate through to
// authentication; the health check needs none.
func TestServeWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("HOME=" + dir)
	run := func(args ...string) string {
		t.Helper()
		r := relais(t, dir, env, "", args...)
		if r.code != 0 {
			t.Fatalf("relais %v: %s", args, r.stderr)
		}
		return r.stdout
	}
	run("pki", "ca", "create", "--name", "API clients", "--out", dir)
	run("pki", "client", "issue", "--ca", dir, "--cn", "billing-bot", "--out", dir)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	run("pki", "ca", "create", "--name", "Someone else", "--out", other)
	run("pki", "client", "issue", "--ca", other, "--cn", "billing-bot", "--out", other)
	authFile := filepath.Join(dir, "clients.toml")
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf(`[[authority]]
name = "platform"
ca_file = %q
require = true
[[authority.client]]
match = "cn:billing-bot"
tenant = "t-1"
service_account = "c-1"
`, filepath.Join(dir, "ca.crt"))), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	srv := startServe(t, dir, cleanEnv("HOME="+dir, "RELAIS_TLS_CLIENT_AUTH_FILE="+authFile), "--listen", addr, "--metrics-listen", "")
	waitHealthy(t, srv, "https://"+addr) // no certificate needed for health

	get := func(certDir string) (int, string) {
		tc := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // #nosec G402 -- self-signed test server
		if certDir != "" {
			kp, err := tls.LoadX509KeyPair(filepath.Join(certDir, "billing-bot.crt"), filepath.Join(certDir, "billing-bot.key"))
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		res, err := cl.Get("https://" + addr + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(body, &p)
		return res.StatusCode, p.Code
	}
	if code, c := get(""); code != 401 || c != "client_certificate_required" {
		t.Errorf("without a certificate: %d %s", code, c)
	}
	if code, c := get(other); code != 401 || c != "client_certificate_refused" {
		t.Errorf("certificate of another CA: %d %s", code, c)
	}
	// Accepted: the request reaches authentication, which wants a token.
	if code, c := get(dir); code != 401 || !strings.Contains(c, "unauthenticated") {
		t.Errorf("mapped certificate without a token: %d %s", code, c)
	}
}

package web

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/mtls"
	"github.com/relais-dev/relais/internal/web/problem"
)

// TestCertificateBoundClients: with tenant A requiring mTLS, its API
// client's access token is accepted only with the client certificate mapped
// to that client; tenant B, which does not require it, is unaffected. The
// TLS handshake itself is exercised in internal/web/mtls; here the peer
// certificates are set on the request as the TLS server would.
func TestCertificateBoundClients(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newTokenFixture(t, db)
		dir := t.TempDir()
		now := time.Now()
		ca, err := mtls.NewCA("tenant A clients", time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := mtls.WritePair(dir, "ca", ca.Cert, ca.Key); err != nil {
			t.Fatal(err)
		}
		bot, _, err := ca.IssueClient(mtls.ClientRequest{CommonName: "ci-bot", Validity: time.Hour}, now)
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := ca.IssueClient(mtls.ClientRequest{CommonName: "other-bot", Validity: time.Hour}, now)
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "clients.toml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`[[authority]]
name = "A"
tenant = %q
ca_file = %q
require = true
[[authority.client]]
match = "cn:ci-bot"
service_account = %q
[[authority.client]]
match = "cn:other-bot"
service_account = "someone-else"
`, f.a.ID, filepath.Join(dir, "ca.crt"), f.clientA.ID)), 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := mtls.Load(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		code, out := f.token(t, url.Values{"grant_type": {"client_credentials"}}, true)
		if code != 200 {
			t.Fatalf("token: %d", code)
		}
		tok := out["access_token"].(string)
		s := New(Options{DB: db, Tenants: f.id.Tenants, Identity: f.id, Access: f.acc, Keys: f.ks, Issuer: f.issuer, Verifier: f.verifier, ClientCerts: v})
		call := func(cert *x509.Certificate) (int, string) {
			req := httptest.NewRequest("GET", "/api/v1/me", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.TLS = &tls.ConnectionState{HandshakeComplete: true}
			if cert != nil {
				req.TLS.PeerCertificates = []*x509.Certificate{cert}
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			var p problem.Problem
			_ = json.Unmarshal(rec.Body.Bytes(), &p)
			return rec.Code, p.Code + rec.Body.String()
		}
		if code, body := call(nil); code != 401 || !strings.HasPrefix(body, mtls.CodeRequired) {
			t.Errorf("token without certificate: %d %s", code, body)
		}
		if code, body := call(other); code != 401 || !strings.HasPrefix(body, mtls.CodeMismatch) {
			t.Errorf("token with another account's certificate: %d %s", code, body)
		}
		if code, body := call(bot); code != 200 || !strings.Contains(body, f.clientA.ID) {
			t.Errorf("token with its certificate: %d %s", code, body)
		}
	})
}

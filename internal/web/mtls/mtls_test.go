package mtls

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/web/problem"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

type pki struct {
	dir      string
	a, b, x  *CA // tenant t1's CA, tenant t2's CA, a CA nobody trusts
	serverCA *CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	now := time.Now()
	p := &pki{dir: t.TempDir()}
	var err error
	for _, c := range []struct {
		ca   **CA
		name string
	}{{&p.a, "t1 clients"}, {&p.b, "t2 clients"}, {&p.x, "stranger"}, {&p.serverCA, "server"}} {
		if *c.ca, err = NewCA(c.name, 24*time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	for name, ca := range map[string]*CA{"a": p.a, "b": p.b} {
		if _, _, err := WritePair(p.dir, name, ca.Cert, ca.Key); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *pki) client(t *testing.T, ca *CA, req ClientRequest) tls.Certificate {
	t.Helper()
	if req.Validity == 0 {
		req.Validity = time.Hour
	}
	c, k, err := ca.IssueClient(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

func (p *pki) writeConfig(t *testing.T, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[[authority]]
name = "t1"
tenant = "t1"
ca_file = %q
require = true
%s
[[authority.client]]
match = "cn:billing-bot"
service_account = "svc-1"

[[authority.client]]
match = "dns:bot.t1.example"
service_account = "svc-2"

[[authority]]
name = "t2"
tenant = "t2"
ca_file = %q

[[authority.client]]
match = "email:ops@t2.example"
service_account = "svc-9"
`, filepath.Join(p.dir, "a.crt"), extra, filepath.Join(p.dir, "b.crt"))
	path := filepath.Join(p.dir, "clients.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// server serves, behind the Verifier's middleware, an endpoint that accepts
// a (simulated) access token of ?tenant=&account= and answers the identity.
func server(t *testing.T, p *pki, v *Verifier) string {
	t.Helper()
	// The server's own certificate (the clients here do not verify it).
	c, k, err := p.serverCA.IssueClient(ClientRequest{CommonName: "localhost", DNS: []string{"localhost"}, Validity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := tlsconf.NewCertStore(tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconf.ServerConfig(tlsconf.Options{Cert: cs})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientAuth = TLSClientAuth
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" { // public: no token, no Check
			_, _ = io.WriteString(w, "null\n")
			return
		}
		if pr := v.Check(r.Context(), r.URL.Query().Get("tenant"), r.URL.Query().Get("account")); pr != nil {
			problem.Write(w, r, *pr)
			return
		}
		_ = json.NewEncoder(w).Encode(FromContext(r.Context()))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

type result struct {
	status int
	code   string
	id     *Identity
}

func call(t *testing.T, base, path string, cert *tls.Certificate) result {
	t.Helper()
	tc := &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- the test checks client certificates, not the server's
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	res, err := cl.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := result{status: res.StatusCode}
	if res.StatusCode == 200 {
		r.id = new(Identity)
		if err := json.Unmarshal(body, r.id); err != nil {
			t.Fatalf("%s", body)
		}
		if string(body) == "null\n" {
			r.id = nil
		}
	} else {
		var p problem.Problem
		_ = json.Unmarshal(body, &p)
		r.code = p.Code
	}
	return r
}

// TestClientCertificates: without a certificate, with one from another CA,
// a revoked one (fingerprint list, CRL), an expired one, an unmapped one or
// one of another account, a tenant that requires mTLS refuses; an accepted
// one is mapped to its service account.
func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	good := p.client(t, p.a, ClientRequest{CommonName: "billing-bot"})
	byDNS := p.client(t, p.a, ClientRequest{CommonName: "x", DNS: []string{"bot.t1.example"}})
	unmapped := p.client(t, p.a, ClientRequest{CommonName: "somebody"})
	revokedFP := p.client(t, p.a, ClientRequest{CommonName: "billing-bot"})
	revokedCRL := p.client(t, p.a, ClientRequest{CommonName: "billing-bot"})
	stranger := p.client(t, p.x, ClientRequest{CommonName: "billing-bot"})
	t2 := p.client(t, p.b, ClientRequest{CommonName: "ops", Emails: []string{"ops@t2.example"}})
	expiredC, expiredK, err := p.a.IssueClient(ClientRequest{CommonName: "billing-bot", Validity: time.Minute}, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := tls.Certificate{Certificate: [][]byte{expiredC.Raw}, PrivateKey: expiredK}
	crl, err := p.a.CRL([]*x509.Certificate{revokedCRL.Leaf}, 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crlPath := filepath.Join(p.dir, "a.crl")
	if err := os.WriteFile(crlPath, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := p.writeConfig(t, fmt.Sprintf("crl_file = %q\nrevoked = [%q]\n", crlPath, Fingerprint(revokedFP.Leaf)))
	v, err := Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := server(t, p, v)
	t1 := "/api/x?tenant=t1&account=svc-1"

	cases := []struct {
		name   string
		path   string
		cert   *tls.Certificate
		status int
		code   string
	}{
		{"no certificate", t1, nil, 401, CodeRequired},
		{"another CA", t1, &stranger, 401, CodeRefused},
		{"revoked by fingerprint", t1, &revokedFP, 401, CodeRefused},
		{"revoked by CRL", t1, &revokedCRL, 401, CodeRefused},
		{"expired", t1, &expired, 401, CodeRefused},
		{"unmapped", t1, &unmapped, 401, CodeRefused},
		{"another account's certificate", t1, &byDNS, 401, CodeMismatch},
		{"another tenant's certificate", t1, &t2, 401, CodeMismatch},
		{"accepted", t1, &good, 200, ""},
		{"tenant without require, no certificate", "/api/x?tenant=t2&account=svc-9", nil, 200, ""},
		{"tenant t2 with its certificate", "/api/x?tenant=t2&account=svc-9", &t2, 200, ""},
	}
	for _, c := range cases {
		got := call(t, base, c.path, c.cert)
		if got.status != c.status || got.code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, got.status, got.code, c.status, c.code)
		}
	}
	if got := call(t, base, t1, &good); got.id == nil || got.id.Tenant != "t1" || got.id.ServiceAccount != "svc-1" ||
		got.id.Fingerprint != Fingerprint(good.Leaf) || got.id.Authority != "t1" {
		t.Errorf("accepted identity %+v", got.id)
	}
	if got := call(t, base, "/api/x?tenant=t2&account=svc-9", &t2); got.id == nil || got.id.ServiceAccount != "svc-9" {
		t.Errorf("t2 identity %+v", got.id)
	}

	// Revoking the good certificate later: a new CRL, then Reload.
	crl, err = p.a.CRL([]*x509.Certificate{revokedCRL.Leaf, good.Leaf}, 2, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crlPath, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := call(t, base, t1, &good); got.status != 401 || got.code != CodeRefused {
		t.Errorf("after revocation: %+v", got)
	}
}

// TestPlatformRequire: a platform authority with require = true refuses API
// requests without a certificate, but not the health check.
func TestPlatformRequire(t *testing.T) {
	p := newPKI(t)
	path := filepath.Join(p.dir, "platform.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`[[authority]]
name = "platform"
ca_file = %q
require = true
[[authority.client]]
match = "sha256:%s"
tenant = "t1"
service_account = "svc-1"
`, filepath.Join(p.dir, "a.crt"), "00"+strings.Repeat("ab", 31))), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := server(t, p, v)
	if got := call(t, base, "/api/x?tenant=t9&account=a", nil); got.status != 401 || got.code != CodeRequired {
		t.Errorf("API without certificate: %+v", got)
	}
	if got := call(t, base, "/healthz", nil); got.status != 200 {
		t.Errorf("health without certificate: %+v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	p := newPKI(t)
	foreignCRL, err := p.x.CRL(nil, 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crlPath := filepath.Join(p.dir, "x.crl")
	if err := os.WriteFile(crlPath, foreignCRL, 0o600); err != nil {
		t.Fatal(err)
	}
	leaf := p.client(t, p.a, ClientRequest{CommonName: "leaf"})
	if _, _, err := WritePair(p.dir, "leaf", leaf.Leaf, leaf.PrivateKey.(crypto.Signer)); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(p.dir, "a.crt")
	for name, body := range map[string]string{
		"CRL of another CA": fmt.Sprintf("[[authority]]\nca_file = %q\ncrl_file = %q\n", ca, crlPath),
		"leaf as CA":        fmt.Sprintf("[[authority]]\nca_file = %q\n", filepath.Join(p.dir, "leaf.crt")),
		"bad match":         fmt.Sprintf("[[authority]]\ntenant = \"t\"\nca_file = %q\n[[authority.client]]\nmatch = \"subject=x\"\nservice_account = \"s\"\n", ca),
		"cross-tenant map":  fmt.Sprintf("[[authority]]\ntenant = \"t\"\nca_file = %q\n[[authority.client]]\nmatch = \"cn:x\"\ntenant = \"u\"\nservice_account = \"s\"\n", ca),
		"unknown key":       fmt.Sprintf("[[authority]]\nca_file = %q\nrequire_all = true\n", ca),
		"bad fingerprint":   fmt.Sprintf("[[authority]]\nca_file = %q\nrevoked = [\"abc\"]\n", ca),
		"empty":             "",
	} {
		path := filepath.Join(p.dir, "bad.toml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	// A CRL past its next update refuses every certificate of the CA.
	good := p.client(t, p.a, ClientRequest{CommonName: "billing-bot"})
	crl, _ := p.a.CRL(nil, 1, time.Hour, time.Now())
	okCRL := filepath.Join(p.dir, "ok.crl")
	if err := os.WriteFile(okCRL, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(p.dir, "c.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[[authority]]\ntenant = \"t1\"\nca_file = %q\ncrl_file = %q\n[[authority.client]]\nmatch = \"cn:billing-bot\"\nservice_account = \"s\"\n", ca, okCRL)), 0o600); err != nil {
		t.Fatal(err)
	}
	late := time.Now().Add(2 * time.Hour)
	v, err := Load(cfg, func() time.Time { return late })
	if err != nil {
		t.Fatal(err)
	}
	// (The certificate itself is valid for one hour: use its validity window.)
	v.now = func() time.Time { return time.Now().Add(30 * time.Minute) }
	if _, err := v.Identify([]*x509.Certificate{good.Leaf}); err != nil {
		t.Fatalf("fresh CRL: %v", err)
	}
	crl, _ = p.a.CRL(nil, 2, 10*time.Minute, time.Now())
	if err := os.WriteFile(okCRL, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Identify([]*x509.Certificate{good.Leaf}); err == nil || !strings.Contains(err.Error(), "out of date") {
		t.Fatalf("stale CRL: %v", err)
	}
}

package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
	"github.com/relais-dev/relais/internal/web/secheaders"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

type fixture struct {
	srv   *Server
	db    *store.DB
	reg   *prometheus.Registry
	token string
}

func newFixture(t *testing.T, db *store.DB) *fixture {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := New(Options{
		Registry: reg, DB: db, Tenants: &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()},
		MaxBodyBytes: 4096, ShutdownTimeout: 5 * time.Second, Version: "test",
	})
	_, tok, err := optoken.Create(context.Background(), db, "test")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, db: db, reg: reg, token: tok}
}

func (f *fixture) do(t *testing.T, method, path, contentType, body string, auth bool) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func decodeProblem(t *testing.T, res *http.Response, body []byte) problem.Problem {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("status %d with content type %q, want a problem document: %s", res.StatusCode, ct, body)
	}
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if p.Code == "" || p.Status != res.StatusCode || p.RequestID == "" {
		t.Fatalf("incomplete problem: %+v", p)
	}
	return p
}

var securityHeaders = []string{"Strict-Transport-Security", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"}

func TestHealthReadyAndHeaders(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		for _, path := range []string{"/healthz", "/readyz", "/api/v1", "/nope", "/api/v1/tenants"} {
			res, body := f.do(t, "GET", path, "", "", false)
			for _, h := range securityHeaders {
				if res.Header.Get(h) == "" {
					t.Errorf("%s: missing %s", path, h)
				}
			}
			if !strings.Contains(res.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("%s: CSP lacks frame-ancestors 'none'", path)
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: no request id", path)
			}
			// API responses carry the API set (secheaders.APIHeaders), the
			// others the page set.
			wantCSP := secheaders.ContentSecurityPolicy
			if strings.HasPrefix(path, "/api/") {
				wantCSP = secheaders.APIContentSecurityPolicy
			}
			if got := res.Header.Get("Content-Security-Policy"); got != wantCSP || res.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%s: CSP %q, X-Frame-Options %q", path, got, res.Header.Get("X-Frame-Options"))
			}
			switch path {
			case "/healthz", "/readyz", "/api/v1":
				if res.StatusCode != 200 {
					t.Errorf("%s: %d %s", path, res.StatusCode, body)
				}
			case "/nope":
				if p := decodeProblem(t, res, body); p.Code != problem.CodeNotFound {
					t.Errorf("404 code %q", p.Code)
				}
			case "/api/v1/tenants":
				if p := decodeProblem(t, res, body); res.StatusCode != 401 || p.Code != problem.CodeUnauthorized {
					t.Errorf("unauthenticated: %d %+v", res.StatusCode, p)
				}
			}
		}
		res, body := f.do(t, "DELETE", "/healthz", "", "", false)
		if p := decodeProblem(t, res, body); res.StatusCode != 405 || p.Code != problem.CodeMethodNotAllowed || res.Header.Get("Allow") == "" {
			t.Errorf("405: %d %+v allow=%q", res.StatusCode, p, res.Header.Get("Allow"))
		}
	})
}

func TestReadyzReportsAClosedStore(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newFixture(t, db)
	_ = db.Close()
	res, body := f.do(t, "GET", "/readyz", "", "", false)
	if p := decodeProblem(t, res, body); res.StatusCode != 503 || p.Code != problem.CodeUnavailable {
		t.Fatalf("readyz on a closed store: %d %+v", res.StatusCode, p)
	}
	if strings.Contains(string(body), "sql") {
		t.Fatalf("readyz leaks internals: %s", body)
	}
}

func TestTenantAPIAndBadInput(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		res, body := f.do(t, "POST", "/api/v1/tenants", "application/json", `{"name":"Acme","slug":"acme"}`, true)
		if res.StatusCode != 201 {
			t.Fatalf("create: %d %s", res.StatusCode, body)
		}
		var created tenants.Tenant
		_ = json.Unmarshal(body, &created)
		if res.Header.Get("Location") != "/api/v1/tenants/"+created.ID {
			t.Fatalf("location %q", res.Header.Get("Location"))
		}
		bad := []struct {
			name, ct, body string
			status         int
			code           string
		}{
			{"malformed json", "application/json", `{"name":`, 400, problem.CodeBadJSON},
			{"not an object", "application/json", `[1,2]`, 400, problem.CodeBadJSON},
			{"unknown field", "application/json", `{"name":"B","slug":"b","admin":true}`, 400, problem.CodeUnknownField},
			{"trailing data", "application/json", `{"name":"B","slug":"bb"} {}`, 400, problem.CodeBadJSON},
			{"wrong type", "application/json", `{"name":5,"slug":"bb"}`, 400, problem.CodeValidation},
			{"wrong content type", "text/plain", `{"name":"B","slug":"bb"}`, 415, problem.CodeUnsupportedMediaType},
			{"no content type", "", `{"name":"B","slug":"bb"}`, 415, problem.CodeUnsupportedMediaType},
			{"oversized", "application/json", `{"name":"` + strings.Repeat("x", 5000) + `","slug":"bb"}`, 413, problem.CodeBodyTooLarge},
			{"empty body", "application/json", ``, 400, problem.CodeBadJSON},
			{"invalid slug", "application/json", `{"name":"B","slug":"B B"}`, 422, problem.CodeValidation},
			{"duplicate slug", "application/json", `{"name":"B","slug":"acme"}`, 409, problem.CodeConflict},
		}
		for _, tc := range bad {
			res, body := f.do(t, "POST", "/api/v1/tenants", tc.ct, tc.body, true)
			p := decodeProblem(t, res, body)
			if res.StatusCode != tc.status || p.Code != tc.code {
				t.Errorf("%s: %d %q, want %d %q (%s)", tc.name, res.StatusCode, p.Code, tc.status, tc.code, p.Detail)
			}
			if strings.Contains(p.Detail, "json:") || strings.Contains(p.Detail, "main.") || strings.Contains(p.Detail, "web.") {
				t.Errorf("%s: detail leaks Go internals: %q", tc.name, p.Detail)
			}
		}
		// Nothing was created by the bad requests.
		res, body = f.do(t, "GET", "/api/v1/tenants", "", "", true)
		var list struct{ Tenants []tenants.Tenant }
		_ = json.Unmarshal(body, &list)
		if res.StatusCode != 200 || len(list.Tenants) != 1 {
			t.Fatalf("after bad input: %d %s", res.StatusCode, body)
		}
		// Show, disable, unknown.
		if res, _ := f.do(t, "GET", "/api/v1/tenants/acme", "", "", true); res.StatusCode != 200 {
			t.Fatalf("show: %d", res.StatusCode)
		}
		if res, body := f.do(t, "POST", "/api/v1/tenants/acme/disable", "", "", true); res.StatusCode != 200 || !strings.Contains(string(body), `"disabled"`) {
			t.Fatalf("disable: %d %s", res.StatusCode, body)
		}
		res, body = f.do(t, "GET", "/api/v1/tenants/nobody", "", "", true)
		if p := decodeProblem(t, res, body); res.StatusCode != 404 || p.Code != problem.CodeNotFound {
			t.Fatalf("unknown tenant: %d %+v", res.StatusCode, p)
		}
	})
}

func TestOperatorTokenChecks(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newFixture(t, db)
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic abc", "Bearer rlo_wrong", "Bearer " + strings.Repeat("a", 5000), "Bearer " + f.token + "x"} {
		req := httptest.NewRequest("GET", "/api/v1/tenants", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %.30q: %d", h, rec.Code)
		}
	}
	toks, _ := optoken.List(context.Background(), db)
	if err := optoken.Revoke(context.Background(), db, toks[0].ID); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.do(t, "GET", "/api/v1/tenants", "", "", true); res.StatusCode != 401 {
		t.Fatalf("revoked token accepted: %d", res.StatusCode)
	}
}

func TestEveryRouteDeclaresAPermission(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newFixture(t, db)
	for _, rt := range f.srv.Routes() {
		if rt.Permission == "" {
			t.Errorf("route %s declares no permission", rt.Pattern)
		}
		if rt.Permission == PermOperator {
			method, path, _ := strings.Cut(rt.Pattern, " ")
			path = strings.ReplaceAll(path, "{ref}", "acme")
			res, _ := f.do(t, method, path, "application/json", `{}`, false)
			if res.StatusCode != 401 {
				t.Errorf("%s without a token: %d", rt.Pattern, res.StatusCode)
			}
		}
	}
}

func TestRequestIDsAndMetrics(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newFixture(t, db)
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	if rec.Header().Get("X-Request-Id") != "abc-123" {
		t.Errorf("a sane caller request id was not kept")
	}
	req = httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("X-Request-Id", "evil\nlog line")
	rec = httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	if id := rec.Header().Get("X-Request-Id"); strings.ContainsAny(id, "\n ") || id == "" {
		t.Errorf("unsafe request id kept: %q", id)
	}
	f.do(t, "GET", "/nope/1", "", "", false)
	f.do(t, "GET", "/nope/2", "", "", false)
	if n := testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues("GET /healthz", "GET", "200")); n != 2 {
		t.Errorf("healthz count %v", n)
	}
	// Unmatched paths share one label: cardinality stays bounded.
	if n := testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues("unmatched", "GET", "404")); n != 2 {
		t.Errorf("unmatched count %v", n)
	}
	if n := testutil.CollectAndCount(f.srv.metrics.duration); n < 2 {
		t.Errorf("latency histograms: %d series", n)
	}
}

func TestPanicBecomesProblem(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newFixture(t, db)
	h := f.srv.instrument(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	p := decodeProblem(t, res, body)
	if p.Status != 500 || strings.Contains(string(body), "boom") {
		t.Fatalf("panic answer: %s", body)
	}
}

// TestGracefulShutdown: a request in flight when the server is told to stop
// completes; new connections are refused afterwards.
func TestGracefulShutdown(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	dir := t.TempDir()
	cert, _, _, err := tlsconf.LoadOrCreateSelfSigned(dir, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := tlsconf.NewCertStore(cert)
	tlsCfg, err := tlsconf.ServerConfig(tlsconf.Options{Cert: cs})
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := keys.LoadOrCreateFileMasterKey(filepath.Join(dir, "master.key"))
	srv := New(Options{DB: db, Tenants: &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()},
		TLS: tlsCfg, ShutdownTimeout: 10 * time.Second})
	started := make(chan struct{})
	release := make(chan struct{})
	inner := srv.handler
	srv.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
			_, _ = io.WriteString(w, "finished")
			return
		}
		inner.ServeHTTP(w, r)
	})
	ln, err := Listen(context.Background(), "127.0.0.1:0", "--listen")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, Listeners{HTTPS: ln}) }()

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	var wg sync.WaitGroup
	var slowBody string
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := client.Get("https://" + addr + "/slow")
		if err != nil {
			slowErr = err
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		slowBody = string(b)
	}()
	<-started
	cancel() // SIGTERM
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if slowErr != nil || slowBody != "finished" {
		t.Fatalf("in-flight request: %q %v", slowBody, slowErr)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := client.Get("https://" + addr + "/healthz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

func TestListenPortInUse(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", "--listen")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(context.Background(), ln.Addr().String(), "--listen")
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("port in use: %v", err)
	}
}

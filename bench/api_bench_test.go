package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/web"
	"github.com/relais-dev/relais/internal/web/ratelimit"
	"github.com/relais-dev/relais/internal/web/secheaders"
)

// apiServer runs the real HTTPS handler stack as `relais serve` wires it
// (request id, security headers, metrics, supervision's per-tenant request
// observation, JSON access log, the edge rate limiter with rates high enough
// that nothing is refused, cross-origin protection, bearer token
// verification, credential revocation check, permission check) over plain
// HTTP on loopback, so that it compares with a bare handler served the
// same way. It returns the server and a valid access token.
func apiServer(b *testing.B) (*httptest.Server, string) {
	b.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	log := app.NewLogger(cfg, io.Discard) // relais serve's logger; the lines are built and written, to nowhere
	a, err := app.Open(ctx, cfg, log, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = a.Close() })
	t, err := a.Tenants.Create(ctx, "Bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	cl, _, err := a.Identity.CreateClient(ctx, t.ID, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Access.GrantClientRole(ctx, t.ID, access.Actor{Operator: true}, cl.ID, "viewer"); err != nil {
		b.Fatal(err)
	}
	if err := a.JWTKeys.EnsureCurrent(ctx); err != nil {
		b.Fatal(err)
	}
	tok, _, err := a.Issuer.Issue(ctx, jwtauth.IssueRequest{Tenant: t.ID, Subject: cl.ID, ClientID: cl.ID, Scopes: []string{"contacts:read"}, Version: 1})
	if err != nil {
		b.Fatal(err)
	}
	s := web.New(web.Options{Logger: log, DB: a.DB, Tenants: a.Tenants, Identity: a.Identity, Access: a.Access,
		Verifier: a.Verifier, Issuer: a.Issuer, Keys: a.JWTKeys, Monitor: a.Monitor,
		RateLimit: ratelimit.New(ratelimit.Options{PerIP: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30},
			PerCredential: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30}, SessionCookie: web.SessionCookie})})
	srv := serveLike(s.Handler())
	b.Cleanup(srv.Close)
	return srv, tok
}

// serveLike serves h over plain HTTP on loopback with the http.Server
// settings relais serve uses (config defaults: read-header, read, write
// and idle timeouts, header size limit). Every server of these benchmarks,
// the stack and its references alike, runs with them: they are the
// server's, not the stack's.
func serveLike(h http.Handler) *httptest.Server {
	c := config.Default().HTTP
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = c.ReadHeaderTimeout.D()
	srv.Config.ReadTimeout = c.ReadTimeout.D()
	srv.Config.WriteTimeout = c.WriteTimeout.D()
	srv.Config.IdleTimeout = c.IdleTimeout.D()
	srv.Config.MaxHeaderBytes = c.MaxHeaderBytes
	srv.Start()
	return srv
}

func parallelGet(b *testing.B, url, token string) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	b.SetParallelism(4)
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() {
		// CPU per request (client, server and GC of the process): unlike
		// ns/op, it hardly moves with the other load on the machine.
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

// BenchmarkAPIAuthenticated is a JWT-authenticated API request
// (GET /api/v1/permissions) through the whole handler stack.
func BenchmarkAPIAuthenticated(b *testing.B) {
	srv, tok := apiServer(b)
	parallelGet(b, srv.URL+"/api/v1/permissions", tok)
}

// BenchmarkAPIBareHandler is the reference: a bare net/http handler
// writing the same JSON document, served the same way.
func BenchmarkAPIBareHandler(b *testing.B) {
	parallelGet(b, bareServer(b).URL, "")
}

// bareServer serves the reference handler.
func bareServer(b *testing.B) *httptest.Server {
	b.Helper()
	body, err := json.Marshal(map[string]any{"permissions": access.Catalogue()})
	if err != nil {
		b.Fatal(err)
	}
	body = append(body, '\n')
	srv := serveLike(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkAPIRatio measures BenchmarkAPIAuthenticated and
// BenchmarkAPIBareHandler in the same process, in alternating slices
// (ten of each, the order swapped every slice), so that both see the same
// load from the rest of the machine; it reports each one's time and CPU
// per request and the throughput ratio (bare time / authenticated time).
func BenchmarkAPIRatio(b *testing.B) { apiRatio(b, false) }

// BenchmarkAPIRatioRoundTrip is a diagnostic, not the target's measure:
// BenchmarkAPIRatio with clients that call http.Transport.RoundTrip
// directly instead of http.Client.Do, whose redirect machinery copies
// each request's headers (the Authorization header: only the stack's
// requests have one), so that less of the in-process client's own work is
// counted.
func BenchmarkAPIRatioRoundTrip(b *testing.B) { apiRatio(b, true) }

func apiRatio(b *testing.B, direct bool) {
	srv, tok := apiServer(b)
	bare := bareServer(b)
	stack := newGetter(b, srv.URL+"/api/v1/permissions", tok)
	ref := newGetter(b, bare.URL, "")
	stack.direct, ref.direct = direct, direct
	const slices = 10
	per := max(b.N/slices, 1)
	stack.run(b, 1) // open the connections
	ref.run(b, 1)
	var wallS, cpuS, wallR, cpuR time.Duration
	b.ResetTimer()
	for i := range slices {
		if i%2 == 0 {
			w, c := stack.run(b, per)
			wallS, cpuS = wallS+w, cpuS+c
			w, c = ref.run(b, per)
			wallR, cpuR = wallR+w, cpuR+c
		} else {
			w, c := ref.run(b, per)
			wallR, cpuR = wallR+w, cpuR+c
			w, c = stack.run(b, per)
			wallS, cpuS = wallS+w, cpuS+c
		}
	}
	n := float64(per * slices)
	b.ReportMetric(float64(wallS.Nanoseconds())/n, "auth-ns/op")
	b.ReportMetric(float64(wallR.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(cpuS.Nanoseconds())/n, "auth-cpu-ns/op")
	b.ReportMetric(float64(cpuR.Nanoseconds())/n, "bare-cpu-ns/op")
	b.ReportMetric(float64(wallR)/float64(wallS), "ratio")
	b.ReportMetric(float64(cpuR)/float64(cpuS), "cpu-ratio")
}

// getter sends GET requests from as many goroutines as RunParallel with
// SetParallelism(4) would, over keep-alive connections.
type getter struct {
	tr         *http.Transport
	client     *http.Client
	url, token string
	direct     bool // tr.RoundTrip rather than client.Do
}

func newGetter(b *testing.B, url, token string) *getter {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	return &getter{tr: tr, client: &http.Client{Transport: tr}, url: url, token: token}
}

// run sends n requests and returns the time and the process CPU they took.
func (g *getter) run(b *testing.B, n int) (wall, cpu time.Duration) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				req, _ := http.NewRequest("GET", g.url, nil)
				if g.token != "" {
					req.Header.Set("Authorization", "Bearer "+g.token)
				}
				var res *http.Response
				var err error
				if g.direct {
					res, err = g.tr.RoundTrip(req)
				} else {
					res, err = g.client.Do(req)
				}
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != 200 {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), processCPU() - cpu0
}

// BenchmarkAPIBareHandlerSameHeaders is a diagnostic, not the target's
// reference: the bare handler writing the same response headers as the
// stack (the five API security headers, X-Request-Id, Content-Type,
// Cache-Control) to a client sending the same Authorization header, so
// that what the longer request and response cost on the wire and in the
// (same-process) client shows apart from the stack's own work.
func BenchmarkAPIBareHandlerSameHeaders(b *testing.B) {
	body, err := json.Marshal(map[string]any{"permissions": access.Catalogue()})
	if err != nil {
		b.Fatal(err)
	}
	body = append(body, '\n')
	_, tok := apiServer(b)        // a real token, for its length
	hs := secheaders.APIHeaders() // the set the stack sends on API responses
	srv := serveLike(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, kv := range hs {
			h.Set(kv.Name, kv.Value)
		}
		h.Set("X-Request-Id", "0123456789abcdef01234567")
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	parallelGet(b, srv.URL, tok)
}

// BenchmarkAPIAuthenticatedInProcess calls the handler stack directly (no
// network): the CPU the stack spends on one authenticated request.
func BenchmarkAPIAuthenticatedInProcess(b *testing.B) {
	srv, tok := apiServer(b)
	h := srv.Config.Handler
	b.ResetTimer()
	defer reportCPU(b, processCPU())
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("GET", "/api/v1/permissions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// reportCPU reports the process CPU time since cpu0 per iteration as
// cpu-ns/op: the in-process benchmarks run one goroutine, so this is their
// work (and the garbage collector's), which moves much less than ns/op
// when other work shares the cores.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAPIBareHandlerInProcess is its reference.
func BenchmarkAPIBareHandlerInProcess(b *testing.B) {
	body, _ := json.Marshal(map[string]any{"permissions": access.Catalogue()})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	b.ResetTimer()
	defer reportCPU(b, processCPU())
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("GET", "/api/v1/permissions", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

// BenchmarkAPIStackOnlyCPU is a diagnostic: the authenticated request
// through the handler stack with neither the network nor httptest's
// request and recorder (one request, reused; a response writer that keeps
// nothing but clones the header map at WriteHeader, as net/http does), so
// that cpu-ns/op is the stack's own work and its garbage.
func BenchmarkAPIStackOnlyCPU(b *testing.B) {
	srv, tok := apiServer(b)
	h := srv.Config.Handler
	req := httptest.NewRequest("GET", "/api/v1/permissions", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, processCPU())
	for i := 0; i < b.N; i++ {
		w := nullWriter{h: http.Header{}}
		h.ServeHTTP(&w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// nullWriter is the response writer of BenchmarkAPIStackOnlyCPU.
type nullWriter struct {
	h    http.Header
	code int
}

func (w *nullWriter) Header() http.Header { return w.h }
func (w *nullWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code, w.h = code, w.h.Clone()
	}
}
func (w *nullWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}

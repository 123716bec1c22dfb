package bench

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/relais-dev/relais/internal/web/ratelimit"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// below measure the handler chain, not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

var bareBody = []byte(`{"ok":true}`)

func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(bareBody) })
}

// rateRequests are 1024 requests from 1024 addresses with 1024 bearer
// tokens, as a busy API sees.
func rateRequests() []*http.Request {
	reqs := make([]*http.Request, 1024)
	for i := range reqs {
		r := httptest.NewRequest("GET", "/api/v1/permissions", nil)
		r.RemoteAddr = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ":40000"
		r.Header.Set("Authorization", "Bearer token-"+strconv.Itoa(i))
		reqs[i] = r
	}
	return reqs
}

func serveParallel(b *testing.B, h http.Handler) {
	reqs := rateRequests()
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, reqs[next.Add(1)%uint64(len(reqs))])
		}
	})
}

// BenchmarkRateLimitBareHandler is the reference: the handler alone.
func BenchmarkRateLimitBareHandler(b *testing.B) { serveParallel(b, bareHandler()) }

// BenchmarkRateLimited is the same handler behind the edge limiter, both
// buckets (per IP and per credential) on every request, with rates high
// enough that nothing is refused.
func BenchmarkRateLimited(b *testing.B) {
	l := ratelimit.New(ratelimit.Options{PerIP: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30},
		PerCredential: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30}, SessionCookie: "__Host-relais_session"})
	serveParallel(b, l.Middleware(bareHandler()))
}

// BenchmarkAPIRateLimitedInProcess is BenchmarkAPIAuthenticatedInProcess
// with one more edge limiter in front (both buckets, nothing refused; the
// stack of apiServer already has one, as relais serve wires it): compare
// the two in one run for one limiter's share of a real API request.
func BenchmarkAPIRateLimitedInProcess(b *testing.B) {
	srv, tok := apiServer(b)
	l := ratelimit.New(ratelimit.Options{PerIP: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30},
		PerCredential: ratelimit.Rate{PerSecond: 1e9, Burst: 1 << 30}})
	h := l.Middleware(srv.Config.Handler)
	b.ResetTimer()
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

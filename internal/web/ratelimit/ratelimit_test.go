package ratelimit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relais-dev/relais/internal/web/problem"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
}
func req(ip, auth string) *http.Request {
	r := httptest.NewRequest("GET", "/api/v1/x", nil)
	r.RemoteAddr = ip + ":40000"
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func do(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestPerIPBucket(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	reg := prometheus.NewRegistry()
	l := New(Options{PerIP: Rate{PerSecond: 2, Burst: 3}, Now: c.now, Registerer: reg})
	h := l.Middleware(okHandler())
	for i := 0; i < 3; i++ {
		if rec := do(h, req("192.0.2.1", "")); rec.Code != 204 {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := do(h, req("192.0.2.1", ""))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the burst: %d", rec.Code)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (half a second, rounded up)", ra)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("content type %q", ct)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != problem.CodeRateLimited || p.Status != 429 {
		t.Errorf("problem %+v (%v)", p, err)
	}
	// Another address is not affected.
	if rec := do(h, req("192.0.2.2", "")); rec.Code != 204 {
		t.Errorf("other address: %d", rec.Code)
	}
	// Half a second later, one token is back.
	c.advance(500 * time.Millisecond)
	if rec := do(h, req("192.0.2.1", "")); rec.Code != 204 {
		t.Errorf("after refill: %d", rec.Code)
	}
	if rec := do(h, req("192.0.2.1", "")); rec.Code != 429 {
		t.Errorf("refill gave more than one token: %d", rec.Code)
	}
	if got := testutil.ToFloat64(l.rejected.WithLabelValues("ip")); got != 2 {
		t.Errorf("rejected metric %v", got)
	}
}

// An IPv6 client cannot escape its limit by rotating addresses in its /64.
func TestIPv6GroupedBy64(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	h := New(Options{PerIP: Rate{PerSecond: 1, Burst: 2}, Now: c.now}).Middleware(okHandler())
	codes := []int{}
	for _, ip := range []string{"[2001:db8::1]", "[2001:db8::2]", "[2001:db8::ffff:1]"} {
		r := req("", "")
		r.RemoteAddr = ip + ":1234"
		codes = append(codes, do(h, r).Code)
	}
	if codes[2] != 429 {
		t.Fatalf("codes %v: the third address of the same /64 was not limited", codes)
	}
	r := req("", "")
	r.RemoteAddr = "[2001:db8:0:1::1]:1234"
	if do(h, r).Code != 204 {
		t.Error("another /64 was limited")
	}
}

// A credential is limited across addresses; a client switching addresses
// with the same token gets no more.
func TestPerCredential(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	l := New(Options{PerIP: Rate{PerSecond: 100, Burst: 100}, PerCredential: Rate{PerSecond: 1, Burst: 2}, SessionCookie: "sid", Now: c.now})
	h := l.Middleware(okHandler())
	for i, ip := range []string{"198.51.100.1", "198.51.100.2"} {
		if rec := do(h, req(ip, "Bearer aaa")); rec.Code != 204 {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	rec := do(h, req("198.51.100.3", "Bearer aaa"))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("third use of the token: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	var p problem.Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if p.Detail == "" || p.Code != problem.CodeRateLimited {
		t.Errorf("problem %+v", p)
	}
	if rec := do(h, req("198.51.100.3", "Bearer bbb")); rec.Code != 204 {
		t.Errorf("other token: %d", rec.Code)
	}
	// Session cookies count as credentials too.
	for i := 0; i < 3; i++ {
		r := req("198.51.100.9", "")
		r.AddCookie(&http.Cookie{Name: "sid", Value: "s1"})
		if code := do(h, r).Code; (i < 2) != (code == 204) {
			t.Errorf("cookie request %d: %d", i, code)
		}
	}
}

// A flood of distinct addresses keeps memory bounded and gets no free pass:
// once the table is full, newcomers share one overflow bucket.
func TestBoundedMemory(t *testing.T) {
	c := &clock{time.Unix(1_700_000_000, 0)}
	l := New(Options{PerIP: Rate{PerSecond: 1, Burst: 1}, MaxKeys: 640, Now: c.now})
	h := l.Middleware(okHandler())
	limited := 0
	for i := 0; i < 5000; i++ {
		ip := "10." + strconv.Itoa(i/65536) + "." + strconv.Itoa(i/256%256) + "." + strconv.Itoa(i%256)
		if do(h, req(ip, "")).Code == 429 {
			limited++
		}
	}
	n := 0
	for i := range l.ip.shards {
		n += len(l.ip.shards[i].buckets)
	}
	if n > 640 {
		t.Errorf("%d buckets kept, bound is 640", n)
	}
	if limited == 0 {
		t.Error("the overflow bucket let every newcomer through")
	}
	// Later, full buckets are swept and new clients get their own again.
	c.advance(time.Minute)
	if code := do(h, req("203.0.113.7", "")).Code; code != 204 {
		t.Errorf("after the flood: %d", code)
	}
}

func TestDisabled(t *testing.T) {
	h := New(Options{}).Middleware(okHandler())
	for i := 0; i < 100; i++ {
		if do(h, req("192.0.2.1", "Bearer x")).Code != 204 {
			t.Fatal("a zero Rate limited")
		}
	}
}

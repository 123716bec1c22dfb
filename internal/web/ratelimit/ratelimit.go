// Package ratelimit limits request rates at the HTTP edge with token
// buckets: one bucket per client IP address and one per credential (the
// Authorization header or the session cookie a request presents). A request
// over either limit gets 429 Too Many Requests with a Retry-After header and
// an RFC 9457 problem document (code "rate_limited"), before any handler
// runs.
//
// Most callers need [New] and [Limiter.Middleware]. Credentials are never
// kept: buckets are keyed by a keyed 64-bit hash of the credential, with a
// seed drawn when the Limiter is made. Memory is bounded: at most MaxKeys
// buckets per kind; when full, buckets that have refilled completely (which
// hold no information) are dropped, and if none has, the new client shares
// an overflow bucket, so a flood of fresh addresses cannot grow memory
// without bound nor get unlimited requests.
package ratelimit

import (
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/web/problem"
)

// Rate is a token bucket: Burst requests at once, refilled at PerSecond.
// A zero Rate disables that limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) enabled() bool { return r.PerSecond > 0 && r.Burst > 0 }

// Options configure a [Limiter].
type Options struct {
	// PerIP limits each client address (IPv6 addresses are grouped by
	// their /64, which one subscriber usually holds whole).
	PerIP Rate
	// PerCredential limits each credential presented (bearer token, basic
	// credentials or session cookie).
	PerCredential Rate
	// SessionCookie is the name of the session cookie counted as a
	// credential ("" : only the Authorization header counts).
	SessionCookie string
	// MaxKeys bounds the buckets kept per kind; zero means 100000.
	MaxKeys int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Registerer receives relais_http_rate_limited_total (optional).
	Registerer prometheus.Registerer
}

// Limiter holds the buckets. It is safe for concurrent use.
type Limiter struct {
	opts     Options
	clock    func() time.Duration // monotonic, from New
	seed     maphash.Seed
	ip, cred *table
	rejected *prometheus.CounterVec
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 100_000
	}
	// Without an injected clock, the monotonic clock alone: time.Since
	// skips the wall-clock read, which is costly in some sandboxes.
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) }
	if opts.Now != nil {
		now, base := opts.Now, opts.Now()
		clock = func() time.Duration { return now().Sub(base) }
	}
	l := &Limiter{opts: opts, clock: clock, seed: maphash.MakeSeed(),
		ip: newTable(opts.PerIP, opts.MaxKeys), cred: newTable(opts.PerCredential, opts.MaxKeys)}
	l.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relais_http_rate_limited_total",
		Help: "Requests refused with 429 at the edge, by limit (ip or credential).",
	}, []string{"limit"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(l.rejected)
	}
	return l
}

// Middleware refuses requests over a limit and passes the others to next.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, limit := l.Allow(r); wait > 0 {
			l.rejected.WithLabelValues(limit).Inc()
			secs := int64(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			what := "this address"
			if limit == "credential" {
				what = "this credential"
			}
			problem.Write(w, r, problem.Problem{Status: http.StatusTooManyRequests, Code: problem.CodeRateLimited,
				Title: "Too many requests",
				Detail: "Too many requests from " + what + "; retry after " + strconv.FormatInt(secs, 10) +
					" seconds (see the Retry-After header)."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Allow takes one token from the request's buckets. It returns zero when
// the request may proceed, otherwise how long until it would be allowed and
// which limit ("ip" or "credential") refused it. A refused request takes
// no token from the other bucket.
func (l *Limiter) Allow(r *http.Request) (time.Duration, string) {
	now := l.clock()
	if l.ip.rate.enabled() {
		if wait := l.ip.take(l.ipKey(r), now); wait > 0 {
			return wait, "ip"
		}
	}
	if l.cred.rate.enabled() {
		if k, ok := l.credKey(r); ok {
			if wait := l.cred.take(k, now); wait > 0 {
				return wait, "credential"
			}
		}
	}
	return 0, ""
}

func (l *Limiter) ipKey(r *http.Request) uint64 {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return maphash.String(l.seed, r.RemoteAddr)
	}
	addr := ap.Addr().Unmap()
	a := addr.As16()
	if !addr.Is4() {
		clear(a[8:]) // one bucket per IPv6 /64
	}
	return maphash.Bytes(l.seed, a[:])
}

func (l *Limiter) credKey(r *http.Request) (uint64, bool) {
	if a := r.Header["Authorization"]; len(a) > 0 && a[0] != "" { // the canonical key: Get would canonicalise it again
		return maphash.String(l.seed, a[0]), true
	}
	if l.opts.SessionCookie != "" {
		if c, err := r.Cookie(l.opts.SessionCookie); err == nil && c.Value != "" {
			return maphash.String(l.seed, "cookie\x00"+c.Value), true
		}
	}
	return 0, false
}

// table is the buckets of one kind, in shards to keep lock contention low.
type table struct {
	rate     Rate
	shards   [64]shard
	perShard int
}

type shard struct {
	mu       sync.Mutex
	buckets  map[uint64]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	last   time.Duration // on the Limiter's clock
	used   bool
}

func newTable(rate Rate, maxKeys int) *table {
	t := &table{rate: rate, perShard: max(1, maxKeys/64)}
	for i := range t.shards {
		t.shards[i].buckets = map[uint64]*bucket{}
	}
	return t
}

// take removes a token from key's bucket, or returns the wait until one is
// there.
func (t *table) take(key uint64, now time.Duration) time.Duration {
	s := &t.shards[key%uint64(len(t.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		if len(s.buckets) >= t.perShard {
			t.sweep(s, now)
		}
		if len(s.buckets) >= t.perShard {
			b = &s.overflow
			if !b.used {
				b.tokens, b.last, b.used = float64(t.rate.Burst), now, true
			}
		} else {
			b = &bucket{tokens: float64(t.rate.Burst), last: now}
			s.buckets[key] = b
		}
	}
	if el := now - b.last; el > 0 {
		b.tokens = min(float64(t.rate.Burst), b.tokens+el.Seconds()*t.rate.PerSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	need := (1 - b.tokens) / t.rate.PerSecond
	return time.Duration(need * float64(time.Second))
}

// sweep drops the buckets that are full again.
func (t *table) sweep(s *shard, now time.Duration) {
	for k, b := range s.buckets {
		if b.tokens+(now-b.last).Seconds()*t.rate.PerSecond >= float64(t.rate.Burst) {
			delete(s.buckets, k)
		}
	}
}

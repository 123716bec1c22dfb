package monitor

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests records API requests per tenant and per route in memory, for
// the per-tenant latency threshold (AVL-2) and the availability report
// (AVL-1): a ring of one-minute buckets over the last hour. The web
// middleware calls Observe once per request. Safe for concurrent use.
//
// Prometheus carries the same figures across restarts and nodes
// (relais_http_requests_total, relais_http_request_duration_seconds,
// relais_tenant_request_duration_seconds); this in-process copy lets the
// server evaluate its own alerts without a Prometheus.
type Requests struct {
	mu      sync.Mutex
	now     func() time.Time
	minutes map[int64]*minuteBucket // unix minute -> bucket
	// current is the bucket of currentMinute, the latest minute observed.
	current       *minuteBucket
	currentMinute int64
	tenant        *prometheus.HistogramVec
	// observers caches the histogram's children: hashing the label costs
	// more than the observation.
	observers sync.Map // tenant -> prometheus.Observer
}

// latencyBounds are the upper bounds of the latency buckets kept per tenant.
var latencyBounds = []time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, time.Hour,
}

type minuteBucket struct {
	tenants map[string]*[14]int64 // latency bucket counts (len latencyBounds)
	routes  map[string]*routeCount
}

type routeCount struct{ total, errors int64 }

// NewRequests makes a recorder; reg (optional) gets the per-tenant latency
// histogram.
func NewRequests(reg prometheus.Registerer, now func() time.Time) *Requests {
	if now == nil {
		now = time.Now
	}
	r := &Requests{now: now, minutes: map[int64]*minuteBucket{}}
	r.tenant = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "relais_tenant_request_duration_seconds",
		Help:    "API request latency per tenant (authenticated requests), for the per-tenant thresholds (AVL-2).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"tenant"})
	if reg != nil {
		reg.MustRegister(r.tenant)
	}
	return r
}

const keepMinutes = 60

// Observe records one request. tenant is "" for unauthenticated requests
// (counted for availability only).
func (r *Requests) Observe(tenant, route string, status int, d time.Duration) {
	if r == nil {
		return
	}
	r.ObserveAt(r.now(), tenant, route, status, d)
}

// ObserveAt is Observe for a request that ended at at, a time on the
// recorder's clock the caller has already read (the web middleware's
// reading at the end of the request: one clock reading fewer).
func (r *Requests) ObserveAt(at time.Time, tenant, route string, status int, d time.Duration) {
	if r == nil {
		return
	}
	if tenant != "" {
		o, ok := r.observers.Load(tenant)
		if !ok {
			o, _ = r.observers.LoadOrStore(tenant, r.tenant.WithLabelValues(tenant))
		}
		o.(prometheus.Observer).Observe(d.Seconds())
	}
	i := latencyBucket(d)
	m := at.Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.current
	if b == nil || m != r.currentMinute {
		b = r.minutes[m]
		if b == nil {
			b = &minuteBucket{tenants: map[string]*[14]int64{}, routes: map[string]*routeCount{}}
			r.minutes[m] = b
			for k := range r.minutes {
				if k <= m-keepMinutes {
					delete(r.minutes, k)
				}
			}
		}
		// The bucket of the latest minute seen: the next requests, in the
		// same minute, skip the map.
		if m >= r.currentMinute || r.current == nil {
			r.current, r.currentMinute = b, m
		}
	}
	rc := b.routes[route]
	if rc == nil {
		rc = &routeCount{}
		b.routes[route] = rc
	}
	rc.total++
	if status >= 500 {
		rc.errors++
	}
	if tenant == "" {
		return
	}
	h := b.tenants[tenant]
	if h == nil {
		h = new([14]int64)
		b.tenants[tenant] = h
	}
	h[i]++
}

// latencyBucket is the index of the first latency bound d is within (the
// last bucket for anything longer).
func latencyBucket(d time.Duration) int {
	for i, b := range latencyBounds {
		if d <= b {
			return i
		}
	}
	return len(latencyBounds) - 1
}

// TenantLatency is one tenant's latency over a window.
type TenantLatency struct {
	Requests int64         `json:"requests"`
	P95      time.Duration `json:"p95_ns"`
}

// Latency returns, per tenant, the request count and the 95th percentile
// (the upper bound of the bucket holding it) over the last window.
func (r *Requests) Latency(window time.Duration) map[string]TenantLatency {
	out := map[string]TenantLatency{}
	if r == nil {
		return out
	}
	now := r.now().Unix() / 60
	from := now - int64(window/time.Minute) + 1
	sums := map[string]*[14]int64{}
	r.mu.Lock()
	for m, b := range r.minutes {
		if m < from || m > now {
			continue
		}
		for t, h := range b.tenants {
			s := sums[t]
			if s == nil {
				s = new([14]int64)
				sums[t] = s
			}
			for i := range h {
				s[i] += h[i]
			}
		}
	}
	r.mu.Unlock()
	for t, s := range sums {
		var n int64
		for _, c := range s {
			n += c
		}
		rank := (n*95 + 99) / 100
		var acc int64
		p := latencyBounds[len(latencyBounds)-1]
		for i, c := range s {
			acc += c
			if acc >= rank {
				p = latencyBounds[i]
				break
			}
		}
		out[t] = TenantLatency{Requests: n, P95: p}
	}
	return out
}

// RouteAvailability is one route's availability SLI over a window.
type RouteAvailability struct {
	Route    string  `json:"route"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors_5xx"`
	SLI      float64 `json:"sli"` // share of non-5xx answers
}

// Availability returns the per-route SLI over the last window (at most an
// hour), busiest route first.
func (r *Requests) Availability(window time.Duration) []RouteAvailability {
	if r == nil {
		return nil
	}
	now := r.now().Unix() / 60
	from := now - int64(window/time.Minute) + 1
	sums := map[string]*routeCount{}
	r.mu.Lock()
	for m, b := range r.minutes {
		if m < from || m > now {
			continue
		}
		for route, c := range b.routes {
			s := sums[route]
			if s == nil {
				s = &routeCount{}
				sums[route] = s
			}
			s.total += c.total
			s.errors += c.errors
		}
	}
	r.mu.Unlock()
	out := make([]RouteAvailability, 0, len(sums))
	for route, s := range sums {
		out = append(out, RouteAvailability{Route: route, Requests: s.total, Errors: s.errors, SLI: sli(s.total, s.errors)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Route < out[j].Route
	})
	return out
}

func sli(total, errors int64) float64 {
	if total == 0 {
		return 1
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(total-errors)/float64(total), 'f', 6, 64), 64)
	return v
}

// Register adds the per-tenant latency histogram to reg (when NewRequests
// was given no registerer).
func (r *Requests) Register(reg prometheus.Registerer) error {
	return reg.Register(r.tenant)
}

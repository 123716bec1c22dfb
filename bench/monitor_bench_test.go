package bench

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/monitor"
)

// BenchmarkRequestsObserve is what supervision adds to every API request:
// the per-tenant latency histogram and the in-memory minute buckets behind
// the per-tenant threshold alert and the availability report (100 tenants,
// 20 routes, parallel).
func BenchmarkRequestsObserve(b *testing.B) {
	reg := prometheus.NewRegistry()
	r := monitor.NewRequests(reg, nil)
	tenants, routes := labels("tenant-", 100), labels("GET /api/v1/route", 20)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(tenants[i%100], routes[i%20], 200, 3*time.Millisecond)
			i++
		}
	})
}

// BenchmarkPromHistogramObserve is the reference: one observation in a
// labelled Prometheus histogram, as the web middleware already makes per
// request for the per-route latency.
func BenchmarkPromHistogramObserve(b *testing.B) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_seconds", Help: "x",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"route", "method"})
	routes := labels("GET /api/v1/route", 20)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.WithLabelValues(routes[i%20], "GET").Observe(0.003)
			i++
		}
	})
}

func labels(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

package monitor_test

import (
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/monitor"
)

// TestObserveAtMinutes: observations land in the minute of their time,
// whether it is the latest minute (kept aside so that the next ones skip
// the map), a new one, or an earlier one arriving late; a bucket older
// than the hour kept is dropped, and the window readings count each
// observation once.
func TestObserveAtMinutes(t *testing.T) {
	base := time.Date(2026, 11, 28, 10, 0, 30, 0, time.UTC)
	now := base
	r := monitor.NewRequests(nil, func() time.Time { return now })
	const route = "GET /api/v1/me"
	r.ObserveAt(base, "acme", route, 200, 3*time.Millisecond)                   // minute 0
	r.ObserveAt(base.Add(time.Minute), "acme", route, 500, 3*time.Millisecond)  // minute 1
	r.ObserveAt(base.Add(10*time.Second), "acme", route, 200, time.Millisecond) // minute 0, late
	r.ObserveAt(base.Add(time.Minute), "", route, 200, 2*time.Hour)             // minute 1, unauthenticated, beyond every bound
	now = base.Add(time.Minute)
	av := r.Availability(2 * time.Minute)
	if len(av) != 1 || av[0].Requests != 4 || av[0].Errors != 1 {
		t.Fatalf("availability over two minutes: %+v", av)
	}
	if av := r.Availability(time.Minute); len(av) != 1 || av[0].Requests != 2 || av[0].Errors != 1 {
		t.Fatalf("availability over the last minute: %+v", av)
	}
	if l := r.Latency(2 * time.Minute)["acme"]; l.Requests != 3 || l.P95 != 5*time.Millisecond {
		t.Fatalf("latency: %+v", l)
	}
	// An hour later the first minutes are outside the window (and dropped).
	later := base.Add(61 * time.Minute)
	r.ObserveAt(later, "acme", route, 200, time.Millisecond)
	r.ObserveAt(later, "acme", route, 200, time.Millisecond)
	now = later
	if av := r.Availability(time.Hour); len(av) != 1 || av[0].Requests != 2 {
		t.Fatalf("availability after an hour: %+v", av)
	}
	// Observe reads the recorder's clock.
	r.Observe("acme", route, 200, time.Millisecond)
	if l := r.Latency(time.Minute)["acme"]; l.Requests != 3 || l.P95 != time.Millisecond {
		t.Fatalf("latency after Observe: %+v", l)
	}
}

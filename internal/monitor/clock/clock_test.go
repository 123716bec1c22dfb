package clock_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/ntpfake"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestClockCheckAgainstFakeNTP measures a real NTP exchange on loopback:
// a skew of 3 s beyond a 1 s threshold opens an excursion (audited, events
// written during it flagged), a skew back within it closes it.
func TestClockCheckAgainstFakeNTP(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		srv := ntpfake.Start(t)
		reg := prometheus.NewRegistry()
		c := &clock.Checker{DB: db, Servers: []string{srv.Addr()}, MaxOffset: time.Second, Node: "n1"}
		if err := c.Register(reg); err != nil {
			t.Fatal(err)
		}
		m, err := c.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Exceeded || m.Offset > 500*time.Millisecond || m.Offset < -500*time.Millisecond {
			t.Fatalf("in-sync measurement: %+v", m)
		}
		srv.SetSkew(3 * time.Second)
		if m, err = c.Check(ctx); err != nil || !m.Exceeded || m.Offset < 2*time.Second {
			t.Fatalf("skewed measurement: %+v %v", m, err)
		}
		if v := gauge(t, reg, "relais_clock_offset_seconds"); v < 2 {
			t.Fatalf("relais_clock_offset_seconds = %v", v)
		}
		// An event written during the excursion is flagged.
		if err := db.Platform(ctx, func(p *store.PlatformTx) error {
			_, err := audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "test.during"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv.SetSkew(0)
		if m, err = c.Check(ctx); err != nil || m.Exceeded {
			t.Fatalf("restored measurement: %+v %v", m, err)
		}
		ex, err := clock.Excursions(ctx, db, 10)
		if err != nil || len(ex) != 1 || ex[0].EndedAt == nil || ex[0].MaxOffset < 2*time.Second {
			t.Fatalf("excursions %+v %v", ex, err)
		}
		flagged, err := clock.Flagged(ctx, db, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		_ = db.Platform(ctx, func(p *store.PlatformTx) error {
			recs, err := audit.List(ctx, p.Tenant(""), 0, 100)
			for _, r := range recs {
				for _, s := range flagged {
					if r.Seq == s {
						actions = append(actions, r.Action)
					}
				}
			}
			return err
		})
		if !contains(actions, "test.during") || !contains(actions, "clock.offset_exceeded") {
			t.Fatalf("flagged events: %v", actions)
		}
	})
}

// TestClockCheckNoServer: a dead server fails the check, keeps the last
// measurement, and reports the failure in the success metric.
func TestClockCheckNoServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close() // nothing answers there
	reg := prometheus.NewRegistry()
	c := &clock.Checker{Servers: []string{addr}, MaxOffset: time.Second, Node: "n1",
		Query: func(ctx context.Context, s string) (time.Duration, error) {
			ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			return clock.NTPQuery(ctx, s)
		}}
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(context.Background()); err == nil {
		t.Fatal("a check with no answering server succeeded")
	}
	if _, ok := c.Last(); ok {
		t.Fatal("a failed check left a measurement")
	}
	if (&clock.Checker{}).Configured() {
		t.Fatal("no servers, yet configured")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

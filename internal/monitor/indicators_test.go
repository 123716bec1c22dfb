package monitor_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestIndicators: deliverability per tenant, channel, connector and
// campaign, transit time mean and p95, queue depth and failed logins are
// computed from the store as the router and identity write it; the
// Prometheus collector exposes the same figures; a tenant's report holds
// only its own.
func TestIndicators(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	storetest.RunWith(t, storetest.Options{Now: func() time.Time { return now }}, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := ts.Create(ctx, "Acme", "acme")
		b, _ := ts.Create(ctx, "Globex", "globex")
		n := 0
		// msg inserts a message row as the router leaves it.
		msg := func(tenant, campaign, channel, connector, state string, transit time.Duration) {
			t.Helper()
			n++
			accepted := now.Add(-2 * time.Hour)
			var sent, delivered, camp any
			if state != "queued" {
				sent = store.Micros(accepted.Add(time.Second))
			}
			if state == "delivered" {
				delivered = store.Micros(accepted.Add(transit))
			}
			if campaign != "" {
				camp = campaign
			}
			err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO messages (tenant_id, id, shard, campaign_id, channel, connector_id, recipient_enc, state, due_at, accepted_at, sent_at, delivered_at, updated_at)
					VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, fmt.Sprintf("m%d", n), camp, channel, connector, []byte{1}, state,
					store.Micros(accepted), store.Micros(accepted), sent, delivered, store.Micros(accepted))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// acme email via smtp1, campaign c1: 8 delivered (transit 1..8 min), 1 bounced, 1 failed.
		for i := 1; i <= 8; i++ {
			msg(a.ID, "c1", "email", "smtp1", "delivered", time.Duration(i)*time.Minute)
		}
		msg(a.ID, "c1", "email", "smtp1", "bounced", 0)
		msg(a.ID, "c1", "email", "smtp1", "failed", 0)
		// acme transactional SMS: 1 delivered of 2 sent; 3 queued.
		msg(a.ID, "", "sms", "op1", "delivered", 30*time.Second)
		msg(a.ID, "", "sms", "op1", "sent", 0)
		for i := 0; i < 3; i++ {
			msg(a.ID, "", "sms", "", "queued", 0)
		}
		msg(b.ID, "", "email", "smtp9", "delivered", time.Minute)
		// Two failed logins on acme, one success.
		err = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			for _, outcome := range []string{"failure", "failure", "success"} {
				if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "auth.login", ObjectType: "user",
					Details: map[string]any{"outcome": outcome}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		reqs := monitor.NewRequests(nil, func() time.Time { return now })
		for i := 0; i < 99; i++ {
			reqs.Observe(a.ID, "GET /api/v1/me", 200, 10*time.Millisecond)
		}
		reqs.Observe("", "GET /api/v1/me", 503, time.Millisecond)
		ix := &monitor.Indicators{DB: db, Requests: reqs, Now: func() time.Time { return now }, CacheFor: -1,
			Policy: func(ctx context.Context, id string) (config.Policy, error) { return ts.Policy(ctx, id) }}
		r, err := ix.Report(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		find := func(list []monitor.Deliverability, tenant, campaign, channel string) monitor.Deliverability {
			for _, d := range list {
				if d.TenantID == tenant && d.CampaignID == campaign && d.Channel == channel {
					return d
				}
			}
			t.Fatalf("no deliverability for %s %s %s in %+v", tenant, campaign, channel, list)
			return monitor.Deliverability{}
		}
		if d := find(r.Deliverability, a.ID, "", "email"); d.Sent != 10 || d.Delivered != 8 || d.Bounced != 1 || d.Failed != 1 || d.Ratio != 0.8 || d.ConnectorID != "smtp1" {
			t.Errorf("acme email %+v", d)
		}
		if d := find(r.Deliverability, a.ID, "", "sms"); d.Sent != 2 || d.Delivered != 1 {
			t.Errorf("acme sms %+v", d)
		}
		if d := find(r.Campaigns, a.ID, "c1", "email"); d.Sent != 10 || d.Ratio != 0.8 {
			t.Errorf("campaign c1 %+v", d)
		}
		if len(r.Transit) != 1 || r.Transit[0].Messages != 8 || r.Transit[0].Mean != 270*time.Second || r.Transit[0].P95 != 8*time.Minute {
			t.Errorf("transit %+v", r.Transit)
		}
		if len(r.Queue) != 1 || r.Queue[0].Queued != 3 || r.Queue[0].Channel != "sms" {
			t.Errorf("queue %+v", r.Queue)
		}
		if r.FailedLogins[a.ID] != 2 {
			t.Errorf("failed logins %+v", r.FailedLogins)
		}
		if len(r.Availability) != 1 || r.Availability[0].Requests != 100 || r.Availability[0].SLI != 0.99 {
			t.Errorf("availability %+v", r.Availability)
		}
		var lat monitor.TenantLatencyReport
		for _, l := range r.Latency {
			if l.TenantID == a.ID {
				lat = l
			}
		}
		if lat.Requests != 99 || lat.P95 != 10*time.Millisecond || lat.Threshold != time.Second || lat.Over {
			t.Errorf("latency %+v", lat)
		}
		if len(r.Keys) != 2 || r.Keys[0].Provider != "master key" {
			t.Errorf("keys %+v", r.Keys)
		}
		// A tenant sees only its own figures.
		rb, err := ix.Report(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(rb.Deliverability) != 1 || rb.Deliverability[0].TenantID != b.ID || len(rb.Queue) != 0 || rb.Availability != nil || len(rb.Latency) != 1 || len(rb.Keys) != 1 || rb.Keys[0].TenantID != b.ID {
			t.Errorf("globex view %+v", rb)
		}
		// The collector exposes the same figures.
		reg := prometheus.NewRegistry()
		reg.MustRegister(ix)
		want := fmt.Sprintf(`
# HELP relais_queue_depth Messages queued, per tenant and channel.
# TYPE relais_queue_depth gauge
relais_queue_depth{channel="sms",tenant=%q} 3
`, a.ID)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relais_queue_depth"); err != nil {
			t.Error(err)
		}
		if got := testutil.CollectAndCount(ix, "relais_deliverability_sent"); got != 3 {
			t.Errorf("%d deliverability series", got)
		}
	})
}

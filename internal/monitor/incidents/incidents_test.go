package incidents_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor/incidents"
	"github.com/relais-dev/relais/internal/monitor/notify"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

type clk struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clk) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clk) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestRegisterLifecycle: create (validated), notify by email and signed
// webhook to the tenant's security contacts (recorded, audited in both
// trails), overdue listing at 48 h, close only once all are notified.
func TestRegisterLifecycle(t *testing.T) {
	c := &clk{t: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)}
	storetest.RunWith(t, storetest.Options{Now: c.Now}, func(t *testing.T, db *store.DB) {
		ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorOperator, ID: "cli"}})
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		acme, _ := ts.Create(ctx, "Acme", "acme")
		globex, _ := ts.Create(ctx, "Globex", "globex")
		sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSNone})
		var mu sync.Mutex
		var hookBodies []string
		key := []byte("incident-webhook-key-0123456789ab")
		hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if notify.Verify(key, r.Header.Get("X-Relais-Signature"), body, time.Now(), time.Minute) != nil {
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
			mu.Lock()
			hookBodies = append(hookBodies, string(body))
			mu.Unlock()
		}))
		defer hook.Close()
		svc := &incidents.Service{DB: db, Now: c.Now, Email: &notify.Email{Addr: sink.Addr(), From: "security@relais.test"},
			Webhook: &notify.Webhook{Key: key, Client: hook.Client()}}

		for _, bad := range []incidents.New{
			{Category: "weird", Criticality: "high", Title: "x"},
			{Category: "data_breach", Criticality: "extreme", Title: "x"},
			{Category: "data_breach", Criticality: "high", Title: " "},
			{Category: "data_breach", Criticality: "high", Title: "x", DetectedAt: c.Now().Add(time.Hour)},
			{Category: "data_breach", Criticality: "high", Title: "x", Tenants: []string{"nobody"}},
			{Category: "data_breach", Criticality: "high", Title: "x", Alerts: []string{"no-such-alert"}},
		} {
			if _, err := svc.Create(ctx, bad); !errors.Is(err, incidents.ErrInvalid) {
				t.Errorf("Create(%+v) = %v, want invalid", bad, err)
			}
		}
		inc, err := svc.Create(ctx, incidents.New{Category: "unauthorised_access", Criticality: "critical", Title: "Stolen API credential",
			Description: "A client secret leaked in a public repository.", DetectedAt: c.Now().Add(-time.Hour), Tenants: []string{"acme", "globex", "acme"}})
		if err != nil {
			t.Fatal(err)
		}
		if inc.Ref != "INC-1" || len(inc.Tenants) != 2 || !inc.Tenants[0].Deadline.Equal(c.Now().Add(47*time.Hour)) {
			t.Fatalf("created %+v", inc)
		}
		second, err := svc.Create(ctx, incidents.New{Category: "availability", Criticality: "low", Title: "Slow API"})
		if err != nil || second.Ref != "INC-2" {
			t.Fatalf("second: %+v %v", second, err)
		}

		// No contact yet: the notification fails and nothing is recorded.
		if _, err := svc.Notify(ctx, inc.Number, incidents.NotifyOptions{TenantID: "acme"}); err == nil || !strings.Contains(err.Error(), "no security contact") {
			t.Fatalf("notify without contacts: %v", err)
		}
		if _, err := svc.SetContacts(ctx, acme.ID, []string{"dpo@acme.test", "bad address"}, ""); !errors.Is(err, incidents.ErrInvalid) {
			t.Fatalf("bad address accepted: %v", err)
		}
		if _, err := svc.SetContacts(ctx, acme.ID, nil, "http://plain.test/hook"); !errors.Is(err, incidents.ErrInvalid) {
			t.Fatalf("plain-HTTP webhook accepted: %v", err)
		}
		if _, err := svc.SetContacts(ctx, acme.ID, []string{"dpo@acme.test", "rssi@acme.test"}, hook.URL+"/relais"); err != nil {
			t.Fatal(err)
		}
		c.Add(10 * time.Hour)
		got, err := svc.Notify(ctx, inc.Number, incidents.NotifyOptions{TenantID: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if a := got.Tenants[0]; a.TenantID != acme.ID || a.NotifiedAt == nil || a.NotifiedVia != "email:2 webhook:ok" {
			t.Fatalf("acme after notify: %+v", a)
		}
		if sink.Count() != 1 || !strings.Contains(string(sink.Messages()[0].Data), "Stolen API credential") {
			t.Fatalf("mail: %d", sink.Count())
		}
		mu.Lock()
		if len(hookBodies) != 1 || !strings.Contains(hookBodies[0], `"incident":"INC-1"`) {
			t.Fatalf("webhook: %v", hookBodies)
		}
		mu.Unlock()

		// Not overdue before 48 h; globex overdue after.
		if od, _ := svc.Overdue(ctx, c.Now()); len(od) != 0 {
			t.Fatalf("overdue early: %+v", od)
		}
		c.Add(38 * time.Hour)
		od, err := svc.Overdue(ctx, c.Now())
		if err != nil || len(od) != 1 || od[0].TenantID != globex.ID || od[0].Incident != "INC-1" {
			t.Fatalf("overdue: %+v %v", od, err)
		}
		sum, err := svc.Summarise(ctx, "")
		if err != nil || sum.Open != 2 || sum.OverdueNotify != 1 || sum.OpenByLevel["critical"] != 1 {
			t.Fatalf("summary %+v %v", sum, err)
		}

		if _, err := svc.Close(ctx, inc.Number, "Secret rotated; access logs reviewed.", "Scan repositories for secrets."); !errors.Is(err, incidents.ErrState) {
			t.Fatalf("closed with a tenant not notified: %v", err)
		}
		if _, err := svc.Notify(ctx, inc.Number, incidents.NotifyOptions{Manual: "registered letter to the DPO"}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Close(ctx, inc.Number, "", ""); !errors.Is(err, incidents.ErrInvalid) {
			t.Fatalf("closed without a report: %v", err)
		}
		closed, err := svc.Close(ctx, inc.Number, "Secret rotated; access logs reviewed.", "Scan repositories for secrets.")
		if err != nil || closed.Status != "closed" || closed.Lessons == "" {
			t.Fatalf("close: %+v %v", closed, err)
		}
		var kinds []string
		for _, e := range closed.Timeline {
			kinds = append(kinds, e.Kind)
		}
		if strings.Join(kinds, ",") != "created,notification,notification,closed" {
			t.Fatalf("timeline %v", kinds)
		}
		// The tenant sees its notification in its own trail, and only its
		// own part of the incident.
		var actions []string
		_ = db.Tenant(globex.ID).Tx(ctx, func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 0, 100)
			for _, r := range recs {
				actions = append(actions, r.Action)
			}
			return err
		})
		if !strings.Contains(strings.Join(actions, ","), "incident.notify") {
			t.Fatalf("globex trail %v", actions)
		}
		mine, err := svc.ForTenant(ctx, globex.ID)
		if err != nil || len(mine) != 1 || len(mine[0].Tenants) != 1 || mine[0].Tenants[0].TenantID != globex.ID {
			t.Fatalf("globex view %+v %v", mine, err)
		}
		if _, err := incidents.ParseRef("INC-x"); err == nil {
			t.Fatal("bad ref parsed")
		}
		if n, err := incidents.ParseRef("inc-12"); err != nil || n != 12 {
			t.Fatalf("ParseRef: %d %v", n, err)
		}
	})
}

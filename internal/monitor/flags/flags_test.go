package flags_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestFlags: defaults, a switch audited with before/after, per-tenant
// isolation, unknown names refused.
func TestFlags(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorOperator, ID: "cli"}})
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := ts.Create(ctx, "Acme", "acme")
		b, _ := ts.Create(ctx, "Globex", "globex")
		var r flags.Reader = &flags.Service{DB: db}
		svc := r.(*flags.Service)
		if on, err := r.Enabled(ctx, a.ID, flags.SMSSending); err != nil || !on {
			t.Fatalf("default sms_sending: %v %v", on, err)
		}
		if _, err := svc.Set(ctx, a.ID, flags.SMSSending, false); err != nil {
			t.Fatal(err)
		}
		if on, _ := r.Enabled(ctx, a.ID, flags.SMSSending); on {
			t.Fatal("switch off not read back")
		}
		if on, _ := r.Enabled(ctx, b.ID, flags.SMSSending); !on {
			t.Fatal("another tenant's flag changed")
		}
		if _, err := svc.Set(ctx, a.ID, "rm_rf", true); !errors.Is(err, flags.ErrUnknown) {
			t.Fatalf("unknown flag: %v", err)
		}
		if _, err := r.Enabled(ctx, a.ID, "rm_rf"); !errors.Is(err, flags.ErrUnknown) {
			t.Fatalf("unknown flag read: %v", err)
		}
		list, err := svc.List(ctx, a.ID)
		if err != nil || len(list) != len(flags.Known) {
			t.Fatalf("list %+v %v", list, err)
		}
		var rec audit.Record
		_ = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 0, 100)
			for _, r := range recs {
				if r.Action == "flag.set" {
					rec = r
				}
			}
			return err
		})
		if rec.ActorType != audit.ActorOperator || string(rec.Details) == "" || rec.ObjectID != flags.SMSSending {
			t.Fatalf("audit %+v", rec)
		}
	})
}

// TestHoldSMS: with the flag off, SMS are suppressed before the next check
// runs; email and other tenants go on to the next check.
func TestHoldSMS(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := ts.Create(ctx, "Acme", "acme")
		b, _ := ts.Create(ctx, "Globex", "globex")
		svc := &flags.Service{DB: db}
		if _, err := svc.Set(ctx, a.ID, flags.SMSSending, false); err != nil {
			t.Fatal(err)
		}
		nextCalls := 0
		gate := flags.GateSMS(&flags.Cached{R: svc}, func(context.Context, string, string, string) (bool, string, error) {
			nextCalls++
			return false, "", nil
		})
		if stop, reason, err := gate(ctx, a.ID, "c1", "sms"); !stop || reason != flags.ReasonSMSOff || err != nil || nextCalls != 0 {
			t.Fatalf("acme sms: %v %q %v (next %d)", stop, reason, err, nextCalls)
		}
		for _, c := range [][2]string{{a.ID, "email"}, {b.ID, "sms"}} {
			if stop, _, err := gate(ctx, c[0], "c1", c[1]); stop || err != nil {
				t.Fatalf("%v suppressed: %v", c, err)
			}
		}
		if nextCalls != 2 {
			t.Fatalf("next called %d times", nextCalls)
		}
	})
}

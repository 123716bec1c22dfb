package contacts_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/keys/keystest"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	svc  *contacts.Service
	db   *store.DB
	a, b tenants.Tenant
	clk  *clock
	mk   keys.MasterKey
}

func setup(t *testing.T, db *store.DB, clk *clock) *env {
	t.Helper()
	ctx := context.Background()
	// The provider chosen by RELAIS_TEST_KEY_PROVIDER (file, vault,
	// pkcs11), so that this whole suite runs under each.
	mk := keystest.Master(t)
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	a, err := ts.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Create(ctx, "Beta", "beta")
	if err != nil {
		t.Fatal(err)
	}
	svc := &contacts.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0), Now: clk.Now}
	return &env{svc: svc, db: db, a: a, b: b, clk: clk, mk: mk}
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)} }

// run runs fn on SQLite and PostgreSQL, each with two fresh tenants.
func run(t *testing.T, fn func(t *testing.T, e *env)) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		clk.Set(newClock().Now()) // each dialect starts at the same time
		fn(t, setup(t, db, clk))
	})
}

var bg = context.Background()

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func (e *env) create(t *testing.T, tenant string, nc contacts.NewContact) contacts.Contact {
	t.Helper()
	c, err := e.svc.Create(bg, tenant, nc)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return c
}

func (e *env) define(t *testing.T, tenant string, defs ...contacts.AttributeDef) {
	t.Helper()
	for _, d := range defs {
		if _, err := e.svc.DefineAttribute(bg, tenant, d); err != nil {
			t.Fatalf("define %s: %v", d.Key, err)
		}
	}
}

// events returns a tenant's audit events.
func (e *env) events(t *testing.T, tenant string) []audit.Record {
	t.Helper()
	var out []audit.Record
	err := e.db.Tenant(tenant).Tx(bg, func(tx *store.Tx) error {
		var after int64
		for {
			recs, err := audit.List(bg, tx, after, 1000)
			if err != nil {
				return err
			}
			out = append(out, recs...)
			if len(recs) < 1000 {
				return nil
			}
			after = recs[len(recs)-1].Seq
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func countWhere(recs []audit.Record, pred func(audit.Record) bool) int {
	n := 0
	for _, r := range recs {
		if pred(r) {
			n++
		}
	}
	return n
}

func (e *env) count(t *testing.T, tenant string) int64 {
	t.Helper()
	n, err := e.svc.Count(bg, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got %v, want %v", err, target)
	}
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var ve *contacts.ValidationError
	if !errors.As(err, &ve) || ve.Field != field {
		t.Fatalf("got %v, want a validation error on %s", err, field)
	}
}

func details(t *testing.T, r audit.Record) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Details, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

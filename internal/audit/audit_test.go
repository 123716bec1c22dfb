package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func newTenant(t *testing.T, db *store.DB, id string) {
	t.Helper()
	ctx := context.Background()
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $1, $1, 'active', 1, 1)`, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func appendN(t *testing.T, db *store.DB, tenant string, n int) {
	t.Helper()
	ctx := audit.WithMeta(context.Background(), audit.Meta{
		Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7", UserAgent: "test", RequestID: "req-1"})
	for i := 0; i < n; i++ {
		err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{
				Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact", ObjectID: fmt.Sprint(i),
				Changes: []audit.Change{{Field: "status", Before: "a", After: "b"}, {Field: "email", Personal: true}},
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func verify(t *testing.T, db *store.DB, tenant string) audit.Report {
	t.Helper()
	ctx := context.Background()
	var rep audit.Report
	err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
		var err error
		rep, err = audit.Verify(ctx, tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// tamper runs a raw statement against the tenant's rows (what an attacker
// with database access could do), once the queued events are sequenced.
func tamper(t *testing.T, db *store.DB, tenant, stmt string, args ...any) {
	t.Helper()
	ctx := context.Background()
	if _, err := audit.Sequence(ctx, db, tenant); err != nil {
		t.Fatal(err)
	}
	err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, stmt, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("tamper touched %d rows", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tamper %q: %v", stmt, err)
	}
}

func TestChainVerifies(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 5)
		rep := verify(t, db, "acme")
		if !rep.OK || rep.Events != 5 {
			t.Fatalf("fresh chain: %+v", rep)
		}
		ctx := context.Background()
		err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 0, 10)
			if err != nil {
				return err
			}
			if len(recs) != 5 || recs[0].ActorID != "u-1" || recs[0].IP != "192.0.2.7" || recs[4].Seq != 5 {
				return fmt.Errorf("records: %+v", recs)
			}
			if strings.Contains(string(recs[0].Details), "@") {
				return fmt.Errorf("personal value in details: %s", recs[0].Details)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// An empty log verifies too.
		newTenant(t, db, "empty")
		if rep := verify(t, db, "empty"); !rep.OK || rep.Events != 0 {
			t.Fatalf("empty chain: %+v", rep)
		}
	})
}

func TestTamperingIsDetected(t *testing.T) {
	cases := []struct {
		name    string
		stmt    string
		args    []any
		wantSeq int64
		reason  string
	}{
		{"altered field", `UPDATE audit_events SET actor_id = 'someone-else' WHERE tenant_id = $1 AND seq = 3`, nil, 3, "altered"},
		{"altered details", `UPDATE audit_events SET details = '{}' WHERE tenant_id = $1 AND seq = 2`, nil, 2, "altered"},
		{"altered time", `UPDATE audit_events SET at = at + 1 WHERE tenant_id = $1 AND seq = 4`, nil, 4, "altered"},
		{"deleted middle event", `DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 3`, nil, 3, "missing"},
		{"deleted last event", `DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 5`, nil, 5, "removed"},
		{"recomputed leaf hash", `UPDATE audit_events SET action = 'contact.read', leaf_hash = $2 WHERE tenant_id = $1 AND seq = 2`, []any{make([]byte, 32)}, 2, "altered"},
		{"head moved back", `UPDATE audit_heads SET seq = 4 WHERE tenant_id = $1`, nil, 5, "head"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, db *store.DB) {
				newTenant(t, db, "acme")
				appendN(t, db, "acme", 5)
				tamper(t, db, "acme", tc.stmt, tc.args...)
				rep := verify(t, db, "acme")
				if rep.OK || rep.Problem == nil {
					t.Fatalf("tampering not detected: %+v", rep)
				}
				if rep.Problem.Seq != tc.wantSeq || !strings.Contains(rep.Problem.Reason, tc.reason) {
					t.Fatalf("problem %+v, want seq %d and %q", rep.Problem, tc.wantSeq, tc.reason)
				}
			})
		})
	}
}

func TestSwappedEventsAreDetected(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		// Swap the seq numbers of events 1 and 2 (via a temporary value).
		tamper(t, db, "acme", `UPDATE audit_events SET seq = 100 WHERE tenant_id = $1 AND seq = 1`)
		tamper(t, db, "acme", `UPDATE audit_events SET seq = 1 WHERE tenant_id = $1 AND seq = 2`)
		tamper(t, db, "acme", `UPDATE audit_events SET seq = 2 WHERE tenant_id = $1 AND seq = 100`)
		if rep := verify(t, db, "acme"); rep.OK || rep.Problem.Seq != 1 {
			t.Fatalf("swap not detected: %+v", rep)
		}
	})
}

func TestLogsAreSeparatePerTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "a")
		newTenant(t, db, "b")
		appendN(t, db, "a", 3)
		appendN(t, db, "b", 2)
		// Tampering with b does not affect a's verification, and vice versa.
		tamper(t, db, "b", `UPDATE audit_events SET action = 'x' WHERE tenant_id = $1 AND seq = 1`)
		if rep := verify(t, db, "a"); !rep.OK || rep.Events != 3 {
			t.Fatalf("tenant a: %+v", rep)
		}
		if rep := verify(t, db, "b"); rep.OK {
			t.Fatalf("tenant b tampering missed: %+v", rep)
		}
	})
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "acme")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for i := 0; i < 10; i++ {
					err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
						_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "x.y"})
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if rep := verify(t, db, "acme"); !rep.OK || rep.Events != 80 {
			t.Fatalf("after concurrent appends: %+v", rep)
		}
	})
}

func TestAppendRollsBackWithTheChange(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 2)
		ctx := context.Background()
		boom := errors.New("change failed")
		err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "x.y"}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if rep := verify(t, db, "acme"); !rep.OK || rep.Events != 2 {
			t.Fatalf("rolled back append left a trace: %+v", rep)
		}
	})
}

func TestBadEventsAreRefused(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	newTenant(t, db, "acme")
	ctx := context.Background()
	bad := []audit.Event{
		{Action: "x"},
		{Category: audit.CategoryAdmin},
		{Category: audit.CategoryAdmin, Action: strings.Repeat("a", 200)},
		{Category: audit.CategoryChange, Action: "contact.update", Changes: []audit.Change{{Field: "email", Personal: true, After: "jane@example.com"}}},
		{Category: audit.CategoryChange, Action: "x", Details: map[string]any{"big": strings.Repeat("x", 70<<10)}},
		{Category: audit.CategoryChange, Action: "x", Details: map[string]any{"fn": func() {}}},
	}
	for i, ev := range bad {
		err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, ev)
			return err
		})
		if !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("event %d: got %v, want ErrInvalid", i, err)
		}
		if err != nil && strings.Contains(err.Error(), "jane@example.com") {
			t.Errorf("event %d: error leaks a personal value", i)
		}
	}
	if rep := verify(t, db, "acme"); rep.Events != 0 {
		t.Fatalf("refused events were stored: %+v", rep)
	}
}

package store_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestPrepareDirect: on SQLite a PlatformPinned transaction runs a
// statement through the driver (the tenant bound as $1 whatever the
// caller put in the slot), rolls it back with the rest, refuses an
// unscoped statement and a statement used after its transaction; on
// PostgreSQL, and outside PlatformPinned, it reports ErrNoDirect.
func TestPrepareDirect(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		q := `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`
		if err := db.Platform(ctx, func(p *store.PlatformTx) error {
			_, err := p.Tenant("ta").PrepareDirect(ctx, q)
			if !errors.Is(err, store.ErrNoDirect) {
				t.Fatalf("PrepareDirect outside PlatformPinned: %v", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var kept *store.DirectStmt
		boom := errors.New("boom")
		err := db.PlatformPinned(ctx, func(p *store.PlatformTx) error {
			tx := p.Tenant("ta")
			if _, err := tx.PrepareDirect(ctx, `UPDATE tenant_settings SET policy = 'x'`); !errors.Is(err, store.ErrUnscoped) {
				t.Fatalf("unscoped direct statement: %v", err)
			}
			st, err := tx.PrepareDirect(ctx, q)
			if db.Dialect() == store.Postgres {
				if !errors.Is(err, store.ErrNoDirect) {
					t.Fatalf("PrepareDirect on PostgreSQL: %v", err)
				}
				return nil
			}
			if err != nil {
				return err
			}
			kept = st
			n, err := st.ExecSlot(ctx, []driver.NamedValue{{Ordinal: 1, Value: "tb"}, {Ordinal: 2, Value: "direct"}})
			if err != nil || n != 1 {
				t.Fatalf("direct exec: %d rows, %v", n, err)
			}
			if got := policyIn(t, tx); got != "direct" {
				t.Fatalf("policy in the transaction: %q", got)
			}
			return boom
		})
		if db.Dialect() == store.Postgres {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] == "direct" {
			t.Fatal("a rolled-back direct statement's change is visible")
		}
		if got := policies(t, db, "tb", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] == "direct" {
			t.Fatal("the direct statement wrote another tenant's row")
		}
		if _, err := kept.ExecSlot(ctx, []driver.NamedValue{{}, {Ordinal: 2, Value: "late"}}); err == nil {
			t.Fatal("a direct statement ran after its transaction")
		}
	})
}

func policyIn(t *testing.T, tx *store.Tx) string {
	t.Helper()
	var p string
	if err := tx.QueryRow(context.Background(), `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

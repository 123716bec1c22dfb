package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestExecDeferred: a deferred statement commits with its transaction,
// is seen by the transaction's later statements, and its failure fails
// the whole transaction (on PostgreSQL it is sent with COMMIT); the
// pool's connections stay usable after such failures.
func TestExecDeferred(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		ts := db.Tenant("ta")
		ran := false
		err := ts.Tx(ctx, func(tx *store.Tx) error {
			tx.AfterCommit(func() { ran = true })
			if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'one' WHERE tenant_id = $1`); err != nil {
				return err
			}
			return tx.ExecDeferred(ctx, `UPDATE tenant_settings SET policy = policy || '+deferred' WHERE tenant_id = $1`)
		})
		if err != nil || !ran {
			t.Fatalf("commit: %v (after-commit ran %v)", err, ran)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] != "one+deferred" {
			t.Fatalf("after commit: %v", got)
		}
		// A later statement of the transaction sees it.
		err = ts.Tx(ctx, func(tx *store.Tx) error {
			if err := tx.ExecDeferred(ctx, `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`, "two"); err != nil {
				return err
			}
			var p string
			if err := tx.QueryRow(ctx, `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&p); err != nil || p != "two" {
				t.Errorf("in the transaction: %q, %v", p, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Its failure (a duplicate key) fails the transaction: the
		// change before it is rolled back, and no after-commit hook runs.
		// More times than the pool has connections.
		for i := 0; i < 25; i++ {
			ran = false
			err = ts.Tx(ctx, func(tx *store.Tx) error {
				tx.AfterCommit(func() { ran = true })
				if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'lost' WHERE tenant_id = $1`); err != nil {
					return err
				}
				return tx.ExecDeferred(ctx, `INSERT INTO tenant_settings (tenant_id, policy, updated_at) VALUES ($1, 'dup', 1)`)
			})
			if err == nil || ran {
				t.Fatalf("a failing deferred statement: err %v, after-commit ran %v", err, ran)
			}
		}
		// A rolled-back transaction drops its deferred statements.
		boom := errors.New("boom")
		err = ts.Tx(ctx, func(tx *store.Tx) error {
			if err := tx.ExecDeferred(ctx, `UPDATE tenant_settings SET policy = 'rolled back' WHERE tenant_id = $1`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] != "two" {
			t.Fatalf("after the failures: %v", got)
		}
		// Unscoped statements are refused as by Exec.
		err = ts.Tx(ctx, func(tx *store.Tx) error {
			return tx.ExecDeferred(ctx, `DELETE FROM tenant_settings`)
		})
		if !errors.Is(err, store.ErrUnscoped) {
			t.Fatalf("unscoped: %v", err)
		}
		// Snapshots still read, and on PostgreSQL only read.
		err = ts.Snapshot(ctx, func(tx *store.Tx) error {
			var p string
			if err := tx.QueryRow(ctx, `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&p); err != nil || p != "two" {
				t.Errorf("snapshot read %q, %v", p, err)
			}
			_, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'x' WHERE tenant_id = $1`)
			return err
		})
		if err == nil && db.Dialect() == store.Postgres {
			t.Fatal("a snapshot wrote")
		}
	})
}

// TestFailedStatementFailsCommit: on PostgreSQL a statement error aborts
// the transaction; a caller that ignores it and returns nil gets an error
// from the commit, not a silent rollback.
func TestFailedStatementFailsCommit(t *testing.T) {
	db := storetest.OpenPostgres(t, storetest.Options{})
	seed(t, db)
	ctx := context.Background()
	err := db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
		_, _ = tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, policy, updated_at) VALUES ($1, 'dup', 1)`)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("commit after a failed statement: %v", err)
	}
	if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 {
		t.Fatalf("after: %v", got)
	}
}

// TestTerminatedConnectionIsReplaced: a pooled connection the server
// ended (a restart, an administrator) is discarded when a transaction
// begins on it, and the transaction runs on another.
func TestTerminatedConnectionIsReplaced(t *testing.T) {
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	seed(t, db)
	su, err := sql.Open("pgx", storetest.SuperuserURL(t, url))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close()
	for i := 0; i < 3; i++ {
		var n int
		if err := su.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil || n == 0 {
			t.Fatalf("terminate: %d (%v)", n, err)
		}
		err := db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'after' WHERE tenant_id = $1`)
			return err
		})
		if err != nil {
			t.Fatalf("after terminating the pool's connections: %v", err)
		}
	}
}

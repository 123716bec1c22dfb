package backup

import (
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestIncrementalCarriesKeyLists: the messages a statement of the router
// inserts are logged in key lists, one change-log row naming many keys
// (migration 00035: on PostgreSQL by the statement trigger, on SQLite by
// router.insertMessages); an incremental point reads a list as its keys.
// Messages accepted (a batch large enough to be sealed while written, so
// written by two statements), enqueued (two transactions), inserted by
// another writer in one statement (PostgreSQL: 2,500 rows, three lists of
// at most 1,000 keys; SQLite: the row trigger) and accepted then deleted
// (a listed key whose row is gone: a delete) all reach the incremental,
// and a restore of the chain equals the source, on both dialects.
func TestIncrementalCarriesKeyLists(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := setup(t, db, mk, clk, 5)
		rs := &router.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
		batch := func(prefix string, n int) []router.NewMessage { return emails(prefix, 0, n) }
		exec := func(q string, args ...any) { t.Helper(); execIn(t, db, e.acme.ID, q, args...) }
		lists := func() (n, longest int) {
			t.Helper()
			err := db.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
				rows, err := tx.Query(bg, `SELECT pk FROM backup_changes WHERE tenant_id = $1 AND tbl = 'messages'`)
				if err != nil {
					return err
				}
				defer func() { _ = rows.Close() }()
				for rows.Next() {
					var pk string
					if err := rows.Scan(&pk); err != nil {
						return err
					}
					if keys, _, err := loggedKeys(pk); err != nil {
						return err
					} else if strings.HasPrefix(pk, "[[") {
						n++
						longest = max(longest, len(keys))
					}
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			return n, longest
		}
		target := dirTarget(t)
		if _, err := rs.Accept(bg, e.acme.ID, batch("before", 3)); err != nil {
			t.Fatal(err)
		}
		if p0, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil || p0.Kind != KindFull {
			t.Fatalf("first point: %+v %v", p0.Header, err)
		}
		clk.Add(time.Hour)
		start, _ := lists()
		acc, err := rs.Accept(bg, e.acme.ID, batch("acc", 300))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := rs.Enqueue(bg, e.acme.ID, batch("enq", 1500)); err != nil || n != 1500 {
			t.Fatalf("enqueue: %d %v", n, err)
		}
		// The router's statements: at most two lists for the batch
		// accepted, two for the enqueued one (one per transaction on
		// SQLite, per statement on PostgreSQL), instead of 1,800 rows.
		if n, _ := lists(); n-start < 1 || n-start > 4 {
			t.Fatalf("%d key lists for the router's inserts, want 1 to 4", n-start)
		}
		exec(`DELETE FROM message_contents WHERE tenant_id = $1 AND message_id = $2`, acc[7].ID)
		exec(`DELETE FROM messages WHERE tenant_id = $1 AND id = $2`, acc[7].ID)
		before, _ := lists()
		if db.Dialect() == store.Postgres {
			exec(`INSERT INTO messages (tenant_id, id, shard, channel, recipient_enc, state, due_at, accepted_at, updated_at)
				SELECT $1, 'bulk-' || g, 0, 'email', '\x00'::bytea, 'queued', 1, 1, 1 FROM generate_series(1, 2500) g`)
			if n, longest := lists(); n-before != 3 || longest != 1000 {
				t.Fatalf("a statement of 2,500 messages: %d key lists, the longest of %d keys; want 3, 1,000", n-before, longest)
			}
		} else {
			exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 2500)
				INSERT INTO messages (tenant_id, id, shard, channel, recipient_enc, state, due_at, accepted_at, updated_at)
				SELECT $1, 'bulk-' || i, 0, 'email', x'00', 'queued', 1, 1, 1 FROM g`)
			// Another writer's inserts: the row trigger logs each one as
			// a list of its key (00036).
			if n, _ := lists(); n-before != 2500 {
				t.Fatalf("another writer's 2,500 inserts were logged in %d key lists, want 2,500 (a list of one each)", n-before)
			}
		}
		want := dump(t, db, e.acme.ID)
		if n := len(want["messages"]); n != 3+300-1+1500+2500 {
			t.Fatalf("source holds %d messages", n)
		}
		if p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil || p1.Kind != KindIncremental {
			t.Fatalf("incremental: %+v %v", p1.Header, err)
		}
		d := openLike(t, db, clk)
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-latest", Dest: d}); err != nil {
			t.Fatal(err)
		}
		compareDumps(t, want, dump(t, d, e.acme.ID))
	})
}

// TestLoggedKeys: a change-log row names one key, or a list of keys.
func TestLoggedKeys(t *testing.T) {
	for pk, want := range map[string][]string{
		`["a"]`:                 {`["a"]`},
		`["a", "b"]`:            {`["a", "b"]`},
		`[["a"]]`:               {`["a"]`},
		`[["a"],["b"]]`:         {`["a"]`, `["b"]`},
		`[["a"], ["b"], ["c"]]`: {`["a"]`, `["b"]`, `["c"]`},
	} {
		got, list, err := loggedKeys(pk)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") || list != strings.HasPrefix(pk, "[[") {
			t.Errorf("loggedKeys(%s) = %q %v %v, want %q", pk, got, list, err, want)
		}
	}
	if _, _, err := loggedKeys(`[["a"],`); err == nil {
		t.Error("a truncated key list was read")
	}
}

// TestPendingChangesCountsKeyLists: the scheduler compares the pending
// changes with the size that triggers an incremental; a key list counts as
// the keys it names, not as one change, and a message inserted counts
// with its content.
func TestPendingChangesCountsKeyLists(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := setup(t, db, mk, clk, 0)
		rs := &router.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
		before, err := e.svc.PendingChanges(bg, e.acme.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Accept(bg, e.acme.ID, emails("p", 0, 300)); err != nil {
			t.Fatal(err)
		}
		after, err := e.svc.PendingChanges(bg, e.acme.ID)
		if err != nil {
			t.Fatal(err)
		}
		var rows int64
		if err := db.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT count(*) FROM backup_changes WHERE tenant_id = $1 AND tbl = 'messages'`).Scan(&rows)
		}); err != nil {
			t.Fatal(err)
		}
		// Each message counts with its content (insertWithCompanionWeight).
		if rows >= 300 || after-before < 300*insertWithCompanionWeight {
			t.Fatalf("300 messages accepted in %d change-log rows: pending %d -> %d, want at least %d more", rows, before, after, 300*insertWithCompanionWeight)
		}
	})
}

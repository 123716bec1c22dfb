package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the other role's connection
)

// bothDialects calls fn with the options of a fresh store per dialect, for
// tests that open several stores on one database, or close and reopen one.
func bothDialects(t *testing.T, fn func(t *testing.T, o store.Options)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, store.Options{DataDir: t.TempDir()}) })
	t.Run("postgres", func(t *testing.T) { fn(t, store.Options{URL: storetest.PostgresURL(t)}) })
}

func openStore(t *testing.T, o store.Options) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func queued(t *testing.T, db *store.DB, tenant string) int {
	t.Helper()
	var n int
	err := db.Tenant(tenant).Tx(context.Background(), func(tx *store.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM audit_queue WHERE tenant_id = $1`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestQueuedEventsSurviveAStop: events appended by a process that stops
// before any sequencing (the store closed with the events still queued, as
// after a crash: the queue rows are committed data) are all in the log once
// a new process reads it, in commit order.
func TestQueuedEventsSurviveAStop(t *testing.T) {
	bothDialects(t, func(t *testing.T, o store.Options) {
		ctx := context.Background()
		db := openStore(t, o)
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		if n, err := audit.Sequence(ctx, db, "acme"); err != nil || n != 3 {
			t.Fatalf("sequenced %d (%v)", n, err)
		}
		appendN(t, db, "acme", 1200) // more than one sequencing batch
		if n := queued(t, db, "acme"); n != 1200 {
			t.Fatalf("%d events queued, want 1200", n)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = openStore(t, o)
		rep := verify(t, db, "acme")
		if !rep.OK || rep.Events != 1203 {
			t.Fatalf("after the restart: %+v", rep)
		}
		if n := queued(t, db, "acme"); n != 0 {
			t.Fatalf("%d events still queued", n)
		}
		err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 3, 1000)
			if err != nil {
				return err
			}
			for i, r := range recs { // appendN numbers its objects 0, 1, 2...
				if r.Seq != int64(4+i) || r.ObjectID != fmt.Sprint(i) {
					return fmt.Errorf("event %d: seq %d object %s: not in commit order", i, r.Seq, r.ObjectID)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestSequencersRaceToOneChain: two stores on one database (two nodes),
// each appending and each running a sequencer at once, produce one
// gap-free chain with every event exactly once.
func TestSequencersRaceToOneChain(t *testing.T) {
	bothDialects(t, func(t *testing.T, o store.Options) {
		ctx := context.Background()
		nodes := []*store.DB{openStore(t, o), openStore(t, o)}
		newTenant(t, nodes[0], "acme")
		const perWriter, writers = 60, 4
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(db *store.DB, w int) {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
						_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "x.y", ObjectID: fmt.Sprintf("%d-%d", w, i)})
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}(nodes[w%2], w)
		}
		stop := make(chan struct{})
		var seqWG sync.WaitGroup
		for _, db := range nodes {
			seqWG.Add(1)
			go func(db *store.DB) {
				defer seqWG.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := audit.SequenceAll(ctx, db); err != nil {
						errs <- err
						return
					}
				}
			}(db)
		}
		wg.Wait()
		close(stop)
		seqWG.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rep := verify(t, nodes[1], "acme")
		if !rep.OK || rep.Events != perWriter*writers {
			t.Fatalf("after racing sequencers: %+v", rep)
		}
		seen := map[string]bool{}
		err := nodes[0].Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			for after := int64(0); ; {
				recs, err := audit.List(ctx, tx, after, 1000)
				if err != nil || len(recs) == 0 {
					return err
				}
				for _, r := range recs {
					if seen[r.ObjectID] {
						return fmt.Errorf("event %s sequenced twice", r.ObjectID)
					}
					seen[r.ObjectID] = true
					after = r.Seq
				}
			}
		})
		if err != nil || len(seen) != perWriter*writers {
			t.Fatalf("%d distinct events (%v)", len(seen), err)
		}
	})
}

// TestQueuedEventsAreSeenByReaders: an event still queued (no sequencer
// ran) is in what Search returns and what Verify counts, and in a
// checkpoint; AppendSequenced returns the event's place at once.
func TestQueuedEventsAreSeenByReaders(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 2)
		page, err := s.Search(ctx, "acme", audit.Filter{Action: "contact.update"})
		if err != nil || len(page.Events) != 2 {
			t.Fatalf("search: %d events (%v)", len(page.Events), err)
		}
		appendN(t, db, "acme", 1) // queued again, with the search's own event
		if rep := fullVerify(t, s, "acme"); !rep.OK || rep.Events != 4 {
			t.Fatalf("verify: %+v", rep)
		}
		appendN(t, db, "acme", 1)
		cp := checkpoint(t, s, "acme")
		if cp.Size != 6 { // 4, the signing key's creation, the last append
			t.Fatalf("checkpoint of %d events", cp.Size)
		}
		var rec audit.Record
		inTx(t, db, "acme", func(tx *store.Tx) error {
			if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "x.queued"}); err != nil {
				return err
			}
			rec, err = audit.AppendSequenced(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "x.now"})
			return err
		})
		if rec.Seq != 8 || rec.Action != "x.now" || len(rec.Hash) == 0 {
			t.Fatalf("AppendSequenced: %+v", rec)
		}
	})
}

// TestAnUnreadableQueuedEventStopsSequencing: a queued row that cannot be
// read (altered in the store) makes sequencing fail loudly, and it and the
// events after it stay queued: nothing is dropped.
func TestAnUnreadableQueuedEventStopsSequencing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		inTx(t, db, "acme", func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE audit_queue SET event = 'not json' WHERE tenant_id = $1 AND id = (SELECT MIN(id) FROM audit_queue WHERE tenant_id = $1)`)
			return err
		})
		if _, err := audit.Sequence(ctx, db, "acme"); err == nil {
			t.Fatal("an unreadable queued event was sequenced")
		}
		err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Verify(ctx, tx)
			return err
		})
		if err == nil {
			t.Fatal("verification passed over an unreadable queued event")
		}
		if n := queued(t, db, "acme"); n != 3 {
			t.Fatalf("%d events queued, want 3", n)
		}
	})
}

// TestSequencingContinuesAnOlderHead: a log last appended to on SQLite
// before deferred sequencing keeps in its head the hash of the event before
// the last; the sequencer links new events to the last event all the same.
func TestSequencingContinuesAnOlderHead(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		tamper(t, db, "acme", `UPDATE audit_heads SET hash = (SELECT e.hash FROM audit_events e WHERE e.tenant_id = $1 AND e.seq = 2) WHERE tenant_id = $1`)
		if rep := verify(t, db, "acme"); !rep.OK {
			t.Fatalf("the older head form: %+v", rep)
		}
		appendN(t, db, "acme", 2)
		if rep := verify(t, db, "acme"); !rep.OK || rep.Events != 5 {
			t.Fatalf("after sequencing on an older head: %+v", rep)
		}
	})
}

// TestQueueIsTenantScoped: a tenant's transaction neither sees nor takes
// another tenant's queued events.
func TestQueueIsTenantScoped(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		newTenant(t, db, "acme")
		newTenant(t, db, "globex")
		appendN(t, db, "acme", 2)
		appendN(t, db, "globex", 3)
		if n, err := audit.Sequence(ctx, db, "acme"); err != nil || n != 2 {
			t.Fatalf("sequenced %d (%v)", n, err)
		}
		if n := queued(t, db, "globex"); n != 3 {
			t.Fatalf("globex has %d queued", n)
		}
		if db.Dialect() == store.Postgres {
			// Row-level security, not only the statements' tenant
			// clause, confines the queue: acme's transaction that forgets
			// the clause sees none of globex's queued rows.
			var n int
			err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FROM audit_queue WHERE $1::text <> ''`).Scan(&n)
			})
			if err != nil || n != 0 {
				t.Fatalf("acme without a tenant clause saw %d queued rows (%v)", n, err)
			}
		}
		n, err := audit.SequenceAll(ctx, db)
		if err != nil || n != 3 {
			t.Fatalf("SequenceAll: %d (%v)", n, err)
		}
		if rep := verify(t, db, "globex"); !rep.OK || rep.Events != 3 {
			t.Fatalf("globex: %+v", rep)
		}
	})
}

// TestQueueRLSForOtherRoles: on PostgreSQL a role that does not own
// audit_queue (so FORCE is not what binds it) and may read it sees only the
// queued rows of the tenant its session is bound to, and none unbound.
func TestQueueRLSForOtherRoles(t *testing.T) {
	appURL := storetest.PostgresURL(t)
	ctx := context.Background()
	db := openStore(t, store.Options{URL: appURL})
	if !db.RLSEffective() {
		t.Fatal("the test role bypasses RLS: the test would prove nothing")
	}
	newTenant(t, db, "acme")
	newTenant(t, db, "globex")
	appendN(t, db, "acme", 2)
	appendN(t, db, "globex", 3)

	su, err := sql.Open("pgx", storetest.SuperuserURL(t, appURL))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = su.Close() }()
	var owner string
	if err := su.QueryRowContext(ctx, `SELECT tableowner FROM pg_tables WHERE tablename = 'audit_queue'`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	const reader, password = "queue_reader", "reader-pw-0123"
	for _, q := range []string{
		`CREATE ROLE ` + reader + ` LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '` + password + `'`,
		`GRANT USAGE ON SCHEMA public TO ` + reader,
		`GRANT SELECT ON audit_queue TO ` + reader,
	} {
		if _, err := su.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = su.ExecContext(context.Background(), `DROP OWNED BY `+reader)
		_, _ = su.ExecContext(context.Background(), `DROP ROLE `+reader)
	})
	if owner == reader {
		t.Fatal("the reader owns the table")
	}
	u, err := url.Parse(appURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(reader, password)
	rd, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rd.Close() }()
	count := func(tenant, where string) int {
		t.Helper()
		conn, err := rd.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		var n int
		if _, err := conn.ExecContext(ctx, `SELECT set_config('relais.tenant_id', $1, false)`, tenant); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM audit_queue `+where).Scan(&n); err != nil {
			t.Fatalf("reader as %q: %v", tenant, err)
		}
		return n
	}
	if n := count("acme", ""); n != 2 {
		t.Errorf("the reader bound to acme sees %d queued rows, want acme's 2", n)
	}
	if n := count("acme", `WHERE tenant_id = 'globex'`); n != 0 {
		t.Errorf("the reader bound to acme sees %d of globex's queued rows", n)
	}
	if n := count("", ""); n != 0 {
		t.Errorf("the unbound reader sees %d queued rows", n)
	}
	// The table's owner, for comparison, sees the same through FORCE.
	var n int
	if err := db.Tenant("acme").Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM audit_queue WHERE $1::text <> ''`).Scan(&n)
	}); err != nil || n != 2 {
		t.Errorf("the owner bound to acme sees %d queued rows (%v)", n, err)
	}
}

// TestSequencingInChunksOfEverySize: batches whose sizes take every chunk
// shape of the sequencer's insert (100, 10 and 1 rows, and mixes: 1, 9,
// 10, 11, 99, 100, 101, 234 events queued at once) are sequenced whole, in
// queue order, into a log that verifies, and each event keeps its fields.
func TestSequencingInChunksOfEverySize(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "acme")
		total := 0
		for _, n := range []int{1, 9, 10, 11, 99, 100, 101, 234} {
			inTx(t, db, "acme", func(tx *store.Tx) error {
				for i := 0; i < n; i++ {
					if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update",
						ObjectType: "contact", ObjectID: fmt.Sprintf("%d", total+i)}); err != nil {
						return err
					}
				}
				return nil
			})
			got, err := audit.Sequence(ctx, db, "acme")
			if err != nil || got != n {
				t.Fatalf("batch of %d: sequenced %d (%v)", n, got, err)
			}
			total += n
		}
		if queued(t, db, "acme") != 0 {
			t.Fatal("events left in the queue")
		}
		inTx(t, db, "acme", func(tx *store.Tx) error {
			recs, err := audit.List(ctx, tx, 0, 1000)
			if err != nil {
				return err
			}
			if len(recs) != total {
				t.Fatalf("%d events in the log, want %d", len(recs), total)
			}
			for i, r := range recs {
				if r.Seq != int64(i+1) || r.ObjectID != fmt.Sprint(i) || r.Action != "contact.update" {
					t.Fatalf("event %d: %+v", i, r)
				}
			}
			return nil
		})
		if rep := fullVerify(t, s, "acme"); !rep.OK || rep.Events != int64(total) {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

// TestAFailingChunkLeavesTheQueueWhole: when one of a batch's insert
// statements fails (here the second statement of 100 rows, on a seq a stray row
// already holds), the whole batch is rolled back: every event stays
// queued, the log and its change log are as before, and once the stray row
// is gone the batch is sequenced into a log that verifies.
func TestAFailingChunkLeavesTheQueueWhole(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		if _, err := audit.Sequence(ctx, db, "acme"); err != nil {
			t.Fatal(err)
		}
		changes := func() (n int) {
			inTx(t, db, "acme", func(tx *store.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FROM backup_changes WHERE tenant_id = $1 AND tbl = 'audit_events'`).Scan(&n)
			})
			return n
		}
		before := changes()
		inTx(t, db, "acme", func(tx *store.Tx) error {
			for i := 0; i < 234; i++ {
				if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact"}); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id, object_type, object_id,
				ip, user_agent, request_id, details, leaf_hash, hash) VALUES ($1, 3 + 150, 1, 'change', 'stray', 'user', 'u', '', '', '', '', '', '{}', $2, $2)`, []byte{0})
			return err
		})
		if n, err := audit.Sequence(ctx, db, "acme"); err == nil || n != 0 {
			t.Fatalf("sequenced %d over a stray row (%v)", n, err)
		}
		if q := queued(t, db, "acme"); q != 234 {
			t.Fatalf("%d events queued after the failure, want 234", q)
		}
		var head int64
		inTx(t, db, "acme", func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT seq FROM audit_heads WHERE tenant_id = $1`).Scan(&head)
		})
		if head != 3 || changes() != before+1 { // the stray row's own entry only
			t.Fatalf("head %d, %d change-log rows (before %d)", head, changes(), before)
		}
		inTx(t, db, "acme", func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 153`)
			return err
		})
		if n, err := audit.Sequence(ctx, db, "acme"); err != nil || n != 234 {
			t.Fatalf("sequenced %d (%v)", n, err)
		}
		if rep := fullVerify(t, s, "acme"); !rep.OK || rep.Events != 237 {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

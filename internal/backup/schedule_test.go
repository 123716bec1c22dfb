package backup

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestScheduler: the policy's schedule (full every 3 days, incremental
// every 2 hours when something changed, verify daily, restore test) runs
// from Tick; two nodes never work one tenant at once; retention keeps the
// newest sets; the metrics follow.
func TestScheduler(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 10)
	reg := prometheus.NewRegistry()
	e.svc.Metrics = NewMetrics(reg)
	target := dirTarget(t)
	pol := config.DefaultPolicy().Backup
	sched := func(node string) *Scheduler {
		return &Scheduler{Svc: e.svc, Target: target, Node: node, KeepSets: 2,
			Tenants: func(context.Context) ([]string, error) { return []string{e.acme.ID}, nil },
			Policy:  func(context.Context, string) (config.BackupPolicy, error) { return pol, nil }}
	}
	a, b := sched("node-a"), sched("node-b")
	// node-b holds the lease: node-a does nothing.
	if _, ok, err := b.lease(bg, e.acme.ID); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	if err := a.Tick(bg); err != nil {
		t.Fatal(err)
	}
	if pts, _ := e.svc.List(bg, e.acme.ID, target); len(pts) != 0 {
		t.Fatal("a node worked a tenant leased by another")
	}
	b.release(bg, e.acme.ID)
	if err := a.Tick(bg); err != nil {
		t.Fatal(err)
	}
	pts, _ := e.svc.List(bg, e.acme.ID, target)
	if len(pts) != 1 || pts[0].Kind != KindFull {
		t.Fatalf("first tick: %d points", len(pts))
	}
	// The change log the full covers is pruned after it (what is left is
	// the tick's own audit events: the point, verification, restore test).
	if n, err := e.svc.PendingChanges(bg, e.acme.ID); err != nil || n > 12 {
		t.Fatalf("change log after the first tick: %d entries, %v", n, err)
	}
	if st, ok, err := e.svc.Status(bg, e.acme.ID); err != nil || !ok || !st.VerifyOK || !st.RestoreOK || st.LastVerify.IsZero() ||
		st.LastRestoreTest.IsZero() || st.LastFull.IsZero() {
		t.Fatalf("status after the first tick: %+v %v %v", st, ok, err)
	}
	// One hour later, a change: nothing yet (incremental every 2 hours).
	clk.Add(time.Hour)
	if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "sched@example.net"}); err != nil {
		t.Fatal(err)
	}
	_ = a.Tick(bg)
	if pts, _ = e.svc.List(bg, e.acme.ID, target); len(pts) != 1 {
		t.Fatalf("after 1h: %d points", len(pts))
	}
	clk.Add(time.Hour)
	_ = a.Tick(bg)
	if pts, _ = e.svc.List(bg, e.acme.ID, target); len(pts) != 2 || pts[1].Kind != KindIncremental {
		t.Fatalf("after 2h: %d points", len(pts))
	}
	// Three fulls later, only the newest two sets are kept.
	for range 3 {
		clk.Add(73 * time.Hour)
		_ = a.Tick(bg)
	}
	pts, _ = e.svc.List(bg, e.acme.ID, target)
	sets := map[string]bool{}
	for _, p := range pts {
		sets[p.SetID] = true
	}
	if len(sets) != 2 {
		t.Fatalf("retention kept %d sets", len(sets))
	}
	if n, err := e.svc.DeleteAll(bg, e.acme.ID, target); err != nil || n == 0 {
		t.Fatalf("delete all: %d %v", n, err)
	}
	if pts, _ = e.svc.List(bg, e.acme.ID, target); len(pts) != 0 {
		t.Fatal("points left after DeleteAll")
	}
}

// TestChunksReusedAcrossSets: a new full after a small change stores only
// the chunks that changed and reuses the earlier set's others; it restores,
// verifies, and still does after retention deleted the earlier set (the
// reused chunks stay).
func TestChunksReusedAcrossSets(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 400)
	e.svc.ChunkBytes = 16 << 10
	target := dirTarget(t)
	p0, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	countChunks := func(set string) int {
		names, _ := target.List(bg, setPrefix(e.acme.ID, set)+"chunks/")
		return len(names)
	}
	first := countChunks(p0.SetID)
	clk.Add(time.Hour)
	page, _ := e.contacts.List(bg, e.acme.ID, contacts.ListOptions{Limit: 200})
	if _, err := e.contacts.Update(bg, e.acme.ID, page.Contacts[150].ID, contacts.Patch{FirstName: strp("Changed")}); err != nil {
		t.Fatal(err)
	}
	want := dump(t, db, e.acme.ID)
	p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	second := countChunks(p1.SetID)
	if first < 10 || second*3 > first {
		t.Fatalf("the second full stored %d chunks, the first %d: unchanged chunks not reused", second, first)
	}
	if err := e.svc.Prune(bg, e.acme.ID, target, 1); err != nil {
		t.Fatal(err)
	}
	if pts, _ := e.svc.List(bg, e.acme.ID, target); len(pts) != 1 || pts[0].SetID != p1.SetID {
		t.Fatalf("after retention: %+v", pts)
	}
	rep, err := e.svc.Verify(bg, e.acme.ID, target)
	if err != nil || len(rep.Unreferenced) != 0 {
		t.Fatalf("verify after retention: %+v %v", rep, err)
	}
	dest := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want, dump(t, dest, e.acme.ID))
	// A third full reuses chunks through the second set's keys.
	clk.Add(time.Hour)
	p2, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := countChunks(p2.SetID); n*3 > first {
		t.Fatalf("the third full stored %d chunks", n)
	}
	if _, err := e.svc.Verify(bg, e.acme.ID, target); err != nil {
		t.Fatal(err)
	}
}

// TestEveryBackedUpTableIsTracked guards future migrations: every tenant
// table a backup holds has its change-log triggers (in SQLite the three
// backup_change_<table>_i/_u/_d, in PostgreSQL backup_change calling
// relais_backup_change with the key columns after tenant_id; see
// migration 00009), or incrementals copy it whole each time (only the
// tables in copiedWhole may). Authentication state that must not come back
// belongs in the excluded list instead.
func TestEveryBackedUpTableIsTracked(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		tables, err := loadSchema(bg, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(tables) < 30 {
			t.Fatalf("only %d tables", len(tables))
		}
		held := map[string]bool{}
		for _, tb := range tables {
			held[tb.Name] = true
			if !tb.Tracked && !copiedWhole[tb.Name] {
				t.Errorf("table %s has no backup change triggers: add them in a migration (both dialects)", tb.Name)
			}
			if tb.Tracked && copiedWhole[tb.Name] {
				t.Errorf("table %s is copied whole but has change triggers", tb.Name)
			}
		}
		// Audit events committed but not yet sequenced are in every point.
		for name := range copiedWhole {
			if !held[name] {
				t.Errorf("table %s is not in backups", name)
			}
		}
	})
}

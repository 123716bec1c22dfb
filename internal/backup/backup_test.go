package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestRestoreAcrossDialects: a backup taken on SQLite restores into
// PostgreSQL with every row equal and the audit chain verifying; a backup
// of that restored tenant taken on PostgreSQL restores into SQLite the same.
func TestRestoreAcrossDialects(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	lite := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	pg := storetest.OpenPostgres(t, storetest.Options{Now: clk.Now})
	e := setup(t, lite, mk, clk, 40)
	want := dump(t, lite, e.acme.ID)
	target := dirTarget(t)
	p, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindFull {
		t.Fatalf("first point is %s", p.Kind)
	}
	res, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-restored", Dest: pg})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows == 0 || res.TenantID != e.acme.ID {
		t.Fatalf("restore result %+v", res)
	}
	compareDumps(t, want, dump(t, pg, e.acme.ID))
	verifyAudit(t, pg, mk, e.acme.ID)
	if n := len(dump(t, pg, e.beta.ID)); n != 0 {
		t.Fatalf("the other tenant's rows came along: %d tables", n)
	}
	// The restored tenant works: its personal fields open under its keys.
	cs := &contacts.Service{DB: pg, Keyring: service(pg, mk, clk).Keyring, Now: clk.Now}
	if _, err := cs.FindByEmail(bg, e.acme.ID, "jeanne.secret@example.net"); err != nil {
		t.Fatalf("find a restored contact by email: %v", err)
	}

	// And back: PostgreSQL to SQLite.
	clk.Add(time.Minute)
	want2 := dump(t, pg, e.acme.ID)
	pgSvc := service(pg, mk, clk)
	target2 := dirTarget(t)
	if _, err := pgSvc.Run(bg, e.acme.ID, target2, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	lite2 := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	if _, err := pgSvc.Restore(bg, e.acme.ID, target2, RestoreOptions{IntoSlug: "acme", Dest: lite2}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want2, dump(t, lite2, e.acme.ID))
	verifyAudit(t, lite2, mk, e.acme.ID)
}

func openLike(t *testing.T, db *store.DB, clk *clock) *store.DB {
	if db.Dialect() == store.Postgres {
		return storetest.OpenPostgres(t, storetest.Options{Now: clk.Now})
	}
	return storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
}

func strp(s string) *string { return &s }

// TestPointInTime: full, changes, incremental, changes, incremental; a
// restore at a time between the two incrementals returns exactly the state
// of the first, deletes included; the latest returns the second.
func TestPointInTime(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := setup(t, db, mk, clk, 30)
		target := dirTarget(t)
		p0, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		page, err := e.contacts.List(bg, e.acme.ID, contacts.ListOptions{Limit: 10})
		if err != nil || len(page.Contacts) < 5 {
			t.Fatalf("list: %v", err)
		}
		ids := page.Contacts
		// Changes before the first incremental.
		clk.Add(time.Hour)
		x, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "new.one@example.net", FirstName: "New"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.contacts.Update(bg, e.acme.ID, ids[0].ID, contacts.Patch{FirstName: strp("Renamed")}); err != nil {
			t.Fatal(err)
		}
		if err := e.contacts.Delete(bg, e.acme.ID, ids[1].ID); err != nil {
			t.Fatal(err)
		}
		if err := e.contacts.Block(bg, e.acme.ID, contacts.BlockEmail, "second.block@example.org", "complaint"); err != nil {
			t.Fatal(err)
		}
		want1 := dump(t, db, e.acme.ID)
		p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p1.Kind != KindIncremental || p1.SetID != p0.SetID || p1.Parent != p0.PointID {
			t.Fatalf("second point: %+v", p1.Header)
		}
		_, body, _, err := e.svc.openManifest(bg, target, p1.Object)
		if err != nil {
			t.Fatal(err)
		}
		for _, te := range body.Tables {
			if te.Name == "contacts" {
				rows := 0
				for _, c := range te.Chunks {
					rows += c.Count
				}
				if te.Whole || rows != 2 || len(te.Deletes) != 1 {
					t.Fatalf("incremental contacts entry: whole=%v rows=%d deletes=%d", te.Whole, rows, len(te.Deletes))
				}
			}
		}
		// Changes before the second incremental.
		clk.Add(time.Hour)
		if err := e.contacts.Delete(bg, e.acme.ID, x.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.contacts.Update(bg, e.acme.ID, ids[2].ID, contacts.Patch{LastName: strp("Changed")}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.contacts.CreateList(bg, e.acme.ID, "later", ""); err != nil {
			t.Fatal(err)
		}
		want2 := dump(t, db, e.acme.ID)
		p2, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p2.Kind != KindIncremental || p2.Seq != 2 {
			t.Fatalf("third point: %+v", p2.Header)
		}
		between := p1.Time().Add(30 * time.Minute)
		d1 := openLike(t, db, clk)
		res, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{At: between, IntoSlug: "acme-at", Dest: d1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Point.PointID != p1.PointID || res.Points != 2 {
			t.Fatalf("restored point %s (%d points), want %s", res.Point.PointID, res.Points, p1.PointID)
		}
		compareDumps(t, want1, dump(t, d1, e.acme.ID))
		verifyAudit(t, d1, mk, e.acme.ID)
		d2 := openLike(t, db, clk)
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-latest", Dest: d2}); err != nil {
			t.Fatal(err)
		}
		compareDumps(t, want2, dump(t, d2, e.acme.ID))
		// Before the first point: nothing to restore.
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{At: p0.Time().Add(-time.Second), IntoSlug: "acme-early", Dest: openLike(t, db, clk)}); !errors.Is(err, ErrNoPoint) {
			t.Fatalf("restore before the first point: %v", err)
		}
		// --full starts a new set.
		p3, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{Full: true})
		if err != nil || p3.Kind != KindFull || p3.SetID == p0.SetID {
			t.Fatalf("forced full: %+v %v", p3.Header, err)
		}
	})
}

// TestRestoreRefusals: never into a store that has the tenant, never under
// a slug in use, never a shredded tenant, never with another master key;
// a refused restore leaves nothing behind.
func TestRestoreRefusals(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 5)
	target := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-copy"}); !errors.Is(err, ErrTenantExists) {
		t.Fatalf("restore next to the live tenant: %v", err)
	}
	dest := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	ts := &tenants.Service{DB: dest, Master: mk, Defaults: config.DefaultPolicy()}
	if _, err := ts.Create(bg, "Taken", "taken"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "taken", Dest: dest}); !errors.Is(err, tenants.ErrSlugTaken) {
		t.Fatalf("restore under a slug in use: %v", err)
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "Bad Slug", Dest: dest}); err == nil {
		t.Fatal("bad slug accepted")
	}
	// Leftover rows of the tenant id in the target store: refused too.
	if err := dest.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, `INSERT INTO message_events (tenant_id, message_id, at, kind) VALUES ($1, 'left', 1, 'x')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); !errors.Is(err, ErrTenantExists) {
		t.Fatalf("restore over leftover rows: %v", err)
	}
	if err := dest.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, `DELETE FROM message_events WHERE tenant_id = $1`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	other := &Service{DB: db, Master: newMaster(t), Keyring: e.svc.Keyring, Now: clk.Now}
	if _, err := other.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("restore with another master key: %v", err)
	}
	if n := len(dump(t, dest, e.acme.ID)); n != 0 {
		t.Fatalf("a refused restore left %d tables with rows", n)
	}
	// Shredded on the platform: refused.
	if err := db.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, `UPDATE tenant_keys SET state = 'destroyed' WHERE tenant_id = $1`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); !errors.Is(err, ErrShredded) {
		t.Fatalf("restore of a shredded tenant: %v", err)
	}
}

// TestChangeLogPrunedAfterThePoint: a point leaves the change log as it is
// (pruning is out of its critical path); an incremental taken before any
// pruning still holds exactly the changes since the full; pruning in small
// batches deletes exactly the entries the last point covers, and the next
// incremental holds exactly the change made after it.
func TestChangeLogPrunedAfterThePoint(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := setup(t, db, mk, clk, 20)
		target := dirTarget(t)
		before, err := e.svc.PendingChanges(bg, e.acme.ID)
		if err != nil || before == 0 {
			t.Fatalf("pending before the full: %d %v", before, err)
		}
		if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		// (The point's own audit event adds entries.)
		if n, _ := e.svc.PendingChanges(bg, e.acme.ID); n < before {
			t.Fatalf("the point pruned the log: %d entries left of %d", n, before)
		}
		page, err := e.contacts.List(bg, e.acme.ID, contacts.ListOptions{Limit: 5})
		if err != nil || len(page.Contacts) < 3 {
			t.Fatalf("list: %v", err)
		}
		clk.Add(time.Hour)
		for _, c := range page.Contacts[:2] {
			if _, err := e.contacts.Update(bg, e.acme.ID, c.ID, contacts.Patch{FirstName: strp("Changed")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.contacts.Delete(bg, e.acme.ID, page.Contacts[2].ID); err != nil {
			t.Fatal(err)
		}
		countContacts := func(p Point) (rows, deletes int) {
			t.Helper()
			_, body, _, err := e.svc.openManifest(bg, target, p.Object)
			if err != nil {
				t.Fatal(err)
			}
			for _, te := range body.Tables {
				if te.Name != "contacts" {
					continue
				}
				if te.Whole {
					t.Fatal("contacts copied whole in an incremental")
				}
				for _, c := range te.Chunks {
					rows += c.Count
				}
				for _, c := range te.Deletes {
					deletes += c.Count
				}
			}
			return rows, deletes
		}
		p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil || p1.Kind != KindIncremental {
			t.Fatalf("incremental: %+v %v", p1.Header, err)
		}
		if rows, deletes := countContacts(p1); rows != 2 || deletes != 1 {
			t.Fatalf("incremental after an unpruned full: %d contact rows, %d deletes; want 2 and 1", rows, deletes)
		}
		pending, _ := e.svc.PendingChanges(bg, e.acme.ID)
		pruned, err := e.svc.pruneChangeLog(bg, e.acme.ID, 7)
		if err != nil || pruned < 7*3 {
			t.Fatalf("pruned %d of %d entries: %v", pruned, pending, err)
		}
		// Only the entries of the point's own record (after its watermark)
		// are left.
		left, _ := e.svc.PendingChanges(bg, e.acme.ID)
		if left != pending-pruned || left > 5 {
			t.Fatalf("%d entries left after pruning %d of %d", left, pruned, pending)
		}
		// The other tenant's log is not touched.
		if n, _ := e.svc.PendingChanges(bg, e.beta.ID); n == 0 {
			t.Fatal("the other tenant's change log was pruned")
		}
		clk.Add(time.Hour)
		if _, err := e.contacts.Update(bg, e.acme.ID, page.Contacts[3].ID, contacts.Patch{LastName: strp("Later")}); err != nil {
			t.Fatal(err)
		}
		// Entries after the watermark stay.
		if n, err := e.svc.pruneChangeLog(bg, e.acme.ID, 7); err != nil || n != 0 {
			t.Fatalf("pruned %d entries the last point does not cover: %v", n, err)
		}
		p2, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rows, deletes := countContacts(p2); rows != 1 || deletes != 0 {
			t.Fatalf("incremental after pruning: %d contact rows, %d deletes; want 1 and 0", rows, deletes)
		}
		d := openLike(t, db, clk)
		want := dump(t, db, e.acme.ID)
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-r", Dest: d}); err != nil {
			t.Fatal(err)
		}
		compareDumps(t, want, dump(t, d, e.acme.ID))
	})
}

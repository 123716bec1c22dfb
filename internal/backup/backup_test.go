package backup

import (
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
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

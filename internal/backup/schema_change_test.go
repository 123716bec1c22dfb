package backup

import (
	"context"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestMigrationStartsAFullPoint: a point records the store's schema
// version; while it stays the same the next point continues the set, and
// after a migration (here, one more version recorded as applied) the next
// point is a full one (a migration may move rows to a new table without
// recording them as changes, which an incremental would miss). The new
// set restores to the same rows.
func TestMigrationStartsAFullPoint(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		bg := context.Background()
		clk := newClock()
		e := setup(t, db, newMaster(t), clk, 20)
		dir := dirTarget(t)
		cur, _, err := db.SchemaStatus(bg)
		if err != nil {
			t.Fatal(err)
		}
		p0, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{})
		if err != nil || p0.Kind != KindFull || p0.Schema != cur || cur == 0 {
			t.Fatalf("first point: %+v %v (schema %d)", p0.Header, err, cur)
		}
		clk.Add(time.Hour)
		if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "before-migration@example.net"}); err != nil {
			t.Fatal(err)
		}
		p1, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{})
		if err != nil || p1.Kind != KindIncremental || p1.Schema != cur {
			t.Fatalf("same schema: %+v %v", p1.Header, err)
		}
		// A migration: one more version applied.
		if err := db.Platform(bg, func(p *store.PlatformTx) error {
			_, err := p.Exec(bg, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, cur+1000)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Hour)
		if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "after-migration@example.net"}); err != nil {
			t.Fatal(err)
		}
		p2, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{})
		if err != nil || p2.Kind != KindFull || p2.SetID == p0.SetID || p2.Schema != cur+1000 {
			t.Fatalf("after a migration: %+v %v", p2.Header, err)
		}
		p3, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{})
		if err != nil || p3.Kind != KindIncremental || p3.SetID != p2.SetID {
			t.Fatalf("next point: %+v %v", p3.Header, err)
		}
		if _, err := e.svc.Verify(bg, e.acme.ID, dir); err != nil {
			t.Fatal(err)
		}
	})
}

package backup

import (
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestIncrementalCarriesMessageContents: a message_contents row's insert
// is not logged on its own (migration 00034) but with its message's key;
// an incremental point still carries every content row accepted, updated
// or deleted since the point before it, and a restore of the chain (and
// at a time between the points) equals the source, on both dialects. A
// message whose row alone changed does not bring its content along (only
// inserts are logged as key lists, migration 00036), and a content
// deleted with its message is a delete.
func TestIncrementalCarriesMessageContents(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		e := setup(t, db, mk, clk, 5)
		rs := &router.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
		accept := func(from, n int) []string {
			acc, err := rs.Accept(bg, e.acme.ID, emails("p", from, n))
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]string, len(acc))
			for i, a := range acc {
				ids[i] = a.ID
			}
			return ids
		}
		exec := func(q string, args ...any) { t.Helper(); execIn(t, db, e.acme.ID, q, args...) }
		target := dirTarget(t)
		first := accept(0, 3)
		if p0, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil || p0.Kind != KindFull {
			t.Fatalf("first point: %+v %v", p0.Header, err)
		}
		// Before the first incremental: new messages (their contents are
		// logged only with them), one old message's row changed, one old
		// message deleted with its content.
		clk.Add(time.Hour)
		second := accept(3, 4)
		exec(`UPDATE messages SET attempts = attempts + 1 WHERE tenant_id = $1 AND id = $2`, first[0])
		exec(`DELETE FROM message_contents WHERE tenant_id = $1 AND message_id = $2`, first[1])
		exec(`DELETE FROM messages WHERE tenant_id = $1 AND id = $2`, first[1])
		want1 := dump(t, db, e.acme.ID)
		p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		if err != nil || p1.Kind != KindIncremental {
			t.Fatalf("first incremental: %+v %v", p1.Header, err)
		}
		_, body, _, err := e.svc.openManifest(bg, target, p1.Object)
		if err != nil {
			t.Fatal(err)
		}
		seen := false
		for _, te := range body.Tables {
			if te.Name != "message_contents" {
				continue
			}
			seen = true
			rows := 0
			for _, c := range te.Chunks {
				rows += c.Count
			}
			// The four new contents, not the unchanged content of the
			// message whose row changed; the deleted one as a delete.
			if te.Whole || rows != 4 || len(te.Deletes) != 1 {
				t.Fatalf("incremental message_contents entry: whole=%v rows=%d delete chunks=%d", te.Whole, rows, len(te.Deletes))
			}
		}
		if !seen {
			t.Fatal("the first incremental has no message_contents entry")
		}
		// Before the second incremental: a content updated on its own
		// (as a key rotation re-seals it), more messages.
		clk.Add(time.Hour)
		exec(`UPDATE message_contents SET content_enc = (SELECT c.content_enc FROM message_contents c WHERE c.tenant_id = $1 AND c.message_id = $3)
			WHERE tenant_id = $1 AND message_id = $2`, second[0], first[0])
		accept(7, 2)
		want2 := dump(t, db, e.acme.ID)
		if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := len(want2["message_contents"]); n != 8 {
			t.Fatalf("source holds %d contents, want 8", n)
		}
		d1 := openLike(t, db, clk)
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{At: p1.Time().Add(30 * time.Minute), IntoSlug: "acme-at", Dest: d1}); err != nil {
			t.Fatal(err)
		}
		compareDumps(t, want1, dump(t, d1, e.acme.ID))
		d2 := openLike(t, db, clk)
		if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-latest", Dest: d2}); err != nil {
			t.Fatal(err)
		}
		compareDumps(t, want2, dump(t, d2, e.acme.ID))
	})
}

// TestContentsTrackedOnlyWithMessages: a message_contents insert is logged
// only under its message's key, so if messages lost its change log (copied
// whole by incrementals), contents must be copied whole too: their inserts
// would be logged nowhere.
func TestContentsTrackedOnlyWithMessages(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		tracked := func() (msgs, contents bool) {
			tables, err := loadSchema(bg, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, tb := range tables {
				switch tb.Name {
				case "messages":
					msgs = tb.Tracked
				case "message_contents":
					contents = tb.Tracked
				}
			}
			return msgs, contents
		}
		if m, c := tracked(); !m || !c {
			t.Fatalf("as migrated: messages tracked %v, message_contents tracked %v", m, c)
		}
		drop := `DROP TRIGGER backup_change_messages_i`
		if db.Dialect() == store.Postgres {
			drop = `DROP TRIGGER backup_change ON messages`
		}
		if err := db.Platform(bg, func(p *store.PlatformTx) error { _, err := p.Exec(bg, drop); return err }); err != nil {
			t.Fatal(err)
		}
		if m, c := tracked(); m || c {
			t.Fatalf("messages' insert trigger dropped: messages tracked %v, message_contents tracked %v; want both copied whole", m, c)
		}
	})
}

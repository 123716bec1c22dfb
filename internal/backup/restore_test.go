package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestRestoreFullBatches: a tenant large enough that the restore writes
// more than one chunk per table, some with several full batches (the INSERT
// prepared once) and a partial one, restored from SQLite into either
// dialect: every row equal, and the checksums summed as the rows are
// written agree with the backup's.
func TestRestoreFullBatches(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	src := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, src, mk, clk, 3000)
	// 384 KiB: the contacts' and consents' chunks hold about 100-1,200 rows
	// each (row sizes vary); at 256 KiB, now and then no contacts chunk held
	// two full batches of 222 and the test failed.
	e.svc.ChunkBytes = 384 << 10
	want := dump(t, src, e.acme.ID)
	target := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	// The point's contacts come in several chunks, some holding two full
	// batches or more.
	chain, err := e.svc.chain(bg, e.acme.ID, target, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	tables, err := loadSchema(bg, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, te := range chain[0].body.Tables {
		if te.Name != "contacts" && te.Name != "consents" {
			continue
		}
		var tb *table
		for _, x := range tables {
			if x.Name == te.Name {
				tb = x
			}
		}
		per := newInserter(store.SQLite, tb, te.Columns, false).perStmt
		big := 0
		for _, c := range te.Chunks {
			if c.Count >= 2*per {
				big++
			}
		}
		if len(te.Chunks) < 2 || big == 0 {
			t.Fatalf("table %s: %d chunks, %d with two full batches of %d rows: the test does not cover full batches",
				te.Name, len(te.Chunks), big, per)
		}
	}
	storetest.Run(t, func(t *testing.T, dest *store.DB) {
		res, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest})
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows < 3000 {
			t.Fatalf("restored %d rows", res.Rows)
		}
		compareDumps(t, want, dump(t, dest, e.acme.ID))
		verifyAudit(t, dest, mk, e.acme.ID)
		if dest.Dialect() == store.SQLite {
			// The indexes and triggers set aside for the load are all back.
			if got, want := schemaOf(t, dest), schemaOf(t, storetest.OpenSQLite(t, storetest.Options{})); got != want {
				t.Fatalf("the schema after the restore differs from a fresh store's:\n%s\nwant\n%s", got, want)
			}
		}
	})
}

// schemaOf lists an SQLite store's indexes and triggers with their SQL.
func schemaOf(t *testing.T, db *store.DB) string {
	t.Helper()
	var out []string
	err := db.Platform(bg, func(p *store.PlatformTx) error {
		rows, err := p.Query(bg, `SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_schema WHERE type IN ('index', 'trigger') ORDER BY type, name`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var typ, name, tbl, q string
			if err := rows.Scan(&typ, &name, &tbl, &q); err != nil {
				return err
			}
			out = append(out, strings.Join([]string{typ, name, tbl, q}, " "))
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("only %d indexes and triggers", len(out))
	}
	return strings.Join(out, "\n")
}

// TestRestoreRefusesDuplicateBlindIndex: a backup whose contacts break the
// unique e-mail blind index (taken from a store where that index was gone)
// is refused whole, whether the restore sets the index aside and builds it
// after loading (an empty SQLite store) or keeps it (a store with other
// tenants' contacts, or PostgreSQL): no tenant, no row left.
func TestRestoreRefusesDuplicateBlindIndex(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	src := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, src, mk, clk, 30)
	if err := src.Platform(bg, func(p *store.PlatformTx) error {
		_, err := p.Exec(bg, `DROP INDEX contacts_email`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := src.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		// Another contact than the one holding the smallest blind index
		// (ids and blind indexes are random: max(id) alone could pick it,
		// and the update would then change nothing).
		res, err := tx.Exec(bg, `UPDATE contacts SET email_bidx = (SELECT min(email_bidx) FROM contacts WHERE tenant_id = $1)
			WHERE tenant_id = $1 AND id = (SELECT max(id) FROM contacts WHERE tenant_id = $1 AND email_bidx IS NOT NULL
				AND email_bidx <> (SELECT min(email_bidx) FROM contacts WHERE tenant_id = $1))`)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%d contacts changed", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	target := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	refused := func(t *testing.T, dest *store.DB) {
		t.Helper()
		_, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme-restored", Dest: dest})
		if err == nil {
			t.Fatal("a backup with a duplicate blind index was restored")
		}
		t.Logf("refused: %v", err)
		if !store.IsUniqueViolation(err) && !strings.Contains(err.Error(), "contacts_email") {
			t.Fatalf("restore error: %v", err)
		}
		if n := len(dump(t, dest, e.acme.ID)); n != 0 {
			t.Fatalf("a refused restore left %d tables with rows", n)
		}
		ts := &tenants.Service{DB: dest, Master: mk, Defaults: config.DefaultPolicy()}
		if _, err := ts.Get(bg, "acme-restored"); !errors.Is(err, tenants.ErrNotFound) {
			t.Fatalf("a refused restore left its tenant: %v", err)
		}
		if dest.Dialect() == store.SQLite {
			// The indexes and triggers set aside are back (rolled back).
			if got, want := schemaOf(t, dest), schemaOf(t, storetest.OpenSQLite(t, storetest.Options{})); got != want {
				t.Fatalf("the schema after a refused restore differs from a fresh store's:\n%s\nwant\n%s", got, want)
			}
		}
	}
	storetest.Run(t, func(t *testing.T, dest *store.DB) {
		t.Run("empty store", func(t *testing.T) { refused(t, dest) })
		t.Run("store with other contacts", func(t *testing.T) {
			setup(t, dest, mk, clk, 3)
			refused(t, dest)
		})
	})
}

// TestRestoreAfterAColumnWasAdded: a column added to a table between the
// full point and an incremental that does not touch the table's rows (a
// migration in between): the table's sum at the last point covers the new
// column, so the restore reads that table back instead of using the full
// point's sum, and restores.
func TestRestoreAfterAColumnWasAdded(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	src := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, src, mk, clk, 5)
	target := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	addColumn := func(db *store.DB) {
		t.Helper()
		if err := db.Platform(bg, func(p *store.PlatformTx) error {
			_, err := p.Exec(bg, `ALTER TABLE lists ADD COLUMN colour TEXT NOT NULL DEFAULT 'blue'`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	addColumn(src)
	clk.Add(time.Hour)
	p1, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Kind != KindIncremental {
		t.Fatalf("second point is %s", p1.Kind)
	}
	want := dump(t, src, e.acme.ID)
	dest := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	addColumn(dest)
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want, dump(t, dest, e.acme.ID))
}

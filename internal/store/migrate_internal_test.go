package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// A store that applied a later migration before an earlier one landed (as
// happens when features reserve numbers in advance) reports the earlier one
// pending, is not ready, and gets it from the next `relais migrate`.
func TestOutOfOrderMigrationIsApplied(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := db.provider()
	if err != nil {
		t.Fatal(err)
	}
	srcs := p.ListSources()
	if len(srcs) < 3 {
		t.Fatalf("only %d migrations", len(srcs))
	}
	// Take back one in the middle, as if it had not existed yet.
	middle := srcs[len(srcs)/2].Version
	if _, err := p.ApplyVersion(ctx, middle, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(ctx); err == nil || !strings.Contains(err.Error(), "relais migrate") {
		t.Fatalf("a store with migration %d missing is ready: %v", middle, err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0] != middle {
		t.Fatalf("applied %v, want [%d]", applied, middle)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// Migration 00020 rebuilds contacts on SQLite (its inline UNIQUE becomes
// the named unique index contacts_email) with foreign keys off: the rows of
// contacts and of the tables referencing it survive (the drop of the old
// table must not cascade), the backup triggers and indexes come back, the
// rule still holds, and every connection has foreign keys on again.
func TestContactsEmailIndexMigrationKeepsRows(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.provider()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 19); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) error {
		_, err := db.sql.ExecContext(ctx, q, args...)
		return err
	}
	for _, q := range []string{
		`INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ('t1', 'acme', 'Acme', 'active', 1, 1)`,
		`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at, key_enc) VALUES ('t1', 'c1', x'01', 'active', 'api', 1, 1, x'aa')`,
		`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at) VALUES ('t1', 'c2', x'02', 'active', 'api', 1, 1)`,
		`INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, last_event_id, created_at, updated_at) VALUES ('t1', 'c1', 'email', 'news', 'granted', 'api', 'e1', 1, 1)`,
		`INSERT INTO lists (tenant_id, id, name, created_at, updated_at) VALUES ('t1', 'l1', 'L', 1, 1)`,
		`INSERT INTO list_members (tenant_id, list_id, contact_id, added_at) VALUES ('t1', 'l1', 'c2', 1)`,
	} {
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	count := func(q string) int {
		var n int
		if err := db.sql.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	check := func(stage string, wantIndex bool) {
		t.Helper()
		for q, want := range map[string]int{
			`SELECT count(*) FROM contacts WHERE tenant_id = 't1'`:                                          2,
			`SELECT count(*) FROM contacts WHERE key_enc = x'aa'`:                                           1,
			`SELECT count(*) FROM consents`:                                                                 1,
			`SELECT count(*) FROM list_members`:                                                             1,
			`SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'contacts'`:           3,
			`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'contacts_phone'`:           1,
			`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'contacts_email'`:           map[bool]int{true: 1, false: 0}[wantIndex],
			`SELECT count(*) FROM pragma_index_list('contacts') WHERE "unique" AND origin = 'u'`:            map[bool]int{true: 0, false: 1}[wantIndex],
			`SELECT count(*) FROM pragma_index_list('contacts') WHERE "unique" AND name = 'contacts_email'`: map[bool]int{true: 1, false: 0}[wantIndex],
			`SELECT count(*) FROM pragma_foreign_key_check`:                                                 0,
		} {
			if got := count(q); got != want {
				t.Errorf("%s: %s = %d, want %d", stage, q, got, want)
			}
		}
		// The rule holds, and the foreign keys are enforced on every
		// connection (the migration's own went back to the pool).
		if err := exec(`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at) VALUES ('t1', 'c3', x'01', 'active', 'api', 1, 1)`); err == nil {
			t.Errorf("%s: a second contact with the same blind index was stored", stage)
		}
		var conns []*sql.Conn
		for range 8 {
			c, err := db.sql.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var on int
			if err := c.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&on); err != nil || on != 1 {
				t.Errorf("%s: a connection has foreign_keys = %d (%v)", stage, on, err)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
		if err := exec(`INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, last_event_id, created_at, updated_at) VALUES ('t1', 'nobody', 'email', 'news', 'granted', 'api', 'e2', 1, 1)`); err == nil {
			t.Errorf("%s: a consent of no contact was stored", stage)
		}
	}
	if _, err := p.UpByOne(ctx); err != nil {
		t.Fatal(err)
	}
	check("up", true)
	if _, err := p.ApplyVersion(ctx, 20, false); err != nil {
		t.Fatal(err)
	}
	check("down", false)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	check("up again", true)
}

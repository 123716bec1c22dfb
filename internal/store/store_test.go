package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the raw connection
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// seed creates two tenants with a settings row each, through the platform.
func seed(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := context.Background()
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		for _, id := range []string{"ta", "tb"} {
			if _, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, 'active', 1, 1)`,
				id, "slug-"+id, "Tenant "+id); err != nil {
				return err
			}
			if _, err := p.Tenant(id).Exec(ctx, `INSERT INTO tenant_settings (tenant_id, policy, updated_at) VALUES ($1, $2, 1)`, `{"owner":"`+id+`"}`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func policies(t *testing.T, db *store.DB, tenant string, query string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("query as %s: %v", tenant, err)
	}
	return out
}

func TestMigrateIsIdempotentAndReady(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		applied, err := db.Migrate(ctx)
		if err != nil || len(applied) != 0 {
			t.Fatalf("second migrate: applied %v, err %v", applied, err)
		}
		cur, latest, err := db.SchemaStatus(ctx)
		if err != nil || cur != latest || latest < 1 {
			t.Fatalf("schema status %d/%d %v", cur, latest, err)
		}
		if err := db.Ready(ctx); err != nil {
			t.Fatalf("ready: %v", err)
		}
	})
}

func TestTenantHandleSeesOnlyItsTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`)
		if len(got) != 1 || !strings.Contains(got[0], `"ta"`) {
			t.Fatalf("tenant a read %v", got)
		}
		// Changing through A's handle touches A's row only.
		err := db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`, `{"changed":true}`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := policies(t, db, "tb", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 || !strings.Contains(got[0], `"tb"`) {
			t.Fatalf("tenant b's row changed: %v", got)
		}
		// A statement that does not use the bound tenant is refused before
		// it runs, and nothing changes.
		for _, q := range []string{
			`UPDATE tenant_settings SET policy = 'x'`,
			`UPDATE tenant_settings SET policy = 'x' WHERE tenant_id = $2`,
			`SELECT policy FROM tenant_settings WHERE tenant_id = '$1'`,
			`SELECT policy FROM tenant_settings WHERE tenant_id = $10`,
		} {
			err := db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, q, "tb")
				return err
			})
			if !errors.Is(err, store.ErrUnscoped) {
				t.Errorf("%q: got %v, want ErrUnscoped", q, err)
			}
			var n int
			err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
				return tx.QueryRow(ctx, q, "tb").Scan(&n)
			})
			if !errors.Is(err, store.ErrUnscoped) {
				t.Errorf("QueryRow %q: got %v, want ErrUnscoped", q, err)
			}
			err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Prepare(ctx, q)
				return err
			})
			if !errors.Is(err, store.ErrUnscoped) {
				t.Errorf("Prepare %q: got %v, want ErrUnscoped", q, err)
			}
		}
		// A prepared statement binds the transaction's tenant as $1.
		err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
			st, err := tx.Prepare(ctx, `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`)
			if err != nil {
				return err
			}
			for _, v := range []string{`{"p":1}`, `{"p":2}`} {
				if _, err := st.Exec(ctx, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 || got[0] != `{"p":2}` {
			t.Fatalf("tenant a after a prepared update: %v", got)
		}
		if got := policies(t, db, "tb", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 || got[0] == "x" {
			t.Fatalf("tenant b changed by a refused statement: %v", got)
		}
		// An empty tenant cannot be used.
		if err := db.Tenant("").Tx(ctx, func(*store.Tx) error { return nil }); !errors.Is(err, store.ErrNoTenant) {
			t.Fatalf("empty tenant: %v", err)
		}
	})
}

func TestRowLevelSecurityBlocksForgottenTenantClause(t *testing.T) {
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
	if !db.RLSEffective() {
		t.Fatal("the test role bypasses RLS: the test would prove nothing")
	}
	seed(t, db)

	// A statement that names $1 but forgets to filter on it: RLS still
	// confines it to tenant A.
	got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE $1::text <> ''`)
	if len(got) != 1 || !strings.Contains(got[0], `"ta"`) {
		t.Fatalf("forgotten tenant clause read %v", got)
	}
	var changed int64
	err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'hijacked' WHERE $1::text <> ''`)
		if err != nil {
			return err
		}
		changed, err = res.RowsAffected()
		return err
	})
	if err != nil || changed != 1 {
		t.Fatalf("forgotten clause update: %d rows, %v", changed, err)
	}
	if got := policies(t, db, "tb", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] == "hijacked" {
		t.Fatal("RLS let tenant a change tenant b")
	}
	// Inserting a row for another tenant is refused by the policy's check.
	err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_heads (tenant_id, seq, hash) SELECT $2, 1, $3 WHERE $1::text <> ''`, "tb", []byte{0})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Fatalf("cross-tenant insert: %v", err)
	}

	// A raw connection that sets no tenant at all sees no tenant rows.
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var n int
	for _, table := range []string{"tenants", "tenant_settings", "tenant_keys", "audit_events", "audit_heads", "audit_queue", "operator_tokens"} {
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("raw query on %s without a tenant saw %d rows (%v)", table, n, err)
		}
	}
	// Even with the tenant setting emptied, nothing is visible.
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT set_config('relais.tenant_id', '', false)) s, tenant_settings`).Scan(&n); err != nil || n != 0 {
		t.Errorf("empty tenant setting saw %d rows (%v)", n, err)
	}
}

func TestRollbackLeavesNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		boom := errors.New("boom")
		ran := false
		err := db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
			tx.AfterCommit(func() { ran = true })
			if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'half' WHERE tenant_id = $1`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) || ran {
			t.Fatalf("err %v, after-commit ran %v", err, ran)
		}
		func() {
			defer func() { _ = recover() }()
			_ = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'panic' WHERE tenant_id = $1`); err != nil {
					return err
				}
				panic("mid-transaction")
			})
		}()
		got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`)
		if got[0] == "half" || got[0] == "panic" {
			t.Fatalf("rolled-back change visible: %v", got)
		}
		err = db.Tenant("ta").Tx(ctx, func(tx *store.Tx) error {
			tx.AfterCommit(func() { ran = true })
			return nil
		})
		if err != nil || !ran {
			t.Fatalf("after-commit hook: ran %v, %v", ran, err)
		}
	})
}

func TestUniqueViolationIsRecognised(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		insert := func() error {
			return db.Platform(ctx, func(p *store.PlatformTx) error {
				_, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ('x', 'dup', 'X', 'active', 1, 1)`)
				return err
			})
		}
		if err := insert(); err != nil {
			t.Fatal(err)
		}
		if err := insert(); !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: %v", err)
		}
	})
}

func TestSQLiteFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "relais.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
}

func TestBadDatabaseURLs(t *testing.T) {
	ctx := context.Background()
	cases := map[string]string{
		"mysql://u:p@h/db": "not a postgres:// URL",
		"postgres://u:secretpw@127.0.0.1:1/db?connect_timeout=2": "check RELAIS_DATABASE_URL",
	}
	for url, want := range cases {
		_, err := store.Open(ctx, store.Options{URL: url})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	// SQLite in a directory that cannot be created.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, store.Options{DataDir: filepath.Join(f, "sub")}); err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("bad data dir: %v", err)
	}
}

// TestEveryTenantTableHasRLS guards future migrations: on PostgreSQL every
// table with a tenant_id column must have row-level security enabled and
// forced, with at least one policy; platform tables without tenant_id must
// be forced too unless they hold nothing of any tenant (goose's table).
func TestEveryTenantTableHasRLS(t *testing.T) {
	db := storetest.OpenPostgres(t, storetest.Options{})
	ctx := context.Background()
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
				(SELECT count(*) FROM pg_policy pol WHERE pol.polrelid = c.oid)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.relname`)
		if err != nil {
			return err
		}
		defer rows.Close()
		seen := 0
		for rows.Next() {
			var name string
			var enabled, forced bool
			var policies int
			if err := rows.Scan(&name, &enabled, &forced, &policies); err != nil {
				return err
			}
			if name == "goose_db_version" {
				continue
			}
			seen++
			if !enabled || !forced || policies == 0 {
				t.Errorf("table %s: RLS enabled=%v forced=%v policies=%d", name, enabled, forced, policies)
			}
		}
		if seen < 5 {
			t.Errorf("only %d tables inspected", seen)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDialectsHaveTheSameTables: both migration folders create the same
// tables and columns, so backups and exports move between them.
func TestDialectsHaveTheSameTables(t *testing.T) {
	ctx := context.Background()
	lite := storetest.OpenSQLite(t, storetest.Options{})
	pg := storetest.OpenPostgres(t, storetest.Options{})
	cols := func(db *store.DB, q string) map[string]bool {
		out := map[string]bool{}
		err := db.Platform(ctx, func(p *store.PlatformTx) error {
			rows, err := p.Query(ctx, q)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var tbl, col string
				if err := rows.Scan(&tbl, &col); err != nil {
					return err
				}
				if tbl != "goose_db_version" {
					out[tbl+"."+col] = true
				}
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	l := cols(lite, `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
	p := cols(pg, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()`)
	for c := range l {
		if !p[c] {
			t.Errorf("%s exists on SQLite only", c)
		}
	}
	for c := range p {
		if !l[c] {
			t.Errorf("%s exists on PostgreSQL only", c)
		}
	}
}

// A bulk session's transactions are bound to its tenant as Tx's are: $1 is
// the tenant, a statement without it is refused, a failed transaction
// rolls back alone and the session goes on.
func TestBulkSessionIsTenantBound(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		boom := errors.New("boom")
		err := db.Tenant("ta").Bulk(ctx, store.BulkOptions{WALAutocheckpoint: 50000}, func(s *store.BulkSession) error {
			if err := s.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`, `{"bulk":1}`)
				return err
			}); err != nil {
				return err
			}
			if err := s.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = 'x'`)
				return err
			}); !errors.Is(err, store.ErrUnscoped) {
				t.Errorf("unscoped statement in a session: %v", err)
			}
			if err := s.Tx(ctx, func(tx *store.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = $2 WHERE tenant_id = $1`, `{"bulk":2}`); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Errorf("failed transaction: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 || got[0] != `{"bulk":1}` {
			t.Fatalf("tenant a after the session: %v", got)
		}
		if got := policies(t, db, "tb", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); len(got) != 1 || !strings.Contains(got[0], `"tb"`) {
			t.Fatalf("tenant b changed: %v", got)
		}
		if err := db.Tenant("").Bulk(ctx, store.BulkOptions{}, func(*store.BulkSession) error { return nil }); !errors.Is(err, store.ErrNoTenant) {
			t.Fatalf("empty tenant: %v", err)
		}
	})
}

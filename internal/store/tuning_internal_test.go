package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every SQLite connection gets the configured page cache, checkpoint size
// and in-memory temporary storage; zero settings take the defaults.
func TestSQLiteTuning(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		tune        SQLiteTuning
		cache, ckpt int
	}{
		{SQLiteTuning{}, -8 * 1024, 10000},
		{SQLiteTuning{CacheMiB: 3, WALAutocheckpoint: 500}, -3 * 1024, 500},
	} {
		db, err := Open(ctx, Options{DataDir: t.TempDir(), SQLite: tc.tune})
		if err != nil {
			t.Fatal(err)
		}
		// Several connections at once: each runs the settings.
		conns := make([]interface{ Close() error }, 0, 3)
		for i := 0; i < 3; i++ {
			c, err := db.sql.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var cache, ckpt, temp int
			if err := c.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&ckpt); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&temp); err != nil {
				t.Fatal(err)
			}
			if cache != tc.cache || ckpt != tc.ckpt || temp != 2 {
				t.Fatalf("%+v, connection %d: cache_size %d, wal_autocheckpoint %d, temp_store %d", tc.tune, i, cache, ckpt, temp)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
		_ = db.Close()
	}
}

// ExecBulk and QueryBulk cache long statements (up to maxBulkStmts texts),
// which Exec never does, and bind the tenant like Exec.
func TestBulkStatementCache(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Platform(ctx, func(p *PlatformTx) error {
		_, err := p.Exec(ctx, `CREATE TABLE bulk_t (tenant_id TEXT NOT NULL, n INTEGER NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	insert := func(rows int) string {
		var b strings.Builder
		b.WriteString(`INSERT INTO bulk_t (tenant_id, n) VALUES `)
		for i := 0; i < rows; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("($1, ?)")
		}
		return b.String() + " /*" + strings.Repeat("x", maxCachedQuery) + "*/"
	}
	args := func(rows int) []any {
		a := make([]any, rows)
		for i := range a {
			a[i] = i
		}
		return a
	}
	q := insert(3)
	for i := 0; i < 3; i++ {
		if err := db.Tenant("t1").Tx(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(ctx, q, args(3)...); err != nil {
				return err
			}
			_, err := tx.ExecBulk(ctx, q, args(3)...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if db.stmts.m[q] == nil || db.stmts.bulk != 1 {
		t.Fatalf("the bulk statement was not cached (%d bulk)", db.stmts.bulk)
	}
	var n int
	if err := db.Platform(ctx, func(p *PlatformTx) error {
		return p.QueryRow(ctx, `SELECT count(*) FROM bulk_t WHERE tenant_id = 't1'`).Scan(&n)
	}); err != nil || n != 18 {
		t.Fatalf("%d rows, %v", n, err)
	}
	// Unscoped statements are refused as by Exec.
	err = db.Tenant("t1").Tx(ctx, func(tx *Tx) error {
		_, err := tx.ExecBulk(ctx, `DELETE FROM bulk_t`)
		return err
	})
	if err != ErrUnscoped {
		t.Fatalf("unscoped bulk statement: %v", err)
	}
	// At most maxBulkStmts long texts are cached; later ones still run.
	for i := 2; i < maxBulkStmts+5; i++ {
		q := insert(i)
		if err := db.Tenant("t1").Tx(ctx, func(tx *Tx) error {
			rs, err := tx.QueryBulk(ctx, q+" RETURNING n", args(i)...)
			if err != nil {
				return err
			}
			defer rs.Close()
			k := 0
			for rs.Next() {
				k++
			}
			if k != i {
				return fmt.Errorf("%d rows returned of %d", k, i)
			}
			return rs.Err()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if db.stmts.bulk != maxBulkStmts {
		t.Fatalf("%d bulk statements cached, want %d", db.stmts.bulk, maxBulkStmts)
	}
}

// A bulk session's transactions run on one connection with the session's
// checkpoint interval; afterwards that connection has the store's settings
// back (interval, busy timeout) and the log the session grew is truncated.
func TestBulkSessionSettings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.sql.SetMaxOpenConns(1) // the session's connection is the pool's only one
	if err := db.Platform(ctx, func(p *PlatformTx) error {
		_, err := p.Exec(ctx, `CREATE TABLE bulk_s (tenant_id TEXT NOT NULL, n INTEGER NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pragma := func(q func(string) *sql.Row, name string) int {
		var v int
		if err := q(`PRAGMA ` + name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	err = db.Tenant("ta").Bulk(ctx, BulkOptions{WALAutocheckpoint: 50000}, func(s *BulkSession) error {
		q := func(q string) *sql.Row { return s.conn.QueryRowContext(ctx, q) }
		if ckpt, limit := pragma(q, "wal_autocheckpoint"), pragma(q, "journal_size_limit"); ckpt != 50000 || limit != -1 {
			t.Errorf("in the session: wal_autocheckpoint %d, journal_size_limit %d", ckpt, limit)
		}
		for i := 0; i < 20; i++ {
			if err := s.Tx(ctx, func(tx *Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO bulk_s (tenant_id, n) SELECT $1, value FROM json_each(json_array(1, 2, 3))`)
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "relais.db-wal")); err != nil || fi.Size() != 0 {
		t.Errorf("write-ahead log after the session: %v %v", fi, err)
	}
	// The pool's one connection, the session's, has the store's settings.
	if open := db.sql.Stats().OpenConnections; open != 1 {
		t.Fatalf("%d connections open", open)
	}
	c, err := db.sql.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := func(q string) *sql.Row { return c.QueryRowContext(ctx, q) }
	if ckpt, busy, limit := pragma(q, "wal_autocheckpoint"), pragma(q, "busy_timeout"), pragma(q, "journal_size_limit"); ckpt != 10000 ||
		busy != busyTimeoutMillis || limit != 2*10000*4096 {
		t.Fatalf("after the session: wal_autocheckpoint %d, busy_timeout %d, journal_size_limit %d", ckpt, busy, limit)
	}
	var n int
	if err := q(`SELECT count(*) FROM bulk_s WHERE tenant_id = 'ta'`).Scan(&n); err != nil || n != 60 {
		t.Fatalf("rows written: %d %v", n, err)
	}
}

// A store created with a page size has it (and keeps it when opened again
// with another setting); an existing store keeps its own; a size that is
// not a power of two from 4096 to 65536 is refused.
func TestSQLitePageSize(t *testing.T) {
	ctx := context.Background()
	pageSize := func(db *DB) int {
		var n int
		if err := db.Platform(ctx, func(p *PlatformTx) error {
			return p.QueryRow(ctx, `PRAGMA page_size`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	open := func(dir string, size int) *DB {
		db, err := Open(ctx, Options{DataDir: dir, SQLite: SQLiteTuning{PageSize: size}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return db
	}
	big := t.TempDir()
	db := open(big, 16384)
	var mode string
	if err := db.sql.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q %v", mode, err)
	}
	if fi, err := os.Stat(filepath.Join(big, "relais.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v %v", fi, err)
	}
	if got := pageSize(db); got != 16384 {
		t.Fatalf("new store: page size %d, want 16384", got)
	}
	_ = db.Close()
	db = open(big, 65536)
	if got := pageSize(db); got != 16384 {
		t.Fatalf("reopened: page size %d, want 16384", got)
	}
	_ = db.Close()
	small := t.TempDir()
	db = open(small, 0)
	if got := pageSize(db); got != 4096 {
		t.Fatalf("default: page size %d", got)
	}
	_ = db.Close()
	db = open(small, 32768)
	if got := pageSize(db); got != 4096 {
		t.Fatalf("existing store: page size %d, want its own 4096", got)
	}
	_ = db.Close()
	for _, bad := range []int{1024, 5000, 131072} {
		if db, err := Open(ctx, Options{DataDir: t.TempDir(), SQLite: SQLiteTuning{PageSize: bad}}); err == nil {
			_ = db.Close()
			t.Fatalf("page size %d accepted", bad)
		}
	}
}

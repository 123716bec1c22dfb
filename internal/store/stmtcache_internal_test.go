package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// The statement cache serves the same statement to concurrent
// transactions on several connections, stops growing when full (and goes
// on working), skips long queries, and leaves errors to the text path.
func TestStatementCache(t *testing.T) {
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
		_, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ('t1', 't1', 'T', 'active', 1, 1)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT count(*) FROM tenants WHERE id = $1 AND status = $2`
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				var n int
				if err := db.Tenant("t1").Tx(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, q, "active").Scan(&n) }); err != nil || n != 1 {
					errs <- fmt.Errorf("count %d, %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if db.stmts.m[q] == nil {
		t.Fatal("the statement was not cached")
	}
	long := q + " /*" + strings.Repeat("x", maxCachedQuery) + "*/"
	var n int
	if err := db.Tenant("t1").Tx(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, long, "active").Scan(&n) }); err != nil || n != 1 {
		t.Fatalf("long query: %d %v", n, err)
	}
	if db.stmts.m[long] != nil {
		t.Fatal("a long query was cached")
	}
	// A full cache caches nothing more and still runs statements.
	for i := len(db.stmts.m); i < maxCachedStmts; i++ {
		db.stmts.m[fmt.Sprint("filler ", i)] = nil
	}
	q2 := `SELECT count(*) FROM tenants WHERE id = $1 AND slug = $2`
	if err := db.Tenant("t1").Tx(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, q2, "t1").Scan(&n) }); err != nil || n != 1 {
		t.Fatalf("with a full cache: %d %v", n, err)
	}
	if _, ok := db.stmts.m[q2]; ok {
		t.Fatal("a full cache grew")
	}
	// A bad statement still reports its error.
	err = db.Tenant("t1").Tx(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, `UPDATE no_such_table SET x = 1 WHERE tenant_id = $1`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("bad statement: %v", err)
	}
}

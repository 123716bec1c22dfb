package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// The write gate admits one writer at a time and hands the turn on at
// release; a writer whose context ends stops waiting and goes ahead
// without the turn (its release frees nothing).
func TestWriteGate(t *testing.T) {
	g := newWriteGate()
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release := g.acquire(context.Background())
			n := inside.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			inside.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d writers at once", most.Load())
	}
	hold := g.acquire(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.acquire(ctx)() // does not wait, does not free the held turn
	select {
	case g.ch <- struct{}{}:
		t.Fatal("the turn was freed by a writer that did not hold it")
	default:
	}
	hold()
	g.acquire(context.Background())()
}

// SQLite writers of one store, many at once, all commit.
func TestConcurrentSQLiteWriters(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Platform(ctx, func(p *PlatformTx) error {
		_, err := p.Exec(ctx, `CREATE TABLE gate_test (n INTEGER NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- db.Platform(ctx, func(p *PlatformTx) error {
				_, err := p.Exec(ctx, `INSERT INTO gate_test (n) VALUES ($1)`, i)
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.Platform(ctx, func(p *PlatformTx) error { return p.QueryRow(ctx, `SELECT count(*) FROM gate_test`).Scan(&n) }); err != nil || n != 32 {
		t.Fatalf("%d rows, %v", n, err)
	}
}

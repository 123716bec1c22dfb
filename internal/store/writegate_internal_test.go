package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

// Write transactions that follow one another run on one connection (a
// TEMP table, private to a connection, made by the first is seen by the
// next, which was waiting); the last of a run gives the connection back to
// the pool; a write after the store's writer connection broke runs on the
// pool, and a write after Close of the writer still runs.
func TestWriterConnection(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	second := make(chan error, 1)
	if err := db.Platform(ctx, func(p *PlatformTx) error {
		if _, err := p.Exec(ctx, `CREATE TEMP TABLE writer_probe (n INTEGER)`); err != nil {
			return err
		}
		go func() {
			second <- db.Platform(ctx, func(p *PlatformTx) error {
				_, err := p.Exec(ctx, `INSERT INTO temp.writer_probe (n) VALUES (1)`)
				return err
			})
		}()
		for !db.writes.queued() {
			time.Sleep(time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the waiting writer ran on another connection: %v", err)
	}
	db.writer.mu.Lock()
	kept := db.writer.c
	db.writer.mu.Unlock()
	if kept != nil {
		t.Fatal("the last writer of a run kept the connection")
	}
	// A writer connection that cannot begin (here: already given back,
	// sql.ErrConnDone): the write runs on the pool, and the next takes a
	// fresh connection.
	c := db.writer.get(ctx, db.sql)
	if c == nil {
		t.Fatal("no writer connection")
	}
	_ = c.Close()
	write := func() error {
		return db.Platform(ctx, func(p *PlatformTx) error {
			_, err := p.Exec(ctx, `CREATE TABLE IF NOT EXISTS writer_after (n INTEGER); INSERT INTO writer_after (n) VALUES (1)`)
			return err
		})
	}
	if err := write(); err != nil {
		t.Fatalf("a write after the writer connection broke: %v", err)
	}
	if c2 := db.writer.get(ctx, db.sql); c2 == nil || c2 == c {
		t.Fatal("the unusable writer connection was kept")
	}
	db.writer.put()
	db.writer.close()
	if db.writer.get(ctx, db.sql) != nil {
		t.Fatal("a closed writer gave a connection")
	}
	if err := write(); err != nil {
		t.Fatalf("a write after the writer closed: %v", err)
	}
}

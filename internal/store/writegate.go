package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// writeGate queues this process's SQLite write transactions in Go. SQLite
// admits one writer at a time; a second BEGIN IMMEDIATE waits in SQLite's
// busy handler, which sleeps 1, 2, 5 ... 100 ms between tries and so
// misses the moments the lock is free: with a campaign's expansion, the
// router's claims and its recording of outcomes all writing, the writers
// spent more time asleep than working. The gate hands the turn to the
// next writer as soon as the previous one commits or rolls back (a
// channel queues its waiters in order). A writer that waits longer than
// writeGateWait goes ahead to SQLite's own wait (other processes on the
// same file, or a transaction opened inside another, which SQLite then
// refuses after its busy timeout as before instead of waiting forever).
type writeGate struct {
	ch      chan struct{}
	waiting atomic.Int32 // writers waiting for the turn
}

const writeGateWait = 10 * time.Second

func newWriteGate() *writeGate { return &writeGate{ch: make(chan struct{}, 1)} }

// acquire takes the turn and returns its release (a no-op when it went
// ahead without the turn).
func (g *writeGate) acquire(ctx context.Context) func() {
	release, _ := g.take(ctx)
	return release
}

// take is acquire that also reports whether the turn was taken.
func (g *writeGate) take(ctx context.Context) (release func(), held bool) {
	select {
	case g.ch <- struct{}{}:
		return g.release, true
	default:
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	t := time.NewTimer(writeGateWait)
	defer t.Stop()
	select {
	case g.ch <- struct{}{}:
		return g.release, true
	case <-ctx.Done():
		return func() {}, false
	case <-t.C:
		return func() {}, false
	}
}

// writerConn is the one pool connection on which the write transactions
// that hold the gate's turn run. In WAL mode an SQLite connection drops
// its whole page cache when it starts a transaction after another
// connection wrote: write transactions spread over the pool's connections
// found a cold cache nearly every time and read each page they touched
// back from the file (a system call and a page check per page). On one
// connection that alone writes, the pages of the tables and indexes being
// written (the ends of the queue, events and change log) stay cached from
// one transaction to the next. It is only used under the turn, so by one
// transaction at a time, and is kept only while writers follow one
// another: the last of a run gives it back to the pool (put), where a
// bulk session or a reader may need it.
type writerConn struct {
	mu     sync.Mutex
	c      *sql.Conn
	closed bool
}

// get returns the connection, taking one from the pool on first use; nil
// when none can be had (the caller uses the pool).
func (w *writerConn) get(ctx context.Context, pool *sql.DB) *sql.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if w.c == nil {
		c, err := pool.Conn(ctx)
		if err != nil {
			return nil
		}
		w.c = c
	}
	return w.c
}

// drop gives c back (closed by the pool if it is broken) after an error,
// so that the next write takes a fresh connection.
func (w *writerConn) drop(c *sql.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c == c {
		w.c = nil
	}
	_ = c.Close()
}

// put gives the connection back to the pool; the next write takes one
// again (most often the same: the pool reuses its last idle connection).
func (w *writerConn) put() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c != nil {
		_ = w.c.Close()
		w.c = nil
	}
}

// close returns the connection to the pool for good (Close of the store).
func (w *writerConn) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.c != nil {
		_ = w.c.Close()
		w.c = nil
	}
}

func (g *writeGate) release() { <-g.ch }

// queued reports whether a writer is waiting for the turn.
func (g *writeGate) queued() bool { return g.waiting.Load() > 0 }

package store

import (
	"context"
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
type writeGate struct{ ch chan struct{} }

const writeGateWait = 10 * time.Second

func newWriteGate() *writeGate { return &writeGate{ch: make(chan struct{}, 1)} }

// acquire takes the turn and returns its release (a no-op when it went
// ahead without the turn).
func (g *writeGate) acquire(ctx context.Context) func() {
	select {
	case g.ch <- struct{}{}:
		return g.release
	default:
	}
	t := time.NewTimer(writeGateWait)
	defer t.Stop()
	select {
	case g.ch <- struct{}{}:
		return g.release
	case <-ctx.Done():
		return func() {}
	case <-t.C:
		return func() {}
	}
}

func (g *writeGate) release() { <-g.ch }

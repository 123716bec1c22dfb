package campaigns

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// analyzeCount is how many times the queue's tables were analysed by
// ANALYZE (not autovacuum), summed.
func analyzeCount(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var n int64
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		return p.QueryRow(context.Background(), `SELECT COALESCE(sum(analyze_count), 0)::bigint FROM pg_stat_user_tables
			WHERE relname IN ('messages', 'message_contents', 'message_events')`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestQueueStats: on PostgreSQL an expansion analyses the queue's tables
// after its first 1000 messages and then at ten times the last count, not
// at every page; a failed ANALYZE is logged and the expansion goes on; on
// SQLite nothing is run.
func TestQueueStats(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		var logs bytes.Buffer
		q := queueStats{db: db, next: 1000, log: slog.New(slog.NewTextHandler(&logs, nil))}
		ctx := context.Background()
		for range 9 {
			q.add(ctx, 100) // 900: not yet
		}
		if db.Dialect() != store.Postgres {
			q.add(ctx, 5000)
			if q.written != 0 || logs.Len() != 0 {
				t.Fatalf("SQLite: written %d, logs %q", q.written, logs.String())
			}
			return
		}
		if q.next != 1000 {
			t.Fatalf("next %d after 900", q.next)
		}
		// pg_stat counters are flushed by the backends within a second or so.
		wait := func(want int64) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for analyzeCount(t, db) < want && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if got := analyzeCount(t, db); got < want {
				t.Fatalf("the queue's tables analysed %d times, want %d", got, want)
			}
		}
		before := analyzeCount(t, db)
		q.add(ctx, 100) // 1000
		if q.next != 10_000 {
			t.Fatalf("next %d after 1000", q.next)
		}
		wait(before + 3)
		q.add(ctx, 5000) // 6000: not yet
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		q.add(cancelled, 5000) // 11,000: due, fails
		if q.next != 110_000 || !strings.Contains(logs.String(), "ANALYZE") {
			t.Fatalf("after a failed ANALYZE: next %d, logs %q", q.next, logs.String())
		}
		// A table locked by a VACUUM (its lock mode, held here by another
		// transaction until the end): the ANALYZE does not wait for it, it
		// skips that table and analyses the others.
		logs.Reset()
		before = analyzeCount(t, db)
		locked := make(chan struct{})
		release := make(chan struct{})
		holder := make(chan error, 1)
		go func() {
			holder <- db.Platform(ctx, func(p *store.PlatformTx) error {
				if _, err := p.Exec(ctx, `LOCK TABLE message_events IN SHARE UPDATE EXCLUSIVE MODE`); err != nil {
					close(locked)
					return err
				}
				close(locked)
				<-release
				return nil
			})
		}()
		<-locked
		done := make(chan struct{})
		go func() {
			q.add(ctx, 100_000) // 211,000: due
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			close(release)
			t.Fatal("ANALYZE waited for the locked table")
		}
		close(release)
		if err := <-holder; err != nil {
			t.Fatal(err)
		}
		if logs.Len() != 0 {
			t.Fatalf("logs %q", logs.String())
		}
		wait(before + 2) // messages and message_contents analysed
	})
}

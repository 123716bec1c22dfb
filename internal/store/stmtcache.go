package store

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// stmtCache keeps prepared statements of the SQLite store by query text.
// modernc.org/sqlite parses a statement at every Exec or Query that is not
// prepared, and parsing is a large part of a short statement's cost;
// database/sql keeps a prepared *sql.Stmt per connection and re-uses it
// in every transaction on that connection (Tx.StmtContext). PostgreSQL needs
// none of this: pgx caches prepared statements per connection itself.
//
// Queries longer than maxCachedQuery (multi-row INSERTs built for one
// batch size) are not cached, unless run through Tx.ExecBulk or
// Tx.QueryBulk by code that keeps their shapes few (at most maxBulkStmts
// texts of up to maxBulkQuery bytes are cached). Once maxCachedStmts texts
// are cached no new one is: a statement in use is never closed under a
// running transaction, and the set of query texts of the code is small.
type stmtCache struct {
	mu   sync.Mutex
	m    map[string]*sql.Stmt
	bulk int // cached texts longer than maxCachedQuery
}

const (
	maxCachedStmts = 1024
	maxCachedQuery = 4096
	maxBulkStmts   = 64
	maxBulkQuery   = 256 << 10
	// prepareWait bounds the wait for a pool connection to prepare on.
	prepareWait = 20 * time.Millisecond
)

// get returns the prepared statement for query, preparing it on first use;
// nil when the query is not to be cached or cannot be prepared (the caller
// then runs the text itself, which reports the error).
func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string, bulk bool) *sql.Stmt {
	long := len(query) > maxCachedQuery
	if long && (!bulk || len(query) > maxBulkQuery) {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts || (long && c.bulk >= maxBulkStmts)
	c.mu.Unlock()
	if ok || full {
		return st
	}
	// Preparing takes a connection of the pool besides the caller's
	// transaction. On SQLite the other connections may all be waiting
	// for the write lock this very transaction holds: never wait for one
	// (that would stall every writer until the busy timeout). Without an
	// idle connection at once, or room in the pool to open one (which
	// waits for nobody), run the text this time; a later call caches.
	if st := db.Stats(); st.Idle == 0 && st.OpenConnections >= st.MaxOpenConnections {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, prepareWait)
	defer cancel()
	st, err := db.PrepareContext(pctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok { // prepared concurrently
		_ = st.Close()
		return prev
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	if long {
		if c.bulk >= maxBulkStmts {
			_ = st.Close()
			return nil
		}
		c.bulk++
	}
	c.m[query] = st
	return st
}

// close closes every cached statement (when the store closes).
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		if st != nil {
			_ = st.Close()
		}
	}
	c.m, c.bulk = nil, 0
}

// txExec, txQuery and txQueryRow run a statement in a transaction through
// the cache on SQLite (a *sql.Tx), and as text otherwise.
func (db *DB) txExec(ctx context.Context, r runner, query string, args []any, bulk bool) (sql.Result, error) {
	if tx, ok := r.(*sql.Tx); ok {
		if st := db.cached(ctx, query, bulk); st != nil {
			return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		}
	}
	return r.ExecContext(ctx, query, args...)
}

func (db *DB) txQuery(ctx context.Context, r runner, query string, args []any, bulk bool) (*sql.Rows, error) {
	if tx, ok := r.(*sql.Tx); ok {
		if st := db.cached(ctx, query, bulk); st != nil {
			return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		}
	}
	return r.QueryContext(ctx, query, args...)
}

func (db *DB) txQueryRow(ctx context.Context, r runner, query string, args []any) *sql.Row {
	if tx, ok := r.(*sql.Tx); ok {
		if st := db.cached(ctx, query, false); st != nil {
			return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
		}
	}
	return r.QueryRowContext(ctx, query, args...)
}

func (db *DB) cached(ctx context.Context, query string, bulk bool) *sql.Stmt {
	if db.dialect != SQLite || db.stmts == nil {
		return nil
	}
	return db.stmts.get(ctx, db.sql, query, bulk)
}

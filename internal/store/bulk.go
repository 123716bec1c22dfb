package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strconv"
)

// BulkOptions tune the connection of a bulk session (SQLite only: on
// PostgreSQL a session's transactions are the store's ordinary ones).
type BulkOptions struct {
	// WALAutocheckpoint is the size of the write-ahead log, in pages, at
	// which the session's own commits copy it into the database file
	// (0: the store's sqlite.wal_autocheckpoint). A bulk load changes pages
	// all over its indexes: a larger log lets each checkpoint write a page
	// changed by many commits once, instead of once per 10000 frames.
	// Commits of other connections still checkpoint at the store's setting.
	WALAutocheckpoint int
}

// BulkSession pins one connection of the pool for a series of tenant
// transactions (a bulk load), with the connection settings of its
// BulkOptions. See TenantStore.Bulk.
type BulkSession struct {
	ts   *TenantStore
	conn *sql.Conn
}

// Bulk runs fn with a session whose transactions (BulkSession.Tx) all run
// on one connection, set up for a bulk load by opts. When fn returns, the
// connection gets the store's settings back and, on SQLite, the write-ahead
// log the session let grow is checkpointed and truncated if no other
// connection is using it at that moment (otherwise the automatic
// checkpoints empty it, and the next commit that starts it over truncates
// the file to the store's limit, twice its sqlite.wal_autocheckpoint).
func (ts *TenantStore) Bulk(ctx context.Context, opts BulkOptions, fn func(*BulkSession) error) error {
	if ts.id == "" {
		return ErrNoTenant
	}
	if ts.db.dialect == Postgres {
		// PostgreSQL transactions take a pooled connection each
		// (pgtx.go); nothing to tune for a bulk load.
		return fn(&BulkSession{ts: ts})
	}
	conn, err := ts.db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: bulk session: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if opts.WALAutocheckpoint > 0 {
		// The log may now grow to the session's interval: no size limit
		// while it runs (a limit would truncate it at every restart).
		var ckpt, limit int64
		if err := conn.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&ckpt); err != nil {
			return fmt.Errorf("store: bulk session: %w", err)
		}
		if err := conn.QueryRowContext(ctx, `PRAGMA journal_size_limit`).Scan(&limit); err != nil {
			return fmt.Errorf("store: bulk session: %w", err)
		}
		if err := setPragmas(ctx, conn, "wal_autocheckpoint", int64(opts.WALAutocheckpoint), "journal_size_limit", -1); err != nil {
			return fmt.Errorf("store: bulk session: %w", err)
		}
		defer func() {
			// Even when ctx is cancelled: the connection goes back to the pool.
			rctx := context.WithoutCancel(ctx)
			rerr := setPragmas(rctx, conn, "wal_autocheckpoint", ckpt, "journal_size_limit", limit)
			if rerr == nil {
				rerr = truncateWAL(rctx, conn)
			}
			if rerr != nil {
				// A connection left with other settings is not reused.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}()
	}
	return fn(&BulkSession{ts: ts, conn: conn})
}

// Tx runs fn in one transaction bound to the session's tenant, on the
// session's connection, as TenantStore.Tx.
func (s *BulkSession) Tx(ctx context.Context, fn func(*Tx) error) error {
	if s.conn == nil { // PostgreSQL
		return s.ts.Tx(ctx, fn)
	}
	return s.ts.db.runOn(ctx, s.conn, nil, false, s.ts.id, func(stx runner, h *hooks) error {
		return fn(&Tx{tx: stx, tenant: s.ts.id, db: s.ts.db, hooks: h})
	})
}

// setPragmas sets pairs of pragma names and values on conn.
func setPragmas(ctx context.Context, conn *sql.Conn, kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA %s = %d", kv[i], kv[i+1])); err != nil {
			return err
		}
	}
	return nil
}

// truncateWAL checkpoints the whole write-ahead log and truncates it, if
// that can be done at once: a log in use by another connection is left to
// the automatic checkpoints (the checkpoint's own outcome is not an error).
// The error is that of restoring the connection's busy timeout.
func truncateWAL(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		return err
	}
	var busy, logged, moved int
	_ = conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &moved)
	_, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = `+strconv.Itoa(busyTimeoutMillis))
	return err
}

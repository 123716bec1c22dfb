package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL transactions are begun and ended by the store on a pooled
// connection rather than through database/sql's Tx, to save round trips:
// BEGIN goes with the tenant binding in one, and COMMIT with the
// statements queued by Tx.ExecDeferred (an audit event) in one. Through a
// database/sql Tx each of these is a round trip of its own. The
// transaction's statements themselves run on the connection
// (database/sql, pgx's statement cache) as before.

// bindTenant binds a PostgreSQL transaction to its tenant ($1) and scope
// ($2: "platform" or ""), which the row-level security policies read.
const bindTenant = `SELECT set_config('relais.tenant_id', $1, true), set_config('relais.scope', $2, true)`

// rollbackWait bounds a rollback (run even when the caller's context has
// ended).
const rollbackWait = 15 * time.Second

func (db *DB) runPostgres(ctx context.Context, opts *sql.TxOptions, platform bool, tenant string, fn func(runner, *hooks) error) error {
	scope := ""
	if platform {
		scope = "platform"
	}
	begin := "begin"
	if opts != nil {
		if opts.Isolation == sql.LevelRepeatableRead {
			begin += " isolation level repeatable read"
		} else if opts.Isolation != sql.LevelDefault {
			return fmt.Errorf("store: begin: isolation %v not supported", opts.Isolation)
		}
		if opts.ReadOnly {
			begin += " read only"
		}
	}
	var conn *sql.Conn
	for attempt := 0; ; attempt++ {
		c, err := db.sql.Conn(ctx)
		if err != nil {
			return fmt.Errorf("store: begin: %w", err)
		}
		b := &pgx.Batch{}
		b.Queue(begin)
		b.Queue(bindTenant, tenant, scope)
		var berr error
		err = c.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			if pc.IsClosed() {
				berr = errors.New("connection closed")
				return driver.ErrBadConn
			}
			if berr = pc.SendBatch(ctx, b).Close(); berr != nil {
				if pc.PgConn().TxStatus() != 'I' && !rollback(ctx, pc) {
					return driver.ErrBadConn
				}
				if pc.IsClosed() || pgconn.SafeToRetry(berr) {
					return driver.ErrBadConn
				}
			}
			return nil
		})
		if berr == nil && err != nil {
			berr = err
		}
		if berr == nil {
			conn = c
			break
		}
		_ = c.Close()
		// A connection the server closed while idle (a restart): try
		// others, as database/sql's BeginTx does (maxBadConnRetries).
		if !errors.Is(err, driver.ErrBadConn) || attempt >= 2 || ctx.Err() != nil {
			return fmt.Errorf("store: bind transaction to tenant: %w", berr)
		}
	}
	defer func() { _ = conn.Close() }()
	h := &hooks{}
	done := false
	defer func() {
		if !done {
			h.closeStmts()
			_ = conn.Raw(func(dc any) error {
				if !rollback(ctx, dc.(*stdlib.Conn).Conn()) {
					return driver.ErrBadConn // not back in the pool
				}
				return nil
			})
		}
	}()
	if err := fn(conn, h); err != nil {
		return err
	}
	h.closeStmts()
	if err := commitPostgres(ctx, conn, h); err != nil {
		done = true
		return fmt.Errorf("store: commit: %w", err)
	}
	done = true
	for _, f := range h.after {
		f()
	}
	return nil
}

// errCommitRollback reports a COMMIT that rolled back (a statement of the
// transaction had failed).
var errCommitRollback = errors.New("the transaction was rolled back")

// commitPostgres sends the deferred statements and COMMIT in one round
// trip. On any failure the transaction is rolled back (or the connection
// discarded).
func commitPostgres(ctx context.Context, conn *sql.Conn, h *hooks) error {
	var cerr error
	err := conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		b := &pgx.Batch{}
		for _, d := range h.deferred {
			b.Queue(d.query, d.args...)
		}
		h.deferred = nil
		b.Queue("commit")
		br := pc.SendBatch(ctx, b)
		for range b.Len() - 1 {
			if _, cerr = br.Exec(); cerr != nil {
				break
			}
		}
		if cerr == nil {
			var tag pgconn.CommandTag
			if tag, cerr = br.Exec(); cerr == nil && tag.String() == "ROLLBACK" {
				cerr = errCommitRollback
			}
		}
		if err := br.Close(); cerr == nil {
			cerr = err
		}
		if pc.IsClosed() {
			return driver.ErrBadConn
		}
		if pc.PgConn().TxStatus() != 'I' && !rollback(ctx, pc) {
			return driver.ErrBadConn
		}
		return nil
	})
	if cerr == nil {
		cerr = err
	}
	return cerr
}

// rollback ends the connection's transaction, even when ctx has ended,
// and reports whether the connection is fit for reuse.
func rollback(ctx context.Context, pc *pgx.Conn) bool {
	if pc.IsClosed() {
		return false
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	_, err := pc.Exec(rctx, "rollback")
	return err == nil && pc.PgConn().TxStatus() == 'I'
}

// flush runs the deferred statements now, before another statement of the
// transaction.
func (h *hooks) flush(ctx context.Context, r runner) error {
	if len(h.deferred) == 0 {
		return nil
	}
	d := h.deferred
	h.deferred = nil
	for _, s := range d {
		if _, err := r.ExecContext(ctx, s.query, s.args...); err != nil {
			return err
		}
	}
	return nil
}

func (h *hooks) closeStmts() {
	for _, st := range h.stmts {
		_ = st.Close()
	}
	h.stmts = nil
}

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// TenantStore is the handle through which code reaches one tenant's data.
type TenantStore struct {
	db *DB
	id string
}

// Tenant returns the handle for one tenant. It does not check the tenant
// exists; the first statement run through it will find no rows if not.
func (db *DB) Tenant(id string) *TenantStore { return &TenantStore{db: db, id: id} }

// ID is the tenant id the handle is bound to.
func (ts *TenantStore) ID() string { return ts.id }

// Tx runs fn in one transaction bound to the tenant. It commits when fn
// returns nil and rolls back otherwise (a panic in fn rolls back and is
// re-raised). Hooks registered with Tx.AfterCommit run after a commit.
func (ts *TenantStore) Tx(ctx context.Context, fn func(*Tx) error) error {
	if ts.id == "" {
		return ErrNoTenant
	}
	return ts.db.run(ctx, nil, false, ts.id, func(stx runner, h *hooks) error {
		return fn(&Tx{tx: stx, tenant: ts.id, db: ts.db, hooks: h})
	})
}

// Snapshot runs fn in one read-only transaction bound to the tenant that
// sees a single consistent state of the database for its whole length
// (REPEATABLE READ on PostgreSQL; a deferred read transaction on SQLite,
// whose WAL snapshot starts at the first read and blocks no writer).
// Backups read through it.
func (ts *TenantStore) Snapshot(ctx context.Context, fn func(*Tx) error) error {
	if ts.id == "" {
		return ErrNoTenant
	}
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if ts.db.dialect == SQLite {
		opts = &sql.TxOptions{ReadOnly: true}
	}
	return ts.db.run(ctx, opts, false, ts.id, func(stx runner, h *hooks) error {
		return fn(&Tx{tx: stx, tenant: ts.id, db: ts.db, hooks: h})
	})
}

// Platform runs fn in one operator-level transaction: tenants, operator
// tokens and the platform audit log. On PostgreSQL it sets relais.scope to
// 'platform', which the row-level security policies admit. Use it only for
// work that is not one tenant's.
func (db *DB) Platform(ctx context.Context, fn func(*PlatformTx) error) error {
	return db.run(ctx, nil, true, "", func(stx runner, h *hooks) error {
		return fn(&PlatformTx{tx: stx, db: db, hooks: h})
	})
}

type hooks struct {
	after []func()
	// deferred holds statements queued by Tx.ExecDeferred (PostgreSQL),
	// sent with the commit or before the transaction's next statement.
	deferred []deferredStmt
	// stmts are statements prepared on a connection (Tx.Prepare on
	// PostgreSQL), closed when the transaction ends.
	stmts []*sql.Stmt
	// conn is the connection of a PlatformPinned transaction (SQLite),
	// direct its statements prepared through the driver (PrepareDirect),
	// closed when the transaction ends.
	conn   *sql.Conn
	direct []driver.Stmt
}

type deferredStmt struct {
	query string
	args  []any
}

// runner is what a transaction's statements run on: a *sql.Tx (SQLite),
// or the *sql.Conn of a PostgreSQL transaction begun and ended by the store
// itself (pgtx.go).
type runner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// beginner starts SQLite transactions: the pool (*sql.DB), or one pinned
// connection (*sql.Conn, a bulk session).
type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func (db *DB) run(ctx context.Context, opts *sql.TxOptions, platform bool, tenant string, fn func(runner, *hooks) error) error {
	if db.dialect == Postgres {
		return db.runPostgres(ctx, opts, platform, tenant, fn)
	}
	return db.runOn(ctx, db.sql, opts, platform, tenant, fn)
}

// runOn runs a SQLite transaction begun on on.
func (db *DB) runOn(ctx context.Context, on beginner, opts *sql.TxOptions, platform bool, tenant string, fn func(runner, *hooks) error) error {
	h := &hooks{}
	release := func() {}
	var writer *sql.Conn
	if db.writes != nil && (opts == nil || !opts.ReadOnly) {
		var held bool
		var turn func()
		turn, held = db.writes.take(ctx)
		release = turn
		if held && db.writer != nil {
			// The last writer of a run gives the writer connection back.
			release = func() {
				if !db.writes.queued() {
					db.writer.put()
				}
				turn()
			}
		}
		// With the turn, a transaction of the pool runs on the writer
		// connection (see writerConn); a bulk session keeps its own.
		if held && db.writer != nil && on == beginner(db.sql) {
			if writer = db.writer.get(ctx, db.sql); writer != nil {
				on = writer
			}
		}
	}
	stx, err := on.BeginTx(ctx, opts)
	if err != nil && writer != nil && ctx.Err() == nil {
		// A broken writer connection: give it up, run on the pool.
		db.writer.drop(writer)
		stx, err = db.sql.BeginTx(ctx, opts)
	}
	if err != nil {
		release()
		return fmt.Errorf("store: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = stx.Rollback()
			release()
		}
	}()
	if err := fn(stx, h); err != nil {
		return err
	}
	err = stx.Commit()
	done = true
	release()
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	for _, f := range h.after {
		f()
	}
	return nil
}

// Tx is a transaction bound to one tenant. Statements use $1 for the tenant
// (bound by the store) and $2... for their own parameters.
type Tx struct {
	tx     runner
	tenant string
	db     *DB
	hooks  *hooks
	pipe   *pipeTx // a pipelined transaction's statements (Pipeline.Send)
}

// TenantID is the tenant the transaction is bound to.
func (tx *Tx) TenantID() string { return tx.tenant }

// Dialect reports the SQL engine, for the rare statement that differs.
func (tx *Tx) Dialect() Dialect { return tx.db.dialect }

// Now is the store's clock.
func (tx *Tx) Now() time.Time { return tx.db.now() }

// AfterCommit registers f to run once the transaction has committed
// (metrics, wake-ups). It never runs after a rollback.
func (tx *Tx) AfterCommit(f func()) { tx.hooks.after = append(tx.hooks.after, f) }

func (tx *Tx) args(query string, args []any) ([]any, error) {
	if !usesTenantParam(query) {
		return nil, ErrUnscoped
	}
	all := make([]any, 0, len(args)+1)
	all = append(all, tx.tenant)
	return append(all, args...), nil
}

// Exec runs a statement; the tenant is $1.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx.pipe != nil {
		return tx.pipeQueue(query, args)
	}
	all, err := tx.args(query, args)
	if err != nil {
		return nil, err
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return nil, err
	}
	return tx.db.txExec(ctx, tx.tx, query, all, false)
}

// ExecDeferred queues a statement (the tenant is $1, as in Exec) to run
// no later than the commit: on PostgreSQL it is sent in the commit's
// round trip, or before the transaction's next statement if one comes
// first, so every statement sees the transaction as if it had run at
// once; it costs no round trip of its own when it is the last. Its error
// fails the transaction (at the commit or at the next statement). On
// SQLite, which has no round trips, it runs at once.
func (tx *Tx) ExecDeferred(ctx context.Context, query string, args ...any) error {
	if tx.pipe != nil {
		_, err := tx.pipeQueue(query, args)
		return err
	}
	all, err := tx.args(query, args)
	if err != nil {
		return err
	}
	if tx.db.dialect != Postgres {
		_, err := tx.db.txExec(ctx, tx.tx, query, all, false)
		return err
	}
	tx.hooks.deferred = append(tx.hooks.deferred, deferredStmt{query, all})
	return nil
}

// ExecBulk runs a long multi-row statement like Exec, through the SQLite
// statement cache that Exec keeps to short statements (parsing a statement
// of hundreds of rows costs as much as a good part of running it). The
// caller keeps the texts it sends here few: rows in chunks of fixed sizes.
func (tx *Tx) ExecBulk(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx.pipe != nil {
		return tx.pipeQueue(query, args)
	}
	all, err := tx.args(query, args)
	if err != nil {
		return nil, err
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return nil, err
	}
	return tx.db.txExec(ctx, tx.tx, query, all, true)
}

// QueryBulk is Query for a long multi-row statement (INSERT ... RETURNING),
// cached as ExecBulk.
func (tx *Tx) QueryBulk(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.pipe != nil {
		return nil, ErrPipelined
	}
	all, err := tx.args(query, args)
	if err != nil {
		return nil, err
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return nil, err
	}
	return tx.db.txQuery(ctx, tx.tx, query, all, true)
}

// Stmt is a statement prepared in a tenant transaction (Tx.Prepare).
type Stmt struct {
	st     *sql.Stmt
	tenant string
	r      runner
	hooks  *hooks
}

// Prepare prepares a statement to run many times in this transaction (a
// bulk load's multi-row INSERT, parsed once); the tenant is $1 as in
// Exec. It is closed when the transaction ends.
func (tx *Tx) Prepare(ctx context.Context, query string) (*Stmt, error) {
	if tx.pipe != nil {
		return nil, ErrPipelined
	}
	if !usesTenantParam(query) {
		return nil, ErrUnscoped
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return nil, err
	}
	st, err := tx.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if _, ok := tx.tx.(*sql.Conn); ok {
		tx.hooks.stmts = append(tx.hooks.stmts, st)
	}
	return &Stmt{st: st, tenant: tx.tenant, r: tx.tx, hooks: tx.hooks}, nil
}

// Exec runs the prepared statement; the tenant is $1.
func (s *Stmt) Exec(ctx context.Context, args ...any) (sql.Result, error) {
	if err := s.hooks.flush(ctx, s.r); err != nil {
		return nil, err
	}
	all := make([]any, 0, len(args)+1)
	all = append(all, s.tenant)
	return s.st.ExecContext(ctx, append(all, args...)...)
}

// ExecSlot is Exec for a caller that reuses one long argument list (a
// bulk load's batches): all[0] is a slot for the tenant, which ExecSlot
// sets (whatever the caller put there), and all[1:] are the arguments.
func (s *Stmt) ExecSlot(ctx context.Context, all []any) (sql.Result, error) {
	if len(all) == 0 {
		return nil, ErrUnscoped
	}
	if err := s.hooks.flush(ctx, s.r); err != nil {
		return nil, err
	}
	all[0] = s.tenant
	return s.st.ExecContext(ctx, all...)
}

// Query runs a query; the tenant is $1.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.pipe != nil {
		return nil, ErrPipelined
	}
	all, err := tx.args(query, args)
	if err != nil {
		return nil, err
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return nil, err
	}
	return tx.db.txQuery(ctx, tx.tx, query, all, false)
}

// QueryRow runs a query expected to return at most one row; the tenant is $1.
// An unscoped statement yields a Row whose Scan returns ErrUnscoped.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *Row {
	if tx.pipe != nil {
		return &Row{err: ErrPipelined}
	}
	all, err := tx.args(query, args)
	if err != nil {
		return &Row{err: err}
	}
	if err := tx.hooks.flush(ctx, tx.tx); err != nil {
		return &Row{err: err}
	}
	return &Row{row: tx.db.txQueryRow(ctx, tx.tx, query, all)}
}

// Row wraps sql.Row so that the store's own errors surface from Scan, and
// sql.ErrNoRows becomes ErrNotFound.
type Row struct {
	row *sql.Row
	err error
}

// Scan copies the columns into dest.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// usesTenantParam reports whether the statement references $1 (and not
// merely $10, $11...), outside string literals.
func usesTenantParam(q string) bool {
	inStr := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c == '\'' {
			inStr = !inStr
			continue
		}
		if inStr || c != '$' || i+1 >= len(q) || q[i+1] != '1' {
			continue
		}
		if i+2 >= len(q) || q[i+2] < '0' || q[i+2] > '9' {
			return true
		}
	}
	return false
}

// PlatformTx is an operator-level transaction. Its statements are raw
// (no bound tenant); keep them to platform tables.
type PlatformTx struct {
	tx    runner
	db    *DB
	hooks *hooks
}

// Exec runs a statement.
func (p *PlatformTx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := p.hooks.flush(ctx, p.tx); err != nil {
		return nil, err
	}
	return p.db.txExec(ctx, p.tx, query, args, false)
}

// Query runs a query.
func (p *PlatformTx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := p.hooks.flush(ctx, p.tx); err != nil {
		return nil, err
	}
	return p.db.txQuery(ctx, p.tx, query, args, false)
}

// ExecBulk is Exec for a long multi-row statement, cached as Tx.ExecBulk.
func (p *PlatformTx) ExecBulk(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.db.txExec(ctx, p.tx, query, args, true)
}

// QueryBulk is Query for a long multi-row statement, cached as Tx.ExecBulk.
func (p *PlatformTx) QueryBulk(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.db.txQuery(ctx, p.tx, query, args, true)
}

// QueryRow runs a single-row query.
func (p *PlatformTx) QueryRow(ctx context.Context, query string, args ...any) *Row {
	if err := p.hooks.flush(ctx, p.tx); err != nil {
		return &Row{err: err}
	}
	return &Row{row: p.db.txQueryRow(ctx, p.tx, query, args)}
}

// Tenant returns a tenant-scoped view of this same transaction, for
// operator work that writes one tenant's rows atomically with platform rows
// (creating a tenant and its first audit event).
func (p *PlatformTx) Tenant(id string) *Tx {
	return &Tx{tx: p.tx, tenant: id, db: p.db, hooks: p.hooks}
}

// AfterCommit registers f to run once the transaction has committed.
func (p *PlatformTx) AfterCommit(f func()) { p.hooks.after = append(p.hooks.after, f) }

// Now is the store's clock.
func (p *PlatformTx) Now() time.Time { return p.db.now() }

// Dialect reports the SQL engine.
func (p *PlatformTx) Dialect() Dialect { return p.db.dialect }

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// ErrNoDirect: Tx.PrepareDirect was called in a transaction not begun by
// DB.PlatformPinned on SQLite; use Tx.Prepare.
var ErrNoDirect = errors.New("store: direct statements need an SQLite transaction begun by PlatformPinned")

// PlatformPinned is Platform on one connection held for the transaction,
// so that its statements can also be prepared and run through the SQLite
// driver directly (Tx.PrepareDirect): a bulk load of millions of rows
// (a restore) pays database/sql's per-argument conversion and the
// argument list it allocates at every call otherwise. On PostgreSQL it is
// Platform.
func (db *DB) PlatformPinned(ctx context.Context, fn func(*PlatformTx) error) error {
	if db.dialect != SQLite {
		return db.Platform(ctx, fn)
	}
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: pin a connection: %w", err)
	}
	defer func() { _ = conn.Close() }()
	return db.runOn(ctx, conn, nil, true, "", func(stx runner, h *hooks) error {
		h.conn = conn
		defer func() {
			for _, st := range h.direct {
				_ = conn.Raw(func(any) error { return st.Close() })
			}
			h.direct, h.conn = nil, nil
		}()
		return fn(&PlatformTx{tx: stx, db: db, hooks: h})
	})
}

// DirectStmt is a statement prepared on the SQLite driver's connection of
// a PlatformPinned transaction (Tx.PrepareDirect), closed when the
// transaction ends.
type DirectStmt struct {
	st     driver.Stmt
	conn   *sql.Conn
	tenant string
	hooks  *hooks
}

// PrepareDirect prepares query (the tenant is $1, as in Exec) on the
// transaction's connection through the driver; ErrNoDirect outside a
// PlatformPinned transaction on SQLite.
func (tx *Tx) PrepareDirect(ctx context.Context, query string) (*DirectStmt, error) {
	if !usesTenantParam(query) {
		return nil, ErrUnscoped
	}
	conn := tx.hooks.conn
	if conn == nil {
		return nil, ErrNoDirect
	}
	var st driver.Stmt
	err := conn.Raw(func(dc any) error {
		p, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return ErrNoDirect
		}
		var err error
		st, err = p.PrepareContext(ctx, query)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, ok := st.(driver.StmtExecContext); !ok {
		_ = conn.Raw(func(any) error { return st.Close() })
		return nil, ErrNoDirect
	}
	tx.hooks.direct = append(tx.hooks.direct, st)
	return &DirectStmt{st: st, conn: conn, tenant: tx.tenant, hooks: tx.hooks}, nil
}

// ExecSlot runs the statement with args, whose first element is a slot
// for the tenant that ExecSlot sets (whatever the caller put there); each
// args[i] must have Ordinal i+1 and a driver.Value the driver takes
// (int64, float64, bool, []byte, string, time.Time or nil). It returns the
// rows the statement changed.
func (s *DirectStmt) ExecSlot(ctx context.Context, args []driver.NamedValue) (int64, error) {
	if len(args) == 0 {
		return 0, ErrUnscoped
	}
	if s.hooks.conn != s.conn {
		return 0, errors.New("store: direct statement used after its transaction")
	}
	args[0] = driver.NamedValue{Ordinal: 1, Value: s.tenant}
	var n int64
	err := s.conn.Raw(func(any) error {
		res, err := s.st.(driver.StmtExecContext).ExecContext(ctx, args)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

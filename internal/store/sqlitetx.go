package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
)

// driverStmts keeps the SQLite driver's own prepared statements, per
// connection and query text, for Tx.ExecDeferred: run through them, a
// statement skips database/sql's per-statement work (the transaction's
// copy of a cached statement, argument conversion, result wrapping),
// which costs more than SQLite's own execution of a one-row INSERT. Only
// the few texts given to ExecDeferred are kept (an audit event's INSERT).
type driverStmts struct {
	mu sync.Mutex
	m  map[driverStmtKey]driver.Stmt
}

type driverStmtKey struct {
	conn  driver.Conn
	query string
}

// maxDriverStmts bounds the texts × connections kept.
const maxDriverStmts = 256

// execDriver runs query with args (the tenant first) on the transaction's
// connection through the driver's prepared statement.
func (db *DB) execDriver(ctx context.Context, conn *sql.Conn, query string, args []any) error {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return err
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return errors.New("store: not a driver connection")
		}
		st, err := db.dstmts.get(ctx, c, query)
		if err != nil {
			return err
		}
		if st == nil { // the cache is full: prepare for this once
			p, err := c.(driver.ConnPrepareContext).PrepareContext(ctx, query)
			if err != nil {
				return err
			}
			defer func() { _ = p.Close() }()
			st = p
		}
		_, err = st.(driver.StmtExecContext).ExecContext(ctx, named)
		return err
	})
}

func (d *driverStmts) get(ctx context.Context, c driver.Conn, query string) (driver.Stmt, error) {
	k := driverStmtKey{c, query}
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.m[k]; ok {
		return st, nil
	}
	if len(d.m) >= maxDriverStmts {
		return nil, nil
	}
	st, err := c.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if d.m == nil {
		d.m = map[driverStmtKey]driver.Stmt{}
	}
	d.m[k] = st
	return st, nil
}

// close finalises every kept statement (when the store closes, no
// transaction running).
func (d *driverStmts) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.m {
		_ = st.Close()
	}
	d.m = nil
}

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Pipelined transactions (PostgreSQL): a bulk load whose transactions need
// no result of their own statements sends each one whole (BEGIN, the
// tenant binding, its statements, COMMIT) behind the one the server is
// still running, on one connection, so that the server never waits for the
// client to build and encode the next: a transaction is built while the
// one before runs. The transactions are sent with no synchronisation point
// between them (the protocol's Sync), so if one fails (a statement's error,
// or its COMMIT's), the server skips every later one: none of them commits,
// and the transactions commit in the order they were sent or not at all.
// A transaction's COMMIT goes with the next transaction (or Wait): if the
// client stops (a crash, a cancelled context) with a transaction sent, the
// connection closes before its COMMIT is sent and the server rolls it back,
// so at most one COMMIT is ever in flight, as without a pipeline.

var (
	// ErrPipelined is returned by the statements of a pipelined
	// transaction that would need their result (queries, rows affected).
	ErrPipelined = errors.New("store: a statement of a pipelined transaction returns no result")
	// ErrPipelineSkipped is the outcome of a pipelined transaction that
	// was not run because one sent before it failed.
	ErrPipelineSkipped = errors.New("store: pipelined transaction not run: one sent before it failed")
)

// pipeTx collects the statements of a pipelined transaction, in order.
type pipeTx struct {
	stmts []deferredStmt
}

// pipedResult is the result of a statement queued in a pipelined
// transaction: not known.
type pipedResult struct{}

func (pipedResult) LastInsertId() (int64, error) { return 0, ErrPipelined }
func (pipedResult) RowsAffected() (int64, error) { return 0, ErrPipelined }

// Pipeline sends transactions of a bulk session's tenant without waiting
// for the ones before them (Pipeline.Send). On SQLite, which has no round
// trips, each transaction runs at once.
type Pipeline struct {
	ctx  context.Context // Pipeline's: the connection's work runs under it
	s    *BulkSession
	pc   *pgx.Conn        // PostgreSQL: the pipeline's connection
	pp   *pgconn.Pipeline // open while transactions are in flight
	sds  map[string]*pgconn.StatementDescription
	eqb  pgx.ExtendedQueryBuilder
	sent []*sentTx // in flight, oldest first
	bad  error     // the connection failed: nothing more is sent
	// failed: a transaction failed since the start of the current Send
	// (which then must not send its own, to commit after it).
	failed bool
	// open: the last transaction sent awaits its COMMIT, sent with the
	// next transaction or by Wait.
	open bool
}

type sentTx struct {
	results int // begin, tenant binding, statements, commit
	hooks   *hooks
	done    func(error)
}

// Pipeline runs fn with a pipeline for the session's tenant, on one
// connection of the pool (PostgreSQL) held until fn returns. When fn
// returns, every transaction sent has ended (its done function called),
// whatever fn returned.
func (s *BulkSession) Pipeline(ctx context.Context, fn func(*Pipeline) error) error {
	if s.ts.db.dialect != Postgres {
		return fn(&Pipeline{s: s})
	}
	conn, err := s.ts.db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: pipeline: %w", err)
	}
	defer func() { _ = conn.Close() }()
	var ferr error
	err = conn.Raw(func(dc any) error {
		p := &Pipeline{ctx: ctx, s: s, pc: dc.(*stdlib.Conn).Conn(), sds: map[string]*pgconn.StatementDescription{}}
		ferr = fn(p)
		werr := p.Wait(ctx)
		if ferr == nil {
			ferr = werr
		}
		// Its prepared statements go with it, so that the connection goes
		// back to the pool as it came.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
		defer cancel()
		for _, sd := range p.sds {
			if p.bad == nil {
				if err := p.pc.PgConn().Deallocate(rctx, sd.Name); err != nil {
					p.bad = err
				}
			}
		}
		if p.bad != nil || p.pc.IsClosed() || p.pc.PgConn().TxStatus() != 'I' {
			return driver.ErrBadConn // not reused
		}
		return nil
	})
	if ferr != nil {
		return ferr
	}
	if err != nil && !errors.Is(err, driver.ErrBadConn) {
		return fmt.Errorf("store: pipeline: %w", err)
	}
	return nil
}

// Send runs fn with a transaction of the pipeline's tenant whose
// statements (Exec, ExecBulk, ExecDeferred; the tenant is $1) are queued,
// not run: they return no result, and a query fails with ErrPipelined.
// When fn returns nil, the transaction is sent, to commit after every
// transaction sent before it; if fn fails, nothing is sent and Send
// returns its error. done is called once the transaction has ended: with
// nil when it committed (after its AfterCommit functions), its error when
// it failed, ErrPipelineSkipped when an earlier one failed. Send waits for
// the outcome of the transactions sent before this one (so that at most
// this one is in flight when it returns), and calls their done functions;
// a failed transaction is rolled back before they are called, so that the
// caller may write again, in other transactions, what it and the skipped
// ones held. Send's own error is a failure of the connection (or fn's).
func (p *Pipeline) Send(ctx context.Context, fn func(*Tx) error, done func(error)) error {
	if p.bad != nil {
		return p.bad
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.failed = false
	h := &hooks{}
	pt := &pipeTx{}
	if err := fn(&Tx{tenant: p.s.ts.id, db: p.s.ts.db, hooks: h, pipe: pt}); err != nil {
		return err
	}
	if p.pc == nil { // SQLite: at once
		err := p.s.Tx(ctx, func(tx *Tx) error {
			for _, st := range pt.stmts {
				if _, err := tx.db.txExec(ctx, tx.tx, st.query, st.args, true); err != nil {
					return err
				}
			}
			tx.hooks.after = h.after
			return nil
		})
		done(err)
		return nil
	}
	// Statements are prepared once per text, outside pipeline mode (the
	// arguments are encoded for their parameters' types): a new text waits
	// for the transactions in flight.
	for _, q := range append([]string{bindTenant}, queries(pt.stmts)...) {
		if p.sds[q] != nil {
			continue
		}
		if err := p.Wait(ctx); err != nil {
			return err
		}
		if p.failed {
			// Rolled back: this one would commit after a failed one.
			done(ErrPipelineSkipped)
			return nil
		}
		sd, err := p.pc.PgConn().Prepare(p.ctx, "relais_pipeline_"+strconv.Itoa(len(p.sds)), q, nil)
		if err != nil {
			return fmt.Errorf("store: pipeline: %w", err)
		}
		p.sds[q] = sd
	}
	if p.pp == nil {
		p.pp = p.pc.PgConn().StartPipeline(p.ctx)
	}
	if p.open {
		p.pp.SendQueryParams("commit", nil, nil, nil, nil) // the one before
	}
	p.pp.SendQueryParams("begin", nil, nil, nil, nil)
	if err := p.send(bindTenant, []any{p.s.ts.id, ""}); err != nil {
		return p.fail(err)
	}
	for _, st := range pt.stmts {
		if err := p.send(st.query, st.args); err != nil {
			return p.fail(err)
		}
	}
	p.pp.SendFlushRequest()
	if err := p.pp.Flush(); err != nil {
		return p.fail(err)
	}
	p.open = true
	p.sent = append(p.sent, &sentTx{results: 3 + len(pt.stmts), hooks: h, done: done})
	for len(p.sent) > 1 {
		if err := p.next(ctx); err != nil {
			return err
		}
	}
	return nil
}

func queries(stmts []deferredStmt) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = s.query
	}
	return out
}

// send queues one prepared statement with its arguments.
func (p *Pipeline) send(query string, args []any) error {
	sd := p.sds[query]
	if err := p.eqb.Build(p.pc.TypeMap(), sd, args); err != nil {
		return err
	}
	// The result formats are read with the result: not the builder's
	// slice, which the next statement reuses.
	p.pp.SendQueryStatement(sd, p.eqb.ParamValues, p.eqb.ParamFormats, append([]int16(nil), p.eqb.ResultFormats...))
	return nil
}

// fail marks the pipeline's connection unusable: a transaction was half
// sent.
func (p *Pipeline) fail(err error) error {
	p.bad = fmt.Errorf("store: pipeline: %w", err)
	p.open = false
	if p.pp != nil {
		_ = p.pp.Close()
		p.pp = nil
	}
	for _, t := range p.sent {
		t.done(p.bad)
	}
	p.sent = nil
	return p.bad
}

// next reads the outcome of the oldest transaction in flight.
func (p *Pipeline) next(ctx context.Context) error {
	t := p.sent[0]
	var terr error
	for i := 0; i < t.results && terr == nil; i++ {
		res, err := p.pp.GetResults()
		switch {
		case err != nil:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				return p.fail(err)
			}
			terr = err
		case res == nil:
			return p.fail(errors.New("missing result"))
		default:
			if rr, ok := res.(*pgconn.ResultReader); ok {
				if _, err := rr.Close(); err != nil {
					var pe *pgconn.PgError
					if !errors.As(err, &pe) {
						return p.fail(err)
					}
					terr = err
				}
			}
		}
	}
	if terr == nil {
		p.sent = p.sent[1:]
		for _, f := range t.hooks.after {
			f()
		}
		t.done(nil)
		return nil
	}
	// The server skips everything up to the next synchronisation point:
	// end the pipeline there, roll the failed transaction back, then tell.
	failed := p.sent
	p.sent = nil
	p.failed = true
	if err := p.reset(ctx); err != nil {
		return err
	}
	failed[0].done(terr)
	for _, f := range failed[1:] {
		f.done(ErrPipelineSkipped)
	}
	return nil
}

// reset ends pipeline mode (after a synchronisation point) and rolls back
// a failed transaction.
func (p *Pipeline) reset(ctx context.Context) error {
	p.open = false
	if p.pp == nil {
		return nil
	}
	if err := p.pp.Sync(); err != nil {
		return p.fail(err)
	}
	for {
		res, err := p.pp.GetResults()
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				return p.fail(err)
			}
			continue
		}
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
		if res == nil {
			return p.fail(errors.New("missing synchronisation"))
		}
		if rr, ok := res.(*pgconn.ResultReader); ok {
			_, _ = rr.Close()
		}
	}
	err := p.pp.Close()
	p.pp = nil
	if err != nil {
		return p.fail(err)
	}
	if p.pc.PgConn().TxStatus() != 'I' && !rollback(ctx, p.pc) {
		return p.fail(errors.New("rollback failed"))
	}
	return nil
}

// Wait waits until every transaction sent has ended, and calls their done
// functions.
func (p *Pipeline) Wait(ctx context.Context) error {
	if p.pc == nil || p.bad != nil {
		return p.bad
	}
	if p.open {
		if err := ctx.Err(); err != nil {
			// Cancelled: the last transaction does not commit (the
			// connection is dropped, which rolls it back).
			return p.fail(err)
		}
		p.pp.SendQueryParams("commit", nil, nil, nil, nil)
		p.pp.SendFlushRequest()
		p.open = false
		if err := p.pp.Flush(); err != nil {
			return p.fail(err)
		}
	}
	for len(p.sent) > 0 {
		if err := p.next(ctx); err != nil {
			return err
		}
	}
	return p.reset(ctx)
}

// pipeQueue queues a statement of a pipelined transaction (the tenant is
// $1).
func (tx *Tx) pipeQueue(query string, args []any) (sql.Result, error) {
	all, err := tx.args(query, args)
	if err != nil {
		return nil, err
	}
	tx.pipe.stmts = append(tx.pipe.stmts, deferredStmt{query, all})
	return pipedResult{}, nil
}

package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestPipeline: pipelined transactions commit in the order they were sent,
// with their deferred statements and after-commit functions; a statement
// that needs a result, or does not name the tenant, is refused; a failed
// transaction is rolled back and (PostgreSQL) every one sent after it is
// skipped, not committed, and the pipeline goes on; RLS binds its
// transactions to the session's tenant; a cancelled context leaves the
// last transaction sent uncommitted. On SQLite each transaction runs at
// once (nothing is skipped).
func TestPipeline(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		seed(t, db)
		ctx := context.Background()
		pg := db.Dialect() == store.Postgres
		const ins = `INSERT INTO consent_wordings (tenant_id, hash, version, text, created_at) VALUES ($1, $2, '', $3, 1)`
		insert := func(hashes ...string) func(*store.Tx) error {
			return func(tx *store.Tx) error {
				for _, h := range hashes {
					if _, err := tx.Exec(ctx, ins, h, "text "+h); err != nil {
						return err
					}
				}
				return tx.ExecDeferred(ctx, `UPDATE tenant_settings SET policy = policy || $2 WHERE tenant_id = $1`, "+"+hashes[0])
			}
		}
		var outcomes []string
		done := func(name string) func(error) {
			return func(err error) {
				switch {
				case err == nil:
					outcomes = append(outcomes, name+":ok")
				case errors.Is(err, store.ErrPipelineSkipped):
					outcomes = append(outcomes, name+":skipped")
				case store.IsUniqueViolation(err):
					outcomes = append(outcomes, name+":duplicate")
				default:
					outcomes = append(outcomes, name+":"+err.Error())
				}
			}
		}
		err := db.Tenant("ta").Bulk(ctx, store.BulkOptions{}, func(b *store.BulkSession) error {
			return b.Pipeline(ctx, func(p *store.Pipeline) error {
				after := 0
				for i, hs := range [][]string{{"a1", "a2"}, {"b1"}, {"c1", "c2", "c3"}} {
					err := p.Send(ctx, func(tx *store.Tx) error {
						tx.AfterCommit(func() { after++ })
						return insert(hs...)(tx)
					}, done(fmt.Sprint(i)))
					if err != nil {
						return err
					}
				}
				if err := p.Wait(ctx); err != nil {
					return err
				}
				if after != 3 {
					t.Errorf("after-commit functions: %d", after)
				}
				// Refused statements: nothing is sent, the error is fn's.
				sentinel := errors.New("refused")
				for name, fn := range map[string]func(*store.Tx) error{
					"query": func(tx *store.Tx) error {
						_, err := tx.Query(ctx, `SELECT hash FROM consent_wordings WHERE tenant_id = $1`)
						if !errors.Is(err, store.ErrPipelined) {
							t.Errorf("query: %v", err)
						}
						return sentinel
					},
					"query row": func(tx *store.Tx) error {
						var n int
						if err := tx.QueryRow(ctx, `SELECT count(*) FROM consent_wordings WHERE tenant_id = $1`).Scan(&n); !errors.Is(err, store.ErrPipelined) {
							t.Errorf("query row: %v", err)
						}
						return sentinel
					},
					"rows affected": func(tx *store.Tx) error {
						res, err := tx.Exec(ctx, ins, "z1", "z")
						if err != nil {
							return err
						}
						if _, err := res.RowsAffected(); !errors.Is(err, store.ErrPipelined) {
							t.Errorf("rows affected: %v", err)
						}
						return sentinel
					},
					"unscoped": func(tx *store.Tx) error {
						_, err := tx.Exec(ctx, `DELETE FROM consent_wordings`)
						if !errors.Is(err, store.ErrUnscoped) {
							t.Errorf("unscoped: %v", err)
						}
						return sentinel
					},
				} {
					if !pg && name == "rows affected" {
						continue // SQLite runs the transaction itself
					}
					if err := p.Send(ctx, fn, done("refused "+name)); !errors.Is(err, sentinel) {
						t.Errorf("%s: Send returned %v", name, err)
					}
				}
				// A duplicate in the second of three: the first commits, the
				// third is skipped (PostgreSQL), and the pipeline goes on.
				for i, hs := range [][]string{{"d1"}, {"e1", "a1"}, {"f1"}} {
					if err := p.Send(ctx, insert(hs...), done(fmt.Sprint(3+i))); err != nil {
						return err
					}
				}
				if err := p.Send(ctx, insert("g1"), done("6")); err != nil {
					return err
				}
				if pg {
					// RLS: a row of another tenant is refused.
					err := p.Send(ctx, func(tx *store.Tx) error {
						_, err := tx.Exec(ctx, `INSERT INTO consent_wordings (tenant_id, hash, version, text, created_at) SELECT 'tb', 'x1', '', $1, 1`)
						return err
					}, done("7"))
					if err != nil {
						return err
					}
				}
				return p.Wait(ctx)
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		want := "[0:ok 1:ok 2:ok 3:ok 4:duplicate 5:ok 6:ok]"
		if pg {
			want = "[0:ok 1:ok 2:ok 3:ok 4:duplicate 5:skipped 6:ok 7:ERROR: new row violates row-level security policy for table \"consent_wordings\" (SQLSTATE 42501)]"
		}
		if got := fmt.Sprint(outcomes); got != want {
			t.Errorf("outcomes %s, want %s", got, want)
		}
		wantRows := "[a1 a2 b1 c1 c2 c3 d1 f1 g1]"
		wantPolicy := `{"owner":"ta"}+a1+b1+c1+d1+f1+g1`
		if pg {
			wantRows = "[a1 a2 b1 c1 c2 c3 d1 g1]"
			wantPolicy = `{"owner":"ta"}+a1+b1+c1+d1+g1`
		}
		if got := fmt.Sprint(policies(t, db, "ta", `SELECT hash FROM consent_wordings WHERE tenant_id = $1 ORDER BY hash`)); got != wantRows {
			t.Errorf("rows %s, want %s", got, wantRows)
		}
		if got := policies(t, db, "ta", `SELECT policy FROM tenant_settings WHERE tenant_id = $1`); got[0] != wantPolicy {
			t.Errorf("deferred statements: %s, want %s", got[0], wantPolicy)
		}
		if got := policies(t, db, "tb", `SELECT hash FROM consent_wordings WHERE tenant_id = $1`); len(got) != 0 {
			t.Errorf("tenant tb: %v", got)
		}

		// Cancelled with a transaction sent: it does not commit, and its
		// done function says so.
		cctx, cancel := context.WithCancel(ctx)
		outcomes = nil
		err = db.Tenant("ta").Bulk(cctx, store.BulkOptions{}, func(b *store.BulkSession) error {
			return b.Pipeline(cctx, func(p *store.Pipeline) error {
				if err := p.Send(cctx, insert("h1"), done("8")); err != nil {
					return err
				}
				cancel()
				return nil
			})
		})
		if pg {
			if !errors.Is(err, context.Canceled) || len(outcomes) != 1 || outcomes[0] == "8:ok" {
				t.Errorf("cancelled: %v, outcomes %v", err, outcomes)
			}
			if got := policies(t, db, "ta", `SELECT hash FROM consent_wordings WHERE tenant_id = $1 AND hash = 'h1'`); len(got) != 0 {
				t.Error("a cancelled pipeline's last transaction committed")
			}
		}
		// The pool is fine afterwards.
		for i := 0; i < 25; i++ {
			if got := policies(t, db, "ta", `SELECT hash FROM consent_wordings WHERE tenant_id = $1 AND hash = 'a1'`); len(got) != 1 {
				t.Fatalf("after the pipelines: %v", got)
			}
		}
	})
}

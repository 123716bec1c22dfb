package bench

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/pgtest"
)

// auditStore opens a migrated store (SQLite when url is "") with one
// tenant, "bench".
func auditStore(b *testing.B, url string) *store.DB {
	b.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: url, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	err = db.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ('bench', 'bench', 'Bench', 'active', 1, 1)`); err != nil {
			return err
		}
		_, err := p.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, policy, updated_at) VALUES ('bench', '{}', 1)`)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	// A server's pool holds several connections; so must the bench's, or
	// SQLite's statement cache (which prepares on an idle connection)
	// never prepares anything and every statement is parsed each time.
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = db.Tenant("bench").Tx(ctx, func(tx *store.Tx) error {
				var n int
				time.Sleep(20 * time.Millisecond)
				return tx.QueryRow(ctx, `SELECT count(*) FROM tenant_settings WHERE tenant_id = $1`).Scan(&n)
			})
		}()
	}
	wg.Wait()
	return db
}

// benchAuditedTx measures a business transaction (an UPDATE of the
// tenant's settings row, in its own transaction) with and without its
// audit.Append, interleaved so that both see the same machine state, and
// reports both and their ratio (target: at most 1.15).
func benchAuditedTx(b *testing.B, url string) {
	db := auditStore(b, url)
	ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7", RequestID: "req-1", UserAgent: "bench"})
	ts := db.Tenant("bench")
	business := func(i int, withAudit bool) {
		err := ts.Tx(ctx, func(tx *store.Tx) error {
			policy := fmt.Sprintf(`{"session":{"idle_timeout":"%dm"}}`, 10+i%50)
			if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = $2, updated_at = $3 WHERE tenant_id = $1`, policy, store.Micros(tx.Now())); err != nil {
				return err
			}
			if !withAudit {
				return nil
			}
			_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "tenant.policy.update", ObjectType: "tenant", ObjectID: "bench",
				Changes: []audit.Change{{Field: "session.idle_timeout", Before: "10m", After: fmt.Sprintf("%dm", 10+i%50)}}})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The sequencer runs as in `relais serve` (every 200 ms), so its cost
	// is in the figures.
	seqCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { audit.Sequencer(seqCtx, db, 0, nil); close(done) }()
	for i := 0; i < 200; i++ { // warm up both paths
		business(i, i%2 == 0)
	}
	var plain, audited time.Duration
	ps, as := make([]time.Duration, b.N), make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		business(i, false)
		mid := time.Now()
		business(i, true)
		ps[i], as[i] = mid.Sub(start), time.Since(mid)
		plain += ps[i]
		audited += as[i]
	}
	b.StopTimer()
	stop()
	<-done
	// Every audited transaction's event is in the log once sequenced.
	if _, err := audit.Sequence(ctx, db, "bench"); err != nil {
		b.Fatal(err)
	}
	var head int64
	if err := ts.Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT seq FROM audit_heads WHERE tenant_id = $1`).Scan(&head)
	}); err != nil || head != int64(b.N+100) {
		b.Fatalf("log head %d, want %d (%v)", head, b.N+100, err)
	}
	b.ReportMetric(float64(plain.Microseconds())/float64(b.N), "plain-µs/tx")
	b.ReportMetric(float64(audited.Microseconds())/float64(b.N), "audited-µs/tx")
	b.ReportMetric(float64(audited)/float64(plain), "ratio")
	b.ReportMetric(float64(b.N)/audited.Seconds(), "audited-tx/s")
	// Medians too: the sums take in every pause another process on the
	// machine causes; the medians show the typical transaction.
	pm, am := medianDuration(ps), medianDuration(as)
	b.ReportMetric(float64(am)/float64(pm), "p50-ratio")
}

func medianDuration(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAuditedTxSQLite: the cost of audit.Append in a business
// transaction on SQLite.
func BenchmarkAuditedTxSQLite(b *testing.B) { benchAuditedTx(b, "") }

// BenchmarkAuditedTxPostgres: the same on a throwaway PostgreSQL server.
func BenchmarkAuditedTxPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchAuditedTx(b, srv.NewDatabase(b))
}

// auditEvents is the size of the log the verification benchmarks read.
const auditEvents = 100_000

// benchVerify fills a log with auditEvents events, checkpoints it (which
// computes the tree), then measures Service.Verify (leaves, chain, stored
// tree hashes, checkpoint signatures), and, as extra figures, the
// checkpoint job over the whole log and the offline verification of an
// export of it. Target: at least 100,000 events/s.
func benchVerify(b *testing.B, url string) {
	db := auditStore(b, url)
	ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7", RequestID: "req-1", UserAgent: "bench"})
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(b.TempDir(), "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	s := &audit.Service{DB: db, Master: mk}
	for done := 0; done < auditEvents; done += 1000 {
		err := db.Tenant("bench").Tx(ctx, func(tx *store.Tx) error {
			for i := 0; i < 1000; i++ {
				if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact",
					ObjectID: fmt.Sprint(done + i), Changes: []audit.Change{{Field: "status", Before: "active", After: "blocked"}, {Field: "email", Personal: true}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Sequenced first (its rate is a figure too), so that the tree
	// figure is the tree's alone.
	start := time.Now()
	if n, err := audit.Sequence(ctx, db, "bench"); err != nil || n != auditEvents {
		b.Fatalf("sequenced %d (%v)", n, err)
	}
	seqRate := float64(auditEvents) / time.Since(start).Seconds()
	start = time.Now()
	cp, err := s.Checkpoint(ctx, "bench", audit.ReasonManual)
	if err != nil {
		b.Fatal(err)
	}
	treeRate := float64(cp.Size) / time.Since(start).Seconds()
	var exp bytes.Buffer
	if _, err := s.Export(ctx, "bench", audit.ExportRequest{}, &exp); err != nil {
		b.Fatal(err)
	}
	vk, err := s.PublicKey(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	var verifySecs, exportSecs float64
	var events int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rep, err := s.Verify(ctx, "bench", audit.VerifyOptions{})
		verifySecs += time.Since(start).Seconds()
		if err != nil || !rep.OK {
			b.Fatalf("verify: %+v %v", rep, err)
		}
		events += rep.Events
		start = time.Now()
		er, err := audit.VerifyExport(bytes.NewReader(exp.Bytes()), vk)
		exportSecs += time.Since(start).Seconds()
		if err != nil || er.Events < auditEvents {
			b.Fatalf("verify export: %+v %v", er, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(events)/verifySecs, "events/s")
	b.ReportMetric(float64(events)/exportSecs, "export-events/s")
	b.ReportMetric(treeRate, "tree-events/s")
	b.ReportMetric(seqRate, "sequenced-events/s")
}

// BenchmarkAuditVerifySQLite: verification speed of a 100,000-event log on
// SQLite.
func BenchmarkAuditVerifySQLite(b *testing.B) { benchVerify(b, "") }

// BenchmarkAuditVerifyPostgres: the same on PostgreSQL.
func BenchmarkAuditVerifyPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchVerify(b, srv.NewDatabase(b))
}

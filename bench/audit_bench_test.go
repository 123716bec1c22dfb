package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
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
	measureAudited(b, ctx, db, "bench", business)
}

// measureAudited runs business(i, false) and business(i, true)
// alternately b.N times (after 200 warm-up transactions, half of them
// audited), with the sequencer running as in `relais serve`, checks that
// every audited transaction's event reached the tenant's log, and reports
// both times and their ratios. On SQLite, whose transactions run on the
// calling goroutine, it also reports the medians of each transaction's
// CPU time on its thread (the goroutine is locked to its thread), a figure
// that other processes on a shared machine hardly move.
func measureAudited(b *testing.B, ctx context.Context, db *store.DB, tenant string, business func(i int, withAudit bool)) {
	ts := db.Tenant(tenant)
	onThread := db.Dialect() == store.SQLite
	if onThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	head := func() int64 {
		if _, err := audit.Sequence(ctx, db, tenant); err != nil {
			b.Fatal(err)
		}
		var seq int64
		err := ts.Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT seq FROM audit_heads WHERE tenant_id = $1`).Scan(&seq)
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			b.Fatal(err)
		}
		return seq
	}
	before := head()
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
	pc, ac := make([]time.Duration, b.N), make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, start := threadCPU(), time.Now()
		business(i, false)
		c1, mid := threadCPU(), time.Now()
		business(i, true)
		ps[i], as[i] = mid.Sub(start), time.Since(mid)
		pc[i], ac[i] = c1-c0, threadCPU()-c1
		plain += ps[i]
		audited += as[i]
	}
	b.StopTimer()
	stop()
	<-done
	// Every audited transaction's event is in the log once sequenced.
	if after := head(); after != before+int64(b.N+100) {
		b.Fatalf("log head %d, want %d", after, before+int64(b.N+100))
	}
	b.ReportMetric(float64(plain.Microseconds())/float64(b.N), "plain-µs/tx")
	b.ReportMetric(float64(audited.Microseconds())/float64(b.N), "audited-µs/tx")
	b.ReportMetric(float64(audited)/float64(plain), "ratio")
	b.ReportMetric(float64(b.N)/audited.Seconds(), "audited-tx/s")
	// Medians too: the sums take in every pause another process on the
	// machine causes; the medians show the typical transaction.
	pm, am := medianDuration(ps), medianDuration(as)
	b.ReportMetric(float64(am)/float64(pm), "p50-ratio")
	if pcm := medianDuration(pc); onThread && pcm > 0 {
		acm := medianDuration(ac)
		b.ReportMetric(float64(pcm.Nanoseconds())/1000, "plain-cpu-µs")
		b.ReportMetric(float64(acm.Nanoseconds())/1000, "audited-cpu-µs")
		b.ReportMetric(float64(acm)/float64(pcm), "cpu-ratio")
	}
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

// contactsUpdated is how many contacts the contact-update benchmark
// updates in turn.
const contactsUpdated = 1000

// benchAuditedContactUpdate measures, as benchAuditedTx, a business
// transaction that is one of the product's own rather than the smallest
// possible: a contact's first name changed as contacts.Service.Update
// changes it, with the same statements and the same cryptography (the row
// read, FOR UPDATE on PostgreSQL; the attribute schema read; the contact's
// key opened and its four personal fields opened and sealed again under it;
// the email and phone blind indexes; the blocklist check; the UPDATE, with
// its backup change-log trigger), with and without the audit.Append the
// service makes (contact.update, the field name only). The service itself
// always appends, so the bench repeats its steps (internal/contacts
// contacts.go, Update) with public APIs.
func benchAuditedContactUpdate(b *testing.B, url string) {
	ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7", RequestID: "req-1", UserAgent: "bench"})
	env := openTenantEnv(b, url, "Bench", "bench")
	db, t, kr := env.db, env.tenant, env.keyring
	cs := &contacts.Service{DB: db, Keyring: kr}
	ids := make([]string, contactsUpdated)
	for i := range ids {
		c, err := cs.Create(ctx, t.ID, contacts.NewContact{Email: fmt.Sprintf("person%d@example.com", i), Phone: fmt.Sprintf("+4479460%05d", i),
			FirstName: "Ada", LastName: fmt.Sprintf("Lovelace%d", i), Locale: "en-GB"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
	}
	ts := db.Tenant(t.ID)
	forUpdate := ""
	if db.Dialect() == store.Postgres {
		forUpdate = ` FOR UPDATE`
	}
	business := func(i int, withAudit bool) {
		cr, err := kr.Crypto(ctx, t.ID)
		if err != nil {
			b.Fatal(err)
		}
		id := ids[i%len(ids)]
		err = ts.Tx(ctx, func(tx *store.Tx) error {
			var (
				emailEnc, phoneEnc, firstEnc, lastEnc, attrsEnc, emailBidx, phoneBidx, keyEnc []byte
				cid, locale, tz, attrs, status, source                                        string
				created, updated                                                              int64
			)
			err := tx.QueryRow(ctx, `SELECT c.id, c.email_enc, c.phone_enc, c.first_name_enc, c.last_name_enc, c.locale, c.timezone,
	c.attributes_enc, c.attributes, c.status, c.source, c.created_at, c.updated_at, c.email_bidx, c.phone_bidx, c.key_enc FROM contacts c WHERE c.tenant_id = $1 AND c.id = $2 AND c.erased_at IS NULL`+forUpdate, id).
				Scan(&cid, &emailEnc, &phoneEnc, &firstEnc, &lastEnc, &locale, &tz, &attrsEnc, &attrs, &status, &source, &created, &updated, &emailBidx, &phoneBidx, &keyEnc)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT key, type, personal, description, created_at, updated_at FROM attribute_schema WHERE tenant_id = $1`)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return err
			}
			cc, err := cr.ContactCipher(keyEnc)
			if err != nil {
				return err
			}
			fields := []struct {
				name string
				ct   *[]byte
			}{{"contact.email", &emailEnc}, {"contact.phone", &phoneEnc}, {"contact.first_name", &firstEnc}, {"contact.last_name", &lastEnc}}
			vals := make([]string, len(fields))
			for k, f := range fields {
				if vals[k], err = cc.OpenString(f.name, *f.ct); err != nil {
					return err
				}
			}
			vals[2] = fmt.Sprintf("Ada%d", i)
			for k, f := range fields {
				if *f.ct, err = cc.SealString(f.name, vals[k]); err != nil {
					return err
				}
			}
			emailBidx, phoneBidx = cr.Index("contact.email", vals[0]), cr.Index("contact.phone", vals[1])
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM blocklist WHERE tenant_id = $1
		AND ((kind = 'email' AND value_bidx = $2) OR (kind = 'phone' AND value_bidx = $3))`, emailBidx, phoneBidx).Scan(&n); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE contacts SET email_enc = $3, email_bidx = $4, phone_enc = $5, phone_bidx = $6,
			first_name_enc = $7, last_name_enc = $8, locale = $9, timezone = $10, attributes_enc = $11, attributes = $12,
			status = $13, updated_at = $14, key_enc = COALESCE($15, key_enc) WHERE tenant_id = $1 AND id = $2`,
				id, emailEnc, emailBidx, phoneEnc, phoneBidx, firstEnc, lastEnc, locale, tz, nil, attrs, status, store.Micros(tx.Now()), nil)
			if err != nil || !withAudit {
				return err
			}
			_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact", ObjectID: id,
				Changes: []audit.Change{{Field: "first_name", Personal: true}}})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	measureAudited(b, ctx, db, t.ID, business)
}

// BenchmarkAuditedContactUpdateSQLite: the cost of audit.Append in a
// contact update on SQLite.
func BenchmarkAuditedContactUpdateSQLite(b *testing.B) { benchAuditedContactUpdate(b, "") }

// BenchmarkAuditedContactUpdatePostgres: the same on PostgreSQL.
func BenchmarkAuditedContactUpdatePostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchAuditedContactUpdate(b, srv.NewDatabase(b))
}

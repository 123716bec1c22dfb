package bench

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/pgtest"
)

// The contacts import benchmarks (CORE-3): a CSV file of N synthetic
// contacts (email, phone, first and last names, locale, a country
// attribute) imported in upsert mode, with every personal field sealed
// (AES-256-GCM) and email and phone blind-indexed (HMAC-SHA256), against the
// physical reference: the same rows, parsed from the same file, inserted in
// clear into a plain table of the same store with the same indexes (unique
// email, phone), in the same batches (500 rows per transaction on SQLite
// and 1000 on PostgreSQL, multi-row
// INSERTs of 100 rows on SQLite and 500 on PostgreSQL, prepared once through
// the statement cache as the import's), in a bulk session of the store
// with the import's checkpoint interval (contacts.BulkWALPages). Both run
// with the store's default settings otherwise. N is 100,000, or
// RELAIS_BENCH_CONTACTS.
//
//	go test -run '^$' -bench Contacts -benchtime 1x ./bench/
//	RELAIS_BENCH_CONTACTS=1000000 go test -run '^$' -bench Contacts -benchtime 1x -timeout 60m ./bench/
//
// Metrics: contacts/s (the import), raw-rows/s (the reference), ratio (import
// over reference), cpu-µs/contact and raw-cpu-µs/row (CPU time of the
// process, all threads: steadier than rates on a shared machine),
// peak-RSS-MB (VmHWM of the process during the import alone, reset before
// it) and heap-sys-MB. On PostgreSQL also: raw-arrays-rows/s, the same raw
// rows sent as one array per column (rawInsertArrays, the import's own
// statement form since it writes contacts so), with ratio taken against the
// faster of the references and ratio-values against the VALUES one
// (the figure recorded before); raw-pipe-rows/s, the arrays reference with
// its transactions pipelined (rawInsertPipelined, as the import sends its
// batches of new contacts), also a candidate for the faster reference, and
// ratio-arrays, the ratio against the faster of the first two; and
// srv-cpu-µs/contact, raw-srv-cpu-µs/row, raw-arrays-srv-cpu-µs/row,
// raw-pipe-srv-cpu-µs/row: the CPU of the server's processes.

func benchContacts() int {
	if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_CONTACTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// benchFile writes the CSV file of n contacts, streaming.
func benchFile(b *testing.B, n int) string {
	p := filepath.Join(b.TempDir(), fmt.Sprintf("contacts-%d.csv", n))
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	firsts := []string{"Alice", "Bruno", "Chloé", "David", "Émilie", "François", "Gaëlle", "Hugo", "Inès", "Jules", "Léa", "Mathis"}
	lasts := []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent"}
	countries := []string{"FR", "BE", "DE", "ES", "IT"}
	fmt.Fprintln(w, "email,phone,first_name,last_name,locale,country")
	for i := 0; i < n; i++ {
		// Addresses and numbers in no particular order, as in a real file
		// (i*p mod m is a permutation of [0, m) for p prime to m): sorted
		// keys would flatter the plaintext reference's indexes.
		fn, ln := firsts[i%len(firsts)], lasts[(i/len(firsts))%len(lasts)]
		local := uint32(uint64(i) * 2654435761 % (1 << 32))
		phone := uint64(i) * 48271 % 100_000_000
		fmt.Fprintf(w, "%s.%08x@example.com,+336%08d,%s,%s,fr-FR,%s\n", strings.ToLower(ln), local, phone, fn, ln, countries[i%len(countries)])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

type importEnv struct {
	db     *store.DB
	svc    *contacts.Service
	tenant string
}

func openImportEnv(b *testing.B, url string) importEnv {
	b.Helper()
	ctx := context.Background()
	env := openTenantEnv(b, url, "Bench", "bench")
	db, t := env.db, env.tenant
	svc := &contacts.Service{DB: db, Keyring: env.keyring}
	if _, err := svc.DefineAttribute(ctx, t.ID, contacts.AttributeDef{Key: "country", Type: contacts.AttrString}); err != nil {
		b.Fatal(err)
	}
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `CREATE TABLE bench_raw_contacts (tenant_id TEXT NOT NULL, id TEXT NOT NULL, email TEXT, phone TEXT,
			first_name TEXT, last_name TEXT, locale TEXT NOT NULL, attributes TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL,
			PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, email))`)
		if err == nil {
			_, err = p.Exec(ctx, `CREATE INDEX bench_raw_phone ON bench_raw_contacts (tenant_id, phone)`)
		}
		if err == nil && p.Dialect() == store.Postgres {
			// The same table again, for the second and third references
			// (rawInsertArrays, rawInsertPipelined).
			_, err = p.Exec(ctx, `CREATE TABLE bench_raw_contacts_arrays (LIKE bench_raw_contacts INCLUDING ALL)`)
			if err == nil {
				_, err = p.Exec(ctx, `CREATE TABLE bench_raw_contacts_pipelined (LIKE bench_raw_contacts INCLUDING ALL)`)
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return importEnv{db: db, svc: svc, tenant: t.ID}
}

// rawInsert is the reference: parse the same file with encoding/csv and
// insert the rows in clear, as many per transaction as the import.
func rawInsert(b *testing.B, e importEnv, path string) int {
	ctx := context.Background()
	now := time.Now().UnixMicro()
	// Rows per statement as the import's: 100 on SQLite, 500 on PostgreSQL.
	perStmt := 500
	if e.db.Dialect() == store.SQLite {
		perStmt = 100
	}
	return rawLoad(b, e, path, func(tx *store.Tx, rows [][]string, first int) error {
		for start := 0; start < len(rows); start += perStmt {
			chunk := rows[start:min(start+perStmt, len(rows))]
			var q strings.Builder
			q.WriteString(`INSERT INTO bench_raw_contacts (tenant_id, id, email, phone, first_name, last_name, locale, attributes, status, created_at) VALUES `)
			// The same placeholder style as the import's bulk statements:
			// $1 (the tenant) then "?" on SQLite, $N on PostgreSQL.
			var args []any
			ph := func(v any) string {
				args = append(args, v)
				if e.db.Dialect() == store.SQLite {
					return "?"
				}
				return "$" + strconv.Itoa(len(args)+1)
			}
			for i, rec := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("($1, " + ph(strconv.Itoa(first+start+i)) + ", " + ph(rec[0]) + ", " + ph(rec[1]) + ", " + ph(rec[2]) + ", " +
					ph(rec[3]) + ", " + ph(rec[4]) + ", " + ph(`{"country":"`+rec[5]+`"}`) + ", 'active', " + ph(now) + ")")
			}
			// Through the statement cache, as the import's statements.
			if _, err := tx.ExecBulk(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendRawColumns appends the CSV records of chunk, the first of them
// contact number id, to the raw references' column arrays (id, email,
// phone, first and last name, locale, attributes) and their creation
// times to created, which it returns.
func appendRawColumns(cols [][]string, created []int64, chunk [][]string, id int, now int64) []int64 {
	for i, rec := range chunk {
		cols[0] = append(cols[0], strconv.Itoa(id+i))
		for c := 0; c < 5; c++ {
			cols[c+1] = append(cols[c+1], rec[c])
		}
		cols[6] = append(cols[6], `{"country":"`+rec[5]+`"}`)
		created = append(created, now)
	}
	return created
}

// rawInsertArrays is the PostgreSQL reference in the import's own
// statement form: the same rows, batches and bulk session as rawInsert, but
// each statement of 500 rows sends one array per column (INSERT ... SELECT
// FROM unnest($2, $3, ...)) instead of a VALUES list of 5,000 placeholders.
// The import writes contacts this way on PostgreSQL, so the ratio is taken
// against the faster of the two references.
func rawInsertArrays(b *testing.B, e importEnv, path string) int {
	ctx := context.Background()
	now := time.Now().UnixMicro()
	const perStmt = 500
	cols := make([][]string, 7)
	created := make([]int64, 0, perStmt)
	return rawLoad(b, e, path, func(tx *store.Tx, rows [][]string, first int) error {
		for start := 0; start < len(rows); start += perStmt {
			chunk := rows[start:min(start+perStmt, len(rows))]
			for c := range cols {
				cols[c] = cols[c][:0]
			}
			created = appendRawColumns(cols, created[:0], chunk, first+start, now)
			if _, err := tx.ExecBulk(ctx, `INSERT INTO bench_raw_contacts_arrays (tenant_id, id, email, phone, first_name, last_name, locale,
				attributes, status, created_at) SELECT $1, u.id, u.email, u.phone, u.first_name, u.last_name, u.locale, u.attributes, 'active', u.created_at
				FROM unnest(CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]), CAST($5 AS TEXT[]), CAST($6 AS TEXT[]), CAST($7 AS TEXT[]),
				CAST($8 AS TEXT[]), CAST($9 AS BIGINT[])) AS u (id, email, phone, first_name, last_name, locale, attributes, created_at)`,
				cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], created); err != nil {
				return err
			}
		}
		return nil
	})
}

// rawInsertPipelined is rawInsertArrays with its transactions sent through
// a pipeline of the bulk session (store.Pipeline), as the import sends its
// batches of new contacts on PostgreSQL: each transaction is built and sent
// while the server runs the one before. The import's reference on
// PostgreSQL is the fastest of the three.
func rawInsertPipelined(b *testing.B, e importEnv, path string) int {
	ctx := context.Background()
	now := time.Now().UnixMicro()
	const perStmt = 500
	const perTx = 1000
	n, committed := 0, 0
	var failed error
	err := e.db.Tenant(e.tenant).Bulk(ctx, store.BulkOptions{WALAutocheckpoint: contacts.BulkWALPages}, func(s *store.BulkSession) error {
		return s.Pipeline(ctx, func(p *store.Pipeline) error {
			flush := func(rows [][]string) error {
				first, count := n, len(rows)
				err := p.Send(ctx, func(tx *store.Tx) error {
					for start := 0; start < len(rows); start += perStmt {
						chunk := rows[start:min(start+perStmt, len(rows))]
						// Arrays of their own: a pipelined statement's
						// arguments are encoded when its transaction is sent.
						cols := make([][]string, 7)
						created := appendRawColumns(cols, make([]int64, 0, len(chunk)), chunk, first+start, now)
						if _, err := tx.ExecBulk(ctx, `INSERT INTO bench_raw_contacts_pipelined (tenant_id, id, email, phone, first_name, last_name,
							locale, attributes, status, created_at) SELECT $1, u.id, u.email, u.phone, u.first_name, u.last_name, u.locale, u.attributes,
							'active', u.created_at FROM unnest(CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]), CAST($5 AS TEXT[]),
							CAST($6 AS TEXT[]), CAST($7 AS TEXT[]), CAST($8 AS TEXT[]), CAST($9 AS BIGINT[]))
							AS u (id, email, phone, first_name, last_name, locale, attributes, created_at)`,
							cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], created); err != nil {
							return err
						}
					}
					return nil
				}, func(err error) {
					if err != nil && failed == nil {
						failed = err
					}
					if err == nil {
						committed += count
					}
				})
				n += len(rows)
				return err
			}
			// A new slice a batch: the transaction sent keeps its rows.
			if err := csvBatches(path, perTx, true, flush); err != nil {
				return err
			}
			return p.Wait(ctx)
		})
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		b.Fatal(err)
	}
	return committed
}

// csvBatches reads the CSV file at path (after its header) and hands its
// rows to flush perBatch at a time (the last batch may be shorter); with
// fresh, each batch is a new slice, which flush may keep, else one slice
// is reused.
func csvBatches(path string, perBatch int, fresh bool, flush func(rows [][]string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<16))
	r.ReuseRecord = true
	if _, err := r.Read(); err != nil {
		return err
	}
	rows := make([][]string, 0, perBatch)
	next := func() error {
		if err := flush(rows); err != nil {
			return err
		}
		if fresh {
			rows = make([][]string, 0, perBatch)
		} else {
			rows = rows[:0]
		}
		return nil
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rows = append(rows, append([]string(nil), rec...))
		if len(rows) == perBatch {
			if err := next(); err != nil {
				return err
			}
		}
	}
	if len(rows) > 0 {
		return flush(rows)
	}
	return nil
}

// rawLoad reads the CSV file at path (after its header) and hands its rows
// to write, as many per transaction as the import's default (500 on
// SQLite, 1000 on PostgreSQL), in a bulk session with the import's
// checkpoint interval, as the import; first is the number of rows written
// before. It returns the number of rows written.
func rawLoad(b *testing.B, e importEnv, path string, write func(tx *store.Tx, rows [][]string, first int) error) int {
	ctx := context.Background()
	perTx := 1000
	if e.db.Dialect() == store.SQLite {
		perTx = 500
	}
	n := 0
	err := e.db.Tenant(e.tenant).Bulk(ctx, store.BulkOptions{WALAutocheckpoint: contacts.BulkWALPages}, func(s *store.BulkSession) error {
		return csvBatches(path, perTx, false, func(rows [][]string) error {
			if err := s.Tx(ctx, func(tx *store.Tx) error { return write(tx, rows, n) }); err != nil {
				return err
			}
			n += len(rows)
			return nil
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// childCPUSecs is the CPU time (user and system) of the processes started
// by this one, and of theirs (the throwaway PostgreSQL server and its
// backends; Linux, 0 elsewhere), so that the server's share of a run is
// measured too.
func childCPUSecs() float64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	type proc struct {
		ppid  int
		ticks float64
	}
	procs := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // f[0] is the state: field 3
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var t float64
		for _, k := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
			v, _ := strconv.ParseFloat(f[k], 64)
			t += v
		}
		procs[pid] = proc{ppid: ppid, ticks: t}
	}
	self := os.Getpid()
	var total float64
	for pid, p := range procs {
		for q, hops := p.ppid, 0; q > 1 && hops < 8; q, hops = procs[q].ppid, hops+1 {
			if q == self {
				total += p.ticks
				break
			}
		}
		_ = pid
	}
	return total / 100 // USER_HZ
}

// vmHWM returns the process's peak resident set size in bytes; resetHWM
// starts a new peak (Linux; both are no-ops elsewhere).
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb * 1024
		}
	}
	return 0
}

func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// cpuSecs is the process's CPU time (user and system, all threads): on a
// machine shared with other work it compares runs better than wall time.
func cpuSecs() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func benchImport(b *testing.B, url func(b *testing.B) string, withConsent bool) {
	n := benchContacts()
	path := benchFile(b, n)
	ctx := context.Background()
	var importSecs, rawSecs, importCPU, rawCPU, peak, heapSys float64
	var rawArraySecs, rawArrayCPU, importSrv, rawSrv, rawArraySrv float64
	var rawPipeSecs, rawPipeCPU, rawPipeSrv float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := openImportEnv(b, url(b))
		start, cpu, srv := time.Now(), cpuSecs(), childCPUSecs()
		if got := rawInsert(b, e, path); got != n {
			b.Fatalf("raw inserted %d", got)
		}
		rawSecs += time.Since(start).Seconds()
		rawCPU += cpuSecs() - cpu
		rawSrv += childCPUSecs() - srv
		if e.db.Dialect() == store.Postgres {
			start, cpu, srv := time.Now(), cpuSecs(), childCPUSecs()
			if got := rawInsertArrays(b, e, path); got != n {
				b.Fatalf("raw inserted %d", got)
			}
			rawArraySecs += time.Since(start).Seconds()
			rawArrayCPU += cpuSecs() - cpu
			rawArraySrv += childCPUSecs() - srv
			start, cpu, srv = time.Now(), cpuSecs(), childCPUSecs()
			if got := rawInsertPipelined(b, e, path); got != n {
				b.Fatalf("raw inserted %d", got)
			}
			rawPipeSecs += time.Since(start).Seconds()
			rawPipeCPU += cpuSecs() - cpu
			rawPipeSrv += childCPUSecs() - srv
		}
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		resetHWM()
		opts := contacts.ImportOptions{}
		if withConsent {
			// A consent with its proof for every contact, and a list.
			l, err := e.svc.CreateList(ctx, e.tenant, "Imported", "")
			if err != nil {
				b.Fatal(err)
			}
			opts.Lists = []string{l.ID}
			opts.Consents = []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted,
				Wording: "I agree to receive the newsletter.", WordingVersion: "2026-01"}}
		}
		b.StartTimer()
		start, cpu, srv = time.Now(), cpuSecs(), childCPUSecs()
		job, err := e.svc.Import(ctx, e.tenant, f, opts)
		importSecs += time.Since(start).Seconds()
		importCPU += cpuSecs() - cpu
		importSrv += childCPUSecs() - srv
		b.StopTimer()
		_ = f.Close()
		if err != nil || job.Created != int64(n) || job.Failed != 0 {
			b.Fatalf("import: %+v %v", job, err)
		}
		peak = max(peak, vmHWM())
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapSys = max(heapSys, float64(ms.HeapSys))
		b.StartTimer()
	}
	rows := float64(n * b.N)
	rate := rows / importSecs
	raw := rows / rawSecs
	b.ReportMetric(rate, "contacts/s")
	b.ReportMetric(raw, "raw-rows/s")
	b.ReportMetric(importCPU*1e6/rows, "cpu-µs/contact")
	b.ReportMetric(rawCPU*1e6/rows, "raw-cpu-µs/row")
	if rawArraySecs > 0 {
		// PostgreSQL: the ratio is against the faster reference; ratio-values
		// keeps the VALUES-list reference's ratio (the figure recorded before
		// the arrays reference was added). srv-: the server's CPU.
		rawArrays := rows / rawArraySecs
		b.ReportMetric(rawArrays, "raw-arrays-rows/s")
		b.ReportMetric(rawArrayCPU*1e6/rows, "raw-arrays-cpu-µs/row")
		b.ReportMetric(rate/raw, "ratio-values")
		b.ReportMetric(importSrv*1e6/rows, "srv-cpu-µs/contact")
		b.ReportMetric(rawSrv*1e6/rows, "raw-srv-cpu-µs/row")
		b.ReportMetric(rawArraySrv*1e6/rows, "raw-arrays-srv-cpu-µs/row")
		raw = max(raw, rawArrays)
		// The pipelined reference (rawInsertPipelined); ratio-arrays keeps
		// the ratio against the faster of the first two (the figure recorded
		// before the import was pipelined).
		rawPipe := rows / rawPipeSecs
		b.ReportMetric(rawPipe, "raw-pipe-rows/s")
		b.ReportMetric(rawPipeCPU*1e6/rows, "raw-pipe-cpu-µs/row")
		b.ReportMetric(rawPipeSrv*1e6/rows, "raw-pipe-srv-cpu-µs/row")
		b.ReportMetric(rate/raw, "ratio-arrays")
		raw = max(raw, rawPipe)
	}
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(peak/(1<<20), "peak-RSS-MB")
	b.ReportMetric(heapSys/(1<<20), "heap-sys-MB")
}

// BenchmarkContactsImportSQLite: the import on the embedded SQLite store.
func BenchmarkContactsImportSQLite(b *testing.B) {
	benchImport(b, func(*testing.B) string { return "" }, false)
}

// BenchmarkContactsImportPostgres: the import on a throwaway PostgreSQL
// server (Debian's binaries), connected as a role subject to RLS.
func BenchmarkContactsImportPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchImport(b, func(b *testing.B) string { return srv.NewDatabase(b) }, false)
}

// BenchmarkContactsImportWithConsentSQLite: the same file with an email
// consent and its proof recorded for every contact, and a list membership
// (three more rows per contact). The reference is still the contacts alone.
func BenchmarkContactsImportWithConsentSQLite(b *testing.B) {
	benchImport(b, func(*testing.B) string { return "" }, true)
}

// BenchmarkContactsImportWithConsentPostgres: the same on PostgreSQL.
func BenchmarkContactsImportWithConsentPostgres(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	benchImport(b, func(b *testing.B) string { return srv.NewDatabase(b) }, true)
}

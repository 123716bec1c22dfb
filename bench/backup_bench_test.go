package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// The backup benchmark (BAK-2, BAK-3): a tenant of N synthetic contacts
// (personal fields sealed, blind indexes, attributes) on SQLite, backed up in
// full to a directory, then restored into a fresh SQLite store, against two
// references measured in the same run: reading the same rows raw (SELECT *
// of each of the tenant's tables in primary-key order, the backup's order,
// scanned) and AES-256-GCM (stdlib, 1 MiB blocks) over as many bytes as the
// backup wrote. N is 20,000 by default;
// the 1,000,000-contact figure is taken with
//
//	RELAIS_BENCH_BACKUP_CONTACTS=1000000 go test -run '^$' -bench Backup -benchtime 1x -timeout 60m ./bench/
//
// RELAIS_BENCH_BACKUP_RESTORE=0 skips the restore.
//
// Metrics: backup-s, backup-MB/s and backup-rows/s; prune-s and
// pruned-entries (the change log pruned after the point); restore-s,
// restore-MB/s and restore-rows/s; raw-read-rows/s and raw-read-MB/s (the
// tenant's rows read raw); aes-gcm-MB/s; backup/raw-read (rows/s ratio);
// backup/read+aes (the backup's time against the raw read plus the raw
// AES-GCM of its bytes); restore/raw-read; raw-read-cpu-s and
// restore-cpu-s, the process's CPU time during each (on a shared machine
// they move less than the times).
func benchBackupContacts() int {
	if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_BACKUP_CONTACTS")); err == nil && n > 0 {
		return n
	}
	return 20_000
}

func dirSize(root string) int64 {
	var n int64
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func BenchmarkBackupContacts(b *testing.B) {
	ctx := context.Background()
	n := benchBackupContacts()
	// RELAIS_BENCH_BACKUP_STORE keeps the seeded store in that directory
	// between runs (seeding 1M contacts takes minutes): seeded when it has
	// no "bench" tenant, reused otherwise.
	dir := os.Getenv("RELAIS_BENCH_BACKUP_STORE")
	if dir == "" {
		dir = b.TempDir()
	}
	db, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	kr := tenants.NewKeyring(db, mk, 0)
	tn, err := ts.Get(ctx, "bench")
	if err != nil {
		if tn, err = ts.Create(ctx, "Bench", "bench"); err != nil {
			b.Fatal(err)
		}
		cs := &contacts.Service{DB: db, Keyring: kr}
		start := time.Now()
		if _, err := cs.Seed(ctx, tn.ID, n, 1, nil); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d contacts in %s", n, time.Since(start).Round(time.Millisecond))
	} else {
		b.Logf("reusing the store seeded in %s", dir)
	}
	svc := &backup.Service{DB: db, Master: mk, Keyring: kr,
		Logger: slog.New(slog.NewTextHandler(benchLog{b}, nil))}
	tables := tablesOf(b, db)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// Reference 1: every row of the tenant read raw (SELECT * of each
		// table with a tenant_id, in primary-key order as the backup reads
		// them), in one snapshot.
		var rawRows, rawBytes, contactsN int64
		c0 := processCPU()
		t0 := time.Now()
		err := db.Tenant(tn.ID).Snapshot(ctx, func(tx *store.Tx) error {
			for _, tbl := range tables {
				q := `SELECT * FROM "` + tbl.name + `" WHERE tenant_id = $1`
				if tbl.order != "" {
					q += ` ORDER BY ` + tbl.order
				}
				rows, err := tx.Query(ctx, q)
				if err != nil {
					return err
				}
				cols, _ := rows.Columns()
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				for rows.Next() {
					if err := rows.Scan(ptrs...); err != nil {
						return err
					}
					rawRows++
					if tbl.name == "contacts" {
						contactsN++
					}
					for _, v := range vals {
						switch x := v.(type) {
						case []byte:
							rawBytes += int64(len(x))
						case string:
							rawBytes += int64(len(x))
						default:
							rawBytes += 8
						}
					}
				}
				_ = rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		readTime := time.Since(t0)
		readCPU := processCPU() - c0
		// The backup. RELAIS_BENCH_BACKUP_TARGET keeps it in that directory
		// and, when it already holds a point of the tenant, reuses it (no
		// backup figures then: a restore-only run).
		tdir := os.Getenv("RELAIS_BENCH_BACKUP_TARGET")
		reuse := false
		if tdir == "" {
			tdir = b.TempDir()
		}
		target := &backup.DirTarget{Root: tdir}
		if os.Getenv("RELAIS_BENCH_BACKUP_TARGET") != "" {
			points, err := svc.List(ctx, tn.ID, target)
			reuse = err == nil && len(points) > 0
		}
		b.StartTimer()
		t1 := time.Now()
		if !reuse {
			if _, err := svc.Run(ctx, tn.ID, target, backup.RunOptions{Full: true}); err != nil {
				b.Fatal(err)
			}
		}
		backupTime := time.Since(t1)
		b.StopTimer()
		// Pruning the change log the point covers: after the point, out of
		// its critical path (the scheduler and the CLI do it after Run).
		t4 := time.Now()
		pruned, err := svc.PruneChangeLog(ctx, tn.ID)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t4).Seconds(), "prune-s")
		b.ReportMetric(float64(pruned), "pruned-entries")
		size := dirSize(tdir)
		// Reference 2: AES-256-GCM over as many bytes.
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		blk, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(blk)
		buf := make([]byte, 1<<20)
		out := make([]byte, 0, len(buf)+16)
		nonce := make([]byte, 12)
		t2 := time.Now()
		for done := int64(0); done < size; done += int64(len(buf)) {
			nonce[0]++
			out = gcm.Seal(out[:0], nonce, buf, nil)
		}
		aesTime := time.Since(t2)
		mb := float64(size) / (1 << 20)
		if reuse {
			b.Logf("restore only: reusing the backup in %s", tdir)
			b.ReportMetric(float64(rawRows)/readTime.Seconds(), "raw-read-rows/s")
			b.ReportMetric(mb, "backup-MB")
		} else {
			b.ReportMetric(backupTime.Seconds(), "backup-s")
			b.ReportMetric(mb/backupTime.Seconds(), "backup-MB/s")
			b.ReportMetric(float64(contactsN)/backupTime.Seconds(), "backup-contacts/s")
			b.ReportMetric(float64(rawRows)/backupTime.Seconds(), "backup-rows/s")
			b.ReportMetric(float64(rawRows)/readTime.Seconds(), "raw-read-rows/s")
			b.ReportMetric(float64(rawBytes)/(1<<20)/readTime.Seconds(), "raw-read-MB/s")
			b.ReportMetric(mb/aesTime.Seconds(), "aes-gcm-MB/s")
			b.ReportMetric(readTime.Seconds()/backupTime.Seconds(), "backup/raw-read")
			b.ReportMetric((readTime+aesTime).Seconds()/backupTime.Seconds(), "backup/read+aes")
			b.ReportMetric(mb, "backup-MB")
		}
		if os.Getenv("RELAIS_BENCH_BACKUP_RESTORE") == "0" {
			b.StartTimer()
			continue
		}
		// The restore, into a fresh store with the source store's page size
		// (SQLite's default, 4096, unless the store was created with
		// sqlite.page_size).
		var pageSize int
		if err := db.Platform(ctx, func(p *store.PlatformTx) error {
			return p.QueryRow(ctx, `PRAGMA page_size`).Scan(&pageSize)
		}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(pageSize), "page-size")
		// backup.RestoreNewStore creates, migrates and fills the new store
		// (its creation and migration are in the time);
		// RELAIS_BENCH_BACKUP_RESTORE_INTO=open restores with Restore into a
		// store opened and migrated before the clock starts (WAL mode: the
		// path of a restore into an existing store).
		tune := store.SQLiteTuning{PageSize: pageSize}
		var rdb *store.DB
		if os.Getenv("RELAIS_BENCH_BACKUP_RESTORE_INTO") == "open" {
			if rdb, err = store.Open(ctx, store.Options{DataDir: b.TempDir(), SQLite: tune}); err != nil {
				b.Fatal(err)
			}
			if _, err := rdb.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
		}
		c3 := processCPU()
		t3 := time.Now()
		var res backup.RestoreResult
		if rdb != nil {
			res, err = svc.Restore(ctx, tn.ID, target, backup.RestoreOptions{IntoSlug: "bench-restored", Dest: rdb})
		} else {
			ro := backup.RestoreOptions{IntoSlug: "bench-restored"}
			// RELAIS_BENCH_BACKUP_RESTORE_CACHE_MIB: the restore's page cache
			// (RestoreOptions.CacheMiB) for experiments.
			if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_BACKUP_RESTORE_CACHE_MIB")); err == nil && n > 0 {
				ro.CacheMiB = n
			}
			res, err = svc.RestoreNewStore(ctx, tn.ID, target, b.TempDir(), tune, ro)
		}
		if err != nil {
			b.Fatal(err)
		}
		restoreTime := time.Since(t3)
		restoreCPU := processCPU() - c3
		if rdb != nil {
			_ = rdb.Close()
		}
		b.ReportMetric(restoreTime.Seconds(), "restore-s")
		b.ReportMetric(mb/restoreTime.Seconds(), "restore-MB/s")
		b.ReportMetric(float64(res.Rows)/restoreTime.Seconds(), "restore-rows/s")
		b.ReportMetric(readTime.Seconds()/restoreTime.Seconds(), "restore/raw-read")
		b.ReportMetric((readTime+aesTime).Seconds()/restoreTime.Seconds(), "restore/read+aes")
		b.ReportMetric(readCPU.Seconds(), "raw-read-cpu-s")
		b.ReportMetric(restoreCPU.Seconds(), "restore-cpu-s")
		b.StartTimer()
	}
}

// benchTable is a table of the raw read: its name and its primary key
// after tenant_id (the order the backup reads it in).
type benchTable struct{ name, order string }

// tablesOf lists the store's tables that have a tenant_id column, except
// the backup machinery's and the excluded authentication state.
func tablesOf(b *testing.B, db *store.DB) []benchTable {
	var out []benchTable
	skip := map[string]bool{"backup_changes": true, "backup_state": true, "backup_restoring": true,
		"sessions": true, "mfa_challenges": true, "user_tokens": true, "ip_failures": true}
	err := db.Platform(context.Background(), func(p *store.PlatformTx) error {
		rows, err := p.Query(context.Background(), `SELECT m.name, COALESCE((SELECT group_concat('"' || k.name || '"', ', ')
				FROM (SELECT name FROM pragma_table_info(m.name) WHERE pk > 0 AND name <> 'tenant_id' ORDER BY pk) k), '')
			FROM sqlite_schema m, pragma_table_info(m.name) c
			WHERE m.type = 'table' AND c.name = 'tenant_id' ORDER BY m.name`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var t benchTable
			if err := rows.Scan(&t.name, &t.order); err != nil {
				return err
			}
			if !skip[t.name] {
				out = append(out, t)
			}
		}
		return rows.Err()
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// benchLog sends the backup's log lines (its phase timings) to the
// benchmark's log.
type benchLog struct{ b *testing.B }

func (l benchLog) Write(p []byte) (int, error) {
	l.b.Log(string(p))
	return len(p), nil
}

package backup

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// newStoreSource is a source store in a directory of its own (a child
// process opens it again), its master key in the same directory, and a
// full backup of acme in a directory target.
func newStoreSource(t *testing.T, contactsN int) (e *env, srcDir string, tgt *DirTarget) {
	t.Helper()
	clk := newClock()
	srcDir = t.TempDir()
	db, err := store.Open(bg, store.Options{DataDir: srcDir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(bg); err != nil {
		t.Fatal(err)
	}
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(srcDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	e = setup(t, db, mk, clk, contactsN)
	tgt = dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, tgt, RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	return e, srcDir, tgt
}

func openDir(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(bg, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestRestoreNewStore: a restore into a new store (rollback journal while
// it runs) restores every row, leaves the store in WAL mode with the
// audit chain verifying, refuses a directory that holds a store, and when
// it fails or is cancelled halfway removes the store it made.
func TestRestoreNewStore(t *testing.T) {
	e, _, tgt := newStoreSource(t, 40)
	want := dump(t, e.db, e.acme.ID)

	// Cancelled early and late: an error, and no store left in the directory.
	for _, part := range []float64{0.3, 0.9} {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(bg)
		_, err := e.svc.RestoreNewStore(ctx, e.acme.ID, tgt, dir, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme", Progress: func(done, total int64) {
			if float64(done) > part*float64(total) {
				cancel()
			}
		}})
		cancel()
		if err == nil {
			t.Fatalf("restore cancelled at %.0f%% succeeded", part*100)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a restore cancelled at %.0f%% left %v", part*100, left)
		}
	}
	// A backup that does not match (tampered checksums are caught by the
	// manifest's authentication; here, a wrong tenant): no store left.
	dir := t.TempDir()
	if _, err := e.svc.RestoreNewStore(bg, e.beta.ID, tgt, dir, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "beta"}); err == nil {
		t.Fatal("restore of a tenant without backups succeeded")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed restore left %v", left)
	}

	dir = t.TempDir()
	res, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, dir, store.SQLiteTuning{PageSize: 16384}, RestoreOptions{IntoSlug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows == 0 {
		t.Fatal("no rows restored")
	}
	if _, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, dir, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme"}); !errors.Is(err, ErrStoreExists) {
		t.Fatalf("restore into a directory with a store: %v", err)
	}
	dest := openDir(t, dir)
	compareDumps(t, want, dump(t, dest, e.acme.ID))
	var mode string
	var page int
	if err := dest.Platform(bg, func(p *store.PlatformTx) error {
		if err := p.QueryRow(bg, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			return err
		}
		return p.QueryRow(bg, `PRAGMA page_size`).Scan(&page)
	}); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || page != 16384 {
		t.Fatalf("restored store: journal mode %q, page size %d", mode, page)
	}
	verifyAudit(t, dest, e.mk, e.acme.ID)
}

// TestRestoreNewStoreKilled: a process killed (SIGKILL) in the middle of a
// restore into a new store, after it wrote restored pages into the store's
// file, leaves a store that holds nothing of the tenant once opened (SQLite
// plays the hot rollback journal back), passes SQLite's integrity check,
// and is refused as the destination of another restore.
func TestRestoreNewStoreKilled(t *testing.T) {
	if spec := os.Getenv("RELAIS_TEST_RESTORE_CHILD"); spec != "" {
		restoreChild(t, spec)
		return
	}
	e, srcDir, tgt := newStoreSource(t, 1500)
	want := dump(t, e.db, e.acme.ID)
	dest, marker := t.TempDir(), filepath.Join(t.TempDir(), "halfway")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRestoreNewStoreKilled$", "-test.count", "1") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), "RELAIS_TEST_RESTORE_CHILD="+strings.Join([]string{srcDir, tgt.Root, dest, marker, e.acme.ID}, "|"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		select {
		case err := <-waited:
			t.Fatalf("the restoring process ended before halfway: %v\n%s", err, out)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("the restoring process did not reach halfway\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	path := filepath.Join(dest, "relais.db")
	if _, err := os.Stat(path + "-journal"); err != nil {
		t.Fatalf("no rollback journal while the restore runs: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-waited
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The restore had written pages into the file beyond a migrated
	// store's (the page cache was too small to hold them).
	fresh := t.TempDir()
	fdb := openDir(t, fresh)
	if _, err := fdb.Migrate(bg); err != nil {
		t.Fatal(err)
	}
	_ = fdb.Close()
	ffi, err := os.Stat(filepath.Join(fresh, "relais.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= ffi.Size()+256<<10 {
		t.Fatalf("the killed restore wrote little into the store's file (%d bytes, %d for a migrated store)", fi.Size(), ffi.Size())
	}
	if _, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, dest, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme"}); !errors.Is(err, ErrStoreExists) {
		t.Fatalf("restore into the killed restore's directory: %v", err)
	}
	db := openDir(t, dest)
	var tenantsN int
	var check string
	if err := db.Platform(bg, func(p *store.PlatformTx) error {
		if err := p.QueryRow(bg, `SELECT count(*) FROM tenants`).Scan(&tenantsN); err != nil {
			return err
		}
		return p.QueryRow(bg, `PRAGMA integrity_check`).Scan(&check)
	}); err != nil {
		t.Fatal(err)
	}
	if tenantsN != 0 || len(dump(t, db, e.acme.ID)) != 0 || check != "ok" {
		t.Fatalf("after the kill: %d tenants, rows %v, integrity %q", tenantsN, len(dump(t, db, e.acme.ID)), check)
	}
	if _, err := os.Stat(path + "-journal"); err == nil {
		t.Fatal("the hot journal was not played back")
	}
	// A new directory restores completely.
	again := t.TempDir()
	if _, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, again, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme"}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want, dump(t, openDir(t, again), e.acme.ID))
}

// restoreChild is the killed process: it restores with a 1 MiB page cache
// (so that restored pages go to the file before the commit) and stops
// halfway, inside the transaction, until killed.
func restoreChild(t *testing.T, spec string) {
	p := strings.Split(spec, "|")
	srcDir, tgtRoot, dest, marker, tenantID := p[0], p[1], p[2], p[3], p[4]
	clk := newClock()
	db := openDir(t, srcDir)
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(srcDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	svc := service(db, mk, clk)
	_, err = svc.RestoreNewStore(bg, tenantID, &DirTarget{Root: tgtRoot}, dest, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme", CacheMiB: 1,
		Progress: func(done, total int64) {
			if done > total/2 {
				if err := os.WriteFile(marker, nil, 0o600); err != nil {
					t.Error(err)
				}
				select {} // killed here
			}
		}})
	t.Fatalf("the restore was not stopped: %v", err)
}

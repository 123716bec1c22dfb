package store_test

import (
	"context"
	"testing"

	"github.com/relais-dev/relais/internal/store"
)

// TestBuildStore: a store opened with SQLiteTuning.Build has a rollback
// journal and reads through a memory map while it is open, and is back in
// WAL mode, without the map, once it is closed and opened again.
func TestBuildStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pragmas := func(db *store.DB) (mode string, mmap int64) {
		t.Helper()
		if err := db.Platform(ctx, func(p *store.PlatformTx) error {
			if err := p.QueryRow(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
				return err
			}
			return p.QueryRow(ctx, `PRAGMA mmap_size`).Scan(&mmap)
		}); err != nil {
			t.Fatal(err)
		}
		return mode, mmap
	}
	db, err := store.Open(ctx, store.Options{DataDir: dir, SQLite: store.SQLiteTuning{Build: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if mode, mmap := pragmas(db); mode != "delete" || mmap < 1<<30 {
		t.Fatalf("build store: journal %q, mmap_size %d", mode, mmap)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if mode, mmap := pragmas(db); mode != "wal" || mmap != 0 {
		t.Fatalf("store reopened: journal %q, mmap_size %d", mode, mmap)
	}
}

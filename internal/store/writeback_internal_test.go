package store

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// A Build store starts the write-out of its file's dirty pages while it is
// open (Linux) and stops it when it closes; other stores have none.
func TestBuildStoreWriteback(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the write-out hint is Linux's sync_file_range")
	}
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir, SQLite: SQLiteTuning{Build: true}})
	if err != nil {
		t.Fatal(err)
	}
	if db.wb == nil {
		t.Fatal("a Build store has no writeback")
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait for a round (the ticker's first tick is writebackEvery away).
	for i := 0; db.wb.rounds.Load() == 0 && i < 600; i++ {
		time.Sleep(writebackEvery / 4)
	}
	if db.wb.rounds.Load() == 0 || db.wb.failed.Load() {
		t.Fatalf("writeback: %d rounds, failed %v", db.wb.rounds.Load(), db.wb.failed.Load())
	}
	wb := db.wb
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wb.done:
	default:
		t.Fatal("the writeback still runs after Close")
	}
	if _, err := wb.f.Stat(); err == nil {
		t.Fatal("the writeback's file is still open after Close")
	}
	other, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	if other.wb != nil {
		t.Fatal("a store opened for normal use runs a writeback")
	}
}

// A file the kernel cannot write out (a pipe) stops the loop, which
// records it; a missing file starts none. Neither affects the store.
func TestWritebackFailures(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the write-out hint is Linux's sync_file_range")
	}
	if w := startWriteback(filepath.Join(t.TempDir(), "missing.db"), time.Millisecond); w != nil {
		w.close()
		t.Fatal("a writeback started on a missing file")
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wr.Close() }()
	w := runWriteback(r, time.Millisecond)
	<-w.done // stops by itself at its first refusal
	if !w.failed.Load() || w.rounds.Load() != 0 {
		t.Fatalf("writeback on a pipe: failed %v, %d rounds", w.failed.Load(), w.rounds.Load())
	}
	// The file stays open until release (a close(2) would drop SQLite's
	// locks on a store's file).
	if _, err := r.Stat(); err != nil {
		t.Fatalf("the file was closed with the loop: %v", err)
	}
	w.close() // closing a stopped writeback is harmless, as is a nil one
	w.release()
	if _, err := r.Stat(); err == nil {
		t.Fatal("release left the file open")
	}
	(*writeback)(nil).close()
	(*writeback)(nil).release()
}

package store

import (
	"os"
	"sync/atomic"
	"time"
)

// writebackEvery is how often a Build store asks the kernel to start
// writing its file's dirty pages to disk.
const writebackEvery = 100 * time.Millisecond

// writeback asks the kernel, every interval, to start writing the dirty
// pages of a file to disk, without waiting for them (Linux's
// sync_file_range with SYNC_FILE_RANGE_WRITE; nothing elsewhere). A Build
// store runs one while it is open: a restore writes about a gigabyte a
// million contacts into the page cache, and the kernel would otherwise
// leave it there until the commit's fsync, which then writes all of it
// while the restore waits. Started as the pages are written, the writes
// overlap the load, and the commit's fsync finds little left to write.
// It is a hint only: durability is unchanged (the commit still syncs the
// journal and the file, SQLite's synchronous FULL), and a page written
// early is no different from one the kernel writes back on its own.
//
// Its descriptor of the file is closed only once the store's connections
// are (release, after the pool's Close): SQLite takes POSIX record locks,
// which the kernel drops at any close(2) of any descriptor of the file in
// the process, so closing it while a transaction runs would strip that
// transaction's locks. (DB.Close while a connection is still checked out
// would do the same: a misuse the store's callers do not commit.)
type writeback struct {
	f          *os.File
	stop, done chan struct{}
	rounds     atomic.Int64 // write-outs started
	failed     atomic.Bool  // the kernel refused one: stopped
}

// startWriteback starts a writeback of the file at path; nil when the
// platform has none or the file cannot be opened (the store works the
// same, the commit's fsync then writes everything).
func startWriteback(path string, every time.Duration) *writeback {
	if !writebackSupported {
		return nil
	}
	f, err := os.Open(path) // #nosec G304 -- the store's own database file, opened read-only
	if err != nil {
		return nil
	}
	return runWriteback(f, every)
}

// runWriteback runs the loop on f, which release closes.
func runWriteback(f *os.File, every time.Duration) *writeback {
	w := &writeback{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if err := startWriteOut(f); err != nil {
					w.failed.Store(true)
					return
				}
				w.rounds.Add(1)
			}
		}
	}()
	return w
}

// close stops the loop and waits for it; the file stays open (release).
func (w *writeback) close() {
	if w == nil {
		return
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// release stops the loop and closes the file: only once no connection of
// the store is open (see writeback).
func (w *writeback) release() {
	if w == nil {
		return
	}
	w.close()
	_ = w.f.Close()
}

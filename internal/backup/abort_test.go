package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// fullDisk is a target whose chunk writes fail with ENOSPC after a few.
type fullDisk struct {
	Target
	left atomic.Int32
}

func (f *fullDisk) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.Contains(name, "/chunks/") && f.left.Add(-1) < 0 {
		return fmt.Errorf("backup: write %s: %w", name, syscall.ENOSPC)
	}
	return f.Target.Put(ctx, name, r, size)
}

// TestInterruptedBackupAndRestore: a full disk during a backup and a
// cancellation in the middle of a restore (what kill -9 does to its
// transaction) give clear errors, leave the previous points good, the next
// backup complete, and no partial tenant.
func TestInterruptedBackupAndRestore(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 60)
	dir := dirTarget(t)
	if _, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "after@example.net"}); err != nil {
		t.Fatal(err)
	}
	full := &fullDisk{Target: dir}
	full.left.Store(1)
	_, err := e.svc.Run(bg, e.acme.ID, full, RunOptions{Full: true})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("backup onto a full disk: %v", err)
	}
	if pts, _ := e.svc.List(bg, e.acme.ID, dir); len(pts) != 1 {
		t.Fatalf("%d points after a failed backup", len(pts))
	}
	if _, err := e.svc.Verify(bg, e.acme.ID, dir); err != nil {
		t.Fatalf("previous point after a failed backup: %v", err)
	}
	want := dump(t, db, e.acme.ID)
	if p, err := e.svc.Run(bg, e.acme.ID, dir, RunOptions{}); err != nil || p.Kind != KindIncremental {
		t.Fatalf("next backup: %+v %v", p.Header, err)
	}
	// A restore cancelled halfway leaves nothing (and the indexes it set
	// aside to build after loading are all there).
	dest := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	indexes := func() string {
		t.Helper()
		var out []string
		err := dest.Platform(bg, func(p *store.PlatformTx) error {
			rows, err := p.Query(bg, `SELECT name || ': ' || COALESCE(sql, '') FROM sqlite_schema WHERE type = 'index' ORDER BY name`)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				out = append(out, s)
			}
			return rows.Err()
		})
		if err != nil || len(out) < 20 {
			t.Fatalf("indexes: %d, %v", len(out), err)
		}
		return strings.Join(out, "\n")
	}
	schema := indexes()
	// Cancelled early (the first tables' rows), and late (after the
	// contacts' indexes were built, as soon as their rows were in).
	for _, part := range []float64{0.34, 0.9} {
		ctx, cancel := context.WithCancel(bg)
		_, err = e.svc.Restore(ctx, e.acme.ID, dir, RestoreOptions{IntoSlug: "acme", Dest: dest, Progress: func(done, total int64) {
			if float64(done) > part*float64(total) {
				cancel()
			}
		}})
		cancel()
		if err == nil {
			t.Fatalf("restore cancelled at %.0f%% succeeded", part*100)
		}
		var n int
		_ = dest.Platform(bg, func(p *store.PlatformTx) error { return p.QueryRow(bg, `SELECT count(*) FROM tenants`).Scan(&n) })
		if n != 0 || len(dump(t, dest, e.acme.ID)) != 0 {
			t.Fatalf("a restore cancelled at %.0f%% left rows", part*100)
		}
		if got := indexes(); got != schema {
			t.Fatalf("indexes after a restore cancelled at %.0f%%:\n%s\nwant\n%s", part*100, got, schema)
		}
	}
	if _, err := e.svc.Restore(bg, e.acme.ID, dir, RestoreOptions{IntoSlug: "acme", Dest: dest}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want, dump(t, dest, e.acme.ID))
	if got := indexes(); got != schema {
		t.Fatalf("indexes after a restore:\n%s\nwant\n%s", got, schema)
	}
}

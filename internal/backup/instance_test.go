package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestInstanceSnapshot: an encrypted VACUUM INTO snapshot of the SQLite
// store opens into a working store with the same tenants; one flipped byte
// fails it; PostgreSQL is refused with a pointer to its own tools.
func TestInstanceSnapshot(t *testing.T) {
	clk := newClock()
	mk := newMaster(t)
	dir := t.TempDir()
	db, err := store.Open(bg, store.Options{DataDir: dir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.Migrate(bg); err != nil {
		t.Fatal(err)
	}
	e := setup(t, db, mk, clk, 5)
	target := dirTarget(t)
	h, err := e.svc.Instance(bg, target, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".instance-backup-*")); len(m) != 0 {
		t.Fatalf("temporary snapshot left: %v", m)
	}
	ids, err := e.svc.Instances(bg, target)
	if err != nil || len(ids) != 1 || ids[0] != h.ID {
		t.Fatalf("instances: %v %v", ids, err)
	}
	data, _ := os.ReadFile(filepath.Join(target.Root, "instance", h.ID+".db.enc"))
	if bytes.Contains(data, []byte("SQLite format 3")) {
		t.Fatal("the snapshot is stored in clear")
	}
	var out bytes.Buffer
	if err := e.svc.OpenInstance(bg, target, h.ID, &out); err != nil {
		t.Fatal(err)
	}
	rdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rdir, "relais.db"), out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rdb, err := store.Open(bg, store.Options{DataDir: rdir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rdb.Close() }()
	compareDumps(t, dump(t, db, e.acme.ID), dump(t, rdb, e.acme.ID))
	bad := append([]byte(nil), data...)
	bad[len(bad)/3] ^= 1
	_ = os.WriteFile(filepath.Join(target.Root, "instance", h.ID+".db.enc"), bad, 0o600)
	if err := e.svc.OpenInstance(bg, target, h.ID, &bytes.Buffer{}); !errors.Is(err, ErrAuth) {
		t.Fatalf("altered snapshot: %v", err)
	}
	pg := storetest.OpenPostgres(t, storetest.Options{})
	if _, err := (&Service{DB: pg, Master: mk}).Instance(bg, target, t.TempDir()); err == nil {
		t.Fatal("instance snapshot of PostgreSQL accepted")
	}
}

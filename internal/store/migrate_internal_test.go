package store

import (
	"context"
	"strings"
	"testing"
)

// A store that applied a later migration before an earlier one landed (as
// happens when features reserve numbers in advance) reports the earlier one
// pending, is not ready, and gets it from the next `relais migrate`.
func TestOutOfOrderMigrationIsApplied(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := db.provider()
	if err != nil {
		t.Fatal(err)
	}
	srcs := p.ListSources()
	if len(srcs) < 3 {
		t.Fatalf("only %d migrations", len(srcs))
	}
	// Take back one in the middle, as if it had not existed yet.
	middle := srcs[len(srcs)/2].Version
	if _, err := p.ApplyVersion(ctx, middle, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(ctx); err == nil || !strings.Contains(err.Error(), "relais migrate") {
		t.Fatalf("a store with migration %d missing is ready: %v", middle, err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0] != middle {
		t.Fatalf("applied %v, want [%d]", applied, middle)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

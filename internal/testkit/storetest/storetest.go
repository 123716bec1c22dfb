// Package storetest runs a test against a fresh, migrated store on each
// dialect: SQLite in a temporary directory, and PostgreSQL in a new database
// of a throwaway server (internal/testkit/pgtest) shared by the package's
// tests. A package opts in with
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }
//
// Without PostgreSQL binaries the PostgreSQL half is skipped with a message,
// except when CI=true, where it fails.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/pgtest"
)

// shared is the package-wide PostgreSQL server of the running test binary.
// Test-only process state: set once by Main before any test runs.
var shared struct {
	server *pgtest.Server
	err    error
	seq    atomic.Int64
}

// Main starts the shared PostgreSQL server, runs the tests and stops it.
func Main(m *testing.M) int {
	srv, stop, err := pgtest.StartMain(pgtest.Options{})
	shared.server, shared.err = srv, err
	if err != nil && !errors.Is(err, pgtest.ErrNoBinaries) {
		fmt.Fprintln(os.Stderr, "storetest: start PostgreSQL:", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	return code
}

// Options tune the stores Run opens.
type Options struct {
	// Now is the store clock (time.Now when nil).
	Now func() time.Time
}

// Run calls fn once per dialect, in subtests named "sqlite" and "postgres".
func Run(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	RunWith(t, Options{}, fn)
}

// RunWith is Run with options.
func RunWith(t *testing.T, opts Options, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		fn(t, OpenSQLite(t, opts))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, OpenPostgres(t, opts))
	})
}

// OpenSQLite opens a migrated SQLite store in a temporary directory.
func OpenSQLite(t testing.TB, opts Options) *store.DB {
	t.Helper()
	return open(t, store.Options{DataDir: t.TempDir(), Now: opts.Now})
}

// OpenPostgres opens a migrated store in a new database of the shared
// server, connected as a role subject to row-level security.
func OpenPostgres(t testing.TB, opts Options) *store.DB {
	t.Helper()
	url := PostgresURL(t)
	return open(t, store.Options{URL: url, Now: opts.Now})
}

// PostgresURL creates a new database on the shared server and returns the
// application role's URL for it.
func PostgresURL(t testing.TB) string {
	t.Helper()
	if shared.server == nil {
		if errors.Is(shared.err, pgtest.ErrNoBinaries) || shared.err == nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("PostgreSQL binaries not found: install Debian's postgresql package (CI must run both dialects)")
			}
			t.Skip("PostgreSQL binaries not found (apt-get install postgresql); skipping the PostgreSQL half")
		}
		t.Fatalf("PostgreSQL test server failed to start: %v", shared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := shared.server.CreateDatabase(ctx, fmt.Sprintf("t%d_%d", os.Getpid(), shared.seq.Add(1)))
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return url
}

func open(t testing.TB, o store.Options) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, o)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// SuperuserURL returns the shared server's superuser URL for the database
// of appURL (one PostgresURL returned), for tests that must act beside the
// application role: create another role, inspect what it sees.
func SuperuserURL(t testing.TB, appURL string) string {
	t.Helper()
	if shared.server == nil {
		t.Fatal("storetest: no PostgreSQL server")
	}
	u, err := url.Parse(appURL)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return shared.server.SuperuserURL(strings.TrimPrefix(u.Path, "/"))
}

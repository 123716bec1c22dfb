package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// tenantEnv is a migrated store (SQLite in a temporary directory when the
// URL is "") with a file master key and one tenant made by the tenants
// service with the default policy.
type tenantEnv struct {
	db      *store.DB
	dir     string // the store's data directory (also holds master.key)
	master  *keys.FileMasterKey
	tenants *tenants.Service
	keyring *tenants.Keyring
	tenant  tenants.Tenant
}

// openTenantEnv opens the store at url (SQLite when ""), migrates it and
// creates the tenant name (slug); the store closes with the benchmark.
func openTenantEnv(b *testing.B, url, name, slug string) tenantEnv {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	db, err := store.Open(ctx, store.Options{URL: url, DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	t, err := ts.Create(ctx, name, slug)
	if err != nil {
		b.Fatal(err)
	}
	return tenantEnv{db: db, dir: dir, master: mk, tenants: ts, keyring: tenants.NewKeyring(db, mk, 0), tenant: t}
}

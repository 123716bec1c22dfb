package app

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/config"
)

// TestKeySourceInIndicators: app.Open plugs the key source into
// supervision, so the operator's indicators list the master key with its
// provider and each tenant's active data key with the provider that wraps
// it (DATA-2); a tenant whose keys are shredded has none.
func TestKeySourceInIndicators(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	a, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	acme, err := a.Tenants.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := a.Tenants.Create(ctx, "Gone", "gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tenants.DestroyKeys(ctx, gone.Slug, "test"); err != nil {
		t.Fatal(err)
	}
	rep, err := a.Monitor.Indicators.Report(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.KeysConfigured {
		t.Fatal("no key source configured")
	}
	var master, acmeKey bool
	for _, k := range rep.Keys {
		if k.Name == "master" && strings.HasPrefix(k.Provider, "file (") && !k.Created.IsZero() {
			master = true
		}
		if k.TenantID == acme.ID && strings.HasPrefix(k.Name, "tenant data key v1 (active") && strings.Contains(k.Provider, "wraps it: "+a.Master.ID()) {
			acmeKey = true
		}
		if k.TenantID == gone.ID && strings.HasPrefix(k.Name, "tenant data key v1 (active") {
			t.Errorf("a shredded tenant's key is reported active: %+v", k)
		}
	}
	if !master || !acmeKey {
		t.Fatalf("indicators' keys: %+v", rep.Keys)
	}
}

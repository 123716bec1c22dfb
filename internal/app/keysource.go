package app

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/store"
)

// keyInfo is monitoring's key source (DATA-2, KEY rows of the compliance
// report and the indicators): for the platform scope (""), the master key,
// its provider and age (since its last rotation); for a tenant, from
// tenants.KeyStatus, the age of its active data key with the provider that
// wraps it, and its per-tenant provider key (Vault transit, PKCS#11) when
// the provider keeps one per tenant. A tenant whose keys were shredded has
// none.
func (a *App) keyInfo(ctx context.Context, tenantID string) ([]monitor.KeyInfo, error) {
	provider := a.masterProvider()
	if tenantID == "" {
		created, rotated, err := a.masterKeyDates(ctx)
		if err != nil {
			return nil, err
		}
		return []monitor.KeyInfo{{Name: "master", Provider: provider, Created: created, Rotated: rotated}}, nil
	}
	st, err := a.Tenants.KeyStatus(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("keys of tenant %s: %w", tenantID, err)
	}
	if st.Shredded || len(st.Versions) == 0 {
		return nil, nil
	}
	var out []monitor.KeyInfo
	first := st.Versions[0].CreatedAt
	for _, v := range st.Versions {
		if v.State != "active" {
			continue
		}
		out = append(out, monitor.KeyInfo{Name: fmt.Sprintf("tenant data key v%d (active; per-contact keys sealed by it)", v.Version),
			Provider: provider + " (wraps it: " + v.MasterKeyID + ")", TenantID: tenantID, Created: first, Rotated: v.CreatedAt})
	}
	if mk := keys.ForTenant(a.Master, tenantID); mk != a.Master {
		out = append(out, monitor.KeyInfo{Name: "tenant master key " + mk.ID(), Provider: provider, TenantID: tenantID, Created: first})
	}
	return out, nil
}

// masterProvider describes the master key provider (never a secret).
func (a *App) masterProvider() string {
	k := a.Config.Keys
	switch k.Provider {
	case "vault":
		return "vault transit (" + k.Vault.Address + ", mount " + k.Vault.Mount + ")"
	case "pkcs11":
		return "pkcs11 (token " + k.PKCS11.TokenLabel + ")"
	default:
		return "file (" + a.Config.MasterKeyPath() + ")"
	}
}

// masterKeyDates returns when the platform started using a master key (its
// first operator audit event) and when the master key was last rotated
// (`relais keys rotate-master`; zero if never).
func (a *App) masterKeyDates(ctx context.Context) (created, rotated time.Time, err error) {
	err = a.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if err := audit.SequenceLog(ctx, p.Tenant("")); err != nil {
			return err
		}
		var first, last sql.NullInt64
		if err := p.QueryRow(ctx, `SELECT MIN(at), MAX(CASE WHEN action = 'key.master.rotate' THEN at END) FROM audit_events WHERE tenant_id = ''`).
			Scan(&first, &last); err != nil {
			return err
		}
		if first.Valid {
			created = store.FromMicros(first.Int64)
		} else {
			created = a.DB.Now()
		}
		if last.Valid {
			rotated = store.FromMicros(last.Int64)
		}
		return nil
	})
	if err != nil {
		return created, rotated, fmt.Errorf("master key dates: %w", err)
	}
	return created, rotated, nil
}

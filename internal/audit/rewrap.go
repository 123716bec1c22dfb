package audit

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// RewrapSigningKeys re-wraps every log's checkpoint signing key under mk's
// current version (`relais keys rotate-master`), so that the retired master
// key can be deleted. It returns how many keys it re-wrapped.
func RewrapSigningKeys(ctx context.Context, db *store.DB, mk keys.MasterKey) (int, error) {
	n := 0
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		type row struct {
			tenant, name string
			pub, wrapped []byte
		}
		var rs []row
		q, err := p.Query(ctx, `SELECT tenant_id, name, public_key, private_wrap FROM audit_signing_keys ORDER BY tenant_id`)
		if err != nil {
			return err
		}
		for q.Next() {
			var r row
			if err := q.Scan(&r.tenant, &r.name, &r.pub, &r.wrapped); err != nil {
				_ = q.Close()
				return err
			}
			rs = append(rs, r)
		}
		_ = q.Close()
		if err := q.Err(); err != nil {
			return err
		}
		for _, r := range rs {
			w, err := keys.Rewrap(ctx, mk, r.wrapped, keyAAD(r.name, r.pub))
			if err != nil {
				return fmt.Errorf("log %s: %w", r.name, err)
			}
			if _, err := p.Exec(ctx, `UPDATE audit_signing_keys SET private_wrap = $1, master_key_id = $2 WHERE tenant_id = $3`, w, mk.ID(), r.tenant); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit: re-wrap signing keys: %w", err)
	}
	return n, nil
}

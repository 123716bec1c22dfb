package jwtauth

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// RewrapSigningKeys re-wraps the private half of every stored token signing
// key under mk's current version (`relais keys rotate-master`), so that the
// retired master key can be deleted. It returns how many keys it re-wrapped.
func RewrapSigningKeys(ctx context.Context, db *store.DB, mk keys.MasterKey) (int, error) {
	n := 0
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		type row struct {
			kid     string
			wrapped []byte
		}
		var rs []row
		q, err := p.Query(ctx, `SELECT kid, private_wrap FROM signing_keys ORDER BY kid`)
		if err != nil {
			return err
		}
		for q.Next() {
			var r row
			if err := q.Scan(&r.kid, &r.wrapped); err != nil {
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
			w, err := keys.Rewrap(ctx, mk, r.wrapped, keyAAD(r.kid))
			if err != nil {
				return fmt.Errorf("signing key %s: %w", r.kid, err)
			}
			if _, err := p.Exec(ctx, `UPDATE signing_keys SET private_wrap = $1 WHERE kid = $2`, w, r.kid); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("jwtauth: re-wrap signing keys: %w", err)
	}
	return n, nil
}

package privacy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/relais-dev/relais/internal/store"
)

// ScanTenant calls fn with every stored value of every row of every table
// that holds the tenant's rows (keys, audit trail and credentials
// included), raw as stored, in key order. It backs the erasure and
// anonymisation checks, and Fingerprint.
func ScanTenant(ctx context.Context, db *store.DB, tenantID string, fn func(table string, row []any, cols []string) error) error {
	tabs, err := schemaTables(ctx, db)
	if err != nil {
		return err
	}
	for _, t := range tabs {
		var cols []column
		var names []string
		for _, c := range t.Cols {
			if c.Name != "tenant_id" {
				cols = append(cols, c)
				names = append(names, c.Name)
			}
		}
		if len(cols) == 0 {
			continue // a marker table holding only the tenant id (backup_restoring)
		}
		pk := pkOrder(t)
		keyAt := make([]int, len(pk))
		for i, k := range pk {
			for j, c := range cols {
				if c.Name == k {
					keyAt[i] = j
				}
			}
		}
		var after []any
		for {
			var page [][]any
			err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
				var err error
				page, err = readPage(ctx, tx, t, cols, after, 2000)
				return err
			})
			if err != nil {
				return err
			}
			for _, row := range page {
				if err := fn(t.Name, row, names); err != nil {
					return err
				}
			}
			if len(page) < 2000 {
				break
			}
			last := page[len(page)-1]
			after = make([]any, len(keyAt))
			for i, j := range keyAt {
				after[i] = last[j]
			}
		}
	}
	return nil
}

// Fingerprint returns, for every table holding rows of the tenant, the
// SHA-256 of those rows exactly as stored, and the row counts: two
// fingerprints are equal only if not a byte of the tenant changed.
func Fingerprint(ctx context.Context, db *store.DB, tenantID string) (map[string]string, error) {
	sums := map[string]*[2]any{}
	err := ScanTenant(ctx, db, tenantID, func(table string, row []any, cols []string) error {
		s, ok := sums[table]
		if !ok {
			s = &[2]any{sha256.New(), int64(0)}
			sums[table] = s
		}
		h := s[0].(interface{ Write([]byte) (int, error) })
		for i, v := range row {
			_, _ = fmt.Fprintf(h, "%s=%T:%v;", cols[i], v, v)
		}
		_, _ = h.Write([]byte{'\n'})
		s[1] = s[1].(int64) + 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for t, s := range sums {
		h := s[0].(interface{ Sum([]byte) []byte })
		out[t] = fmt.Sprintf("%d:%s", s[1].(int64), hex.EncodeToString(h.Sum(nil)))
	}
	return out, nil
}

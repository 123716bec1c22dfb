package audit

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/store"
)

// Test hooks: what someone with write access to the database (but not the
// master key) can compute.

// LeafOf returns the body digest and leaf hash a record's content gives.
func LeafOf(r Record) (body, leaf []byte) {
	body = bodyDigest(r)
	l := leafV2(r, body)
	return body, l[:]
}

// RewriteEvent sets event seq's action and recomputes every hash after it
// consistently: leaves, chain, head, and the whole stored tree.
func RewriteEvent(ctx context.Context, tx *store.Tx, seq int64, action string) error {
	recs, err := List(ctx, tx, 0, 1000)
	if err != nil {
		return err
	}
	prev := genesis()
	for i := range recs {
		r := &recs[i]
		if r.Seq == seq {
			r.Action = action
		}
		if r.Seq >= seq {
			r.BodyHash = bodyDigest(*r)
			leaf := leafV2(*r, r.BodyHash)
			r.LeafHash, r.Hash = leaf[:], chainHash(prev, leaf)
			if _, err := tx.Exec(ctx, `UPDATE audit_events SET action = $3, body_hash = $4, leaf_hash = $5, hash = $6 WHERE tenant_id = $1 AND seq = $2`,
				r.Seq, r.Action, r.BodyHash, r.LeafHash, r.Hash); err != nil {
				return err
			}
		}
		prev = r.Hash
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_heads SET hash = $2 WHERE tenant_id = $1`, prev); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM audit_tree_hashes WHERE tenant_id = $1`); err != nil {
		return err
	}
	n, err := treeSize(ctx, tx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_trees SET size = 0 WHERE tenant_id = $1`); err != nil {
		return err
	}
	got, _, err := extendTree(ctx, tx, n, n)
	if err != nil || got != n {
		return fmt.Errorf("rebuild the tree: %d of %d: %v", got, n, err)
	}
	return nil
}

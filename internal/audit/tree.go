package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/store"
)

// Record n of the tree (0-based) is the event with seq n+1.

// emptyRoot is the root hash of the empty tree (RFC 6962: SHA-256 of "").
func emptyRoot() tlog.Hash { return sha256.Sum256(nil) }

// compactRange is the tree of the first size leaves as its perfect
// subtrees, left to right (one per set bit of size, largest first): all
// that is needed to append leaves and to compute the root.
type compactRange struct {
	size   int64
	hashes []tlog.Hash
}

// push appends a leaf and returns the hashes the tlog layout stores for it,
// from tlog.StoredHashIndex(0, n) on (the leaf, then one per subtree it
// completes): the same as tlog.StoredHashesForRecordHash.
func (c *compactRange) push(leaf tlog.Hash) []tlog.Hash {
	stored := []tlog.Hash{leaf}
	h := leaf
	for n := c.size; n&1 == 1; n >>= 1 {
		last := len(c.hashes) - 1
		h = tlog.NodeHash(c.hashes[last], h)
		c.hashes = c.hashes[:last]
		stored = append(stored, h)
	}
	c.hashes = append(c.hashes, h)
	c.size++
	return stored
}

// root is the RFC 6962 root hash of the range.
func (c *compactRange) root() tlog.Hash {
	if len(c.hashes) == 0 {
		return emptyRoot()
	}
	h := c.hashes[len(c.hashes)-1]
	for i := len(c.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(c.hashes[i], h)
	}
	return h
}

// subtrees is how many perfect subtrees make up a tree of n leaves (the
// number of set bits of n; 0 for n <= 0).
func subtrees(n int64) int {
	c := 0
	for ; n > 0; n &= n - 1 {
		c++
	}
	return c
}

// compactIndexes are the stored hash indexes of the perfect subtrees that
// make up the tree of size n, left to right.
func compactIndexes(n int64) []int64 {
	out := make([]int64, 0, subtrees(n))
	var lo int64
	for l := 62; l >= 0; l-- {
		if n&(1<<l) != 0 {
			out = append(out, tlog.StoredHashIndex(l, lo>>l))
			lo += 1 << l
		}
	}
	return out
}

// newCompactRange builds the compact range of size n from its subtree
// hashes (as read at compactIndexes(n)).
func newCompactRange(n int64, hashes []tlog.Hash) (compactRange, error) {
	if len(hashes) != subtrees(n) {
		return compactRange{}, fmt.Errorf("audit: a tree of %d leaves has %d subtrees, got %d hashes", n, subtrees(n), len(hashes))
	}
	return compactRange{size: n, hashes: append([]tlog.Hash(nil), hashes...)}, nil
}

// hashReader reads stored tree hashes from the store (tlog.HashReader).
type hashReader struct {
	ctx context.Context
	tx  *store.Tx
}

// maxINList bounds one IN (...) list.
const maxINList = 500

// ReadHashes returns the hashes at the given stored indexes.
func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for start := 0; start < len(indexes); start += maxINList {
		part := indexes[start:min(start+maxINList, len(indexes))]
		var q strings.Builder
		q.WriteString(`SELECT idx, hash FROM audit_tree_hashes WHERE tenant_id = $1 AND idx IN (`)
		args := make([]any, len(part))
		for i, idx := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("$" + strconv.Itoa(i+2))
			args[i] = idx
		}
		q.WriteString(")")
		rows, err := r.tx.Query(r.ctx, q.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("audit: read tree hashes: %w", err)
		}
		found := make(map[int64]tlog.Hash, len(part))
		for rows.Next() {
			var idx int64
			var h []byte
			if err := rows.Scan(&idx, &h); err != nil {
				_ = rows.Close()
				return nil, fmt.Errorf("audit: read tree hashes: %w", err)
			}
			if len(h) != tlog.HashSize {
				_ = rows.Close()
				return nil, fmt.Errorf("audit: tree hash %d is %d bytes", idx, len(h))
			}
			found[idx] = tlog.Hash(h)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("audit: read tree hashes: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("audit: read tree hashes: %w", err)
		}
		for i, idx := range part {
			h, ok := found[idx]
			if !ok {
				return nil, fmt.Errorf("audit: tree hash %d is missing", idx)
			}
			out[start+i] = h
		}
	}
	return out, nil
}

// treeSize returns how many leaves the stored tree covers.
func treeSize(ctx context.Context, tx *store.Tx) (int64, error) {
	var n int64
	err := tx.QueryRow(ctx, `SELECT size FROM audit_trees WHERE tenant_id = $1`).Scan(&n)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit: read the tree size: %w", err)
	}
	return n, nil
}

// lockTree takes the log's tree row (creating it), so that one writer at a
// time extends the tree, and returns its size.
func lockTree(ctx context.Context, tx *store.Tx) (int64, error) {
	const take = `UPDATE audit_trees SET size = size WHERE tenant_id = $1 RETURNING size`
	var n int64
	err := tx.QueryRow(ctx, take).Scan(&n)
	if errors.Is(err, store.ErrNotFound) {
		if _, err = tx.Exec(ctx, `INSERT INTO audit_trees (tenant_id, size, updated_at) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING`,
			store.Micros(tx.Now())); err != nil {
			return 0, fmt.Errorf("audit: start the tree: %w", err)
		}
		err = tx.QueryRow(ctx, take).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("audit: lock the tree: %w", err)
	}
	return n, nil
}

// loadRange reads the compact range of the stored tree of size n.
func loadRange(ctx context.Context, tx *store.Tx, n int64) (compactRange, error) {
	hs, err := hashReader{ctx, tx}.ReadHashes(compactIndexes(n))
	if err != nil {
		return compactRange{}, err
	}
	return newCompactRange(n, hs)
}

// chainAt returns the chain hash of event seq (genesis for 0).
func chainAt(ctx context.Context, tx *store.Tx, seq int64) ([]byte, error) {
	if seq == 0 {
		return genesis(), nil
	}
	var h []byte
	if err := tx.QueryRow(ctx, `SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2`, seq).Scan(&h); err != nil {
		return nil, fmt.Errorf("audit: read event %d: %w", seq, err)
	}
	return h, nil
}

// extendTree computes and stores the tree hashes of the events after the
// tree's current size, up to upto and at most limit of them, after checking
// each event's leaf and chain: the tree never covers an altered event. It
// returns the new size and the compact range at that size.
func extendTree(ctx context.Context, tx *store.Tx, upto, limit int64) (int64, compactRange, error) {
	size, err := lockTree(ctx, tx)
	if err != nil {
		return 0, compactRange{}, err
	}
	cr, err := loadRange(ctx, tx, size)
	if err != nil {
		return 0, compactRange{}, fmt.Errorf("audit: the stored tree of %d events is incomplete: %w", size, err)
	}
	if size >= upto {
		return size, cr, nil
	}
	end := min(upto, size+limit)
	prev, err := chainAt(ctx, tx, size)
	if err != nil {
		return 0, compactRange{}, err
	}
	rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`, size, end)
	if err != nil {
		return 0, compactRange{}, fmt.Errorf("audit: read the log: %w", err)
	}
	var pending []any // idx, hash pairs
	want := size + 1
	for rows.Next() {
		r, err := scanRecord(rows, tx.TenantID())
		if err != nil {
			_ = rows.Close()
			return 0, compactRange{}, err
		}
		if r.Seq != want {
			_ = rows.Close()
			return 0, compactRange{}, tampered(tx.TenantID(), Problem{Seq: want, Reason: fmt.Sprintf("event %d is missing (next stored event is %d)", want, r.Seq)})
		}
		leaf, reason := checkLeaf(r)
		if reason != "" {
			_ = rows.Close()
			return 0, compactRange{}, tampered(tx.TenantID(), Problem{Seq: r.Seq, Reason: reason})
		}
		if chain := chainHash(prev, leaf); !bytes.Equal(chain, r.Hash) {
			_ = rows.Close()
			return 0, compactRange{}, tampered(tx.TenantID(), Problem{Seq: r.Seq, Reason: fmt.Sprintf("event %d does not link to event %d: an event before it was altered, removed or reordered", r.Seq, r.Seq-1)})
		}
		idx := tlog.StoredHashIndex(0, r.Seq-1)
		for i, h := range cr.push(leaf) {
			pending = append(pending, idx+int64(i), h[:])
		}
		prev, want = r.Hash, want+1
	}
	if err := rows.Close(); err != nil {
		return 0, compactRange{}, fmt.Errorf("audit: read the log: %w", err)
	}
	if err := rows.Err(); err != nil {
		return 0, compactRange{}, fmt.Errorf("audit: read the log: %w", err)
	}
	if want <= end {
		return 0, compactRange{}, tampered(tx.TenantID(), Problem{Seq: want, Reason: fmt.Sprintf("event %d is missing: the log head says %d events", want, upto)})
	}
	if err := insertHashes(ctx, tx, pending); err != nil {
		return 0, compactRange{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_trees SET size = $2, updated_at = $3 WHERE tenant_id = $1`, end, store.Micros(tx.Now())); err != nil {
		return 0, compactRange{}, fmt.Errorf("audit: move the tree: %w", err)
	}
	return end, cr, nil
}

// insertHashes writes (idx, hash) pairs, several rows per statement.
func insertHashes(ctx context.Context, tx *store.Tx, pairs []any) error {
	const perStatement = 250
	for start := 0; start < len(pairs); start += 2 * perStatement {
		part := pairs[start:min(start+2*perStatement, len(pairs))]
		var q strings.Builder
		q.WriteString(`INSERT INTO audit_tree_hashes (tenant_id, idx, hash) VALUES `)
		for i := 0; i < len(part); i += 2 {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "($1, $%d, $%d)", i+2, i+3)
		}
		if _, err := tx.Exec(ctx, q.String(), part...); err != nil {
			return fmt.Errorf("audit: store tree hashes: %w", err)
		}
	}
	return nil
}

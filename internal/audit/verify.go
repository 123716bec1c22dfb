package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// Problem is the first inconsistency verification found: the event (Seq)
// or the checkpoint (Checkpoint, its tree size) concerned, and why.
type Problem struct {
	Seq        int64  `json:"seq"`
	Checkpoint int64  `json:"checkpoint,omitempty"`
	Reason     string `json:"reason"`
}

// Report is the result of verifying a log.
type Report struct {
	TenantID string   `json:"tenant_id"`
	Events   int64    `json:"events"`
	OK       bool     `json:"ok"`
	Problem  *Problem `json:"problem,omitempty"`
	// TreeSize is how many events the stored Merkle tree covers (the
	// checkpoint job extends it); their stored tree hashes were checked.
	TreeSize int64 `json:"tree_size"`
	// Checkpoints is how many signed checkpoints were checked: signature,
	// and root against the tree recomputed from the events.
	Checkpoints int `json:"checkpoints"`
	// Purged is how many events have had their body removed by retention.
	Purged int64 `json:"purged"`
	// Key is the log's note verifier key ("" before the first checkpoint).
	Key string `json:"key,omitempty"`
	// KeyAuthenticated: the stored private key unwrapped under the master
	// key and matched the public key (only Service.Verify can check this).
	KeyAuthenticated bool `json:"key_authenticated"`
}

// ErrTampered reports a log that does not verify; errors.As gives the
// *TamperError with the problem.
var ErrTampered = errors.New("audit: the log does not verify")

// TamperError is returned when an operation finds the log altered and
// refuses to go on (sign a checkpoint over it, export it, purge it).
type TamperError struct {
	TenantID string
	Problem  Problem
}

// Error says what is wrong and what to do.
func (e *TamperError) Error() string {
	return "audit: the log does not verify: " + e.Problem.Reason + "; investigate with `relais audit verify`"
}

// Is makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

func tampered(tenant string, p Problem) error { return &TamperError{TenantID: tenant, Problem: p} }

// verifyChunk is how many events one step of verification reads.
const verifyChunk = 20000

// runner runs fn in a transaction on the log being verified.
type runner func(ctx context.Context, fn func(*store.Tx) error) error

// verifyConfig is what a verification may use beyond the store.
type verifyConfig struct {
	master keys.MasterKey // authenticates the signing key when set
	pinned string         // a verifier key the log's key must equal
}

// Verify sequences the queued events of tx's log (a read-write
// transaction), then recomputes the log and reports the first
// inconsistency: each event's leaf (its content, or for a purged event its
// header and body digest) and chain hash; that purged events are covered by
// a later purge report; the stored Merkle tree hashes; every signed
// checkpoint's signature (with the stored public key) and root against the
// recomputed tree; the log head; and checkpoints or a tree beyond the last
// event (events removed at the end). Use Service.Verify to also
// authenticate the signing key with the master key.
func Verify(ctx context.Context, tx *store.Tx) (Report, error) {
	if err := SequenceLog(ctx, tx); err != nil {
		return Report{}, err
	}
	return verifyLog(ctx, tx.TenantID(), func(ctx context.Context, fn func(*store.Tx) error) error { return fn(tx) }, verifyConfig{})
}

type storedHash struct {
	idx int64
	h   []byte
}

type purgeRef struct {
	seq, upto     int64
	cutoffs       map[string]int64
	defaultCutoff int64
}

type walker struct {
	rep      *Report
	prev     []byte
	before   []byte // the chain hash the last event links to
	next     int64  // the next expected seq
	cr       compactRange
	treeSize int64
	stored   []storedHash
	si       int
	cps      []Checkpoint
	ci       int
	ver      note.Verifier
	purges   []purgeRef
}

func (w *walker) fail(p Problem) { w.rep.Problem = &p }

func verifyLog(ctx context.Context, tenant string, run runner, cfg verifyConfig) (Report, error) {
	rep := Report{TenantID: tenant}
	w := &walker{rep: &rep, prev: genesis(), before: genesis(), next: 1}
	err := run(ctx, func(tx *store.Tx) error { return w.setup(ctx, tx, cfg) })
	if err != nil {
		return rep, err
	}
	if rep.Problem == nil {
		w.checkpointsAt(0)
	}
	for rep.Problem == nil && !rep.OK {
		if err := run(ctx, func(tx *store.Tx) error { return w.step(ctx, tx) }); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (w *walker) setup(ctx context.Context, tx *store.Tx, cfg verifyConfig) error {
	key, err := loadKey(ctx, tx)
	switch {
	case errors.Is(err, ErrNoKey):
		if cfg.pinned != "" {
			w.fail(Problem{Reason: "the log has no signing key, but a public key was given: the key was removed from the store"})
		}
	case err != nil:
		return err
	default:
		if w.rep.Key, err = key.verifierKey(); err != nil {
			return err
		}
		if w.ver, err = key.verifier(); err != nil {
			return err
		}
		if cfg.pinned != "" && !key.sameKey(cfg.pinned) {
			w.fail(Problem{Reason: fmt.Sprintf("the log's signing key %s is not the given public key: the key in the store was replaced", w.rep.Key)})
			return nil
		}
		if cfg.master != nil {
			if _, err := key.open(ctx, cfg.master); err != nil {
				w.fail(Problem{Reason: "the log's signing key cannot be trusted: " + err.Error()})
				return nil
			}
			w.rep.KeyAuthenticated = true
		}
	}
	if w.treeSize, err = treeSize(ctx, tx); err != nil {
		return err
	}
	w.rep.TreeSize = w.treeSize
	if w.cps, err = Checkpoints(ctx, tx); err != nil {
		return err
	}
	w.purges, err = loadPurges(ctx, tx)
	return err
}

// loadPurges reads the purge reports (verified as events when the walk
// reaches them).
func loadPurges(ctx context.Context, tx *store.Tx) ([]purgeRef, error) {
	rows, err := tx.Query(ctx, `SELECT seq, details FROM audit_events WHERE tenant_id = $1 AND action = 'audit.purge' AND purged_at IS NULL ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("audit: read purge reports: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []purgeRef
	for rows.Next() {
		var p purgeRef
		var details string
		if err := rows.Scan(&p.seq, &details); err != nil {
			return nil, fmt.Errorf("audit: read purge reports: %w", err)
		}
		var d purgeDetails
		if json.Unmarshal([]byte(details), &d) != nil {
			continue // an altered report is reported when the walk reaches it
		}
		p.upto, p.cutoffs, p.defaultCutoff = d.UptoSeq, d.Cutoffs, d.DefaultCutoff
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read purge reports: %w", err)
	}
	return out, nil
}

// step verifies the next chunk of events, or, at the head, finishes.
func (w *walker) step(ctx context.Context, tx *store.Tx) error {
	headSeq, _, err := readHead(ctx, tx)
	if err != nil {
		return err
	}
	walked := w.next - 1
	if walked >= headSeq {
		return w.finish(ctx, tx)
	}
	end := min(headSeq, walked+verifyChunk)
	if err := w.loadStored(ctx, tx, walked, min(end, w.treeSize)); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`, walked, end)
	if err != nil {
		return fmt.Errorf("audit: read the log: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		r, err := scanRecord(rows, tx.TenantID())
		if err != nil {
			return err
		}
		if w.event(r); w.rep.Problem != nil {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read the log: %w", err)
	}
	_ = rows.Close()
	if w.next <= end {
		var after sql.NullInt64
		if err := tx.QueryRow(ctx, `SELECT MIN(seq) FROM audit_events WHERE tenant_id = $1 AND seq > $2`, w.next).Scan(&after); err != nil {
			return fmt.Errorf("audit: read the log: %w", err)
		}
		if after.Valid {
			w.fail(Problem{Seq: w.next, Reason: fmt.Sprintf("event %d is missing (next stored event is %d)", w.next, after.Int64)})
		} else {
			w.fail(Problem{Seq: w.next, Reason: fmt.Sprintf("the log head says %d events, %d are stored: events at the end were removed or added", headSeq, w.next-1)})
		}
	}
	return nil
}

// loadStored reads the stored tree hashes of records [from, to).
func (w *walker) loadStored(ctx context.Context, tx *store.Tx, from, to int64) error {
	w.stored, w.si = w.stored[:0], 0
	if from >= to {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT idx, hash FROM audit_tree_hashes WHERE tenant_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx`,
		tlog.StoredHashIndex(0, from), tlog.StoredHashIndex(0, to))
	if err != nil {
		return fmt.Errorf("audit: read tree hashes: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var s storedHash
		if err := rows.Scan(&s.idx, &s.h); err != nil {
			return fmt.Errorf("audit: read tree hashes: %w", err)
		}
		w.stored = append(w.stored, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read tree hashes: %w", err)
	}
	return nil
}

func (w *walker) event(r Record) {
	if r.Seq != w.next {
		w.fail(Problem{Seq: w.next, Reason: fmt.Sprintf("event %d is missing (next stored event is %d)", w.next, r.Seq)})
		return
	}
	leaf, reason := checkLeaf(r)
	if reason != "" {
		if from := movedFrom(r); from != 0 {
			reason = fmt.Sprintf("event %d holds the content of event %d: events were reordered", r.Seq, from)
		}
		w.fail(Problem{Seq: r.Seq, Reason: reason})
		return
	}
	if !bytes.Equal(chainHash(w.prev, leaf), r.Hash) {
		w.fail(Problem{Seq: r.Seq, Reason: fmt.Sprintf("event %d does not link to event %d: an event before it was altered, removed or reordered", r.Seq, r.Seq-1)})
		return
	}
	if r.PurgedAt != nil {
		w.rep.Purged++
		if !w.justified(r) {
			w.fail(Problem{Seq: r.Seq, Reason: fmt.Sprintf("event %d has no body, but no later purge report covers it: its body was removed outside retention", r.Seq)})
			return
		}
	}
	stored := w.cr.push(leaf)
	if r.Seq <= w.treeSize {
		base := tlog.StoredHashIndex(0, r.Seq-1)
		for i, h := range stored {
			idx := base + int64(i)
			if w.si >= len(w.stored) || w.stored[w.si].idx != idx {
				w.fail(Problem{Seq: r.Seq, Reason: fmt.Sprintf("tree hash %d (event %d, level %d) is missing from the stored tree", idx, r.Seq, i)})
				return
			}
			if !bytes.Equal(w.stored[w.si].h, h[:]) {
				w.fail(Problem{Seq: r.Seq, Reason: fmt.Sprintf("tree hash %d (event %d, level %d) does not match the events: the stored tree was altered", idx, r.Seq, i)})
				return
			}
			w.si++
		}
	}
	w.before, w.prev, w.next = w.prev, r.Hash, w.next+1
	w.rep.Events++
	w.checkpointsAt(r.Seq)
}

// movedFrom returns the seq, near r's, whose leaf r's content and stored
// leaf hash match (0 if none): the mark of events moved to other seqs.
func movedFrom(r Record) int64 {
	seq := r.Seq
	for d := int64(-64); d <= 64; d++ {
		if d == 0 || seq+d < 1 {
			continue
		}
		r.Seq = seq + d
		if _, reason := checkLeaf(r); reason == "" {
			return r.Seq
		}
	}
	return 0
}

// justified reports whether a purge report after r covers it: r was in the
// tree it purged and older than the cutoff of its category.
func (w *walker) justified(r Record) bool {
	at := store.Micros(r.At)
	for _, p := range w.purges {
		if p.seq <= r.Seq || p.upto < r.Seq {
			continue
		}
		cutoff, ok := p.cutoffs[r.Category]
		if !ok {
			cutoff = p.defaultCutoff
		}
		if at < cutoff {
			return true
		}
	}
	return false
}

// checkpointsAt checks the checkpoints of tree size n (the walk has just
// pushed event n).
func (w *walker) checkpointsAt(n int64) {
	for w.rep.Problem == nil && w.ci < len(w.cps) && w.cps[w.ci].Size <= n {
		cp := w.cps[w.ci]
		w.ci++
		w.rep.Checkpoints++
		if w.ver == nil {
			w.fail(Problem{Checkpoint: cp.Size, Reason: fmt.Sprintf("checkpoint at tree size %d cannot be checked: the log's signing key was removed from the store", cp.Size)})
			return
		}
		_, size, root, err := openCheckpoint([]byte(cp.Note), w.ver)
		if err != nil {
			w.fail(Problem{Checkpoint: cp.Size, Reason: fmt.Sprintf("checkpoint at tree size %d: %v", cp.Size, err)})
			return
		}
		if size != cp.Size || root != cp.Root {
			w.fail(Problem{Checkpoint: cp.Size, Reason: fmt.Sprintf("checkpoint at tree size %d: the stored size or root hash differs from the signed note", cp.Size)})
			return
		}
		if got := w.cr.root(); root != got {
			w.fail(Problem{Checkpoint: cp.Size, Reason: fmt.Sprintf("checkpoint at tree size %d (root %s, signed %s) does not match the tree recomputed from events 1 to %d (root %s): events up to %d were rewritten",
				cp.Size, base64.StdEncoding.EncodeToString(root[:]), cp.CreatedAt.Format("2006-01-02T15:04:05Z07:00"), cp.Size, base64.StdEncoding.EncodeToString(got[:]), cp.Size)})
			return
		}
	}
}

// finish runs the end-of-log checks in one statement's snapshot.
func (w *walker) finish(ctx context.Context, tx *store.Tx) error {
	var headSeq, maxSeq sql.NullInt64
	var headHash []byte
	err := tx.QueryRow(ctx, `SELECT (SELECT seq FROM audit_heads WHERE tenant_id = $1), (SELECT hash FROM audit_heads WHERE tenant_id = $1),
		(SELECT MAX(seq) FROM audit_events WHERE tenant_id = $1)`).Scan(&headSeq, &headHash, &maxSeq)
	if err != nil {
		return fmt.Errorf("audit: read the log head: %w", err)
	}
	walked := w.next - 1
	if headSeq.Int64 > walked {
		return nil // appended since: walk on
	}
	if !headSeq.Valid {
		headHash = genesis()
	}
	head := headSeq.Int64
	switch {
	case maxSeq.Valid && maxSeq.Int64 > head:
		w.fail(Problem{Seq: head + 1, Reason: fmt.Sprintf("the log head says %d events but %d are stored: an event was added at the end, or the head was moved back", head, maxSeq.Int64)})
	case !bytes.Equal(w.before, headHash) && !bytes.Equal(w.prev, headHash):
		// The head holds the hash the last event links to (or, in logs
		// last written before format 2, the last event's own).
		w.fail(Problem{Seq: head, Reason: "the log head hash does not match the last event"})
	case w.ci < len(w.cps):
		cp := w.cps[w.ci]
		w.fail(Problem{Seq: head + 1, Checkpoint: cp.Size, Reason: fmt.Sprintf("checkpoint at tree size %d is beyond the log's %d events: events at the end were removed", cp.Size, head)})
	case w.treeSize > head:
		w.fail(Problem{Seq: head + 1, Reason: fmt.Sprintf("the stored tree covers %d events, the log has %d: events at the end were removed", w.treeSize, head)})
	default:
		w.rep.OK = true
	}
	return nil
}

// readHead returns the log head (0 and genesis for an empty log).
func readHead(ctx context.Context, tx *store.Tx) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_heads WHERE tenant_id = $1`).Scan(&seq, &hash)
	if errors.Is(err, store.ErrNotFound) {
		return 0, genesis(), nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("audit: read the log head: %w", err)
	}
	return seq, hash, nil
}

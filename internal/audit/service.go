package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// Service runs the audit trail's operations that span transactions:
// checkpoints, verification, proofs, export, search and retention. A
// tenant id "" means the operator's log. It is safe for concurrent use, and
// several nodes may run it on one store.
type Service struct {
	DB *store.DB
	// Master wraps the logs' signing keys.
	Master keys.MasterKey
	// Logger receives the background job's warnings (discarded when nil).
	Logger *slog.Logger
}

// treeBatch is how many events one transaction adds to a tree.
const treeBatch = 5000

// inLog runs fn in a transaction on one log: the tenant's, or the
// operator's in platform scope.
func (s *Service) inLog(ctx context.Context, tenantID string, fn func(*store.Tx) error) error {
	return inLog(ctx, s.DB, tenantID, fn)
}

// inLog runs fn in a transaction of db on one log: the tenant's, or the
// operator's in platform scope.
func inLog(ctx context.Context, db *store.DB, tenantID string, fn func(*store.Tx) error) error {
	if tenantID == "" {
		return db.Platform(ctx, func(p *store.PlatformTx) error { return fn(p.Tenant("")) })
	}
	return db.Tenant(tenantID).Tx(ctx, fn)
}

// PublicKey returns the note verifier key of the log (name+hash+key, the
// form `relais audit verify --key` reads), creating the log's signing key
// on first use.
func (s *Service) PublicKey(ctx context.Context, tenantID string) (string, error) {
	var vk string
	err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		k, err := ensureKey(ctx, tx, s.Master)
		if err != nil {
			return err
		}
		vk, err = k.verifierKey()
		return err
	})
	return vk, err
}

// Checkpoint extends the log's Merkle tree to its head (checking each new
// event's leaf and chain first) and signs a checkpoint of it, unless one
// of that size exists, which it returns. The signing key is created on
// first use. An altered event stops it with a *TamperError.
func (s *Service) Checkpoint(ctx context.Context, tenantID, reason string) (Checkpoint, error) {
	if _, err := s.PublicKey(ctx, tenantID); err != nil {
		return Checkpoint{}, err
	}
	// The key's creation event, and everything committed before now.
	if _, err := Sequence(ctx, s.DB, tenantID); err != nil {
		return Checkpoint{}, err
	}
	for {
		var cp Checkpoint
		done := false
		err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
			head, _, err := readHead(ctx, tx)
			if err != nil {
				return err
			}
			size, cr, err := extendTree(ctx, tx, head, treeBatch)
			if err != nil || size < head {
				return err
			}
			k, err := loadKey(ctx, tx)
			if err != nil {
				return err
			}
			signer, err := k.open(ctx, s.Master)
			if err != nil {
				return err
			}
			cp, err = signCheckpoint(ctx, tx, signer, size, cr.root(), reason)
			done = err == nil
			return err
		})
		if err != nil || done {
			return cp, err
		}
	}
}

// LogState is one log's head and newest checkpoint.
type LogState struct {
	TenantID       string `json:"tenant_id"`
	Events         int64  `json:"events"`
	CheckpointSize int64  `json:"checkpoint_size"` // -1: none
}

// Logs lists every log (the operator's is tenant id "") with its head and
// newest checkpoint, in platform scope, once the queued events are
// sequenced (a log whose queue cannot be sequenced is logged and listed
// as it is; verifying it reports why).
func (s *Service) Logs(ctx context.Context) ([]LogState, error) {
	if _, err := SequenceAll(ctx, s.DB); err != nil {
		s.logger().WarnContext(ctx, "audit sequencing failed", "error", err)
	}
	var out []LogState
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT h.tenant_id, h.seq,
			COALESCE((SELECT MAX(c.tree_size) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id), -1)
			FROM audit_heads h ORDER BY h.tenant_id`)
		if err != nil {
			return fmt.Errorf("audit: list logs: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var l LogState
			if err := rows.Scan(&l.TenantID, &l.Events, &l.CheckpointSize); err != nil {
				return fmt.Errorf("audit: list logs: %w", err)
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

// CheckpointAll signs a checkpoint of every log that grew since its last
// one (ReasonPeriodic) and returns how many it signed. A log that does not
// verify is logged and skipped; the others go on.
func (s *Service) CheckpointAll(ctx context.Context) (int, error) {
	logs, err := s.Logs(ctx)
	if err != nil {
		return 0, err
	}
	signed := 0
	var errs []error
	for _, l := range logs {
		if l.Events <= l.CheckpointSize {
			continue
		}
		if _, err := s.Checkpoint(ctx, l.TenantID, ReasonPeriodic); err != nil {
			s.logger().WarnContext(ctx, "audit checkpoint failed", "tenant", l.TenantID, "error", err)
			errs = append(errs, fmt.Errorf("log %q: %w", l.TenantID, err))
			continue
		}
		signed++
	}
	return signed, errors.Join(errs...)
}

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// RunOptions configure Service.Run.
type RunOptions struct {
	// CheckpointEvery is how often logs that grew are checkpointed
	// (DefaultCheckpointEvery when zero).
	CheckpointEvery time.Duration
	// PurgeEvery is how often retention runs (DefaultPurgeEvery when zero);
	// retention runs only when Retention is set.
	PurgeEvery time.Duration
	// Retention returns a log's retention policy (the tenant's, or the
	// platform's for "").
	Retention func(ctx context.Context, tenantID string) (Retention, error)
}

// Defaults of RunOptions.
const (
	DefaultCheckpointEvery = time.Minute
	DefaultPurgeEvery      = 24 * time.Hour
)

// Run is the audit trail's background job, for the server: it checkpoints
// every log that grew, every CheckpointEvery, and applies retention every
// PurgeEvery, until ctx ends. Failures are logged and retried next time.
func (s *Service) Run(ctx context.Context, o RunOptions) error {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = DefaultPurgeEvery
	}
	cp := time.NewTicker(o.CheckpointEvery)
	defer cp.Stop()
	pg := time.NewTicker(o.PurgeEvery)
	defer pg.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cp.C:
			_, _ = s.CheckpointAll(ctx) // failures are logged
		case <-pg.C:
			if o.Retention != nil {
				s.purgeAll(ctx, o.Retention)
			}
		}
	}
}

func (s *Service) purgeAll(ctx context.Context, policy func(context.Context, string) (Retention, error)) {
	logs, err := s.Logs(ctx)
	if err != nil {
		s.logger().WarnContext(ctx, "audit retention: list logs", "error", err)
		return
	}
	for _, l := range logs {
		ret, err := policy(ctx, l.TenantID)
		if err == nil {
			_, err = s.Purge(ctx, l.TenantID, ret, false)
		}
		if err != nil {
			s.logger().WarnContext(ctx, "audit retention failed", "tenant", l.TenantID, "error", err)
		}
	}
}

// VerifyOptions tune Service.Verify.
type VerifyOptions struct {
	// Key, when set, is the verifier key the log's signing key must be (as
	// kept by the auditor from `relais audit pubkey`).
	Key string
}

// Verify checks the whole log as Verify does, in steps of short
// transactions (so that appends go on meanwhile), and also authenticates
// the log's signing key with the master key (and against opts.Key).
func (s *Service) Verify(ctx context.Context, tenantID string, opts VerifyOptions) (Report, error) {
	if _, err := Sequence(ctx, s.DB, tenantID); err != nil {
		return Report{}, err
	}
	run := func(ctx context.Context, fn func(*store.Tx) error) error { return s.inLog(ctx, tenantID, fn) }
	return verifyLog(ctx, tenantID, run, verifyConfig{master: s.Master, pinned: opts.Key})
}

// InclusionProof proves that an event's leaf is in a checkpointed tree.
type InclusionProof struct {
	Seq      int64       `json:"seq"`
	TreeSize int64       `json:"tree_size"`
	Leaf     tlog.Hash   `json:"leaf_hash"`
	Root     tlog.Hash   `json:"root_hash"`
	Proof    []tlog.Hash `json:"proof"`
}

// Check verifies the proof (tlog.CheckRecord).
func (p InclusionProof) Check() error {
	if err := tlog.CheckRecord(p.Proof, p.TreeSize, p.Root, p.Seq-1, p.Leaf); err != nil {
		return fmt.Errorf("audit: event %d is not in the tree of size %d: %w", p.Seq, p.TreeSize, err)
	}
	return nil
}

// ConsistencyProof proves that the tree of size Old is a prefix of the tree
// of size New: nothing checkpointed at Old was changed or removed since.
type ConsistencyProof struct {
	Old     int64       `json:"old_size"`
	OldRoot tlog.Hash   `json:"old_root"`
	New     int64       `json:"new_size"`
	NewRoot tlog.Hash   `json:"new_root"`
	Proof   []tlog.Hash `json:"proof"`
}

// Check verifies the proof (tlog.CheckTree).
func (p ConsistencyProof) Check() error {
	if err := tlog.CheckTree(p.Proof, p.New, p.NewRoot, p.Old, p.OldRoot); err != nil {
		return fmt.Errorf("audit: the tree of size %d is not a prefix of the tree of size %d: %w", p.Old, p.New, err)
	}
	return nil
}

// ProveInclusion proves event seq is in the tree of the given size (read
// from the stored tree hashes; size at most the tree's current size).
func ProveInclusion(ctx context.Context, tx *store.Tx, seq, size int64) (InclusionProof, error) {
	p := InclusionProof{Seq: seq, TreeSize: size}
	if err := checkSizes(ctx, tx, seq, size); err != nil {
		return p, err
	}
	r := hashReader{ctx, tx}
	var err error
	if p.Proof, err = tlog.ProveRecord(size, seq-1, r); err != nil {
		return p, fmt.Errorf("audit: prove event %d: %w", seq, err)
	}
	if p.Root, err = tlog.TreeHash(size, r); err != nil {
		return p, fmt.Errorf("audit: tree root: %w", err)
	}
	hs, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, seq-1)})
	if err != nil {
		return p, err
	}
	p.Leaf = hs[0]
	return p, nil
}

// ProveConsistency proves the tree of size old is a prefix of the tree of
// size new (both at most the tree's current size).
func ProveConsistency(ctx context.Context, tx *store.Tx, old, new int64) (ConsistencyProof, error) {
	p := ConsistencyProof{Old: old, New: new}
	if err := checkSizes(ctx, tx, old, new); err != nil {
		return p, err
	}
	r := hashReader{ctx, tx}
	var err error
	if p.Proof, err = tlog.ProveTree(new, old, r); err != nil {
		return p, fmt.Errorf("audit: prove consistency: %w", err)
	}
	if p.OldRoot, err = tlog.TreeHash(old, r); err != nil {
		return p, fmt.Errorf("audit: tree root: %w", err)
	}
	if p.NewRoot, err = tlog.TreeHash(new, r); err != nil {
		return p, fmt.Errorf("audit: tree root: %w", err)
	}
	return p, nil
}

func checkSizes(ctx context.Context, tx *store.Tx, small, size int64) error {
	n, err := treeSize(ctx, tx)
	if err != nil {
		return err
	}
	if small < 0 || small > size || size > n || size < 1 {
		return fmt.Errorf("audit: need 0 < %d <= %d <= %d events in the tree (a checkpoint extends the tree)", small, size, n)
	}
	return nil
}

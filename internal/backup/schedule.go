package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
)

// changeBytesEstimate is the size counted per pending change when the
// change volume is compared with policy.backup.incremental_max_bytes: a
// contact row in the backup format is about this long.
const changeBytesEstimate = 512

// Scheduler runs each tenant's backups, verifications, restore tests and
// retention on the tenant's policy (BAK-4, BAK-5, BAK-6). Several nodes
// may run one: a lease in backup_state lets one node at a time work on a
// tenant.
type Scheduler struct {
	Svc    *Service
	Target Target
	// Tenants lists the tenants to back up (the active ones).
	Tenants func(ctx context.Context) ([]string, error)
	// Policy is a tenant's effective backup policy.
	Policy func(ctx context.Context, tenantID string) (config.BackupPolicy, error)
	// Node names this node in leases.
	Node string
	// PGP, when not empty, also encrypts each point to these keys.
	PGP openpgp.EntityList
	// KeepSets is how many sets are kept per tenant (10 when 0).
	KeepSets int
	// Lease is how long a node holds a tenant (1 hour when 0).
	Lease time.Duration
}

// Run ticks every interval (one minute when 0) until ctx ends.
func (s *Scheduler) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.Svc.log().Error("backup scheduler", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick does the work due now for every tenant, and returns the errors met
// (joined); one tenant's failure does not stop the others.
func (s *Scheduler) Tick(ctx context.Context) error {
	ids, err := s.Tenants(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := s.tenant(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

type schedState struct {
	lastFull, lastPoint, lastVerify, lastRestore int64
}

func (s *Scheduler) lease(ctx context.Context, tenantID string) (schedState, bool, error) {
	var st schedState
	now := s.Svc.now()
	lease := s.Lease
	if lease <= 0 {
		lease = time.Hour
	}
	got := false
	err := s.Svc.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO backup_state (tenant_id, target) VALUES ($1, $2) ON CONFLICT (tenant_id, target) DO NOTHING`, s.Target.ID()); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `UPDATE backup_state SET lease_owner = $2, lease_until = $3
			WHERE tenant_id = $1 AND target = $4 AND (lease_owner = '' OR lease_owner = $2 OR lease_until < $5)`,
			s.Node, store.Micros(now.Add(lease)), s.Target.ID(), store.Micros(now))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if got = n == 1; !got {
			return nil
		}
		return tx.QueryRow(ctx, `SELECT last_full_at, last_point_at, last_verify_at, last_restore_at FROM backup_state
			WHERE tenant_id = $1 AND target = $2`, s.Target.ID()).Scan(&st.lastFull, &st.lastPoint, &st.lastVerify, &st.lastRestore)
	})
	return st, got, err
}

func (s *Scheduler) release(ctx context.Context, tenantID string) {
	_ = s.Svc.DB.Tenant(tenantID).Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE backup_state SET lease_owner = '', lease_until = 0 WHERE tenant_id = $1 AND target = $2 AND lease_owner = $3`,
			s.Target.ID(), s.Node)
		return err
	})
}

func due(last int64, every config.Duration, now time.Time) bool {
	return last == 0 || now.Sub(store.FromMicros(last)) >= every.D()
}

func (s *Scheduler) tenant(ctx context.Context, tenantID string) error {
	pol, err := s.Policy(ctx, tenantID)
	if err != nil {
		return err
	}
	st, ok, err := s.lease(ctx, tenantID)
	if err != nil || !ok {
		return err
	}
	defer s.release(ctx, tenantID)
	now := s.Svc.now()
	var errs []error
	switch {
	case due(st.lastFull, pol.FullEvery, now):
		if _, err := s.Svc.Run(ctx, tenantID, s.Target, RunOptions{Full: true, PGP: s.PGP}); err != nil {
			errs = append(errs, err)
		} else {
			if err := s.Svc.Prune(ctx, tenantID, s.Target, s.KeepSets); err != nil {
				errs = append(errs, err)
			}
			if _, err := s.Svc.PruneChangeLog(ctx, tenantID); err != nil {
				errs = append(errs, err)
			}
		}
	default:
		pending, err := s.Svc.PendingChanges(ctx, tenantID)
		if err != nil {
			return err
		}
		if pending > 0 && (due(st.lastPoint, pol.IncrementalEvery, now) || pending*changeBytesEstimate >= pol.IncrementalMaxBytes) {
			if _, err := s.Svc.Run(ctx, tenantID, s.Target, RunOptions{PGP: s.PGP}); err != nil {
				errs = append(errs, err)
			} else if _, err := s.Svc.PruneChangeLog(ctx, tenantID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if due(st.lastVerify, pol.VerifyEvery, now) {
		if _, err := s.Svc.Verify(ctx, tenantID, s.Target); err != nil {
			errs = append(errs, err)
		}
	}
	if due(st.lastRestore, pol.RestoreTestEvery, now) {
		if _, err := s.Svc.RestoreTest(ctx, tenantID, s.Target); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Prune deletes the tenant's oldest sets beyond the keep newest
// (retention). Chunks of a deleted set that a kept point reuses stay; the
// kept points carry the keys to read them.
func (s *Service) Prune(ctx context.Context, tenantID string, t Target, keep int) error {
	if keep <= 0 {
		keep = 10
	}
	names, err := t.List(ctx, tenantPrefix(tenantID)+"sets/")
	if err != nil {
		return err
	}
	bySet := map[string][]string{}
	for _, n := range names {
		rest := strings.TrimPrefix(n, tenantPrefix(tenantID)+"sets/")
		set, _, _ := strings.Cut(rest, "/")
		bySet[set] = append(bySet[set], n)
	}
	// Sets in time order (set ids start with their UTC time); those without
	// a manifest (interrupted fulls) count as old.
	var sets []string
	for id, objs := range bySet {
		for _, n := range objs {
			if strings.HasSuffix(n, ".manifest") {
				sets = append(sets, id)
				break
			}
		}
	}
	sort.Strings(sets)
	kept := map[string]bool{}
	if len(sets) > keep {
		sets = sets[len(sets)-keep:]
	}
	for _, id := range sets {
		kept[id] = true
	}
	// What the kept points reference.
	used := map[string]bool{}
	for _, id := range sets {
		for _, n := range bySet[id] {
			if !strings.HasSuffix(n, ".manifest") {
				continue
			}
			h, body, _, err := s.openManifest(ctx, t, n)
			if err != nil {
				return fmt.Errorf("backup: retention stopped, a kept point does not open: %w", err)
			}
			for _, e := range body.Tables {
				for _, c := range append(append([]ChunkRef(nil), e.Chunks...), e.Deletes...) {
					used[chunkName(tenantID, refSet(h, c), c.ID)] = true
				}
			}
		}
	}
	var old []string
	for id, objs := range bySet {
		if kept[id] {
			continue
		}
		var drop []string
		for _, n := range objs {
			if !used[n] {
				drop = append(drop, n)
			}
		}
		if len(drop) == 0 {
			continue
		}
		if err := deleteSet(ctx, t, drop); err != nil {
			return err
		}
		old = append(old, id)
	}
	if len(old) == 0 {
		return nil
	}
	sort.Strings(old)
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "backup.prune", ObjectType: "backup_target",
			ObjectID: t.ID(), Details: map[string]any{"sets_deleted": old}})
		return err
	})
}

// deleteSet deletes a set's manifests first (so that it stops being a
// set at once), then its other objects.
func deleteSet(ctx context.Context, t Target, names []string) error {
	sort.SliceStable(names, func(i, j int) bool {
		return strings.HasSuffix(names[i], ".manifest") && !strings.HasSuffix(names[j], ".manifest")
	})
	for _, n := range names {
		if err := t.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAll deletes every backup object of the tenant in the target (for
// the tenant's destruction, issue 9) and returns how many were deleted.
func (s *Service) DeleteAll(ctx context.Context, tenantID string, t Target) (int, error) {
	names, err := t.List(ctx, tenantPrefix(tenantID))
	if err != nil {
		return 0, err
	}
	if err := deleteSet(ctx, t, names); err != nil {
		return 0, err
	}
	return len(names), nil
}

// Status is a tenant's backup state on its most recently used target: what
// supervision reports (backup age, BAK-5 verification, BAK-6 restore test).
type Status struct {
	Target          string
	LastFull        time.Time
	LastPoint       time.Time
	LastVerify      time.Time
	VerifyOK        bool
	LastRestoreTest time.Time
	RestoreOK       bool
}

// Status reads the tenant's backup state; ok is false when the tenant was
// never backed up.
func (s *Service) Status(ctx context.Context, tenantID string) (st Status, ok bool, err error) {
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var full, point, verify, restore int64
		err := tx.QueryRow(ctx, `SELECT target, last_full_at, last_point_at, last_verify_at, last_verify_ok, last_restore_at, last_restore_ok
			FROM backup_state WHERE tenant_id = $1 ORDER BY last_point_at DESC LIMIT 1`).
			Scan(&st.Target, &full, &point, &verify, &st.VerifyOK, &restore, &st.RestoreOK)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		at := func(us int64) time.Time {
			if us == 0 {
				return time.Time{}
			}
			return store.FromMicros(us)
		}
		st.LastFull, st.LastPoint, st.LastVerify, st.LastRestoreTest = at(full), at(point), at(verify), at(restore)
		return nil
	})
	if err != nil {
		return Status{}, false, fmt.Errorf("backup: status: %w", err)
	}
	return st, ok, nil
}

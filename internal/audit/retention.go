package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
)

// MinRetention is the shortest retention Purge accepts.
const MinRetention = 24 * time.Hour

// ActionPurge is the action of a purge report event (REV-1). Purge reports
// are never purged: verification reads them to check each purged event.
const ActionPurge = "audit.purge"

// Retention is how long events are kept (LOG-3): Default for every
// category but those in PerCategory.
type Retention struct {
	Default     time.Duration            `json:"default"`
	PerCategory map[string]time.Duration `json:"per_category,omitempty"`
}

// RetentionFrom is the retention of an effective audit policy: Retention
// for every category, AccessRetention for reads of personal data.
func RetentionFrom(p config.AuditPolicy) Retention {
	return Retention{Default: p.Retention.D(), PerCategory: map[string]time.Duration{CategoryAccess: p.AccessRetention.D()}}
}

func (r Retention) of(category string) time.Duration {
	if d, ok := r.PerCategory[category]; ok {
		return d
	}
	return r.Default
}

func (r Retention) check() error {
	if r.Default < MinRetention {
		return fmt.Errorf("audit: retention %v is below the minimum of %v", r.Default, MinRetention)
	}
	for c, d := range r.PerCategory {
		if d < MinRetention {
			return fmt.Errorf("audit: retention %v for category %s is below the minimum of %v", d, c, MinRetention)
		}
	}
	return nil
}

// PurgedCategory is what a purge removed in one category.
type PurgedCategory struct {
	Category  string        `json:"category"`
	Retention time.Duration `json:"retention"`
	Cutoff    time.Time     `json:"cutoff"` // events before it were purged
	Count     int64         `json:"count"`
	FirstSeq  int64         `json:"first_seq,omitempty"`
	LastSeq   int64         `json:"last_seq,omitempty"`
	// Ranges is how many runs of consecutive seqs the purged events form.
	Ranges int `json:"ranges"`
}

// PurgeReport is the result of a purge (REV-1): what was purged, how, and
// the report event that records it.
type PurgeReport struct {
	TenantID string    `json:"tenant_id"`
	DryRun   bool      `json:"dry_run"`
	At       time.Time `json:"at"`
	// UptoSeq: only events in the signed tree (seq <= UptoSeq) are purged.
	UptoSeq    int64            `json:"upto_seq"`
	Categories []PurgedCategory `json:"categories"`
	Total      int64            `json:"total"`
	// How is what a purge does to an event.
	How string `json:"how"`
	// ReportSeq is the seq of the purge report event (0 on a dry run).
	ReportSeq int64 `json:"report_seq,omitempty"`
	// Checkpoint is the tree size signed after the purge (0 on a dry run).
	Checkpoint int64 `json:"checkpoint,omitempty"`
}

// purgeDetails is the part of a purge report event that verification reads.
type purgeDetails struct {
	UptoSeq       int64            `json:"upto_seq"`
	Cutoffs       map[string]int64 `json:"cutoffs"`
	DefaultCutoff int64            `json:"default_cutoff"`
}

const purgeHow = "bodies removed (action, actor, object, address, user agent, request id, details); seq, time, category, body digest, leaf and chain hashes kept, so the tree, the chain and every checkpoint still verify"

// Purge applies retention to a log (LOG-3): events older than their
// category's retention, and already in a signed checkpoint, lose their body
// (see the package documentation); their header and hashes stay, so the
// chain, the tree and every earlier checkpoint still verify. Each purge
// writes a report event (REV-1: per category, the cutoff, how many, which
// seq range) and a new checkpoint. Before removing anything it checks each
// body against its digest: an altered log is not purged (*TamperError).
// Format 1 events and purge reports are never purged. With dryRun nothing
// is written.
func (s *Service) Purge(ctx context.Context, tenantID string, ret Retention, dryRun bool) (PurgeReport, error) {
	rep := PurgeReport{TenantID: tenantID, DryRun: dryRun, How: purgeHow}
	if err := ret.check(); err != nil {
		return rep, err
	}
	if !dryRun {
		// Sign what exists first: the purge only touches checkpointed events.
		if _, err := s.Checkpoint(ctx, tenantID, ReasonPurge); err != nil {
			return rep, err
		}
	}
	err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		if err := SequenceLog(ctx, tx); err != nil {
			return err
		}
		rep.Categories, rep.Total = nil, 0
		now := tx.Now().UTC().Truncate(time.Microsecond)
		rep.At = now
		var err error
		if rep.UptoSeq, err = treeSize(ctx, tx); err != nil {
			return err
		}
		if dryRun {
			if rep.UptoSeq, _, err = readHead(ctx, tx); err != nil {
				return err
			}
		}
		cutoff := func(cat string) int64 { return store.Micros(now.Add(-ret.of(cat))) }
		latest := cutoff("")
		for _, d := range ret.PerCategory {
			latest = max(latest, store.Micros(now.Add(-d)))
		}
		rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE tenant_id = $1 AND seq <= $2 AND at < $3
			AND purged_at IS NULL AND body_hash IS NOT NULL AND action <> 'audit.purge' ORDER BY seq`, rep.UptoSeq, latest)
		if err != nil {
			return fmt.Errorf("audit: read expired events: %w", err)
		}
		byCat := map[string]*PurgedCategory{}
		lastSeq := map[string]int64{}
		for rows.Next() {
			r, err := scanRecord(rows, tx.TenantID())
			if err != nil {
				_ = rows.Close()
				return err
			}
			if store.Micros(r.At) >= cutoff(r.Category) {
				continue
			}
			if _, reason := checkLeaf(r); reason != "" {
				_ = rows.Close()
				return tampered(tx.TenantID(), Problem{Seq: r.Seq, Reason: reason})
			}
			pc := byCat[r.Category]
			if pc == nil {
				pc = &PurgedCategory{Category: r.Category, Retention: ret.of(r.Category), Cutoff: store.FromMicros(cutoff(r.Category)), FirstSeq: r.Seq}
				byCat[r.Category] = pc
				lastSeq[r.Category] = -1
			}
			if lastSeq[r.Category] != r.Seq-1 {
				pc.Ranges++
			}
			pc.Count++
			pc.LastSeq, lastSeq[r.Category] = r.Seq, r.Seq
			rep.Total++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: read expired events: %w", err)
		}
		cats := make([]string, 0, len(byCat))
		for c := range byCat {
			cats = append(cats, c)
		}
		slices.Sort(cats)
		for _, c := range cats {
			rep.Categories = append(rep.Categories, *byCat[c])
		}
		if dryRun || rep.Total == 0 {
			return nil
		}
		det := map[string]any{
			"upto_seq": rep.UptoSeq, "default_cutoff": cutoff(""), "how": purgeHow, "total": rep.Total,
			"cutoffs": map[string]int64{}, "categories": rep.Categories,
		}
		for _, pc := range rep.Categories {
			det["cutoffs"].(map[string]int64)[pc.Category] = store.Micros(pc.Cutoff)
			if _, err := tx.Exec(ctx, `UPDATE audit_events SET action = '', actor_type = '', actor_id = '', object_type = '', object_id = '',
				ip = '', user_agent = '', request_id = '', details = '', purged_at = $2
				WHERE tenant_id = $1 AND seq <= $3 AND category = $4 AND at < $5
				AND purged_at IS NULL AND body_hash IS NOT NULL AND action <> 'audit.purge'`,
				store.Micros(now), rep.UptoSeq, pc.Category, store.Micros(pc.Cutoff)); err != nil {
				return fmt.Errorf("audit: purge %s events: %w", pc.Category, err)
			}
		}
		ev := Event{Category: CategoryAdmin, Action: ActionPurge, ObjectType: "audit_log", ObjectID: tx.TenantID(), Details: det}
		if MetaFrom(ctx).Actor.Type == "" {
			ev.Actor = Actor{Type: ActorSystem, ID: "retention"}
		}
		r, err := AppendSequenced(ctx, tx, ev)
		if err != nil {
			return err
		}
		rep.ReportSeq = r.Seq
		return nil
	})
	if err != nil || dryRun || rep.Total == 0 {
		return rep, err
	}
	cp, err := s.Checkpoint(ctx, tenantID, ReasonPurge)
	if err != nil {
		return rep, err
	}
	rep.Checkpoint = cp.Size
	return rep, nil
}

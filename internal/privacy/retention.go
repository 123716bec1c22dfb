package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Retention rule kinds (PRIV-3): each is a purpose's retention period,
// set by the tenant (the data controller).
const (
	// RuleInactiveContacts: contacts with no granted consent and no
	// activity (no change, no message) for the period are erased.
	RuleInactiveContacts = "inactive_contacts"
	// RuleMessageContent: the recipient and content of messages older than
	// the period are removed (their states and times kept as statistics).
	RuleMessageContent = "message_content"
	// RuleBouncedContacts: contacts bounced for the period are erased.
	RuleBouncedContacts = "bounced_contacts"
)

// RetentionRule is one tenant rule.
type RetentionRule struct {
	Kind      string    `json:"kind"`
	Months    int       `json:"months"`
	Enabled   bool      `json:"enabled"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RuleReport is what one rule matched and did.
type RuleReport struct {
	Kind    string    `json:"kind"`
	Months  int       `json:"months"`
	Cutoff  time.Time `json:"cutoff"`
	Matched int64     `json:"matched"`
	Applied int64     `json:"applied"`
	Method  string    `json:"method"`
}

// RetentionReport is the report of one run over a tenant.
type RetentionReport struct {
	TenantID string       `json:"tenant_id"`
	DryRun   bool         `json:"dry_run"`
	At       time.Time    `json:"at"`
	Rules    []RuleReport `json:"rules"`
}

// SetRetentionRule creates or changes a tenant's rule (months 1 to 1200).
func (s *Service) SetRetentionRule(ctx context.Context, tenantID, kind string, months int, enabled bool) (RetentionRule, error) {
	switch kind {
	case RuleInactiveContacts, RuleMessageContent, RuleBouncedContacts:
	default:
		return RetentionRule{}, fmt.Errorf("%w: kind must be inactive_contacts, message_content or bounced_contacts", ErrInvalid)
	}
	if months < 1 || months > 1200 {
		return RetentionRule{}, fmt.Errorf("%w: months must be 1 to 1200", ErrInvalid)
	}
	r := RetentionRule{Kind: kind, Months: months, Enabled: enabled, UpdatedAt: s.now()}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO retention_rules (tenant_id, kind, months, enabled, updated_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, kind) DO UPDATE SET months = $3, enabled = $4, updated_at = $5`, kind, months, enabled, store.Micros(r.UpdatedAt)); err != nil {
			return fmt.Errorf("privacy: store the rule: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "retention.rule.set", ObjectType: "retention_rule", ObjectID: kind,
			Details: map[string]any{"months": months, "enabled": enabled}})
		return err
	})
	return r, err
}

// RetentionRules lists a tenant's rules.
func (s *Service) RetentionRules(ctx context.Context, tenantID string) ([]RetentionRule, error) {
	var out []RetentionRule
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT kind, months, enabled, updated_at FROM retention_rules WHERE tenant_id = $1 ORDER BY kind`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r RetentionRule
			var at int64
			if err := rows.Scan(&r.Kind, &r.Months, &r.Enabled, &at); err != nil {
				return err
			}
			r.UpdatedAt = store.FromMicros(at)
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// candidates returns the ids a rule matches (at most limit).
func candidates(ctx context.Context, tx *store.Tx, kind string, cutoff int64, limit int) ([]string, error) {
	var q string
	switch kind {
	case RuleInactiveContacts:
		q = `SELECT c.id FROM contacts c WHERE c.tenant_id = $1 AND c.erased_at IS NULL AND c.updated_at < $2
			AND NOT EXISTS (SELECT 1 FROM consents s WHERE s.tenant_id = c.tenant_id AND s.contact_id = c.id AND s.status = 'granted')
			AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = c.tenant_id AND m.contact_id = c.id AND m.accepted_at >= $2)
			ORDER BY c.id LIMIT $3`
	case RuleBouncedContacts:
		q = `SELECT id FROM contacts WHERE tenant_id = $1 AND erased_at IS NULL AND status = 'bounced' AND updated_at < $2 ORDER BY id LIMIT $3`
	case RuleMessageContent:
		q = `SELECT id FROM messages WHERE tenant_id = $1 AND accepted_at < $2 AND content_purged_at IS NULL
			AND state NOT IN ('queued', 'sending', 'held') ORDER BY id LIMIT $3`
	default:
		return nil, fmt.Errorf("%w: unknown rule %s", ErrInvalid, kind)
	}
	return messageIDs(ctx, tx, q, cutoff, limit)
}

func countCandidates(ctx context.Context, tx *store.Tx, kind string, cutoff int64) (int64, error) {
	ids, err := candidates(ctx, tx, kind, cutoff, 1<<30)
	return int64(len(ids)), err
}

// ApplyRetention applies the tenant's enabled rules (or, with dryRun,
// only counts what they would delete) and returns the report. Each erased
// contact gets its own audit event (reason "retention"); each batch of
// message contents one event naming the messages; the run one summary.
func (s *Service) ApplyRetention(ctx context.Context, tenantID string, dryRun bool) (RetentionReport, error) {
	rules, err := s.RetentionRules(ctx, tenantID)
	if err != nil {
		return RetentionReport{}, err
	}
	now := s.now()
	rep := RetentionReport{TenantID: tenantID, DryRun: dryRun, At: now, Rules: []RuleReport{}}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return rep, err
	}
	for _, r := range rules {
		if !r.Enabled {
			continue
		}
		rr := RuleReport{Kind: r.Kind, Months: r.Months, Cutoff: now.AddDate(0, -r.Months, 0), Method: "erasure (personal fields deleted, anonymous statistics kept)"}
		if r.Kind == RuleMessageContent {
			rr.Method = "message recipient and content overwritten (states and times kept)"
		}
		cutoff := store.Micros(rr.Cutoff)
		if err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			rr.Matched, err = countCandidates(ctx, tx, r.Kind, cutoff)
			return err
		}); err != nil {
			return rep, err
		}
		for !dryRun {
			var ids []string
			err := s.inSecureTx(ctx, tenantID, func(tx *store.Tx) error {
				var err error
				if ids, err = candidates(ctx, tx, r.Kind, cutoff, 200); err != nil || len(ids) == 0 {
					return err
				}
				if r.Kind == RuleMessageContent {
					if _, _, err := clearMessages(ctx, tx, cr, ids, "retention"); err != nil {
						return err
					}
					_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "retention.message_content", ObjectType: "message",
						Details: map[string]any{"count": len(ids), "message_ids": ids, "months": r.Months}})
					return err
				}
				for _, id := range ids {
					if _, err := s.eraseTx(ctx, tx, cr, id, false, "retention:"+r.Kind); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return rep, err
			}
			rr.Applied += int64(len(ids))
			if len(ids) == 0 {
				break
			}
		}
		rep.Rules = append(rep.Rules, rr)
	}
	if dryRun || len(rep.Rules) > 0 {
		action := "retention.apply"
		if dryRun {
			action = "retention.dry_run"
		}
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: action, ObjectType: "tenant", ObjectID: tenantID,
				Details: map[string]any{"rules": rep.Rules}})
			return err
		})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// RunOptions configure Run.
type RunOptions struct {
	// Every is the period of the job (6 hours when 0).
	Every time.Duration
	// DryRun only reports.
	DryRun bool
	Logger *slog.Logger
}

// Run is the privacy background job for the server: every period it
// clears the messages enqueued for contacts erased meanwhile
// (SweepErased), applies every tenant's retention rules and destroys the
// tenants whose confirmed destruction is due, until ctx ends. Failures are logged and
// retried next time.
func (s *Service) Run(ctx context.Context, o RunOptions) error {
	every := o.Every
	if every <= 0 {
		every = 6 * time.Hour
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.runOnce(ctx, o.DryRun, log)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) runOnce(ctx context.Context, dryRun bool, log *slog.Logger) {
	list, err := s.Tenants.List(ctx)
	if err != nil {
		log.Warn("privacy job: list tenants", "err", err)
		return
	}
	for _, t := range list {
		if !dryRun {
			if n, err := s.SweepErased(ctx, t.ID); err != nil {
				log.Warn("privacy job: sweep", "tenant", t.Slug, "err", err)
			} else if n > 0 {
				log.Info("privacy job: messages of erased contacts cleared", "tenant", t.Slug, "count", n)
			}
		}
		rep, err := s.ApplyRetention(ctx, t.ID, dryRun)
		if err != nil {
			log.Warn("privacy job: retention", "tenant", t.Slug, "err", err)
			continue
		}
		for _, r := range rep.Rules {
			if r.Matched > 0 {
				log.Info("retention", "tenant", t.Slug, "rule", r.Kind, "matched", r.Matched, "applied", r.Applied, "dry_run", dryRun)
			}
		}
	}
	if n, err := s.RunDueDestructions(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("privacy job: destructions", "destroyed", n, "err", err)
	} else if n > 0 {
		log.Info("privacy job: tenants destroyed", "count", n)
	}
}

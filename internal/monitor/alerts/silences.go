package alerts

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Silence mutes the notifications of a rule's alerts (of one key when Key
// is set) in a tenant ("" for the platform) until EndsAt. Silenced alerts
// still fire, resolve and are recorded.
type Silence struct {
	TenantID  string    `json:"tenant_id"`
	ID        string    `json:"id"`
	Rule      string    `json:"rule"`
	Key       string    `json:"key,omitempty"`
	EndsAt    time.Time `json:"ends_at"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// MaxSilence bounds a silence's duration: a forgotten silence must end.
const MaxSilence = 30 * 24 * time.Hour

// AddSilence records a silence, audited in the tenant's (or operator's)
// trail. rules is the list of known rule names.
func AddSilence(ctx context.Context, db *store.DB, s Silence, rules []string, now time.Time) (Silence, error) {
	known := false
	for _, r := range rules {
		known = known || r == s.Rule
	}
	switch {
	case !known:
		return Silence{}, fmt.Errorf("%w: unknown rule %q", ErrInvalid, s.Rule)
	case !s.EndsAt.After(now) || s.EndsAt.Sub(now) > MaxSilence:
		return Silence{}, fmt.Errorf("%w: ends_at must be in the future, within 30 days", ErrInvalid)
	case s.Reason == "" || len(s.Reason) > 500 || len(s.Key) > 500:
		return Silence{}, fmt.Errorf("%w: a reason (at most 500 characters) is required", ErrInvalid)
	}
	m := audit.MetaFrom(ctx).Actor
	s.ID, s.CreatedAt, s.CreatedBy = uuid.NewString(), now.UTC(), m.Type+":"+m.ID
	if m.Type == "" {
		s.CreatedBy = "system:relais"
	}
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `INSERT INTO monitor_silences (tenant_id, id, rule, dedup_key, ends_at, reason, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, s.TenantID, s.ID, s.Rule, s.Key, store.Micros(s.EndsAt), s.Reason, store.Micros(now), s.CreatedBy); err != nil {
			return err
		}
		_, err := audit.Append(ctx, p.Tenant(s.TenantID), audit.Event{Category: audit.CategoryAdmin, Action: "alert.silence",
			ObjectType: "silence", ObjectID: s.ID, Details: map[string]any{"rule": s.Rule, "key": s.Key, "ends_at": s.EndsAt.UTC().Format(time.RFC3339), "reason": s.Reason}})
		return err
	})
	if err != nil {
		return Silence{}, fmt.Errorf("alerts: add silence: %w", err)
	}
	return s, nil
}

// Silences lists a tenant's silences still in force at now.
func Silences(ctx context.Context, db *store.DB, tenantID string, now time.Time) ([]Silence, error) {
	out := []Silence{}
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		all, err := activeSilences(ctx, p, now)
		for _, s := range all {
			if s.TenantID == tenantID {
				out = append(out, s)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: silences: %w", err)
	}
	return out, nil
}

func activeSilences(ctx context.Context, p *store.PlatformTx, now time.Time) ([]Silence, error) {
	rows, err := p.Query(ctx, `SELECT tenant_id, id, rule, dedup_key, ends_at, reason, created_at, created_by FROM monitor_silences
		WHERE ends_at > $1 ORDER BY created_at`, store.Micros(now))
	if err != nil {
		return nil, fmt.Errorf("alerts: read silences: %w", err)
	}
	defer rows.Close()
	var out []Silence
	for rows.Next() {
		var s Silence
		var ends, created int64
		if err := rows.Scan(&s.TenantID, &s.ID, &s.Rule, &s.Key, &ends, &s.Reason, &created, &s.CreatedBy); err != nil {
			return nil, err
		}
		s.EndsAt, s.CreatedAt = store.FromMicros(ends), store.FromMicros(created)
		out = append(out, s)
	}
	return out, rows.Err()
}

func silenced(list []Silence, k openKey) bool {
	for _, s := range list {
		if s.TenantID == k.tenant && s.Rule == k.rule && (s.Key == "" || s.Key == k.key) {
			return true
		}
	}
	return false
}

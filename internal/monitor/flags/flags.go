// Package flags holds per-tenant feature flags (DEV-1): switched by the API
// or the CLI without a restart, audited, and read by the rest of the code
// through one small interface, [Reader].
//
// Only the flags of [Known] exist; each has a default used when the tenant
// has not set it. Reads go to the store (one indexed row), so a switch
// takes effect on every node at the next read.
package flags

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Flag names.
const (
	// SMSSending lets the tenant's SMS messages be handed to a connector;
	// off, they are held back (suppressed with reason "flag sms_sending off").
	SMSSending = "sms_sending"
	// ExperimentalCampaignIndicators adds the per-campaign deliverability
	// and transit time to the tenant's indicators report (experimental).
	ExperimentalCampaignIndicators = "experimental_campaign_indicators"
)

// Def describes one flag.
type Def struct {
	Name        string `json:"name"`
	Default     bool   `json:"default"`
	Description string `json:"description"`
}

// Known is the catalogue of flags.
var Known = []Def{
	{SMSSending, true, "SMS messages are handed to the SMS connector (off: held back)."},
	{ExperimentalCampaignIndicators, false, "Experimental: per-campaign deliverability and transit time in the indicators report."},
}

// def finds a flag by name.
func def(name string) (Def, bool) {
	for _, d := range Known {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// Reader is what code that depends on a flag needs.
type Reader interface {
	Enabled(ctx context.Context, tenantID, name string) (bool, error)
}

// ErrUnknown reports a flag name not in [Known].
var ErrUnknown = errors.New("flags: unknown flag")

// State is one flag's value for a tenant.
type State struct {
	Name      string     `json:"name"`
	Enabled   bool       `json:"enabled"`
	Default   bool       `json:"default"`
	Set       bool       `json:"set"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	UpdatedBy string     `json:"updated_by,omitempty"`
}

// Service reads and switches flags.
type Service struct {
	DB *store.DB
}

// Enabled reports a flag's value for the tenant (its default when unset).
func (s *Service) Enabled(ctx context.Context, tenantID, name string) (bool, error) {
	d, ok := def(name)
	if !ok {
		return false, fmt.Errorf("%w %q", ErrUnknown, name)
	}
	var on bool
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT enabled FROM feature_flags WHERE tenant_id = $1 AND name = $2`, name).Scan(&on)
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		return d.Default, nil
	}
	if err != nil {
		return false, fmt.Errorf("flags: read %s: %w", name, err)
	}
	return on, nil
}

// List returns every known flag's state for the tenant.
func (s *Service) List(ctx context.Context, tenantID string) ([]State, error) {
	set := map[string]State{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT name, enabled, updated_at, updated_by FROM feature_flags WHERE tenant_id = $1`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st State
			var at int64
			if err := rows.Scan(&st.Name, &st.Enabled, &at, &st.UpdatedBy); err != nil {
				return err
			}
			t := store.FromMicros(at)
			st.UpdatedAt, st.Set = &t, true
			set[st.Name] = st
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("flags: list: %w", err)
	}
	out := make([]State, 0, len(Known))
	for _, d := range Known {
		st, ok := set[d.Name]
		if !ok {
			st = State{Name: d.Name, Enabled: d.Default}
		}
		st.Default = d.Default
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Set switches a flag for the tenant and records it in the tenant's audit
// trail (who, before, after) in the same transaction.
func (s *Service) Set(ctx context.Context, tenantID, name string, on bool) (State, error) {
	d, ok := def(name)
	if !ok {
		return State{}, fmt.Errorf("%w %q", ErrUnknown, name)
	}
	actor := audit.MetaFrom(ctx).Actor
	by := actor.Type + ":" + actor.ID
	if actor.Type == "" {
		by = "system:relais"
	}
	var st State
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		before := d.Default
		var cur bool
		err := tx.QueryRow(ctx, `SELECT enabled FROM feature_flags WHERE tenant_id = $1 AND name = $2`, name).Scan(&cur)
		switch {
		case err == nil:
			before = cur
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, sql.ErrNoRows):
		default:
			return err
		}
		now := tx.Now()
		if _, err := tx.Exec(ctx, `INSERT INTO feature_flags (tenant_id, name, enabled, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id, name) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			name, on, store.Micros(now), by); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "flag.set", ObjectType: "flag", ObjectID: name,
			Changes: []audit.Change{{Field: "enabled", Before: before, After: on}}}); err != nil {
			return err
		}
		t := now.UTC()
		st = State{Name: name, Enabled: on, Default: d.Default, Set: true, UpdatedAt: &t, UpdatedBy: by}
		return nil
	})
	if err != nil {
		return State{}, fmt.Errorf("flags: set %s: %w", name, err)
	}
	return st, nil
}

// Cached is a Reader that remembers answers for TTL (5 s when 0), for the
// hot paths (the router asks before each SMS hand-off). A switch reaches
// every node within TTL.
type Cached struct {
	R   Reader
	TTL time.Duration
	Now func() time.Time

	mu    sync.Mutex
	cache map[[2]string]cachedValue
}

type cachedValue struct {
	on bool
	at time.Time
}

// Enabled implements Reader.
func (c *Cached) Enabled(ctx context.Context, tenantID, name string) (bool, error) {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	k := [2]string{tenantID, name}
	c.mu.Lock()
	v, ok := c.cache[k]
	c.mu.Unlock()
	if ok && now.Sub(v.at) < ttl && !now.Before(v.at) {
		return v.on, nil
	}
	on, err := c.R.Enabled(ctx, tenantID, name)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[[2]string]cachedValue{}
	}
	c.cache[k] = cachedValue{on, now}
	c.mu.Unlock()
	return on, nil
}

// SuppressFunc is the router engine's check before hand-off
// (router.EngineOptions.Suppress).
type SuppressFunc func(ctx context.Context, tenantID, contactID, channel string) (bool, string, error)

// ReasonSMSOff is the suppression reason of an SMS held back by the flag.
const ReasonSMSOff = "feature_flag_sms_sending_off"

// HoldSMS is the router's check before hand-off for the sms_sending flag:
// an SMS of a tenant whose flag is off is to be suppressed (true, with
// ReasonSMSOff). Compose it in front of the other checks.
func HoldSMS(ctx context.Context, r Reader, tenantID, channel string) (bool, string, error) {
	if channel != "sms" {
		return false, "", nil
	}
	on, err := r.Enabled(ctx, tenantID, SMSSending)
	if err != nil || on {
		return false, "", err
	}
	return true, ReasonSMSOff, nil
}

// GateSMS wraps a check of the engine's form: HoldSMS first, then next
// (when set).
func GateSMS(r Reader, next SuppressFunc) SuppressFunc {
	return func(ctx context.Context, tenantID, contactID, channel string) (bool, string, error) {
		if stop, reason, err := HoldSMS(ctx, r, tenantID, channel); stop || err != nil {
			return stop, reason, err
		}
		if next == nil {
			return false, "", nil
		}
		return next(ctx, tenantID, contactID, channel)
	}
}

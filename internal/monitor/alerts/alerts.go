// Package alerts evaluates Relais's built-in business-rule alerts (AVL-5)
// in the server itself, so that they work without a Prometheus.
//
// A [Rule] looks at the store (or a provider) at an instant and returns the
// conditions that hold, each identified by its rule and a de-duplication
// key. The [Engine] compares them with the alerts that are firing:
//
//   - a new condition fires an alert: a row in monitor_alerts (state
//     firing), an "alert.fire" event in the audit trail of its tenant (or
//     the operator's), and a notification unless a silence matches;
//   - a condition that still holds updates its alert (last seen, summary)
//     and notifies nothing: one notification per firing, that is the
//     de-duplication;
//   - a firing alert whose condition no longer holds is resolved (row,
//     "alert.resolve" audit event, notification unless silenced).
//
// A rule that fails to evaluate leaves its alerts as they are. Every rule
// reads time from the engine's clock, so tests drive them with a fake one.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Severities.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// States.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// Condition is one thing wrong at an instant.
type Condition struct {
	TenantID string // "" for the platform
	Key      string // de-duplication key within the rule
	Severity string
	Summary  string
	Details  map[string]any
}

// Rule is one built-in check.
type Rule interface {
	Name() string
	Evaluate(ctx context.Context, now time.Time) ([]Condition, error)
}

// Alert is a stored alert.
type Alert struct {
	TenantID   string          `json:"tenant_id"`
	ID         string          `json:"id"`
	Rule       string          `json:"rule"`
	Key        string          `json:"key"`
	State      string          `json:"state"`
	Severity   string          `json:"severity"`
	Summary    string          `json:"summary"`
	Details    json.RawMessage `json:"details"`
	FiredAt    time.Time       `json:"fired_at"`
	LastSeenAt time.Time       `json:"last_seen_at"`
	ResolvedAt *time.Time      `json:"resolved_at,omitempty"`
	Silenced   bool            `json:"silenced"`
	Notified   string          `json:"notified"`
}

// Event is what a notifier receives.
type Event struct {
	Kind  string `json:"event"` // "firing" or "resolved"
	Alert Alert  `json:"alert"`
}

// Notifier delivers alert events (email, webhook). It returns a short
// description of what it did ("email:2" or "webhook:ok") or an error.
type Notifier interface {
	Notify(ctx context.Context, ev Event) (string, error)
}

// Engine evaluates rules and keeps the alerts.
type Engine struct {
	DB        *store.DB
	Rules     []Rule
	Notifiers []Notifier
	Now       func() time.Time
	Logger    *slog.Logger
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Result is what one evaluation changed.
type Result struct {
	Fired    []Alert
	Resolved []Alert
	Errors   map[string]error // rule -> evaluation error
}

type openKey struct{ tenant, rule, key string }

// Evaluate runs every rule once at the engine's now and applies the
// changes.
func (e *Engine) Evaluate(ctx context.Context) (Result, error) {
	now := e.now().UTC()
	res := Result{Errors: map[string]error{}}
	conds := map[openKey]Condition{}
	ok := map[string]bool{}
	for _, r := range e.Rules {
		cs, err := r.Evaluate(ctx, now)
		if err != nil {
			res.Errors[r.Name()] = err
			e.log().Error("alert rule failed", "rule", r.Name(), "error", err)
			continue
		}
		ok[r.Name()] = true
		for _, c := range cs {
			conds[openKey{c.TenantID, r.Name(), c.Key}] = c
		}
	}
	var notify []Event
	err := e.DB.Platform(ctx, func(p *store.PlatformTx) error {
		open, err := e.firing(ctx, p)
		if err != nil {
			return err
		}
		silences, err := activeSilences(ctx, p, now)
		if err != nil {
			return err
		}
		keys := make([]openKey, 0, len(conds))
		for k := range conds {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i].tenant+"\x00"+keys[i].rule+"\x00"+keys[i].key < keys[j].tenant+"\x00"+keys[j].rule+"\x00"+keys[j].key
		})
		for _, k := range keys {
			c := conds[k]
			details, err := json.Marshal(orEmpty(c.Details))
			if err != nil {
				return fmt.Errorf("alerts: details of %s: %w", k.rule, err)
			}
			if a, isOpen := open[k]; isOpen {
				if _, err := p.Exec(ctx, `UPDATE monitor_alerts SET last_seen_at = $1, summary = $2, details = $3, severity = $4
					WHERE tenant_id = $5 AND id = $6`, store.Micros(now), c.Summary, string(details), sev(c.Severity), a.TenantID, a.ID); err != nil {
					return fmt.Errorf("alerts: update %s: %w", a.ID, err)
				}
				continue
			}
			a := Alert{TenantID: k.tenant, ID: uuid.NewString(), Rule: k.rule, Key: k.key, State: StateFiring, Severity: sev(c.Severity),
				Summary: c.Summary, Details: details, FiredAt: now, LastSeenAt: now, Silenced: silenced(silences, k)}
			// Another node may have fired it since this evaluation read the
			// firing alerts: the partial unique index makes one of them win,
			// and only the winner audits and notifies.
			ins, err := p.Exec(ctx, `INSERT INTO monitor_alerts (tenant_id, id, rule, dedup_key, state, severity, summary, details, fired_at, last_seen_at, silenced)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
				ON CONFLICT (tenant_id, rule, dedup_key) WHERE state = 'firing' DO NOTHING`, a.TenantID, a.ID, a.Rule, a.Key, a.State, a.Severity, a.Summary, string(details),
				store.Micros(now), store.Micros(now), a.Silenced)
			if err != nil {
				return fmt.Errorf("alerts: fire %s: %w", k.rule, err)
			}
			if n, err := ins.RowsAffected(); err != nil || n == 0 {
				continue
			}
			if err := record(ctx, p, a, "alert.fire"); err != nil {
				return err
			}
			res.Fired = append(res.Fired, a)
			if !a.Silenced {
				notify = append(notify, Event{Kind: StateFiring, Alert: a})
			}
		}
		for k, a := range open {
			if !ok[k.rule] {
				continue // the rule failed: leave its alerts as they are
			}
			if _, still := conds[k]; still {
				continue
			}
			upd, err := p.Exec(ctx, `UPDATE monitor_alerts SET state = 'resolved', resolved_at = $1 WHERE tenant_id = $2 AND id = $3 AND state = 'firing'`,
				store.Micros(now), a.TenantID, a.ID)
			if err != nil {
				return fmt.Errorf("alerts: resolve %s: %w", a.ID, err)
			}
			if n, err := upd.RowsAffected(); err != nil || n == 0 {
				continue // another node resolved it
			}
			a.State = StateResolved
			t := now
			a.ResolvedAt = &t
			if err := record(ctx, p, a, "alert.resolve"); err != nil {
				return err
			}
			res.Resolved = append(res.Resolved, a)
			if !a.Silenced && !silenced(silences, k) {
				notify = append(notify, Event{Kind: StateResolved, Alert: a})
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	sort.Slice(res.Resolved, func(i, j int) bool {
		return res.Resolved[i].Rule+res.Resolved[i].Key < res.Resolved[j].Rule+res.Resolved[j].Key
	})
	for _, ev := range notify {
		e.deliver(ctx, ev)
	}
	return res, nil
}

// deliver notifies one event and records the outcome on the alert row.
func (e *Engine) deliver(ctx context.Context, ev Event) {
	var parts []string
	for _, n := range e.Notifiers {
		what, err := n.Notify(ctx, ev)
		if err != nil {
			e.log().Error("alert notification failed", "alert", ev.Alert.ID, "rule", ev.Alert.Rule, "error", err)
			parts = append(parts, "error: "+err.Error())
			continue
		}
		if what != "" {
			parts = append(parts, what)
		}
	}
	if len(parts) == 0 {
		return
	}
	note := ev.Kind + ": " + strings.Join(parts, "; ")
	if len(note) > 1000 {
		note = note[:1000]
	}
	err := e.DB.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `UPDATE monitor_alerts SET notified = CASE WHEN notified = '' THEN $1 ELSE notified || ' | ' || $1 END
			WHERE tenant_id = $2 AND id = $3`, note, ev.Alert.TenantID, ev.Alert.ID)
		return err
	})
	if err != nil {
		e.log().Error("alert notification not recorded", "alert", ev.Alert.ID, "error", err)
	}
}

func sev(s string) string {
	if s == "" {
		return SeverityWarning
	}
	return s
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// record appends the alert's event to its tenant's audit trail (the
// operator's for platform alerts), in the evaluation's transaction.
func record(ctx context.Context, p *store.PlatformTx, a Alert, action string) error {
	_, err := audit.Append(ctx, p.Tenant(a.TenantID), audit.Event{Category: audit.CategoryAdmin, Action: action,
		Actor: audit.Actor{Type: audit.ActorSystem, ID: "alerts"}, ObjectType: "alert", ObjectID: a.ID,
		Details: map[string]any{"rule": a.Rule, "key": a.Key, "severity": a.Severity, "summary": a.Summary, "silenced": a.Silenced}})
	if err != nil {
		return fmt.Errorf("alerts: audit %s: %w", action, err)
	}
	return nil
}

const alertCols = `tenant_id, id, rule, dedup_key, state, severity, summary, details, fired_at, last_seen_at, resolved_at, silenced, notified`

func scanAlert(sc func(...any) error) (Alert, error) {
	var a Alert
	var details string
	var fired, seen int64
	var resolved *int64
	if err := sc(&a.TenantID, &a.ID, &a.Rule, &a.Key, &a.State, &a.Severity, &a.Summary, &details, &fired, &seen, &resolved, &a.Silenced, &a.Notified); err != nil {
		return Alert{}, err
	}
	a.Details = json.RawMessage(details)
	a.FiredAt, a.LastSeenAt = store.FromMicros(fired), store.FromMicros(seen)
	if resolved != nil {
		t := store.FromMicros(*resolved)
		a.ResolvedAt = &t
	}
	return a, nil
}

func (e *Engine) firing(ctx context.Context, p *store.PlatformTx) (map[openKey]Alert, error) {
	rows, err := p.Query(ctx, `SELECT `+alertCols+` FROM monitor_alerts WHERE state = 'firing'`)
	if err != nil {
		return nil, fmt.Errorf("alerts: read firing: %w", err)
	}
	defer rows.Close()
	out := map[openKey]Alert{}
	for rows.Next() {
		a, err := scanAlert(rows.Scan)
		if err != nil {
			return nil, err
		}
		out[openKey{a.TenantID, a.Rule, a.Key}] = a
	}
	return out, rows.Err()
}

// Run evaluates every interval until ctx ends.
func (e *Engine) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := e.Evaluate(ctx); err != nil && ctx.Err() == nil {
			e.log().Error("alert evaluation failed", "error", err)
		}
	}
}

// Filter selects alerts to list.
type Filter struct {
	State string // "", firing, resolved
	Rule  string
	Limit int // 100 by default, at most 1000
}

// List returns a tenant's alerts (tenantID "" and all true: every alert,
// the operator's view; tenantID "" alone: the platform's), newest first.
func List(ctx context.Context, db *store.DB, tenantID string, all bool, f Filter) ([]Alert, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	if f.State != "" && f.State != StateFiring && f.State != StateResolved {
		return nil, fmt.Errorf("%w: state must be firing or resolved", ErrInvalid)
	}
	out := []Alert{}
	scan := func(rows interface {
		Next() bool
		Scan(...any) error
		Err() error
		Close() error
	}) error {
		defer rows.Close()
		for rows.Next() {
			a, err := scanAlert(rows.Scan)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	}
	where := ` AND ($2 = '' OR state = $2) AND ($3 = '' OR rule = $3) ORDER BY fired_at DESC, id LIMIT $4`
	var err error
	if tenantID == "" {
		err = db.Platform(ctx, func(p *store.PlatformTx) error {
			q := `SELECT ` + alertCols + ` FROM monitor_alerts WHERE ($1 OR tenant_id = '')` + where
			rows, err := p.Query(ctx, q, all, f.State, f.Rule, f.Limit)
			if err != nil {
				return err
			}
			return scan(rows)
		})
	} else {
		err = db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			rows, err := tx.Query(ctx, `SELECT `+alertCols+` FROM monitor_alerts WHERE tenant_id = $1`+where, f.State, f.Rule, f.Limit)
			if err != nil {
				return err
			}
			return scan(rows)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("alerts: list: %w", err)
	}
	return out, nil
}

// Get returns one alert of a tenant ("" for the platform).
func Get(ctx context.Context, db *store.DB, tenantID, id string) (Alert, error) {
	var a Alert
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		a, err = scanAlert(p.QueryRow(ctx, `SELECT `+alertCols+` FROM monitor_alerts WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Alert{}, ErrNotFound
	}
	if err != nil {
		return Alert{}, fmt.Errorf("alerts: get: %w", err)
	}
	return a, nil
}

// Errors.
var (
	ErrInvalid  = errors.New("alerts: invalid input")
	ErrNotFound = errors.New("alerts: not found")
)

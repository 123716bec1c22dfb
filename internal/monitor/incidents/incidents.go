// Package incidents is the security incident register (INC-1, INC-2).
//
// The operator records an incident (category, criticality, description,
// when it was detected, the affected tenants, links to alerts); Relais keeps
// its timeline. For each affected tenant a notification deadline runs from
// detection (48 hours by default, monitor.incident_deadline); [Service.Notify]
// sends the notification by email and/or signed webhook to the tenant's
// security contacts and records it (or records a notification made by other
// means), and [Service.Overdue] lists the tenants past their deadline, which
// the alert rule incident_notification_overdue turns into alerts. An
// incident closes with a report and lessons learned, once every affected
// tenant has been notified.
//
// Incidents are referred to as INC-<number>. Every change is audited in the
// operator's trail; a notification is also audited in the tenant's.
package incidents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/notify"
	"github.com/relais-dev/relais/internal/store"
)

// Categories and criticalities.
var (
	Categories    = []string{"data_breach", "unauthorised_access", "availability", "integrity", "malware", "other"}
	Criticalities = []string{"low", "medium", "high", "critical"}
)

// Errors.
var (
	ErrInvalid  = errors.New("incidents: invalid input")
	ErrNotFound = errors.New("incidents: no such incident")
	ErrState    = errors.New("incidents: not allowed in this state")
)

// Affected is one affected tenant and its notification.
type Affected struct {
	TenantID    string     `json:"tenant_id"`
	Deadline    time.Time  `json:"deadline"`
	NotifiedAt  *time.Time `json:"notified_at,omitempty"`
	NotifiedVia string     `json:"notified_via,omitempty"`
	Overdue     bool       `json:"overdue"`
}

// Entry is one timeline entry.
type Entry struct {
	Seq   int64     `json:"seq"`
	At    time.Time `json:"at"`
	Kind  string    `json:"kind"`
	Text  string    `json:"text"`
	Actor string    `json:"actor"`
}

// AlertRef links an alert.
type AlertRef struct {
	TenantID string `json:"tenant_id"`
	ID       string `json:"id"`
}

// Incident is one register entry.
type Incident struct {
	Number      int64      `json:"number"`
	Ref         string     `json:"ref"`
	Category    string     `json:"category"`
	Criticality string     `json:"criticality"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Status      string     `json:"status"`
	DetectedAt  time.Time  `json:"detected_at"`
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   string     `json:"created_by"`
	ClosedAt    *time.Time `json:"closed_at,omitempty"`
	Report      string     `json:"report,omitempty"`
	Lessons     string     `json:"lessons,omitempty"`
	Tenants     []Affected `json:"affected_tenants"`
	Alerts      []AlertRef `json:"alerts"`
	Timeline    []Entry    `json:"timeline,omitempty"`
}

// Ref formats an incident number.
func Ref(n int64) string { return "INC-" + strconv.FormatInt(n, 10) }

// ParseRef reads "INC-3" or "3".
func ParseRef(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "INC-"), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %q is not an incident reference (INC-<number>)", ErrInvalid, s)
	}
	return n, nil
}

// Service keeps the register.
type Service struct {
	DB *store.DB
	// Deadline is the notification deadline after detection (48 h when 0).
	Deadline time.Duration
	Email    *notify.Email
	Webhook  *notify.Webhook
	Now      func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) deadline() time.Duration {
	if s.Deadline > 0 {
		return s.Deadline
	}
	return 48 * time.Hour
}

func actorOf(ctx context.Context) string {
	a := audit.MetaFrom(ctx).Actor
	if a.Type == "" {
		return "system:relais"
	}
	return a.Type + ":" + a.ID
}

// New describes an incident to create.
type New struct {
	Category    string    `json:"category"`
	Criticality string    `json:"criticality"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	DetectedAt  time.Time `json:"detected_at"` // now when zero
	Tenants     []string  `json:"affected_tenants"`
	// Alerts are alert ids ("tenant/id", or "id" for a platform alert).
	Alerts []string `json:"alerts"`
}

func oneOf(v string, list []string) bool {
	for _, x := range list {
		if v == x {
			return true
		}
	}
	return false
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

// Create records an incident.
func (s *Service) Create(ctx context.Context, in New) (Incident, error) {
	now := s.now()
	if in.DetectedAt.IsZero() {
		in.DetectedAt = now
	}
	switch {
	case !oneOf(in.Category, Categories):
		return Incident{}, invalid("category must be one of %s", strings.Join(Categories, ", "))
	case !oneOf(in.Criticality, Criticalities):
		return Incident{}, invalid("criticality must be one of %s", strings.Join(Criticalities, ", "))
	case strings.TrimSpace(in.Title) == "" || len(in.Title) > 200:
		return Incident{}, invalid("a title (at most 200 characters) is required")
	case len(in.Description) > 20000:
		return Incident{}, invalid("the description is limited to 20000 characters")
	case in.DetectedAt.After(now.Add(time.Minute)):
		return Incident{}, invalid("detected_at is in the future")
	case len(in.Tenants) > 10000 || len(in.Alerts) > 1000:
		return Incident{}, invalid("too many tenants or alerts")
	}
	var n int64
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if err := p.QueryRow(ctx, `SELECT COALESCE(MAX(number), 0) + 1 FROM incidents`).Scan(&n); err != nil {
			return err
		}
		if _, err := p.Exec(ctx, `INSERT INTO incidents (number, category, criticality, title, description, status, detected_at, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8)`, n, in.Category, in.Criticality, in.Title, in.Description,
			store.Micros(in.DetectedAt), store.Micros(now), actorOf(ctx)); err != nil {
			return err
		}
		if err := s.entry(ctx, p, n, now, "created", fmt.Sprintf("%s incident (%s) recorded, detected %s", in.Criticality, in.Category, in.DetectedAt.UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		deadline := in.DetectedAt.Add(s.deadline())
		for _, t := range dedupe(in.Tenants) {
			if err := addTenant(ctx, p, n, t, deadline); err != nil {
				return err
			}
		}
		for _, a := range dedupe(in.Alerts) {
			if err := linkAlert(ctx, p, n, a); err != nil {
				return err
			}
		}
		return s.audit(ctx, p, "", "incident.create", n, map[string]any{"category": in.Category, "criticality": in.Criticality,
			"title": in.Title, "affected_tenants": dedupe(in.Tenants), "alerts": dedupe(in.Alerts), "detected_at": in.DetectedAt.UTC().Format(time.RFC3339)})
	})
	if err != nil {
		return Incident{}, wrap("create", err)
	}
	return s.Get(ctx, n)
}

func wrap(op string, err error) error {
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrState) {
		return err
	}
	return fmt.Errorf("incidents: %s: %w", op, err)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, v := range in {
		v = strings.TrimSpace(v)
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func addTenant(ctx context.Context, p *store.PlatformTx, n int64, tenant string, deadline time.Time) error {
	var id string
	err := p.QueryRow(ctx, `SELECT id FROM tenants WHERE id = $1 OR slug = $1`, tenant).Scan(&id)
	if errors.Is(err, store.ErrNotFound) {
		return invalid("no tenant %q", tenant)
	}
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, `INSERT INTO incident_tenants (number, affected_tenant, deadline_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		n, id, store.Micros(deadline))
	return err
}

func linkAlert(ctx context.Context, p *store.PlatformTx, n int64, ref string) error {
	tenant, id, ok := strings.Cut(ref, "/")
	if !ok {
		tenant, id = "", ref
	}
	var found string
	err := p.QueryRow(ctx, `SELECT id FROM monitor_alerts WHERE tenant_id = $1 AND id = $2`, tenant, id).Scan(&found)
	if errors.Is(err, store.ErrNotFound) {
		return invalid("no alert %q", ref)
	}
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, `INSERT INTO incident_alerts (number, alert_tenant, alert_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, n, tenant, id)
	return err
}

func (s *Service) entry(ctx context.Context, p *store.PlatformTx, n int64, at time.Time, kind, text string) error {
	var seq int64
	if err := p.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM incident_timeline WHERE number = $1`, n).Scan(&seq); err != nil {
		return err
	}
	_, err := p.Exec(ctx, `INSERT INTO incident_timeline (number, seq, at, kind, text, actor) VALUES ($1, $2, $3, $4, $5, $6)`,
		n, seq, store.Micros(at), kind, text, actorOf(ctx))
	return err
}

func (s *Service) audit(ctx context.Context, p *store.PlatformTx, tenant, action string, n int64, details map[string]any) error {
	_, err := audit.Append(ctx, p.Tenant(tenant), audit.Event{Category: audit.CategoryAdmin, Action: action,
		ObjectType: "incident", ObjectID: Ref(n), Details: details})
	return err
}

// AddEntry appends a timeline entry (an observation, an action taken).
func (s *Service) AddEntry(ctx context.Context, n int64, kind, text string) (Incident, error) {
	if kind == "" {
		kind = "note"
	}
	if strings.TrimSpace(text) == "" || len(text) > 5000 || len(kind) > 40 {
		return Incident{}, invalid("a text (at most 5000 characters) is required")
	}
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := s.status(ctx, p, n); err != nil {
			return err
		}
		if err := s.entry(ctx, p, n, s.now(), kind, text); err != nil {
			return err
		}
		return s.audit(ctx, p, "", "incident.timeline", n, map[string]any{"kind": kind})
	})
	if err != nil {
		return Incident{}, wrap("timeline", err)
	}
	return s.Get(ctx, n)
}

// LinkAlert links an alert ("tenant/id", or "id" for a platform alert).
func (s *Service) LinkAlert(ctx context.Context, n int64, ref string) (Incident, error) {
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := s.status(ctx, p, n); err != nil {
			return err
		}
		if err := linkAlert(ctx, p, n, ref); err != nil {
			return err
		}
		if err := s.entry(ctx, p, n, s.now(), "alert", "alert "+ref+" linked"); err != nil {
			return err
		}
		return s.audit(ctx, p, "", "incident.link_alert", n, map[string]any{"alert": ref})
	})
	if err != nil {
		return Incident{}, wrap("link alert", err)
	}
	return s.Get(ctx, n)
}

func (s *Service) status(ctx context.Context, p *store.PlatformTx, n int64) (string, error) {
	var st string
	err := p.QueryRow(ctx, `SELECT status FROM incidents WHERE number = $1`, n).Scan(&st)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, Ref(n))
	}
	return st, err
}

// Contacts are a tenant's security contacts.
type Contacts struct {
	TenantID   string   `json:"tenant_id"`
	Emails     []string `json:"emails"`
	WebhookURL string   `json:"webhook_url"`
}

// SetContacts records where a tenant's security notifications go (audited
// in the tenant's trail).
func (s *Service) SetContacts(ctx context.Context, tenantID string, emails []string, webhookURL string) (Contacts, error) {
	emails = dedupe(emails)
	if len(emails) > 20 {
		return Contacts{}, invalid("at most 20 addresses")
	}
	for _, e := range emails {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			return Contacts{}, invalid("%q is not an email address", e)
		}
	}
	if webhookURL != "" {
		u, err := url.Parse(webhookURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return Contacts{}, invalid("the webhook URL must be https://host/... without credentials")
		}
	}
	raw, _ := json.Marshal(emails) // []string always encodes
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO security_contacts (tenant_id, emails, webhook_url, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id) DO UPDATE SET emails = excluded.emails, webhook_url = excluded.webhook_url, updated_at = excluded.updated_at`,
			string(raw), webhookURL, store.Micros(s.now())); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "security_contacts.set", ObjectType: "tenant", ObjectID: tenantID,
			Changes: []audit.Change{{Field: "emails", Personal: true}, {Field: "webhook_url", After: webhookURL}}})
		return err
	})
	if err != nil {
		return Contacts{}, wrap("set contacts", err)
	}
	return Contacts{TenantID: tenantID, Emails: emails, WebhookURL: webhookURL}, nil
}

// GetContacts returns a tenant's security contacts (empty when unset).
func (s *Service) GetContacts(ctx context.Context, tenantID string) (Contacts, error) {
	c := Contacts{TenantID: tenantID, Emails: []string{}}
	var raw string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT emails, webhook_url FROM security_contacts WHERE tenant_id = $1`).Scan(&raw, &c.WebhookURL)
	})
	if errors.Is(err, store.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, wrap("contacts", err)
	}
	if err := json.Unmarshal([]byte(raw), &c.Emails); err != nil {
		return c, fmt.Errorf("incidents: contacts of %s: %w", tenantID, err)
	}
	return c, nil
}

// NotifyOptions select what Notify does.
type NotifyOptions struct {
	// TenantID restricts the notification to one affected tenant (id or
	// slug); empty means every affected tenant not yet notified.
	TenantID string
	// Manual records a notification made outside Relais (a letter, a call)
	// with this description, instead of sending one.
	Manual string
}

// Notify sends the incident's notification to the affected tenants'
// security contacts and records it. A tenant with no contact, or whose
// sending failed, stays unnotified (the error says which).
func (s *Service) Notify(ctx context.Context, n int64, o NotifyOptions) (Incident, error) {
	inc, err := s.Get(ctx, n)
	if err != nil {
		return Incident{}, err
	}
	var targets []Affected
	for _, a := range inc.Tenants {
		if o.TenantID != "" && a.TenantID != o.TenantID && a.TenantID != s.resolveTenant(ctx, o.TenantID) {
			continue
		}
		if a.NotifiedAt == nil || o.TenantID != "" {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		if o.TenantID != "" {
			return Incident{}, invalid("tenant %q is not affected by %s", o.TenantID, inc.Ref)
		}
		return inc, nil
	}
	if len(o.Manual) > 1000 {
		return Incident{}, invalid("the manual notification description is limited to 1000 characters")
	}
	var errs []error
	for _, a := range targets {
		via := ""
		if o.Manual != "" {
			via = "manual: " + o.Manual
		} else {
			if via, err = s.send(ctx, inc, a.TenantID); err != nil {
				errs = append(errs, fmt.Errorf("tenant %s: %w", a.TenantID, err))
				continue
			}
		}
		now := s.now()
		err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
			if _, err := p.Exec(ctx, `UPDATE incident_tenants SET notified_at = $1, notified_via = $2 WHERE number = $3 AND affected_tenant = $4`,
				store.Micros(now), via, n, a.TenantID); err != nil {
				return err
			}
			if err := s.entry(ctx, p, n, now, "notification", "tenant "+a.TenantID+" notified ("+via+")"); err != nil {
				return err
			}
			details := map[string]any{"tenant": a.TenantID, "via": via, "deadline": a.Deadline.Format(time.RFC3339), "late": now.After(a.Deadline)}
			if err := s.audit(ctx, p, "", "incident.notify", n, details); err != nil {
				return err
			}
			return s.audit(ctx, p, a.TenantID, "incident.notify", n, details)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: notification sent but not recorded: %w", a.TenantID, err))
		}
	}
	out, gerr := s.Get(ctx, n)
	if gerr != nil {
		return Incident{}, gerr
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("incidents: notify %s: %w", inc.Ref, errors.Join(errs...))
	}
	return out, nil
}

func (s *Service) resolveTenant(ctx context.Context, ref string) string {
	var id string
	_ = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		return p.QueryRow(ctx, `SELECT id FROM tenants WHERE id = $1 OR slug = $1`, ref).Scan(&id)
	})
	return id
}

// send delivers the notification to one tenant's contacts.
func (s *Service) send(ctx context.Context, inc Incident, tenantID string) (string, error) {
	c, err := s.GetContacts(ctx, tenantID)
	if err != nil {
		return "", err
	}
	if len(c.Emails) == 0 && c.WebhookURL == "" {
		return "", errors.New("the tenant has no security contact: set one (relais incident contacts / PUT /api/v1/security-contacts) or record a manual notification")
	}
	var done []string
	var errs []error
	if len(c.Emails) > 0 {
		subject := fmt.Sprintf("[relais security] %s: %s", inc.Ref, inc.Title)
		body := fmt.Sprintf("A security incident affecting your organisation was recorded.\n\nReference:   %s\nCategory:    %s\nCriticality: %s\nDetected:    %s\n\n%s\n\n%s\n",
			inc.Ref, inc.Category, inc.Criticality, inc.DetectedAt.Format(time.RFC3339), inc.Title, inc.Description)
		if err := s.Email.Send(ctx, c.Emails, subject, body); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, fmt.Sprintf("email:%d", len(c.Emails)))
		}
	}
	if c.WebhookURL != "" {
		payload := map[string]any{"event": "incident.notification", "incident": inc.Ref, "category": inc.Category,
			"criticality": inc.Criticality, "title": inc.Title, "description": inc.Description,
			"detected_at": inc.DetectedAt.Format(time.RFC3339), "tenant_id": tenantID}
		if err := s.Webhook.Post(ctx, c.WebhookURL, inc.Ref+"/"+tenantID, payload); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, "webhook:ok")
		}
	}
	if len(done) == 0 {
		return "", errors.Join(errs...)
	}
	return strings.Join(done, " "), nil // one channel delivered: notified
}

// Close closes an incident with its report and lessons learned. Every
// affected tenant must have been notified.
func (s *Service) Close(ctx context.Context, n int64, report, lessons string) (Incident, error) {
	if strings.TrimSpace(report) == "" || len(report) > 50000 || len(lessons) > 50000 {
		return Incident{}, invalid("a closing report (at most 50000 characters) is required")
	}
	inc, err := s.Get(ctx, n)
	if err != nil {
		return Incident{}, err
	}
	if inc.Status == "closed" {
		return Incident{}, fmt.Errorf("%w: %s is already closed", ErrState, inc.Ref)
	}
	for _, a := range inc.Tenants {
		if a.NotifiedAt == nil {
			return Incident{}, fmt.Errorf("%w: tenant %s has not been notified; notify it first (relais incident notify %s)", ErrState, a.TenantID, inc.Ref)
		}
	}
	now := s.now()
	err = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `UPDATE incidents SET status = 'closed', closed_at = $1, report = $2, lessons = $3 WHERE number = $4 AND status = 'open'`,
			store.Micros(now), report, lessons, n); err != nil {
			return err
		}
		if err := s.entry(ctx, p, n, now, "closed", "incident closed with its report"); err != nil {
			return err
		}
		return s.audit(ctx, p, "", "incident.close", n, map[string]any{"report_chars": len(report), "lessons_chars": len(lessons)})
	})
	if err != nil {
		return Incident{}, wrap("close", err)
	}
	return s.Get(ctx, n)
}

// Get returns one incident with its tenants, alerts and timeline.
func (s *Service) Get(ctx context.Context, n int64) (Incident, error) {
	list, err := s.read(ctx, n, "")
	if err != nil {
		return Incident{}, err
	}
	if len(list) == 0 {
		return Incident{}, fmt.Errorf("%w: %s", ErrNotFound, Ref(n))
	}
	return list[0], nil
}

// List returns the incidents (status "", open or closed), newest first.
func (s *Service) List(ctx context.Context, status string) ([]Incident, error) {
	if status != "" && status != "open" && status != "closed" {
		return nil, invalid("status must be open or closed")
	}
	return s.read(ctx, 0, status)
}

func (s *Service) read(ctx context.Context, number int64, status string) ([]Incident, error) {
	now := s.now()
	var out []Incident
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT number, category, criticality, title, description, status, detected_at, created_at, created_by, closed_at, report, lessons
			FROM incidents WHERE ($1 = 0 OR number = $1) AND ($2 = '' OR status = $2) ORDER BY number DESC`, number, status)
		if err != nil {
			return err
		}
		byNum := map[int64]int{}
		for rows.Next() {
			var in Incident
			var det, cr int64
			var closed sql.NullInt64
			if err := rows.Scan(&in.Number, &in.Category, &in.Criticality, &in.Title, &in.Description, &in.Status, &det, &cr, &in.CreatedBy, &closed, &in.Report, &in.Lessons); err != nil {
				_ = rows.Close()
				return err
			}
			in.Ref, in.DetectedAt, in.CreatedAt = Ref(in.Number), store.FromMicros(det), store.FromMicros(cr)
			if closed.Valid {
				t := store.FromMicros(closed.Int64)
				in.ClosedAt = &t
			}
			in.Tenants, in.Alerts = []Affected{}, []AlertRef{}
			byNum[in.Number] = len(out)
			out = append(out, in)
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		trows, err := p.Query(ctx, `SELECT number, affected_tenant, deadline_at, notified_at, notified_via FROM incident_tenants WHERE ($1 = 0 OR number = $1) ORDER BY affected_tenant`, number)
		if err != nil {
			return err
		}
		for trows.Next() {
			var num, dl int64
			var a Affected
			var nat sql.NullInt64
			if err := trows.Scan(&num, &a.TenantID, &dl, &nat, &a.NotifiedVia); err != nil {
				_ = trows.Close()
				return err
			}
			a.Deadline = store.FromMicros(dl)
			if nat.Valid {
				t := store.FromMicros(nat.Int64)
				a.NotifiedAt = &t
			}
			a.Overdue = a.NotifiedAt == nil && now.After(a.Deadline)
			if i, ok := byNum[num]; ok {
				out[i].Tenants = append(out[i].Tenants, a)
			}
		}
		_ = trows.Close()
		if err := trows.Err(); err != nil {
			return err
		}
		arows, err := p.Query(ctx, `SELECT number, alert_tenant, alert_id FROM incident_alerts WHERE ($1 = 0 OR number = $1) ORDER BY alert_tenant, alert_id`, number)
		if err != nil {
			return err
		}
		for arows.Next() {
			var num int64
			var a AlertRef
			if err := arows.Scan(&num, &a.TenantID, &a.ID); err != nil {
				_ = arows.Close()
				return err
			}
			if i, ok := byNum[num]; ok {
				out[i].Alerts = append(out[i].Alerts, a)
			}
		}
		_ = arows.Close()
		if err := arows.Err(); err != nil {
			return err
		}
		if number == 0 {
			return nil
		}
		erows, err := p.Query(ctx, `SELECT seq, at, kind, text, actor FROM incident_timeline WHERE number = $1 ORDER BY seq`, number)
		if err != nil {
			return err
		}
		defer erows.Close()
		for erows.Next() {
			var e Entry
			var at int64
			if err := erows.Scan(&e.Seq, &at, &e.Kind, &e.Text, &e.Actor); err != nil {
				return err
			}
			e.At = store.FromMicros(at)
			out[0].Timeline = append(out[0].Timeline, e)
		}
		return erows.Err()
	})
	if err != nil {
		return nil, wrap("read", err)
	}
	return out, nil
}

// ForTenant returns the incidents that affect a tenant (its own view:
// without the other affected tenants).
func (s *Service) ForTenant(ctx context.Context, tenantID string) ([]Incident, error) {
	all, err := s.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := []Incident{}
	for _, in := range all {
		for _, a := range in.Tenants {
			if a.TenantID == tenantID {
				in.Tenants, in.Alerts = []Affected{a}, filterAlerts(in.Alerts, tenantID)
				out = append(out, in)
				break
			}
		}
	}
	return out, nil
}

func filterAlerts(list []AlertRef, tenant string) []AlertRef {
	out := []AlertRef{}
	for _, a := range list {
		if a.TenantID == tenant {
			out = append(out, a)
		}
	}
	return out
}

// Overdue lists the affected tenants not notified by their deadline, for
// the incident_notification_overdue alert.
func (s *Service) Overdue(ctx context.Context, now time.Time) ([]alerts.Overdue, error) {
	var out []alerts.Overdue
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT number, affected_tenant, deadline_at FROM incident_tenants WHERE notified_at IS NULL AND deadline_at < $1`, store.Micros(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n, dl int64
			var t string
			if err := rows.Scan(&n, &t, &dl); err != nil {
				return err
			}
			out = append(out, alerts.Overdue{Incident: Ref(n), TenantID: t, Deadline: store.FromMicros(dl)})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("incidents: overdue: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Incident+out[i].TenantID < out[j].Incident+out[j].TenantID })
	return out, nil
}

// Summary is the incident summary of AVL-4.
type Summary struct {
	Open          int            `json:"open"`
	OpenByLevel   map[string]int `json:"open_by_criticality"`
	Closed        int            `json:"closed"`
	OverdueNotify int            `json:"overdue_notifications"`
}

// Summarise counts the register (for one tenant when tenantID is set).
func (s *Service) Summarise(ctx context.Context, tenantID string) (Summary, error) {
	var list []Incident
	var err error
	if tenantID == "" {
		list, err = s.List(ctx, "")
	} else {
		list, err = s.ForTenant(ctx, tenantID)
	}
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{OpenByLevel: map[string]int{}}
	for _, in := range list {
		if in.Status == "open" {
			sum.Open++
			sum.OpenByLevel[in.Criticality]++
		} else {
			sum.Closed++
		}
		for _, a := range in.Tenants {
			if a.Overdue {
				sum.OverdueNotify++
			}
		}
	}
	return sum, nil
}

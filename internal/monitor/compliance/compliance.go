// Package compliance builds the live evidence report of AUD-3: what is in
// force for one tenant, read from the running configuration, the tenant's
// stored policy and the store (never from documentation), and, for each
// control of the catalogue (CONTROLS.md), whether it is in force with its
// evidence.
//
// Figures that depend on features another package provides (backups, key
// providers, SSO, the certificate) come from the monitor.Providers; when a
// provider is absent the report says "not configured" and the controls
// that depend on it are not shown in force.
package compliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/incidents"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/secheaders"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// Options are the report's sources.
type Options struct {
	DB        *store.DB
	Config    config.Config
	Tenants   *tenants.Service
	Audit     *audit.Service
	Incidents *incidents.Service
	Flags     *flags.Service
	Providers monitor.Providers
	// Clock is the running clock check (nil from the CLI: the report then
	// shows the configured servers and the recorded excursions).
	Clock   *clock.Checker
	Version string
	Now     func() time.Time
}

// NotConfigured is what the report says where a feature is absent.
const NotConfigured = "not configured"

// Report is the evidence for one tenant.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Version     string    `json:"relais_version"`
	Tenant      struct {
		ID     string `json:"id"`
		Slug   string `json:"slug"`
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"tenant"`
	Store       string               `json:"store"`
	TLS         TLSEvidence          `json:"tls"`
	Certificate CertEvidence         `json:"certificate"`
	Password    PasswordSection      `json:"password"`
	Lockout     config.LockoutPolicy `json:"lockout"`
	Sessions    config.SessionPolicy `json:"sessions"`
	TwoFactor   TwoFactorSection     `json:"two_factor"`
	SSO         SSOSection           `json:"sso"`
	Network     config.NetworkPolicy `json:"ip_allow_lists"`
	Retention   RetentionSection     `json:"retention"`
	Backups     BackupSection        `json:"backups"`
	Keys        KeySection           `json:"keys"`
	Audit       AuditSection         `json:"audit"`
	Clock       ClockSection         `json:"clock"`
	Monitoring  MonitoringSection    `json:"monitoring"`
	Incidents   []IncidentLine       `json:"open_incidents"`
	Flags       []flags.State        `json:"feature_flags"`
	Controls    []Control            `json:"controls"`
	Summary     struct {
		Controls int `json:"controls"`
		InForce  int `json:"in_force"`
	} `json:"summary"`
}

// TLSEvidence is the TLS policy in force.
type TLSEvidence struct {
	MinVersion   string   `json:"min_version"`
	Versions     []string `json:"versions"`
	TLS12Suites  []string `json:"tls12_suites"`
	TLS13Suites  []string `json:"tls13_suites"`
	Groups       []string `json:"key_exchange_groups"`
	HSTS         string   `json:"hsts"`
	RedirectHTTP bool     `json:"plain_http_redirect"`
	ClientCerts  string   `json:"client_certificates"`
}

// CertEvidence is the serving certificate.
type CertEvidence struct {
	Configured bool              `json:"configured"`
	Info       *monitor.CertInfo `json:"info,omitempty"`
	DaysLeft   int               `json:"days_left,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// Deviation is a difference between the policy in force and a reference.
type Deviation struct {
	Reference   string `json:"reference"` // "NIST SP 800-63B" or "ANSSI"
	Rule        string `json:"rule"`
	InForce     string `json:"in_force"`
	Explanation string `json:"explanation"`
}

// PasswordSection is the password policy and its deviations.
type PasswordSection struct {
	Policy     config.PasswordPolicy `json:"policy"`
	BreachData string                `json:"breach_data"`
	Deviations []Deviation           `json:"deviations"`
}

// TwoFactorSection is 2FA enforcement and coverage.
type TwoFactorSection struct {
	Required      string   `json:"required"`
	AcceptIdPMFA  bool     `json:"accept_idp_mfa"`
	ActiveUsers   int      `json:"active_users"`
	WithTOTP      int      `json:"with_totp"`
	WithoutTOTP   int      `json:"without_totp"`
	UsersWithout  []string `json:"user_ids_without_totp"`
	CoveragePct   float64  `json:"coverage_pct"`
	EmailCodeNote string   `json:"email_code"`
}

// SSOSection is single sign-on.
type SSOSection struct {
	State  string            `json:"state"`
	Detail *monitor.SSOState `json:"detail,omitempty"`
}

// RetentionSection is the retention in force.
type RetentionSection struct {
	Audit       string `json:"audit_trail"`
	AuditAccess string `json:"audit_access_traces"`
	Data        string `json:"personal_data"`
}

// BackupSection is the backup schedule and last runs.
type BackupSection struct {
	Schedule config.BackupPolicy   `json:"schedule"`
	State    string                `json:"state"`
	Status   *monitor.BackupStatus `json:"status,omitempty"`
}

// KeyLine is one key.
type KeyLine struct {
	Name     string    `json:"name"`
	Provider string    `json:"provider"`
	State    string    `json:"state,omitempty"`
	Created  time.Time `json:"created"`
	AgeDays  int       `json:"age_days"`
}

// KeySection is the key providers and ages.
type KeySection struct {
	MasterProvider string    `json:"master_key_provider"`
	Keys           []KeyLine `json:"keys"`
	Providers      string    `json:"providers"`
}

// AuditSection is the tenant's trail: checkpoint and verification.
type AuditSection struct {
	Events           int64     `json:"events"`
	TreeSize         int64     `json:"tree_size"`
	LastCheckpoint   time.Time `json:"last_checkpoint,omitzero"`
	CheckpointSize   int64     `json:"checkpoint_size"`
	VerifyOK         bool      `json:"verify_ok"`
	VerifyProblem    string    `json:"verify_problem,omitempty"`
	KeyAuthenticated bool      `json:"key_authenticated"`
	PublicKey        string    `json:"public_key,omitempty"`
	ClockFlagged     int       `json:"events_flagged_clock"`
}

// ClockSection is the clock check.
type ClockSection struct {
	Servers    []string           `json:"ntp_servers"`
	MaxOffset  string             `json:"max_offset"`
	Last       *clock.Measurement `json:"last_measurement,omitempty"`
	Excursions int                `json:"excursions"`
}

// MonitoringSection is supervision.
type MonitoringSection struct {
	MetricsListen   string   `json:"metrics_listen"`
	LatencyP95      string   `json:"latency_p95_threshold"`
	AlertsFiring    int      `json:"alerts_firing"`
	NotifyChannels  []string `json:"notification_channels"`
	SecurityContact bool     `json:"security_contact_set"`
}

// IncidentLine is an open incident affecting the tenant.
type IncidentLine struct {
	Ref         string     `json:"ref"`
	Title       string     `json:"title"`
	Category    string     `json:"category"`
	Criticality string     `json:"criticality"`
	Detected    time.Time  `json:"detected_at"`
	Deadline    time.Time  `json:"notification_deadline"`
	Notified    *time.Time `json:"notified_at,omitempty"`
	Overdue     bool       `json:"overdue"`
}

// Control is one control of the catalogue.
type Control struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	InForce  bool   `json:"in_force"`
	Status   string `json:"status"` // in force, not configured, deviates, not evaluated
	Evidence string `json:"evidence"`
}

// Build assembles the report for a tenant (id or slug).
func Build(ctx context.Context, o Options, tenantRef string) (Report, error) {
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	now = now.UTC()
	t, err := o.Tenants.Get(ctx, tenantRef)
	if err != nil {
		return Report{}, err
	}
	pol, err := o.Tenants.Policy(ctx, t.ID)
	if err != nil {
		return Report{}, err
	}
	r := Report{GeneratedAt: now, Version: o.Version, Store: string(o.DB.Dialect())}
	r.Tenant.ID, r.Tenant.Slug, r.Tenant.Name, r.Tenant.Status = t.ID, t.Slug, t.Name, t.Status
	cfg := o.Config
	r.TLS = tlsEvidence(cfg)
	r.Certificate = certEvidence(ctx, o.Providers.Cert, now)
	r.Password = passwordSection(pol.Password, cfg.Auth)
	r.Lockout, r.Sessions, r.Network = pol.Lockout, pol.Session, pol.Network
	if r.TwoFactor, err = twoFactor(ctx, o.DB, t.ID, pol.TwoFactor); err != nil {
		return Report{}, err
	}
	r.SSO = SSOSection{State: NotConfigured}
	if o.Providers.SSO != nil {
		st, err := o.Providers.SSO.SSOState(ctx, t.ID)
		if err != nil {
			return Report{}, fmt.Errorf("compliance: sso: %w", err)
		}
		r.SSO = SSOSection{State: map[bool]string{true: "configured", false: NotConfigured}[st.Configured], Detail: &st}
	}
	r.Retention = RetentionSection{Audit: pol.Audit.Retention.String(), AuditAccess: pol.Audit.AccessRetention.String(), Data: NotConfigured}
	r.Backups = BackupSection{Schedule: pol.Backup, State: NotConfigured}
	if o.Providers.Backups != nil {
		st, err := o.Providers.Backups.BackupStatus(ctx, t.ID)
		if err != nil {
			return Report{}, fmt.Errorf("compliance: backups: %w", err)
		}
		if st.Configured {
			r.Backups.State, r.Backups.Status = "configured", &st
		}
	}
	if r.Keys, err = keySection(ctx, o, t.ID, now); err != nil {
		return Report{}, err
	}
	if r.Audit, err = auditSection(ctx, o, t.ID, now); err != nil {
		return Report{}, err
	}
	r.Clock = ClockSection{Servers: cfg.Monitor.NTPServers, MaxOffset: cfg.Monitor.ClockMaxOffset.String()}
	if r.Clock.Servers == nil {
		r.Clock.Servers = []string{}
	}
	if m, ok := o.Clock.Last(); ok {
		r.Clock.Last = &m
	}
	if ex, err := clock.Excursions(ctx, o.DB, 1000); err == nil {
		r.Clock.Excursions = len(ex)
	} else {
		return Report{}, err
	}
	if r.Monitoring, err = monitoring(ctx, o, t.ID, pol); err != nil {
		return Report{}, err
	}
	mine, err := o.Incidents.ForTenant(ctx, t.ID)
	if err != nil {
		return Report{}, err
	}
	r.Incidents = []IncidentLine{}
	for _, in := range mine {
		if in.Status != "open" {
			continue
		}
		a := in.Tenants[0]
		r.Incidents = append(r.Incidents, IncidentLine{Ref: in.Ref, Title: in.Title, Category: in.Category, Criticality: in.Criticality,
			Detected: in.DetectedAt, Deadline: a.Deadline, Notified: a.NotifiedAt, Overdue: a.Overdue})
	}
	if r.Flags, err = o.Flags.List(ctx, t.ID); err != nil {
		return Report{}, err
	}
	r.Controls = evaluate(&r, cfg, pol, o)
	r.Summary.Controls = len(r.Controls)
	for _, c := range r.Controls {
		if c.InForce {
			r.Summary.InForce++
		}
	}
	return r, nil
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	}
	return fmt.Sprintf("0x%04x", v)
}

func tlsEvidence(cfg config.Config) TLSEvidence {
	e := TLSEvidence{MinVersion: tlsVersionName(tls.VersionTLS12), Versions: []string{"TLS 1.3", "TLS 1.2"},
		HSTS: secheaders.StrictTransportSecurity, RedirectHTTP: cfg.RedirectListen != "", ClientCerts: NotConfigured}
	for _, s := range tlsconf.CipherSuites(true) {
		e.TLS12Suites = append(e.TLS12Suites, tls.CipherSuiteName(s))
	}
	for _, s := range tls.CipherSuites() {
		if len(s.SupportedVersions) == 1 && s.SupportedVersions[0] == tls.VersionTLS13 {
			e.TLS13Suites = append(e.TLS13Suites, s.Name)
		}
	}
	for _, g := range tlsconf.CurvePreferences() {
		e.Groups = append(e.Groups, g.String())
	}
	return e
}

func certEvidence(ctx context.Context, src monitor.CertSource, now time.Time) CertEvidence {
	if src == nil {
		return CertEvidence{}
	}
	c, err := src.Certificate(ctx)
	if err != nil {
		return CertEvidence{Configured: true, Error: err.Error()}
	}
	return CertEvidence{Configured: true, Info: &c, DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24)}
}

// passwordSection explains where the policy in force departs from NIST SP
// 800-63B (rev. 3/4: length over composition, no periodic expiry, 15
// characters for single-factor) and from ANSSI's recommendations
// (ANSSI-PA-093 / R61: 12 characters with classes for a typical account,
// longer for privileged ones).
func passwordSection(p config.PasswordPolicy, auth config.Auth) PasswordSection {
	s := PasswordSection{Policy: p, BreachData: NotConfigured, Deviations: []Deviation{}}
	switch {
	case auth.BreachCorpusDir != "":
		s.BreachData = "offline range corpus " + auth.BreachCorpusDir
	case auth.BreachCheckURL != "":
		s.BreachData = "range API " + auth.BreachCheckURL
	}
	add := func(ref, rule, inForce, why string) {
		s.Deviations = append(s.Deviations, Deviation{Reference: ref, Rule: rule, InForce: inForce, Explanation: why})
	}
	if p.MinClasses > 1 {
		add("NIST SP 800-63B", "no composition rules (5.1.1.2)", fmt.Sprintf("%d character classes required", p.MinClasses),
			"The seed requires character classes; NIST finds they push users to predictable patterns and recommends length and a blocklist instead.")
	}
	if p.MaxAgeDays > 0 {
		add("NIST SP 800-63B", "no periodic expiry (5.1.1.2)", fmt.Sprintf("expiry after %d days", p.MaxAgeDays),
			"The seed requires a change every 90 days; NIST requires a change only on evidence of compromise.")
	}
	if p.MinLength < 15 {
		add("NIST SP 800-63B", "at least 15 characters for a password used alone (rev. 4)", fmt.Sprintf("%d characters", p.MinLength),
			"Shorter than NIST rev. 4's single-factor minimum; acceptable where a second factor is enforced.")
	}
	if !p.BreachCheck || s.BreachData == NotConfigured {
		add("NIST SP 800-63B", "compare new passwords with breached-password lists (5.1.1.2)", map[bool]string{true: "enabled without a data source", false: "disabled"}[p.BreachCheck],
			"Set auth.breach_corpus_dir or auth.breach_check_url to check new passwords against breached ones.")
	}
	if p.MinLength < 12 {
		add("ANSSI", "at least 12 characters with several classes (R61)", fmt.Sprintf("%d characters", p.MinLength), "Below ANSSI's minimum for a typical account.")
	}
	if p.MinClasses < 3 {
		add("ANSSI", "several character classes when length is moderate (R61)", fmt.Sprintf("%d classes", p.MinClasses),
			"ANSSI asks for complexity unless the password is long; the nist preset trades classes for 15+ characters.")
	}
	if p.PrivilegedMinLength < 15 {
		add("ANSSI", "longer passwords for privileged accounts", fmt.Sprintf("%d characters", p.PrivilegedMinLength),
			"Administrators' passwords should be longer than users' (the seed's figure is 20).")
	}
	if p.PBKDF2Iterations < 600_000 {
		add("OWASP / seed AUTH-9", "PBKDF2-HMAC-SHA256 with at least 600,000 iterations", fmt.Sprintf("%d iterations", p.PBKDF2Iterations),
			"Fewer iterations make stolen hashes cheaper to crack.")
	}
	return s
}

func twoFactor(ctx context.Context, db *store.DB, tenantID string, p config.TwoFactorPolicy) (TwoFactorSection, error) {
	s := TwoFactorSection{Required: p.Required, AcceptIdPMFA: p.AcceptIdPMFA, UsersWithout: []string{},
		EmailCodeNote: "a one-time code by email is offered to users without TOTP when an SMTP connector is configured"}
	err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, totp_enabled FROM users WHERE tenant_id = $1 AND status = 'active' ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var on bool
			if err := rows.Scan(&id, &on); err != nil {
				return err
			}
			s.ActiveUsers++
			if on {
				s.WithTOTP++
			} else {
				s.WithoutTOTP++
				s.UsersWithout = append(s.UsersWithout, id)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return s, fmt.Errorf("compliance: users: %w", err)
	}
	if s.ActiveUsers > 0 {
		s.CoveragePct = float64(s.WithTOTP*1000/s.ActiveUsers) / 10
	}
	return s, nil
}

func keySection(ctx context.Context, o Options, tenantID string, now time.Time) (KeySection, error) {
	ks := KeySection{MasterProvider: "file (" + o.Config.MasterKeyPath() + ")", Keys: []KeyLine{}, Providers: NotConfigured}
	age := func(t time.Time) int { return int(now.Sub(t).Hours() / 24) }
	err := o.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT version, master_key_id, state, created_at FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v, created int64
			var mk, state string
			if err := rows.Scan(&v, &mk, &state, &created); err != nil {
				return err
			}
			c := store.FromMicros(created)
			ks.Keys = append(ks.Keys, KeyLine{Name: fmt.Sprintf("tenant data key v%d (wrapped by %s)", v, mk), Provider: "master key", State: state, Created: c, AgeDays: age(c)})
		}
		return rows.Err()
	})
	if err != nil {
		return ks, fmt.Errorf("compliance: tenant keys: %w", err)
	}
	if o.Providers.Keys != nil {
		ks.Providers = "configured"
		for _, scope := range []string{"", tenantID} {
			list, err := o.Providers.Keys.Keys(ctx, scope)
			if err != nil {
				return ks, fmt.Errorf("compliance: keys: %w", err)
			}
			for _, k := range list {
				at := k.Created
				if k.Rotated.After(at) {
					at = k.Rotated
				}
				ks.Keys = append(ks.Keys, KeyLine{Name: k.Name, Provider: k.Provider, Created: k.Created, AgeDays: age(at)})
				if k.Name == "master" {
					ks.MasterProvider = k.Provider
				}
			}
		}
	}
	return ks, nil
}

func auditSection(ctx context.Context, o Options, tenantID string, now time.Time) (AuditSection, error) {
	var s AuditSection
	rep, err := o.Audit.Verify(ctx, tenantID, audit.VerifyOptions{})
	if err != nil && !errors.Is(err, audit.ErrTampered) {
		return s, fmt.Errorf("compliance: audit verify: %w", err)
	}
	s.Events, s.TreeSize, s.VerifyOK, s.KeyAuthenticated, s.PublicKey = rep.Events, rep.TreeSize, rep.OK, rep.KeyAuthenticated, rep.Key
	if rep.Problem != nil {
		s.VerifyProblem = fmt.Sprintf("%+v", *rep.Problem)
	}
	err = o.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		cps, err := audit.Checkpoints(ctx, tx)
		if err != nil {
			return err
		}
		for _, c := range cps {
			if c.CreatedAt.After(s.LastCheckpoint) {
				s.LastCheckpoint, s.CheckpointSize = c.CreatedAt, c.Size
			}
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("compliance: checkpoints: %w", err)
	}
	flagged, err := clock.Flagged(ctx, o.DB, tenantID, now)
	if err != nil {
		return s, err
	}
	s.ClockFlagged = len(flagged)
	return s, nil
}

func monitoring(ctx context.Context, o Options, tenantID string, pol config.Policy) (MonitoringSection, error) {
	m := MonitoringSection{MetricsListen: o.Config.MetricsListen, LatencyP95: pol.Monitor.LatencyP95.String(), NotifyChannels: []string{}}
	mc := o.Config.Monitor
	if mc.SMTPAddr != "" && len(mc.NotifyEmails) > 0 {
		m.NotifyChannels = append(m.NotifyChannels, fmt.Sprintf("email (%d recipients)", len(mc.NotifyEmails)))
	}
	if mc.WebhookURL != "" {
		if u, err := url.Parse(mc.WebhookURL); err == nil {
			m.NotifyChannels = append(m.NotifyChannels, "signed webhook to "+u.Host)
		}
	}
	list, err := alerts.List(ctx, o.DB, tenantID, false, alerts.Filter{State: alerts.StateFiring, Limit: 1000})
	if err != nil {
		return m, err
	}
	m.AlertsFiring = len(list)
	c, err := o.Incidents.GetContacts(ctx, tenantID)
	if err != nil {
		return m, err
	}
	m.SecurityContact = len(c.Emails) > 0 || c.WebhookURL != ""
	return m, nil
}

// sortedIDs is for tests and formats.
func (r Report) controlIDs() []string {
	out := make([]string, 0, len(r.Controls))
	for _, c := range r.Controls {
		out = append(out, c.ID)
	}
	sort.Strings(out)
	return out
}

func joinOr(list []string, empty string) string {
	if len(list) == 0 {
		return empty
	}
	return strings.Join(list, ", ")
}

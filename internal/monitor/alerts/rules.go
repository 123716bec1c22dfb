package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// Rule names.
const (
	RuleVolume          = "volume_week_over_week"
	RuleSchedule        = "sends_vs_schedule"
	RuleFailedLogins    = "failed_logins"
	RuleAdminGrant      = "admin_grant_unexpected"
	RuleBackupVerify    = "backup_verification"
	RuleRestoreTest     = "backup_restore_test"
	RuleCertificate     = "certificate_expiry"
	RuleClock           = "clock_offset"
	RuleIncidentOverdue = "incident_notification_overdue"
	RuleLatency         = "latency_threshold"
)

// RuleNames lists every built-in rule.
var RuleNames = []string{RuleVolume, RuleSchedule, RuleFailedLogins, RuleAdminGrant, RuleBackupVerify, RuleRestoreTest,
	RuleCertificate, RuleClock, RuleIncidentOverdue, RuleLatency}

// PolicyFunc returns a tenant's effective policy ("" : the platform
// defaults).
type PolicyFunc func(ctx context.Context, tenantID string) (config.Policy, error)

// Sources are what the rules read besides the store. Any may be nil: its
// rule then stays quiet.
type Sources struct {
	Backups   monitor.BackupSource
	Cert      monitor.CertSource
	Clock     ClockSource
	Incidents IncidentSource
	Latency   LatencySource
	Policy    PolicyFunc
}

// ClockSource is the clock check.
type ClockSource interface {
	Configured() bool
	Last() (clock.Measurement, bool)
}

// Overdue is an affected tenant not notified by its deadline.
type Overdue struct {
	Incident string // "INC-3"
	TenantID string
	Deadline time.Time
}

// IncidentSource lists overdue incident notifications (internal/monitor/incidents).
type IncidentSource interface {
	Overdue(ctx context.Context, now time.Time) ([]Overdue, error)
}

// LatencySource gives per-tenant latency (monitor.Requests).
type LatencySource interface {
	Latency(window time.Duration) map[string]monitor.TenantLatency
}

// BuiltinRules returns every built-in rule configured from the settings.
func BuiltinRules(db *store.DB, m config.Monitor, src Sources) []Rule {
	return []Rule{
		&VolumeRule{DB: db, Ratio: m.VolumeRatio, Min: m.VolumeMin},
		&ScheduleRule{DB: db, TolerancePct: m.ScheduleTolerancePct, Min: m.ScheduleMin, Window: m.ScheduleWindow.D()},
		&FailedLoginRule{DB: db, Window: m.FailedLoginWindow.D(), PerAccount: m.FailedLoginsAccount, Accounts: m.FailedLoginAccounts, PerIP: m.FailedLoginsIP},
		&AdminGrantRule{DB: db, Actors: m.AdminGrantActors, Window: m.AdminGrantWindow.D()},
		&BackupRule{DB: db, Source: src.Backups, Policy: src.Policy, restore: false},
		&BackupRule{DB: db, Source: src.Backups, Policy: src.Policy, restore: true},
		&CertRule{Source: src.Cert, Warn: m.CertWarn.D()},
		&ClockRule{Source: src.Clock, Max: m.ClockMaxOffset.D(), Stale: 3 * m.ClockInterval.D()},
		&IncidentRule{Source: src.Incidents},
		&LatencyRule{DB: db, Source: src.Latency, Policy: src.Policy},
	}
}

// tenantIDs lists the active tenants.
func tenantIDs(ctx context.Context, p *store.PlatformTx) ([]string, error) {
	rows, err := p.Query(ctx, `SELECT id FROM tenants WHERE status = 'active' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// everyLog selects every audit log id: each tenant's and the operator's
// (""), so that a range on (tenant_id, at) is read log by log.
const everyLog = `SELECT id FROM tenants UNION ALL SELECT ''`

// countBy runs a "SELECT key, COUNT(*) ... GROUP BY key" query.
func countBy(ctx context.Context, p *store.PlatformTx, q string, args ...any) (map[string]int64, error) {
	rows, err := p.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// VolumeRule compares each tenant's send requests (messages accepted) in
// the last complete hour with the same hour one week earlier: more than
// Ratio times, or less than 1/Ratio of it, fires, when either hour has at
// least Min. A tenant new this week (nothing in the same hour a week
// earlier) fires when it first reaches Min: silence the rule for it when
// that is expected.
type VolumeRule struct {
	DB    *store.DB
	Ratio int
	Min   int
}

// Name implements Rule.
func (r *VolumeRule) Name() string { return RuleVolume }

// Evaluate implements Rule.
func (r *VolumeRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	end := now.Truncate(time.Hour)
	start := end.Add(-time.Hour)
	weekAgo := start.Add(-7 * 24 * time.Hour)
	q := `SELECT tenant_id, COUNT(*) FROM messages WHERE accepted_at >= $1 AND accepted_at < $2 GROUP BY tenant_id`
	var cur, prev map[string]int64
	err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		if cur, err = countBy(ctx, p, q, store.Micros(start), store.Micros(end)); err != nil {
			return err
		}
		prev, err = countBy(ctx, p, q, store.Micros(weekAgo), store.Micros(weekAgo.Add(time.Hour)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: volume: %w", err)
	}
	var out []Condition
	for _, t := range union(cur, prev) {
		c, w := cur[t], prev[t]
		if max(c, w) < int64(r.Min) {
			continue
		}
		ratio := int64(r.Ratio)
		var dir string
		switch {
		case c > ratio*w:
			dir = "above"
		case c*ratio < w:
			dir = "below"
		default:
			continue
		}
		out = append(out, Condition{TenantID: t, Key: "volume", Severity: SeverityWarning,
			Summary: fmt.Sprintf("send requests %s normal: %d in the hour from %s, %d in the same hour one week earlier", dir, c, start.Format("2006-01-02 15:04Z"), w),
			Details: map[string]any{"hour": start.Format(time.RFC3339), "count": c, "week_earlier": w, "ratio": r.Ratio}})
	}
	return out, nil
}

func union(a, b map[string]int64) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]int64{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// allShards lists the router's shards, for its (shard, state, due_at) index.
var allShards = func() string {
	parts := make([]string, router.Shards)
	for i := range parts {
		parts[i] = strconv.Itoa(i)
	}
	return strings.Join(parts, ", ")
}()

// ScheduleRule compares, per tenant and channel, the messages sent in the
// last Window with those that were scheduled (due) in it: further apart than
// TolerancePct fires (when either count reaches Min). Messages of a
// campaign that is a draft, cancelled, or paused since before the send are
// sends outside a campaign, and fire at once.
type ScheduleRule struct {
	DB           *store.DB
	TolerancePct int
	Min          int
	Window       time.Duration
}

// Name implements Rule.
func (r *ScheduleRule) Name() string { return RuleSchedule }

// Evaluate implements Rule.
func (r *ScheduleRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	from, to := store.Micros(now.Add(-r.Window)), store.Micros(now)
	var planned, sent, outside map[string]int64
	err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		key := `tenant_id || '/' || channel`
		// On the router's (shard, state, due_at) index: every shard and
		// every state a scheduled message can be in.
		if planned, err = countBy(ctx, p, `SELECT `+key+`, COUNT(*) FROM messages WHERE shard IN (`+allShards+`)
			AND state IN ('queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'unknown')
			AND due_at >= $1 AND due_at < $2 GROUP BY tenant_id, channel`, from, to); err != nil {
			return err
		}
		if sent, err = countBy(ctx, p, `SELECT `+key+`, COUNT(*) FROM messages WHERE sent_at >= $1 AND sent_at < $2 GROUP BY tenant_id, channel`, from, to); err != nil {
			return err
		}
		outside, err = countBy(ctx, p, `SELECT m.tenant_id || '/' || m.channel, COUNT(*) FROM messages m
			LEFT JOIN campaigns c ON c.tenant_id = m.tenant_id AND c.id = m.campaign_id
			WHERE m.campaign_id IS NOT NULL AND m.sent_at >= $1 AND m.sent_at < $2
			AND (c.id IS NULL OR c.state IN ('draft', 'cancelled') OR (c.state = 'paused' AND c.paused_at < m.sent_at))
			GROUP BY m.tenant_id, m.channel`, from, to)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: schedule: %w", err)
	}
	var out []Condition
	for _, k := range union(planned, sent) {
		tenant, channel, _ := strings.Cut(k, "/")
		pl, s := planned[k], sent[k]
		if max(pl, s) < int64(r.Min) {
			continue
		}
		diff := s - pl
		if diff < 0 {
			diff = -diff
		}
		if diff*100 <= pl*int64(r.TolerancePct) {
			continue
		}
		dir := "more"
		if s < pl {
			dir = "fewer"
		}
		out = append(out, Condition{TenantID: tenant, Key: "volume/" + channel, Severity: SeverityWarning,
			Summary: fmt.Sprintf("%s: %d sent in the last %s, %s than the %d scheduled", channel, s, r.Window, dir, pl),
			Details: map[string]any{"channel": channel, "sent": s, "scheduled": pl, "tolerance_pct": r.TolerancePct}})
	}
	for _, k := range union(outside, nil) {
		tenant, channel, _ := strings.Cut(k, "/")
		out = append(out, Condition{TenantID: tenant, Key: "outside/" + channel, Severity: SeverityCritical,
			Summary: fmt.Sprintf("%s: %d messages sent outside a running campaign in the last %s", channel, outside[k], r.Window),
			Details: map[string]any{"channel": channel, "sent": outside[k]}})
	}
	return out, nil
}

// FailedLoginRule counts failed authentication attempts in the last Window
// (from the audit trail, AUTH-3): PerAccount on one account, failures on
// Accounts distinct accounts of one tenant, or PerIP from one address
// (across tenants: a platform alert).
type FailedLoginRule struct {
	DB         *store.DB
	Window     time.Duration
	PerAccount int
	Accounts   int
	PerIP      int
}

// Name implements Rule.
func (r *FailedLoginRule) Name() string { return RuleFailedLogins }

// accountKey names an account without its username: the user id when
// known, else a digest of the name as typed.
func accountKey(userID, username string) string {
	if userID != "" {
		return "user:" + userID
	}
	h := sha256.Sum256([]byte(strings.ToLower(username)))
	return "name:" + hex.EncodeToString(h[:6])
}

// Evaluate implements Rule.
func (r *FailedLoginRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	perAccount := map[[2]string]int64{}
	accounts := map[string]map[string]bool{}
	perIP := map[string]int64{}
	// The attempts still queued. A log that cannot be sequenced (an
	// unreadable queued row) must not silence this rule for every tenant:
	// the rule reads what is sequenced, and the sequencer reports the log.
	_, _ = audit.SequenceAll(ctx, r.DB)
	err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		// Log by log (the operator's and each tenant's), on the (tenant_id, at) index.
		rows, err := p.Query(ctx, `SELECT tenant_id, ip, object_id, details FROM audit_events WHERE tenant_id IN (`+everyLog+`)
			AND at >= $1 AND at <= $2 AND category = 'auth' AND action LIKE 'auth.%'`, store.Micros(now.Add(-r.Window)), store.Micros(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tenant, ip, user, details string
			if err := rows.Scan(&tenant, &ip, &user, &details); err != nil {
				return err
			}
			var d struct {
				Outcome  string `json:"outcome"`
				Username string `json:"username"`
			}
			if json.Unmarshal([]byte(details), &d) != nil || d.Outcome != "failure" {
				continue
			}
			acc := accountKey(user, d.Username)
			perAccount[[2]string{tenant, acc}]++
			if accounts[tenant] == nil {
				accounts[tenant] = map[string]bool{}
			}
			accounts[tenant][acc] = true
			if ip != "" {
				perIP[ip]++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: failed logins: %w", err)
	}
	var out []Condition
	for k, n := range perAccount {
		if n >= int64(r.PerAccount) {
			out = append(out, Condition{TenantID: k[0], Key: "account/" + k[1], Severity: SeverityWarning,
				Summary: fmt.Sprintf("%d failed logins on one account in %s", n, r.Window), Details: map[string]any{"account": k[1], "failures": n}})
		}
	}
	for t, accs := range accounts {
		if len(accs) >= r.Accounts {
			out = append(out, Condition{TenantID: t, Key: "accounts", Severity: SeverityCritical,
				Summary: fmt.Sprintf("failed logins on %d accounts in %s", len(accs), r.Window), Details: map[string]any{"accounts": len(accs)}})
		}
	}
	for ip, n := range perIP {
		if n >= int64(r.PerIP) {
			out = append(out, Condition{TenantID: "", Key: "ip/" + ip, Severity: SeverityWarning,
				Summary: fmt.Sprintf("%d failed logins from %s in %s", n, ip, r.Window), Details: map[string]any{"ip": ip, "failures": n}})
		}
	}
	return out, nil
}

// AdminGrantRule fires for each grant of administrative rights in the last
// Window (recorded by internal/access with details alert=admin_grant) made
// outside the expected path: by an actor type not in Actors, or by the
// grantee to itself.
type AdminGrantRule struct {
	DB     *store.DB
	Actors []string
	Window time.Duration
}

// Name implements Rule.
func (r *AdminGrantRule) Name() string { return RuleAdminGrant }

// Evaluate implements Rule.
func (r *AdminGrantRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	var out []Condition
	_, _ = audit.SequenceAll(ctx, r.DB) // as FailedLoginRule: a log that cannot be sequenced does not silence the rule
	err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, seq, at, action, actor_type, actor_id, details FROM audit_events
			WHERE tenant_id IN (`+everyLog+`) AND at >= $1 AND at <= $2 AND category = 'admin' AND details LIKE $3`,
			store.Micros(now.Add(-r.Window)), store.Micros(now), `%"alert":"admin_grant"%`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tenant, action, actorType, actorID, details string
			var seq, at int64
			if err := rows.Scan(&tenant, &seq, &at, &action, &actorType, &actorID, &details); err != nil {
				return err
			}
			var d struct {
				Alert       string   `json:"alert"`
				Users       []string `json:"users"`
				Clients     []string `json:"clients"`
				Permissions []string `json:"permissions"`
			}
			if json.Unmarshal([]byte(details), &d) != nil || d.Alert != "admin_grant" {
				continue
			}
			why := ""
			if !contains(r.Actors, actorType) {
				why = "granted by a " + actorType + " actor, not through the expected path (" + strings.Join(r.Actors, ", ") + ")"
			}
			for _, u := range append(d.Users, d.Clients...) {
				if u == actorID || strings.HasSuffix(actorID, ":"+u) {
					why = "self-grant: the grantee granted itself administrative rights"
				}
			}
			if why == "" {
				continue
			}
			out = append(out, Condition{TenantID: tenant, Key: fmt.Sprintf("audit/%d", seq), Severity: SeverityCritical,
				Summary: fmt.Sprintf("administrative rights %v %s (%s, audit event %d)", d.Permissions, why, action, seq),
				Details: map[string]any{"audit_seq": seq, "action": action, "actor_type": actorType, "actor_id": actorID,
					"users": d.Users, "clients": d.Clients, "permissions": d.Permissions, "at": store.FromMicros(at).Format(time.RFC3339)}})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: admin grants: %w", err)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// BackupRule watches the backups' integrity verification (BAK-5) or, with
// restore set, their restore tests (BAK-6): the last one failed, or none
// ran within the tenant's policy interval (verify_every /
// restore_test_every) plus a tenth. Quiet when no backup source is
// configured.
type BackupRule struct {
	DB      *store.DB
	Source  monitor.BackupSource
	Policy  PolicyFunc
	restore bool
}

// NewBackupRule returns the verification rule, or the restore-test rule
// when restore is true.
func NewBackupRule(db *store.DB, src monitor.BackupSource, pol PolicyFunc, restore bool) *BackupRule {
	return &BackupRule{DB: db, Source: src, Policy: pol, restore: restore}
}

// Name implements Rule.
func (r *BackupRule) Name() string {
	if r.restore {
		return RuleRestoreTest
	}
	return RuleBackupVerify
}

// Evaluate implements Rule.
func (r *BackupRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	if r.Source == nil {
		return nil, nil
	}
	var ids []string
	if err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		ids, err = tenantIDs(ctx, p)
		return err
	}); err != nil {
		return nil, fmt.Errorf("alerts: backups: %w", err)
	}
	var out []Condition
	for _, t := range append([]string{""}, ids...) {
		st, err := r.Source.BackupStatus(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("alerts: backup status of %q: %w", t, err)
		}
		if !st.Configured {
			continue
		}
		pol := config.DefaultPolicy()
		if r.Policy != nil {
			if pol, err = r.Policy(ctx, t); err != nil {
				return nil, err
			}
		}
		last, ok, every, detail, what := st.LastVerify, st.VerifyOK, pol.Backup.VerifyEvery.D(), st.VerifyDetail, "backup verification"
		if r.restore {
			last, ok, every, detail, what = st.LastRestoreTest, st.RestoreOK, pol.Backup.RestoreTestEvery.D(), st.RestoreDetail, "restore test"
		}
		switch {
		case !last.IsZero() && !ok:
			out = append(out, Condition{TenantID: t, Key: "failed", Severity: SeverityCritical,
				Summary: fmt.Sprintf("the last %s failed (%s): %s", what, last.UTC().Format(time.RFC3339), detail),
				Details: map[string]any{"last": last.UTC().Format(time.RFC3339), "detail": detail}})
		case now.Sub(last) > every+every/10:
			since := "never ran"
			if !last.IsZero() {
				since = "last ran " + last.UTC().Format(time.RFC3339)
			}
			out = append(out, Condition{TenantID: t, Key: "overdue", Severity: SeverityWarning,
				Summary: fmt.Sprintf("%s overdue: %s, expected every %s", what, since, config.Duration(every)),
				Details: map[string]any{"every": config.Duration(every).String()}})
		}
	}
	return out, nil
}

// CertRule fires when the serving certificate expires within Warn
// (critical once expired).
type CertRule struct {
	Source monitor.CertSource
	Warn   time.Duration
}

// Name implements Rule.
func (r *CertRule) Name() string { return RuleCertificate }

// Evaluate implements Rule.
func (r *CertRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	if r.Source == nil {
		return nil, nil
	}
	c, err := r.Source.Certificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerts: certificate: %w", err)
	}
	left := c.NotAfter.Sub(now)
	if left > r.Warn {
		return nil, nil
	}
	sev, msg := SeverityWarning, fmt.Sprintf("the TLS certificate (%s) expires in %s, on %s", c.Subject, left.Truncate(time.Minute), c.NotAfter.UTC().Format(time.RFC3339))
	if left <= 0 {
		sev, msg = SeverityCritical, fmt.Sprintf("the TLS certificate (%s) expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return []Condition{{Key: "serving", Severity: sev, Summary: msg,
		Details: map[string]any{"subject": c.Subject, "not_after": c.NotAfter.UTC().Format(time.RFC3339), "source": c.Source}}}, nil
}

// ClockRule fires when the last clock measurement exceeds Max, or when
// the clock has not been measured successfully for Stale (LOG-5).
type ClockRule struct {
	Source ClockSource
	Max    time.Duration
	Stale  time.Duration
}

// Name implements Rule.
func (r *ClockRule) Name() string { return RuleClock }

// Evaluate implements Rule.
func (r *ClockRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	if r.Source == nil || !r.Source.Configured() {
		return nil, nil
	}
	m, ok := r.Source.Last()
	switch {
	case ok && m.Exceeded:
		return []Condition{{Key: "offset", Severity: SeverityCritical,
			Summary: fmt.Sprintf("clock offset %s exceeds %s", m.Offset, r.Max), Details: map[string]any{"offset_ms": m.Offset.Milliseconds(), "at": m.At.Format(time.RFC3339)}}}, nil
	case !ok || now.Sub(m.At) > r.Stale:
		return []Condition{{Key: "unmeasured", Severity: SeverityWarning,
			Summary: fmt.Sprintf("the clock has not been measured against NTP for more than %s", r.Stale)}}, nil
	}
	return nil, nil
}

// IncidentRule fires for each affected tenant of an incident not notified
// by its deadline (INC-2); it resolves when the notification is recorded.
type IncidentRule struct {
	Source IncidentSource
}

// Name implements Rule.
func (r *IncidentRule) Name() string { return RuleIncidentOverdue }

// Evaluate implements Rule.
func (r *IncidentRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	if r.Source == nil {
		return nil, nil
	}
	list, err := r.Source.Overdue(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("alerts: incidents: %w", err)
	}
	out := make([]Condition, 0, len(list))
	for _, o := range list {
		out = append(out, Condition{Key: o.Incident + "/" + o.TenantID, Severity: SeverityCritical,
			Summary: fmt.Sprintf("%s: tenant %s not notified; the deadline was %s", o.Incident, o.TenantID, o.Deadline.UTC().Format(time.RFC3339)),
			Details: map[string]any{"incident": o.Incident, "tenant": o.TenantID, "deadline": o.Deadline.UTC().Format(time.RFC3339)}})
	}
	return out, nil
}

// LatencyRule fires for a tenant whose 95th-percentile API latency over its
// policy's alert window exceeds its threshold (AVL-2), with at least 20
// requests in the window.
type LatencyRule struct {
	DB     *store.DB
	Source LatencySource
	Policy PolicyFunc
}

// Name implements Rule.
func (r *LatencyRule) Name() string { return RuleLatency }

// MinLatencySamples is the fewest requests the latency rule judges on.
const MinLatencySamples = 20

// Evaluate implements Rule.
func (r *LatencyRule) Evaluate(ctx context.Context, now time.Time) ([]Condition, error) {
	if r.Source == nil {
		return nil, nil
	}
	def := config.DefaultPolicy().Monitor
	var out []Condition
	byWindow := map[time.Duration]map[string]monitor.TenantLatency{}
	var ids []string
	if err := r.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		ids, err = tenantIDs(ctx, p)
		return err
	}); err != nil {
		return nil, fmt.Errorf("alerts: latency: %w", err)
	}
	for _, t := range ids {
		pol := def
		if r.Policy != nil {
			p, err := r.Policy(ctx, t)
			if err != nil {
				return nil, err
			}
			pol = p.Monitor
		}
		w := pol.AlertWindow.D()
		if byWindow[w] == nil {
			byWindow[w] = r.Source.Latency(w)
		}
		l := byWindow[w][t]
		if l.Requests < MinLatencySamples || l.P95 <= pol.LatencyP95.D() {
			continue
		}
		out = append(out, Condition{TenantID: t, Key: "p95", Severity: SeverityWarning,
			Summary: fmt.Sprintf("API p95 latency %s over the last %s exceeds the tenant's threshold %s", l.P95, pol.AlertWindow, pol.LatencyP95),
			Details: map[string]any{"p95_ms": l.P95.Milliseconds(), "threshold_ms": pol.LatencyP95.D().Milliseconds(), "requests": l.Requests}})
	}
	return out, nil
}

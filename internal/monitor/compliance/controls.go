package compliance

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/monitor/flags"
)

// Statuses of a control.
const (
	StatusInForce       = "in force"
	StatusNotConfigured = "not configured"
	StatusDeviates      = "deviates"
	StatusNotEvaluated  = "not evaluated"
)

// catalogue is CONTROLS.md's list (IDs and short titles); a test checks it
// against the file.
var catalogue = [][2]string{
	{"CORE-1", "Tenants with their own users, contacts, campaigns, settings"},
	{"CORE-2", "Contacts with per-channel consent, double opt-in, one-click unsubscribe, blocklist"},
	{"CORE-3", "Lists, segments, CSV import and export"},
	{"CORE-4", "Templates and campaigns (email and SMS), scheduled or immediate"},
	{"CORE-5", "Transactional send API with idempotency key"},
	{"MSG-1", "Scheduling: send-at times, rate limits, quiet hours"},
	{"MSG-2", "Routing by channel and tenant rules, with fail-over"},
	{"MSG-3", "Idempotence: at most one hand-off per idempotency key"},
	{"MSG-4", "Accounting per tenant, campaign, channel, state"},
	{"MSG-5", "Tracing: every message's event history, receipts by webhook"},
	{"MSG-6", "Scalability: several nodes on one queue, no double send"},
	{"MSG-7", "Observability: throughput, latency, queue depth, errors per connector"},
	{"NET-1", "HTTPS only; plain HTTP only redirects; HSTS"},
	{"NET-2", "TLS 1.2 minimum, ANSSI-recommended suites, TLS 1.3 preferred"},
	{"NET-3", "ECDSA P-256 certificates, ACME or files, expiry monitored"},
	{"NET-4", "Optional private CA and client-certificate authentication (mTLS)"},
	{"NET-5", "Database and inter-service links encrypted"},
	{"AUTH-1", "Authentication only over HTTPS"},
	{"AUTH-2", "CSRF protection on state-changing browser requests"},
	{"AUTH-3", "Every authentication attempt recorded"},
	{"AUTH-4", "Anti brute-force: limits per login and per IP, locks"},
	{"AUTH-5", "Single sign-on: OpenID Connect, SAML 2.0, OAuth 2.0"},
	{"AUTH-6", "Session inactivity timeout and absolute lifetime; sessions revocable"},
	{"AUTH-7", "Second factor (TOTP or email code), enforceable, recovery codes"},
	{"AUTH-8", "API authentication with short-lived signed JWT access tokens"},
	{"AUTH-9", "Passwords stored with salted PBKDF2-HMAC-SHA256, at least 600,000 iterations"},
	{"AUTH-10", "Password policy: length, classes, age, history, lock"},
	{"AUTH-11", "New passwords checked against breached passwords"},
	{"ACC-1", "Permissions, roles and groups; default deny"},
	{"ACC-2", "Roles and groups from SSO attributes"},
	{"ACC-3", "Bulk provisioning from CSV"},
	{"ACC-4", "Access review; alert on administrative grants outside the expected path"},
	{"ACC-5", "Deprovisioning disables access at once"},
	{"ACC-6", "IP allow-lists for administrative and API access, per tenant"},
	{"ISO-1", "Logical isolation of tenants"},
	{"ISO-2", "A unique encryption key per tenant"},
	{"ISO-3", "Active-active nodes"},
	{"DATA-1", "Personal data encrypted at rest (AES-256-GCM, envelope encryption)"},
	{"DATA-2", "Master keys outside the database (file, vault, HSM), rotation"},
	{"DATA-3", "Secrets encrypted and never shown back in full"},
	{"XFER-1", "SFTP server with public-key authentication only"},
	{"XFER-2", "Source-IP filtering per SFTP account"},
	{"XFER-3", "SFTP drops processed, exports delivered, per-tenant confinement"},
	{"TEST-1", "Synthetic data sets of any size"},
	{"TEST-2", "Irreversible anonymisation of a production data set"},
	{"PRIV-1", "Privacy by design: classified, minimised, encrypted fields"},
	{"PRIV-2", "Pseudonymisation for exports and analytics"},
	{"PRIV-3", "Retention periods per purpose, expired data deleted"},
	{"PRIV-4", "Data-subject rights"},
	{"PRIV-5", "Proof of consent"},
	{"BAK-1", "Backups to object storage or a directory"},
	{"BAK-2", "Per-tenant backup compartments"},
	{"BAK-3", "Backups encrypted end to end"},
	{"BAK-4", "Backup schedule: full every 3 days, incremental every 2 hours"},
	{"BAK-5", "Backup integrity verified daily, alert on failure"},
	{"BAK-6", "Restores tested automatically at least every 2 months"},
	{"LOG-1", "Every change traced"},
	{"LOG-2", "Every access traced, including reads of personal data"},
	{"LOG-3", "Trace retention: 1 year, 6 months for access traces"},
	{"LOG-4", "Export of traces on request"},
	{"LOG-5", "Clock synchronisation monitored (NTP offset), with an alert"},
	{"LOG-6", "Traces tamper-evident and forwardable"},
	{"LOG-7", "Access to traces restricted by permission"},
	{"REV-1", "Purge with a report"},
	{"REV-2", "Full restitution of a tenant's data"},
	{"REV-3", "Destruction of a tenant's data with a certificate"},
	{"AVL-1", "Health and readiness endpoints; availability SLI"},
	{"AVL-2", "Response-time histograms per route; per-tenant thresholds"},
	{"AVL-3", "Prometheus metrics, Grafana dashboard, alert rules"},
	{"AVL-4", "Standard indicators"},
	{"AVL-5", "Business-rule alerts"},
	{"INC-1", "Incident register"},
	{"INC-2", "Affected tenants notified within 48 hours"},
	{"DEV-1", "Feature flags per tenant"},
	{"DEV-2", "CI: tests, static security analysis, vulnerability check"},
	{"DEV-3", "A changelog per release"},
	{"AUD-1", "Every control traceable to code and tests"},
	{"AUD-2", "The seed's figures are the defaults, each a setting"},
	{"AUD-3", "Live compliance evidence report"},
}

// CatalogueIDs returns the control IDs the report evaluates.
func CatalogueIDs() []string {
	out := make([]string, len(catalogue))
	for i, c := range catalogue {
		out[i] = c[0]
	}
	return out
}

type verdict struct {
	status, evidence string
}

func inForce(format string, a ...any) verdict {
	return verdict{StatusInForce, fmt.Sprintf(format, a...)}
}

func builtIn(what string) verdict { return verdict{StatusInForce, "built in: " + what} }

func notEvaluated(why string) verdict { return verdict{StatusNotEvaluated, why} }

func notConfigured(format string, a ...any) verdict {
	return verdict{StatusNotConfigured, fmt.Sprintf(format, a...)}
}

// evaluate decides each control from the report's live figures.
func evaluate(r *Report, cfg config.Config, pol config.Policy, o Options) []Control {
	pw := pol.Password
	seed := config.DefaultPolicy()
	sqlite := r.Store == "sqlite"
	flag := func(name string) bool {
		for _, f := range r.Flags {
			if f.Name == name {
				return f.Enabled
			}
		}
		return false
	}
	v := map[string]verdict{
		"CORE-1": builtIn("tenant " + r.Tenant.Slug + " (" + r.Tenant.Status + ") with its own users, contacts, campaigns and policy"),
		"CORE-2": builtIn("contacts with encrypted fields, per-channel consent, double opt-in, RFC 8058 one-click unsubscribe, blocklist"),
		"CORE-3": builtIn("lists, segments, streaming CSV import and export"),
		"CORE-4": builtIn("versioned email and SMS templates, campaigns scheduled or immediate"),
		"CORE-5": builtIn("POST /api/v1/messages with Idempotency-Key"),
		"MSG-1":  builtIn("send-at, per-connector rate limits, per-tenant quiet hours"),
		"MSG-2":  builtIn("routes by channel and tenant with a secondary connector"),
		"MSG-3":  builtIn("unique (tenant, idempotency key); fenced claims; in-doubt answers become 'unknown', never a retry"),
		"MSG-4":  builtIn("message states counted per tenant, campaign, channel and state"),
		"MSG-5":  builtIn("message event history; signed delivery receipts"),
		"MSG-6":  map[bool]verdict{true: {StatusNotConfigured, "SQLite store: one node (use PostgreSQL for several)"}, false: builtIn("shard leases on PostgreSQL")}[sqlite],
		"MSG-7":  metricsVerdict(cfg),
		"NET-1":  inForce("HTTPS on %s; %s; HSTS %q", cfg.Listen, map[bool]string{true: "plain HTTP " + cfg.RedirectListen + " only redirects", false: "no plain-HTTP listener"}[cfg.RedirectListen != ""], r.TLS.HSTS),
		"NET-2":  inForce("minimum %s; TLS 1.2 suites %s; TLS 1.3 suites %s", r.TLS.MinVersion, strings.Join(r.TLS.TLS12Suites, ", "), strings.Join(r.TLS.TLS13Suites, ", ")),
		"NET-3":  certVerdict(r),
		"NET-4":  notConfigured("client-certificate authentication: " + NotConfigured),
		"NET-5":  dbLinkVerdict(cfg),
		"AUTH-1": builtIn("login and token endpoints are served only over HTTPS"),
		"AUTH-2": builtIn("cross-origin state-changing requests refused (Sec-Fetch-Site / Origin)"),
		"AUTH-3": inForce("every attempt in the audit trail (category auth: outcome, IP, source port, username, method, user agent); %d events in this tenant's trail", r.Audit.Events),
		"AUTH-4": inForce("lock after %d failures per login, %d per IP, in %s; lock %s growing x%d up to %s; permanent: %v", pol.Lockout.MaxFailures, pol.Lockout.MaxFailuresPerIP,
			pol.Lockout.Window, pol.Lockout.LockDuration, pol.Lockout.LockGrowth, pol.Lockout.MaxLockDuration, pol.Lockout.Permanent),
		"AUTH-5": map[bool]verdict{true: inForce("SSO %s", r.SSO.State), false: notConfigured("SSO: " + NotConfigured)}[r.SSO.State == "configured"],
		"AUTH-6": inForce("idle timeout %s, absolute lifetime %s; sessions listed and revocable", pol.Session.IdleTimeout, pol.Session.AbsoluteLifetime),
		"AUTH-7": twoFactorVerdict(r),
		"AUTH-8": builtIn("short-lived signed JWT access tokens, revocable through their client"),
		"AUTH-9": map[bool]verdict{true: inForce("%s, %d iterations", pw.Algorithm, pw.PBKDF2Iterations),
			false: {StatusDeviates, fmt.Sprintf("%d iterations, under 600,000", pw.PBKDF2Iterations)}}[pw.PBKDF2Iterations >= 600_000],
		"AUTH-10": passwordVerdict(pw, pol.Lockout, seed),
		"AUTH-11": map[bool]verdict{true: inForce("breach check on: %s", r.Password.BreachData),
			false: notConfigured("breach check %s, data source: %s", map[bool]string{true: "enabled", false: "disabled"}[pw.BreachCheck], r.Password.BreachData)}[pw.BreachCheck && r.Password.BreachData != NotConfigured],
		"ACC-1":  builtIn("every route declares its permission; default deny"),
		"ACC-2":  map[bool]verdict{true: inForce("SSO attribute mapping available"), false: notConfigured("needs SSO: " + NotConfigured)}[r.SSO.State == "configured"],
		"ACC-3":  builtIn("relais user import (CSV)"),
		"ACC-4":  inForce("access review report; built-in alert admin_grant_unexpected (expected actors: %s)", strings.Join(cfg.Monitor.AdminGrantActors, ", ")),
		"ACC-5":  builtIn("disabling a user revokes its sessions and tokens at once"),
		"ACC-6":  allowListVerdict(pol.Network),
		"ISO-1":  map[bool]verdict{true: builtIn("tenant-scoped store handles; SQLite: one process"), false: builtIn("tenant-scoped store handles and PostgreSQL row-level security")}[sqlite],
		"ISO-2":  tenantKeyVerdict(r),
		"ISO-3":  map[bool]verdict{true: {StatusNotConfigured, "SQLite store: a single node"}, false: builtIn("several nodes on one PostgreSQL store")}[sqlite],
		"DATA-1": tenantKeyVerdict(r),
		"DATA-2": inForce("master key provider: %s (outside the database)", r.Keys.MasterProvider),
		"DATA-3": builtIn("connector secrets and signing keys encrypted; shown redacted"),
		"XFER-1": notEvaluated("SFTP: no state reported to supervision in this build"),
		"XFER-2": notEvaluated("SFTP: no state reported to supervision in this build"),
		"XFER-3": notEvaluated("SFTP: no state reported to supervision in this build"),
		"TEST-1": builtIn("relais contacts seed (reproducible synthetic data)"),
		"TEST-2": notEvaluated("anonymised copies: no state reported to supervision in this build"),
		"PRIV-1": builtIn("personal fields classified and encrypted under the tenant key"),
		"PRIV-2": builtIn("pseudonymised exports with keyed tokens"),
		"PRIV-3": map[bool]verdict{true: inForce("personal data retention: %s", r.Retention.Data), false: notConfigured("personal data retention per purpose: %s", r.Retention.Data)}[r.Retention.Data != NotConfigured],
		"PRIV-4": notEvaluated("subject requests: no state reported to supervision in this build"),
		"PRIV-5": builtIn("consent stored with time, method, IP and wording"),
		"LOG-1":  builtIn("audit events appended in the transaction of each change"),
		"LOG-2":  builtIn("reads of personal data recorded (category access)"),
		"LOG-3":  inForce("trail kept %s, access traces %s", pol.Audit.Retention, pol.Audit.AccessRetention),
		"LOG-4":  builtIn("GET /api/v1/audit/export, relais audit export (verifiable offline)"),
		"LOG-5":  clockVerdict(r),
		"LOG-6":  auditVerdict(r),
		"LOG-7":  builtIn("audit:read and audit:export permissions"),
		"REV-1":  builtIn("audit retention purge with its report"),
		"REV-2":  notEvaluated("restitution: no state reported to supervision in this build"),
		"REV-3":  notEvaluated("destruction: no state reported to supervision in this build"),
		"AVL-1":  builtIn("/healthz, /readyz; availability SLI per route (GET /api/v1/monitor/indicators)"),
		"AVL-2":  inForce("latency histograms per route and per tenant; this tenant's p95 threshold %s over %s", pol.Monitor.LatencyP95, pol.Monitor.AlertWindow),
		"AVL-3":  metricsVerdict(cfg),
		"AVL-4":  builtIn("deliverability, API availability and latency, campaign transit time, incident summary"),
		"AVL-5":  alertVerdict(r),
		"INC-1":  inForce("incident register; %d open incident(s) affecting this tenant", len(r.Incidents)),
		"INC-2":  incidentVerdict(r, cfg),
		"DEV-1":  inForce("per-tenant flags; sms_sending=%v", flag(flags.SMSSending)),
		"DEV-2":  notEvaluated("a build-time control (CI), not visible in the running configuration"),
		"DEV-3":  notEvaluated("a release-time control (CHANGELOG.md), not visible in the running configuration"),
		"AUD-1":  notEvaluated("docs/controls.md maps each control to code and tests (a build-time control)"),
		"AUD-2":  inForce("%d policy figures differ from the seed's defaults for this tenant", policyDiffs(pol, seed)),
		"AUD-3":  inForce("this report, generated %s", r.GeneratedAt.Format(time.RFC3339)),
	}
	v["BAK-1"], v["BAK-2"], v["BAK-3"], v["BAK-4"], v["BAK-5"], v["BAK-6"] = backupVerdicts(r)
	out := make([]Control, 0, len(catalogue))
	for _, c := range catalogue {
		vd, ok := v[c[0]]
		if !ok {
			vd = notEvaluated("no evidence source")
		}
		out = append(out, Control{ID: c[0], Title: c[1], InForce: vd.status == StatusInForce, Status: vd.status, Evidence: vd.evidence})
	}
	return out
}

func metricsVerdict(cfg config.Config) verdict {
	if cfg.MetricsListen == "" {
		return notConfigured("metrics listener disabled (metrics_listen empty)")
	}
	return inForce("Prometheus metrics on http://%s/metrics; rules deploy/prometheus/alerts.yml, dashboard deploy/grafana/relais.json", cfg.MetricsListen)
}

func certVerdict(r *Report) verdict {
	c := r.Certificate
	switch {
	case !c.Configured:
		return notConfigured("certificate source: " + NotConfigured)
	case c.Error != "":
		return verdict{StatusDeviates, "certificate unreadable: " + c.Error}
	case !strings.HasPrefix(c.Info.KeyType, "ECDSA"):
		return verdict{StatusDeviates, fmt.Sprintf("%s certificate (%s), expires %s", c.Info.KeyType, c.Info.Source, c.Info.NotAfter.Format("2006-01-02"))}
	case c.DaysLeft < 0:
		return verdict{StatusDeviates, "certificate expired on " + c.Info.NotAfter.Format("2006-01-02")}
	}
	return inForce("%s certificate (%s), expires %s (%d days), expiry alert certificate_expiry", c.Info.KeyType, c.Info.Source, c.Info.NotAfter.Format("2006-01-02"), c.DaysLeft)
}

func dbLinkVerdict(cfg config.Config) verdict {
	if cfg.DatabaseURL == "" {
		return inForce("embedded SQLite store: no network link to encrypt")
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return verdict{StatusDeviates, "database URL unreadable"}
	}
	mode := u.Query().Get("sslmode")
	if mode == "verify-full" {
		return inForce("PostgreSQL with sslmode=verify-full")
	}
	if mode == "" {
		mode = "prefer (default)"
	}
	return verdict{StatusDeviates, "PostgreSQL with sslmode=" + mode + ": set sslmode=verify-full"}
}

func twoFactorVerdict(r *Report) verdict {
	tf := r.TwoFactor
	cov := fmt.Sprintf("%d of %d active users with TOTP (%.1f%%)", tf.WithTOTP, tf.ActiveUsers, tf.CoveragePct)
	if tf.Required == "none" {
		return verdict{StatusNotConfigured, "available but not enforced (two_factor.required = none); " + cov}
	}
	return inForce("enforced for %s; %s", tf.Required, cov)
}

func passwordVerdict(p config.PasswordPolicy, l config.LockoutPolicy, seed config.Policy) verdict {
	var dev []string
	s := seed.Password
	if p.MinLength < s.MinLength {
		dev = append(dev, fmt.Sprintf("min length %d < %d", p.MinLength, s.MinLength))
	}
	if p.PrivilegedMinLength < s.PrivilegedMinLength {
		dev = append(dev, fmt.Sprintf("privileged min length %d < %d", p.PrivilegedMinLength, s.PrivilegedMinLength))
	}
	if p.MinClasses < s.MinClasses {
		dev = append(dev, fmt.Sprintf("%d classes < %d", p.MinClasses, s.MinClasses))
	}
	if p.MaxAgeDays == 0 || p.MaxAgeDays > s.MaxAgeDays {
		dev = append(dev, fmt.Sprintf("max age %d days (seed: %d)", p.MaxAgeDays, s.MaxAgeDays))
	}
	if p.History < s.History {
		dev = append(dev, fmt.Sprintf("history %d < %d", p.History, s.History))
	}
	if l.MaxFailures > seed.Lockout.MaxFailures {
		dev = append(dev, fmt.Sprintf("lock after %d failures > %d", l.MaxFailures, seed.Lockout.MaxFailures))
	}
	figures := fmt.Sprintf("preset %s: %d characters (%d privileged), %d classes, max age %d days, history %d, lock after %d failures",
		p.Preset, p.MinLength, p.PrivilegedMinLength, p.MinClasses, p.MaxAgeDays, p.History, l.MaxFailures)
	if len(dev) > 0 {
		return verdict{StatusDeviates, figures + "; differs from the seed: " + strings.Join(dev, "; ")}
	}
	return inForce("%s", figures)
}

func allowListVerdict(n config.NetworkPolicy) verdict {
	if len(n.UIAllow) == 0 && len(n.APIAllow) == 0 {
		return notConfigured("no allow-list: every address may reach the UI and API")
	}
	return inForce("UI: %s; API: %s", joinOr(n.UIAllow, "any address"), joinOr(n.APIAllow, "any address"))
}

func tenantKeyVerdict(r *Report) verdict {
	for _, k := range r.Keys.Keys {
		if k.State == "active" {
			return inForce("%s, created %s (%d days)", k.Name, k.Created.Format("2006-01-02"), k.AgeDays)
		}
	}
	return verdict{StatusDeviates, "no active tenant key"}
}

func clockVerdict(r *Report) verdict {
	c := r.Clock
	if len(c.Servers) == 0 {
		return notConfigured("no NTP server (monitor.ntp_servers): the clock is not checked")
	}
	last := "no measurement in this process"
	if c.Last != nil {
		last = fmt.Sprintf("last offset %s at %s", c.Last.Offset, c.Last.At.Format(time.RFC3339))
	}
	return inForce("checked against %s, threshold %s, %s; %d excursion(s) recorded; alert clock_offset", strings.Join(c.Servers, ", "), c.MaxOffset, last, c.Excursions)
}

func auditVerdict(r *Report) verdict {
	a := r.Audit
	if !a.VerifyOK {
		return verdict{StatusDeviates, "the trail does NOT verify: " + a.VerifyProblem}
	}
	cp := "no checkpoint yet"
	if !a.LastCheckpoint.IsZero() {
		cp = fmt.Sprintf("last signed checkpoint at size %d on %s", a.CheckpointSize, a.LastCheckpoint.Format(time.RFC3339))
	}
	return inForce("%d events verified (hash chain, Merkle tree, signatures); %s; %d event(s) flagged for clock offset", a.Events, cp, a.ClockFlagged)
}

func alertVerdict(r *Report) verdict {
	m := r.Monitoring
	ch := joinOr(m.NotifyChannels, "no notification channel (stored, audited and in the API only)")
	return inForce("10 built-in rules evaluated by the server; %d firing for this tenant; notified by: %s", m.AlertsFiring, ch)
}

func incidentVerdict(r *Report, cfg config.Config) verdict {
	overdue := 0
	for _, i := range r.Incidents {
		if i.Overdue {
			overdue++
		}
	}
	contact := "security contact set"
	if !r.Monitoring.SecurityContact {
		contact = "no security contact set for this tenant"
	}
	ev := fmt.Sprintf("deadline %s after detection, overdue alert incident_notification_overdue; %d overdue; %s", cfg.Monitor.IncidentDeadline, overdue, contact)
	if overdue > 0 {
		return verdict{StatusDeviates, ev}
	}
	return inForce("%s", ev)
}

func backupVerdicts(r *Report) (b1, b2, b3, b4, b5, b6 verdict) {
	b := r.Backups
	sched := fmt.Sprintf("policy: full every %s, incremental every %s, verify every %s, restore test every %s",
		b.Schedule.FullEvery, b.Schedule.IncrementalEvery, b.Schedule.VerifyEvery, b.Schedule.RestoreTestEvery)
	if b.Status == nil {
		nc := notConfigured("backups: " + NotConfigured)
		return nc, nc, nc, notConfigured("backups: %s (%s)", NotConfigured, sched), nc, nc
	}
	s := b.Status
	b1 = inForce("target %s; last backup %s", s.Target, stamp(s.LastBackup))
	b2 = inForce("this tenant's compartment under its own key")
	b3 = inForce("encrypted end to end")
	b4 = inForce("%s; last full %s, last backup %s", sched, stamp(s.LastFull), stamp(s.LastBackup))
	b5 = verdictFor(s.VerifyOK, s.LastVerify, r.GeneratedAt, b.Schedule.VerifyEvery.D(), "verification", s.VerifyDetail)
	b6 = verdictFor(s.RestoreOK, s.LastRestoreTest, r.GeneratedAt, b.Schedule.RestoreTestEvery.D(), "restore test", s.RestoreDetail)
	return
}

func verdictFor(ok bool, last, now time.Time, every time.Duration, what, detail string) verdict {
	switch {
	case last.IsZero():
		return verdict{StatusDeviates, "no " + what + " has run"}
	case !ok:
		return verdict{StatusDeviates, fmt.Sprintf("last %s %s FAILED: %s", what, stamp(last), detail)}
	case now.Sub(last) > every+every/10:
		return verdict{StatusDeviates, fmt.Sprintf("last %s %s, overdue (every %s)", what, stamp(last), config.Duration(every))}
	}
	return inForce("last %s %s passed (every %s)", what, stamp(last), config.Duration(every))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// policyDiffs counts the policy settings that differ from the defaults.
func policyDiffs(p, seed config.Policy) int {
	a, b := flatten(p), flatten(seed)
	n := 0
	for k, v := range a {
		if b[k] != v {
			n++
		}
	}
	return n
}

package compliance

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// Formats of the report.
const (
	FormatJSON     = "json"
	FormatMarkdown = "md"
	FormatHTML     = "html"
)

// Write renders the report in a format.
func (r Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatJSON, "":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatMarkdown:
		return r.markdown(w)
	case FormatHTML:
		return htmlTmpl.Execute(w, r)
	}
	return fmt.Errorf("compliance: unknown format %q (use json, md or html)", format)
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

func (r Report) markdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# Relais compliance report: %s (%s)", mdEscape(r.Tenant.Name), r.Tenant.Slug)
	p("")
	p("Generated %s by relais %s from the live configuration (store: %s). %d of %d controls in force.",
		r.GeneratedAt.Format(time.RFC3339), r.Version, r.Store, r.Summary.InForce, r.Summary.Controls)
	p("")
	p("## TLS")
	p("- Minimum version: %s; versions: %s", r.TLS.MinVersion, strings.Join(r.TLS.Versions, ", "))
	p("- TLS 1.2 suites: %s", strings.Join(r.TLS.TLS12Suites, ", "))
	p("- TLS 1.3 suites: %s", strings.Join(r.TLS.TLS13Suites, ", "))
	p("- Key exchange groups: %s", strings.Join(r.TLS.Groups, ", "))
	p("- HSTS: `%s`; plain HTTP redirect: %v; client certificates: %s", r.TLS.HSTS, r.TLS.RedirectHTTP, r.TLS.ClientCerts)
	p("")
	p("## Certificate")
	switch {
	case !r.Certificate.Configured:
		p("- %s", NotConfigured)
	case r.Certificate.Error != "":
		p("- unreadable: %s", mdEscape(r.Certificate.Error))
	default:
		c := r.Certificate.Info
		p("- %s, %s key, issued by %s (%s); expires %s (%d days)", mdEscape(c.Subject), c.KeyType, mdEscape(c.Issuer), c.Source, c.NotAfter.Format("2006-01-02"), r.Certificate.DaysLeft)
	}
	p("")
	pw := r.Password.Policy
	p("## Passwords, lockout, sessions")
	p("- Preset **%s**: %d characters (%d for privileged accounts), %d character classes, maximum age %d days, last %d not reused, %s with %d iterations; breach check: %v (%s)",
		pw.Preset, pw.MinLength, pw.PrivilegedMinLength, pw.MinClasses, pw.MaxAgeDays, pw.History, pw.Algorithm, pw.PBKDF2Iterations, pw.BreachCheck, mdEscape(r.Password.BreachData))
	if len(r.Password.Deviations) > 0 {
		p("")
		p("| Reference | Rule | In force | Explanation |")
		p("|---|---|---|---|")
		for _, d := range r.Password.Deviations {
			p("| %s | %s | %s | %s |", d.Reference, mdEscape(d.Rule), mdEscape(d.InForce), mdEscape(d.Explanation))
		}
		p("")
	}
	l := r.Lockout
	p("- Lockout: %d failures per login, %d per IP in %s; lock %s (x%d, at most %s); permanent: %v", l.MaxFailures, l.MaxFailuresPerIP, l.Window, l.LockDuration, l.LockGrowth, l.MaxLockDuration, l.Permanent)
	p("- Sessions: idle timeout %s, absolute lifetime %s", r.Sessions.IdleTimeout, r.Sessions.AbsoluteLifetime)
	tf := r.TwoFactor
	p("- Second factor required for: **%s**; %d of %d active users with TOTP (%.1f%%); without: %s", tf.Required, tf.WithTOTP, tf.ActiveUsers, tf.CoveragePct, joinOr(tf.UsersWithout, "none"))
	p("- SSO: %s", r.SSO.State)
	p("- IP allow-lists: UI %s; API %s", joinOr(r.Network.UIAllow, "any address"), joinOr(r.Network.APIAllow, "any address"))
	p("")
	p("## Retention, backups, keys")
	p("- Audit trail %s, access traces %s; personal data: %s", r.Retention.Audit, r.Retention.AuditAccess, r.Retention.Data)
	s := r.Backups.Schedule
	p("- Backups (%s): full every %s, incremental every %s, verification every %s, restore test every %s", r.Backups.State, s.FullEvery, s.IncrementalEvery, s.VerifyEvery, s.RestoreTestEvery)
	if st := r.Backups.Status; st != nil {
		p("- Last backup %s; last verification %s (ok: %v); last restore test %s (ok: %v)", stamp(st.LastBackup), stamp(st.LastVerify), st.VerifyOK, stamp(st.LastRestoreTest), st.RestoreOK)
	}
	p("- Master key provider: %s; key providers: %s", mdEscape(r.Keys.MasterProvider), r.Keys.Providers)
	for _, k := range r.Keys.Keys {
		p("  - %s (%s%s): created %s, %d days", mdEscape(k.Name), k.Provider, map[bool]string{true: ", " + k.State, false: ""}[k.State != ""], k.Created.Format("2006-01-02"), k.AgeDays)
	}
	p("")
	a := r.Audit
	p("## Audit trail and clock")
	p("- %d events; verification: **%s**%s; key authenticated: %v; last checkpoint %s at size %d", a.Events, map[bool]string{true: "OK", false: "FAILED"}[a.VerifyOK],
		map[bool]string{true: " (" + mdEscape(a.VerifyProblem) + ")", false: ""}[a.VerifyProblem != ""], a.KeyAuthenticated, stamp(a.LastCheckpoint), a.CheckpointSize)
	p("- Clock: NTP servers %s, threshold %s, %d excursion(s); %d event(s) of this trail written during one", joinOr(r.Clock.Servers, NotConfigured), r.Clock.MaxOffset, r.Clock.Excursions, a.ClockFlagged)
	p("")
	p("## Supervision and incidents")
	m := r.Monitoring
	p("- Metrics: %s; latency p95 threshold %s; %d alert(s) firing; notification: %s; security contact set: %v", orNone(m.MetricsListen), m.LatencyP95, m.AlertsFiring, joinOr(m.NotifyChannels, "none"), m.SecurityContact)
	if len(r.Incidents) == 0 {
		p("- Open incidents: none")
	}
	for _, i := range r.Incidents {
		p("- %s %s (%s, %s), detected %s, notification deadline %s, notified %s%s", i.Ref, mdEscape(i.Title), i.Category, i.Criticality,
			i.Detected.Format(time.RFC3339), i.Deadline.Format(time.RFC3339), stampPtr(i.Notified), map[bool]string{true: " **OVERDUE**", false: ""}[i.Overdue])
	}
	for _, f := range r.Flags {
		p("- Flag %s: %v", f.Name, f.Enabled)
	}
	p("")
	p("## Controls")
	p("")
	p("| Control | In force | Status | Evidence |")
	p("|---|---|---|---|")
	for _, c := range r.Controls {
		p("| %s %s | %s | %s | %s |", c.ID, mdEscape(c.Title), map[bool]string{true: "yes", false: "no"}[c.InForce], c.Status, mdEscape(c.Evidence))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "disabled"
	}
	return s
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return "not yet"
	}
	return stamp(*t)
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp": stamp, "join": strings.Join,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Relais compliance report: {{.Tenant.Name}}</title>
<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em;vertical-align:top}.no{background:#fee}.yes{background:#efe}</style></head>
<body>
<h1>Relais compliance report: {{.Tenant.Name}} ({{.Tenant.Slug}})</h1>
<p>Generated {{stamp .GeneratedAt}} by relais {{.Version}} from the live configuration (store: {{.Store}}). {{.Summary.InForce}} of {{.Summary.Controls}} controls in force.</p>
<h2>TLS</h2>
<ul><li>Minimum version {{.TLS.MinVersion}}; versions {{join .TLS.Versions ", "}}</li>
<li>TLS 1.2 suites: {{join .TLS.TLS12Suites ", "}}</li><li>TLS 1.3 suites: {{join .TLS.TLS13Suites ", "}}</li>
<li>HSTS: <code>{{.TLS.HSTS}}</code></li></ul>
<h2>Certificate</h2>
{{if .Certificate.Info}}<p>{{.Certificate.Info.Subject}}, {{.Certificate.Info.KeyType}}, {{.Certificate.Info.Source}}, expires {{stamp .Certificate.Info.NotAfter}} ({{.Certificate.DaysLeft}} days)</p>{{else}}<p>not configured {{.Certificate.Error}}</p>{{end}}
<h2>Passwords</h2>
<p>Preset <b>{{.Password.Policy.Preset}}</b>: {{.Password.Policy.MinLength}} characters ({{.Password.Policy.PrivilegedMinLength}} privileged), {{.Password.Policy.MinClasses}} classes, maximum age {{.Password.Policy.MaxAgeDays}} days, history {{.Password.Policy.History}}, {{.Password.Policy.PBKDF2Iterations}} iterations; breach data: {{.Password.BreachData}}</p>
{{if .Password.Deviations}}<table><tr><th>Reference</th><th>Rule</th><th>In force</th><th>Explanation</th></tr>{{range .Password.Deviations}}<tr><td>{{.Reference}}</td><td>{{.Rule}}</td><td>{{.InForce}}</td><td>{{.Explanation}}</td></tr>{{end}}</table>{{end}}
<h2>Access</h2>
<ul><li>Lockout: {{.Lockout.MaxFailures}} failures per login, {{.Lockout.MaxFailuresPerIP}} per IP in {{.Lockout.Window}}</li>
<li>Sessions: idle {{.Sessions.IdleTimeout}}, absolute {{.Sessions.AbsoluteLifetime}}</li>
<li>Second factor required for {{.TwoFactor.Required}}; {{.TwoFactor.WithTOTP}} of {{.TwoFactor.ActiveUsers}} users with TOTP ({{.TwoFactor.CoveragePct}}%)</li>
<li>SSO: {{.SSO.State}}</li><li>IP allow-lists: UI {{join .Network.UIAllow ", "}}; API {{join .Network.APIAllow ", "}}</li></ul>
<h2>Retention, backups, keys, audit</h2>
<ul><li>Audit trail {{.Retention.Audit}}, access traces {{.Retention.AuditAccess}}, personal data {{.Retention.Data}}</li>
<li>Backups: {{.Backups.State}}{{with .Backups.Status}}; last backup {{stamp .LastBackup}}, verification {{stamp .LastVerify}} ({{.VerifyOK}}), restore test {{stamp .LastRestoreTest}} ({{.RestoreOK}}){{end}}</li>
<li>Master key: {{.Keys.MasterProvider}}</li>{{range .Keys.Keys}}<li>{{.Name}} ({{.Provider}} {{.State}}): {{.AgeDays}} days</li>{{end}}
<li>Audit: {{.Audit.Events}} events, verification {{if .Audit.VerifyOK}}OK{{else}}FAILED {{.Audit.VerifyProblem}}{{end}}, last checkpoint {{stamp .Audit.LastCheckpoint}}; {{.Audit.ClockFlagged}} event(s) flagged for clock offset</li>
<li>Clock: {{join .Clock.Servers ", "}} (threshold {{.Clock.MaxOffset}})</li></ul>
<h2>Open incidents</h2>
<ul>{{range .Incidents}}<li>{{.Ref}} {{.Title}} ({{.Criticality}}), deadline {{stamp .Deadline}}{{if .Overdue}} <b>OVERDUE</b>{{end}}</li>{{else}}<li>none</li>{{end}}</ul>
<h2>Controls</h2>
<table><tr><th>Control</th><th>In force</th><th>Status</th><th>Evidence</th></tr>
{{range .Controls}}<tr class="{{if .InForce}}yes{{else}}no{{end}}"><td>{{.ID}} {{.Title}}</td><td>{{if .InForce}}yes{{else}}no{{end}}</td><td>{{.Status}}</td><td>{{.Evidence}}</td></tr>
{{end}}</table>
</body></html>
`))

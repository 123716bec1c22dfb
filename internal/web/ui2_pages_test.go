package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
)

// The pages of privacy, single sign-on, SFTP accounts, feature flags and
// the dashboard's alerts and open requests: each renders safely, refuses a
// user without its permission (the HTML 403) and acts through its service,
// whose audit event names the signed-in user. (A form without the CSRF
// token is refused for every page by TestUIFormsNeedTheCSRFToken, which
// walks the same route table.)

// post sends a form with the session's CSRF token.
func (e *e2eEnv) post(t *testing.T, sec, path string, v url.Values) (*http.Response, string) {
	t.Helper()
	v.Set("csrf_token", identity.CSRFToken(sec))
	return e.uiRequest(t, sec, "POST", path, v)
}

// audited reports whether the tenant's trail holds an event action by the
// user.
func (e *e2eEnv) audited(t *testing.T, action, userID string) bool {
	t.Helper()
	for _, r := range admAudit(t, e.db, e.tenant.ID) {
		if r.Action == action && r.ActorID == userID {
			return true
		}
	}
	return false
}

// refused checks that a viewer gets the HTML 403 page.
func refused(t *testing.T, e *e2eEnv, sec, method, path string) {
	t.Helper()
	var res *http.Response
	var body string
	if method == "POST" {
		res, body = e.post(t, sec, path, url.Values{"name": {"x"}, "kind": {"access"}, "email": {"x@example.com"}, "months": {"3"}})
	} else {
		res, body = e.uiRequest(t, sec, method, path, nil)
	}
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Not allowed") {
		t.Errorf("viewer %s %s: %d, want the 403 page", method, path, res.StatusCode)
	}
}

func TestUIPrivacyRequests(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	dpo := e.user(t, "dpo@acme.example", "Dana DPO", "admin")
	sec := e.session(t, dpo)
	c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "ana@example.com", FirstName: "Ana", LastName: `<b>Martin</b>`})
	if err != nil {
		t.Fatal(err)
	}

	// Access: the page offers the report, which holds the person's data.
	res, body := e.post(t, sec, "/privacy/requests", url.Values{"kind": {"access"}, "email": {"ANA@example.com"}})
	if res.StatusCode != 200 || !strings.Contains(body, `id="report-download"`) {
		t.Fatalf("access request: %d\n%s", res.StatusCode, body)
	}
	assertSafePage(t, body, res)
	m := regexp.MustCompile(`href="data:application/json;base64,([^"]+)" download="subject-access-[0-9a-f-]+\.json"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no report download link")
	}
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	var rep privacy.AccessReport
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Format != privacy.AccessFormat || rep.Contact.ID != c.ID || rep.Contact.Email != "ana@example.com" {
		t.Fatalf("report: %v %+v", err, rep.Contact)
	}
	if strings.Contains(body, "<b>Martin</b>") {
		t.Error("the contact's name is not escaped")
	}
	if !e.audited(t, "privacy.access", dpo.ID) || !e.audited(t, "privacy.request.completed", dpo.ID) {
		t.Error("the access request is not audited under the user")
	}

	// Rectification, restriction, erasure: done, then listed as completed.
	res, _ = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"rectification"}, "contact_id": {c.ID}, "new_last_name": {"Martin-Dupont"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("rectification: %d", res.StatusCode)
	}
	if got, _ := e.cs.Get(ctx, e.tenant.ID, c.ID); got.LastName != "Martin-Dupont" {
		t.Errorf("rectified name: %q", got.LastName)
	}
	res, body = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"rectification"}, "contact_id": {c.ID}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "at least one corrected value") {
		t.Errorf("empty rectification: %d", res.StatusCode)
	}
	if res, _ = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"restriction"}, "contact_id": {c.ID}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("restriction: %d", res.StatusCode)
	}
	if res, _ = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"erasure"}, "email": {"ana@example.com"}, "suppress": {"on"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("erasure: %d", res.StatusCode)
	}
	if _, err := e.cs.Get(ctx, e.tenant.ID, c.ID); !errors.Is(err, contacts.ErrNotFound) {
		t.Errorf("after erasure the contact is still there: %v", err)
	}
	// An unknown person: 404 on the page, nothing recorded.
	res, body = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"access"}, "email": {"nobody@example.com"}})
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "No such person") {
		t.Errorf("unknown person: %d", res.StatusCode)
	}

	// A request recorded for later, then past its deadline: overdue on the
	// list and on the dashboard.
	b, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "ben@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ = e.post(t, sec, "/privacy/requests", url.Values{"kind": {"erasure"}, "contact_id": {b.ID}, "defer": {"on"}, "note": {"letter of 3 May"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("deferred request: %d", res.StatusCode)
	}
	e.priv.Now = func() time.Time { return time.Now().Add(40 * 24 * time.Hour) }
	res, body = e.uiRequest(t, sec, "GET", "/privacy/requests", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `id="count-overdue">1<`) || !strings.Contains(body, "letter of 3 May") || strings.Count(body, "b-completed") != 4 {
		t.Errorf("request list: %d\n%s", res.StatusCode, body)
	}
	assertSafePage(t, body, res)
	_, body = e.uiRequest(t, sec, "GET", "/", nil)
	if !strings.Contains(body, `id="open-requests"`) || !strings.Contains(body, "1 overdue") {
		t.Error("the dashboard does not show the overdue request")
	}

	// A viewer: refused, and no privacy section in the navigation.
	v := e.user(t, "victor@acme.example", "Victor", "viewer")
	vs := e.session(t, v)
	refused(t, e, vs, "GET", "/privacy/requests")
	refused(t, e, vs, "POST", "/privacy/requests")
	refused(t, e, vs, "GET", "/privacy/retention")
	refused(t, e, vs, "POST", "/privacy/retention/dry-run")
	if _, body := e.uiRequest(t, vs, "GET", "/", nil); strings.Contains(body, "/privacy/") {
		t.Error("the viewer's dashboard links to the privacy pages")
	}
}

func TestUIRetentionRules(t *testing.T) {
	e := newUIStack(t)
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	res, _ := e.post(t, sec, "/privacy/retention", url.Values{"kind": {privacy.RuleMessageContent}, "months": {"13"}, "enabled": {"on"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("save rule: %d", res.StatusCode)
	}
	rules, err := e.priv.RetentionRules(context.Background(), e.tenant.ID)
	if err != nil || len(rules) != 1 || rules[0].Months != 13 || !rules[0].Enabled {
		t.Fatalf("rules: %v %+v", err, rules)
	}
	if !e.audited(t, "retention.rule.set", admin.ID) {
		t.Error("the rule change is not audited under the user")
	}
	for _, bad := range []url.Values{{"kind": {privacy.RuleMessageContent}, "months": {"0"}}, {"kind": {"everything"}, "months": {"3"}}, {"kind": {privacy.RuleMessageContent}, "months": {"x"}}} {
		if res, _ := e.post(t, sec, "/privacy/retention", bad); res.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("bad rule %v: %d", bad, res.StatusCode)
		}
	}
	res, body := e.post(t, sec, "/privacy/retention/dry-run", url.Values{})
	if res.StatusCode != 200 || !strings.Contains(body, `id="dry-run-report"`) || !strings.Contains(body, privacy.RuleMessageContent) {
		t.Errorf("dry run: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)
	if !e.audited(t, "retention.dry_run", admin.ID) && !e.audited(t, "retention.run", admin.ID) {
		var acts []string
		for _, r := range admAudit(t, e.db, e.tenant.ID) {
			acts = append(acts, r.Action)
		}
		t.Errorf("the dry run is not audited under the user: %v", acts)
	}
}

func TestUISingleSignOnPages(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	// Without a provider: no button, the password form.
	_, body := e.uiRequest(t, "", "GET", "/login?tenant=acme", nil)
	if strings.Contains(body, "Sign in with corp") || !strings.Contains(body, `id="password"`) {
		t.Error("sign-in page without a provider")
	}
	if _, err := e.sso.CreateProvider(ctx, e.tenant.ID, sso.NewProvider{Name: "corp", Kind: sso.KindOIDC, ClientSecret: "idp-client-secret",
		Config: sso.Config{BaseURL: "https://relais.example", Issuer: "https://idp.example", ClientID: "relais"}}, false); err != nil {
		t.Fatal(err)
	}
	res, body := e.uiRequest(t, "", "GET", "/login?tenant=acme", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `href="/sso/acme/corp/login"`) || !strings.Contains(body, `id="password"`) {
		t.Errorf("sign-in page with a provider: %d\n%s", res.StatusCode, body)
	}
	assertSafePage(t, body, res)
	// An unknown organisation looks like one without a provider.
	if _, body := e.uiRequest(t, "", "GET", "/login?tenant=nosuch", nil); strings.Contains(body, "/sso/") {
		t.Error("an unknown organisation gets single sign-on buttons")
	}

	// A rule: added, listed (escaped), deleted.
	res, _ = e.post(t, sec, "/admin/sso/rules", url.Values{"provider": {"corp"}, "claim": {"groups"}, "value": {`<script>x</script>`}, "role": {access.RoleViewer}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("add rule: %d", res.StatusCode)
	}
	res, body = e.uiRequest(t, sec, "GET", "/admin/sso", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "&lt;script&gt;x&lt;/script&gt;") || !strings.Contains(body, "https://idp.example") {
		t.Errorf("SSO page: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)
	rules, _ := e.sso.ListRules(ctx, e.tenant.ID, "")
	if len(rules) != 1 || !e.audited(t, "sso.rule.create", admin.ID) {
		t.Fatalf("rules %d, or not audited", len(rules))
	}
	if res, _ := e.post(t, sec, "/admin/sso/rules", url.Values{"provider": {"corp"}, "claim": {"groups"}, "value": {"x"}}); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a rule without group or role: %d", res.StatusCode)
	}
	if res, _ := e.post(t, sec, "/admin/sso/rules/"+rules[0].ID+"/delete", url.Values{}); res.StatusCode != http.StatusSeeOther || !e.audited(t, "sso.rule.delete", admin.ID) {
		t.Errorf("delete rule: %d", res.StatusCode)
	}

	// No escalation: an SSO administrator without the admin role's
	// permissions cannot map anyone to it.
	role, err := e.acc.CreateRole(ctx, e.tenant.ID, access.Actor{Operator: true}, "SSO admins", "", []access.Permission{access.SSOAdmin})
	if err != nil {
		t.Fatal(err)
	}
	ssoAdmin := e.user(t, "sso@acme.example", "Sam SSO", role.ID)
	ss := e.session(t, ssoAdmin)
	res, body = e.post(t, ss, "/admin/sso/rules", url.Values{"provider": {"corp"}, "claim": {"groups"}, "value": {"it"}, "role": {access.RoleAdmin}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "which you do not hold") {
		t.Errorf("escalating rule: %d", res.StatusCode)
	}
	if rules, _ := e.sso.ListRules(ctx, e.tenant.ID, ""); len(rules) != 0 {
		t.Error("the escalating rule was added")
	}

	// Password sign-in off: the sign-in page offers only the provider, and
	// a password is refused.
	if res, _ := e.post(t, sec, "/admin/sso/password", url.Values{"password_login": {"off"}}); res.StatusCode != http.StatusSeeOther || !e.audited(t, "sso.settings.update", admin.ID) {
		t.Fatalf("password switch: %d", res.StatusCode)
	}
	_, body = e.uiRequest(t, "", "GET", "/login?tenant=acme", nil)
	if strings.Contains(body, `id="password"`) || !strings.Contains(body, `href="/sso/acme/corp/login"`) {
		t.Error("sign-in page with passwords off")
	}
	res, body = e.uiRequest(t, "", "POST", "/login", url.Values{"tenant": {"acme"}, "email": {"root@acme.example"}, "password": {e2ePassword}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "single sign-on button") || !strings.Contains(body, `href="/sso/acme/corp/login"`) {
		t.Errorf("password sign-in with passwords off: %d", res.StatusCode)
	}
	if res, _ := e.post(t, sec, "/admin/sso/password", url.Values{"password_login": {"on"}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("password switch back: %d", res.StatusCode)
	}

	v := e.user(t, "victor@acme.example", "Victor", "viewer")
	vs := e.session(t, v)
	refused(t, e, vs, "GET", "/admin/sso")
	refused(t, e, vs, "POST", "/admin/sso/password")
}

func TestUISFTPAccounts(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	res, _ := e.post(t, sec, "/admin/sftp", url.Values{"name": {"crm"}, "keys": {sftpTestKey + "\n"}, "allow": {"203.0.113.0/24, 198.51.100.7"}, "upload": {"on"}, "mode": {"upsert"}, "expires": {"2030-01-31"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("add account: %d", res.StatusCode)
	}
	list, err := e.sftp.Accounts(ctx, e.tenant.ID)
	if err != nil || len(list) != 1 || len(list[0].Allow) != 2 || strings.Join(list[0].Permissions, ",") != "upload" || list[0].ExpiresAt == nil {
		t.Fatalf("accounts: %v %+v", err, list)
	}
	if !e.audited(t, "sftp_account.create", admin.ID) {
		var acts []string
		for _, r := range admAudit(t, e.db, e.tenant.ID) {
			acts = append(acts, r.Action)
		}
		t.Errorf("the account is not audited under the user: %v", acts)
	}
	res, body := e.uiRequest(t, sec, "GET", "/admin/sftp", nil)
	if res.StatusCode != 200 || !strings.Contains(html.UnescapeString(body), list[0].Keys[0].Fingerprint) || !strings.Contains(body, "user acme.crm") {
		t.Errorf("SFTP page: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)
	for _, bad := range []url.Values{
		{"name": {"crm"}, "keys": {sftpTestKey}, "allow": {"203.0.113.0/24"}, "upload": {"on"}},      // taken
		{"name": {"x2"}, "keys": {"ssh-dss AAAA"}, "allow": {"203.0.113.0/24"}, "upload": {"on"}},    // bad key
		{"name": {"x3"}, "keys": {sftpTestKey}, "allow": {"everywhere"}, "upload": {"on"}},           // bad network
		{"name": {"x4"}, "keys": {sftpTestKey}, "allow": {"203.0.113.0/24"}},                         // no permission
		{"name": {"Bad Name"}, "keys": {sftpTestKey}, "allow": {"203.0.113.0/24"}, "upload": {"on"}}, // bad name
	} {
		if res, body := e.post(t, sec, "/admin/sftp", bad); res.StatusCode/100 != 4 || !strings.Contains(body, `class="error"`) {
			t.Errorf("bad account %v: %d", bad["name"], res.StatusCode)
		}
	}
	if res, _ := e.post(t, sec, "/admin/sftp/"+list[0].ID+"/delete", url.Values{}); res.StatusCode != http.StatusSeeOther || !e.audited(t, "sftp_account.delete", admin.ID) {
		t.Errorf("remove: %d", res.StatusCode)
	}
	if list, _ := e.sftp.Accounts(ctx, e.tenant.ID); len(list) != 0 {
		t.Error("the account is still there")
	}
	v := e.user(t, "victor@acme.example", "Victor", "viewer")
	vs := e.session(t, v)
	refused(t, e, vs, "GET", "/admin/sftp")
	refused(t, e, vs, "POST", "/admin/sftp")
}

func TestUIFlagsAndAlerts(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	res, body := e.uiRequest(t, sec, "GET", "/admin/flags", nil)
	if res.StatusCode != 200 || !strings.Contains(body, flags.SMSSending) || !strings.Contains(body, `action="/admin/flags/`+flags.SMSSending+`"`) {
		t.Fatalf("flags page: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)
	if res, _ := e.post(t, sec, "/admin/flags/"+flags.SMSSending, url.Values{"enabled": {"off"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("switch: %d", res.StatusCode)
	}
	if on, err := e.sup.Flags.Enabled(ctx, e.tenant.ID, flags.SMSSending); err != nil || on {
		t.Errorf("sms_sending after the switch: %v %v", on, err)
	}
	if !e.audited(t, "flag.set", admin.ID) {
		t.Error("the switch is not audited under the user")
	}
	if res, _ := e.post(t, sec, "/admin/flags/no_such_flag", url.Values{"enabled": {"on"}}); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown flag: %d", res.StatusCode)
	}

	// A firing alert of the tenant (as the alert engine records it; its
	// rules need hours of traffic) shows on the dashboard, escaped.
	err := e.db.Tenant(e.tenant.ID).Tx(ctx, func(tx *store.Tx) error {
		now := store.Micros(e.db.Now())
		_, err := tx.Exec(ctx, `INSERT INTO monitor_alerts (tenant_id, id, rule, dedup_key, state, severity, summary, details, fired_at, last_seen_at)
			VALUES ($1, 'a1', 'bounce_rate', 'k', 'firing', 'critical', $2, '{}', $3, $3)`, "Bounce rate <b>12 %</b> over 1 h", now)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	res, body = e.uiRequest(t, sec, "GET", "/", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "Bounce rate &lt;b&gt;12 %&lt;/b&gt; over 1 h") || !strings.Contains(body, "b-failed\">critical") {
		t.Errorf("dashboard alerts: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)

	// A viewer reads the flags (settings:read) without a switch, and cannot
	// post one.
	v := e.user(t, "victor@acme.example", "Victor", "viewer")
	vs := e.session(t, v)
	res, body = e.uiRequest(t, vs, "GET", "/admin/flags", nil)
	if res.StatusCode != 200 || strings.Contains(body, `action="/admin/flags/`) {
		t.Errorf("viewer's flags page: %d", res.StatusCode)
	}
	refused(t, e, vs, "POST", "/admin/flags/"+flags.SMSSending)
	if on, _ := e.sup.Flags.Enabled(ctx, e.tenant.ID, flags.SMSSending); on {
		t.Error("the viewer switched the flag")
	}
}

// TestBrowserPrivacyAndSettings: in a real browser, a data-protection
// officer answers an access request from the form and gets the report to
// download, records an erasure request, and sees both in the list; the
// sign-in page offers the organisation's identity provider; the SSO, SFTP,
// flags and retention pages render; a purge dry run, the export page and an
// invitation of two people work. Screenshots are saved (RELAIS_ARTEFACTS).
func TestBrowserPrivacyAndSettings(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	e.user(t, "dana@acme.example", "Dana Moreau", "admin")
	if _, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "chloe.dubois@example.com", FirstName: "Chloé", LastName: "Dubois"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "dev.patel@example.com", FirstName: "Dev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sso.CreateProvider(ctx, e.tenant.ID, sso.NewProvider{Name: "acme-okta", Kind: sso.KindOIDC, ClientSecret: "idp-client-secret",
		Config: sso.Config{BaseURL: "https://relais.example", Issuer: "https://acme.okta.example", ClientID: "relais", JIT: true}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sso.AddRule(ctx, e.tenant.ID, sso.NewRule{Provider: "acme-okta", Claim: "groups", Value: "marketing", Role: access.RoleEditor}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sftp.AddAccount(ctx, e.tenant.ID, sftpd.NewAccount{Name: "crm-export", Keys: []string{sftpTestKey}, Allow: []string{"203.0.113.0/24"},
		Permissions: []string{sftpd.PermUpload}}); err != nil {
		t.Fatal(err)
	}

	// The sign-in page of the organisation: its identity provider's button.
	e.run(t, "sign-in with SSO", chromedp.Navigate(e.srv.URL+"/login?tenant=acme"), chromedp.WaitVisible(chromedp.ID("sso")))
	if got := e.text(t, "#sso a"); got != "Sign in with acme-okta" {
		t.Errorf("SSO button: %q", got)
	}
	e.shot(t, "21-sign-in-sso")
	e.signIn(t, "dana@acme.example")

	// An access request from the form: the report to download.
	e.run(t, "access request", chromedp.Navigate(e.srv.URL+"/privacy/requests"),
		chromedp.SetValue(chromedp.ID("pr-kind"), "access"),
		chromedp.SendKeys(chromedp.ID("pr-email"), "chloe.dubois@example.com"),
		chromedp.Click(chromedp.ID("pr-submit")),
		chromedp.WaitVisible(chromedp.ID("report-download")))
	attr, err := chromedp.Run(e.browser, chromedp.AttributeValue(chromedp.ID("report-download"), "href"))
	href := attr.Value
	if err != nil || !strings.HasPrefix(href, "data:application/json;base64,") {
		t.Fatalf("report link: %v %.60q", err, href)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(href, "data:application/json;base64,"))
	var rep privacy.AccessReport
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Contact.Email != "chloe.dubois@example.com" {
		t.Errorf("report: %v %q", err, rep.Contact.Email)
	}
	e.shot(t, "22-privacy-access-report")
	// An erasure request recorded while the identity is checked.
	e.run(t, "erasure request", chromedp.Navigate(e.srv.URL+"/privacy/requests"),
		chromedp.SetValue(chromedp.ID("pr-kind"), "erasure"),
		chromedp.SendKeys(chromedp.ID("pr-email"), "dev.patel@example.com"),
		chromedp.Click(chromedp.CSS(`input[name="defer"]`)),
		chromedp.SendKeys(chromedp.ID("pr-note"), "letter received 3 May"),
		chromedp.Click(chromedp.ID("pr-submit")),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if got := e.text(t, "#count-open"); got != "1" {
		t.Errorf("open requests: %q", got)
	}
	if rows := e.text(t, "#requests tbody"); !strings.Contains(rows, "access") || !strings.Contains(rows, "erasure") || !strings.Contains(rows, "letter received 3 May") {
		t.Errorf("request list:\n%s", rows)
	}
	e.shot(t, "23-privacy-requests")
	e.run(t, "dashboard", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("open-requests")))
	e.shot(t, "24-dashboard-requests")
	e.run(t, "retention dry run", chromedp.Navigate(e.srv.URL+"/privacy/retention"),
		chromedp.SetValue(chromedp.ID("m-inactive_contacts"), "18"),
		chromedp.Submit(chromedp.ID("m-inactive_contacts")),
		chromedp.WaitVisible(chromedp.CSS(".notice")),
		chromedp.Click(chromedp.ID("dry-run")),
		chromedp.WaitVisible(chromedp.ID("dry-run-report")))
	e.shot(t, "25-retention")
	// Purge: a dry run of every contact (nothing removed), then the export
	// page, in the browser (CSP, forms).
	e.run(t, "purge dry run", chromedp.Navigate(e.srv.URL+"/privacy/purge"),
		chromedp.Click(chromedp.CSS(`input[name="scope"][value="contacts"]`)),
		chromedp.Click(chromedp.ID("purge-dry-run")),
		chromedp.WaitVisible(chromedp.ID("purge-report")))
	if got := e.text(t, "#purge-items"); !strings.Contains(got, "contacts\t2") || !strings.Contains(strings.ToLower(got), "would remove") {
		t.Errorf("purge dry run: %q", got)
	}
	e.shot(t, "29-purge-dry-run")
	e.run(t, "export page", chromedp.Navigate(e.srv.URL+"/privacy/export"), chromedp.WaitVisible(chromedp.ID("ex-key")))
	// Invite two people at once from the users page.
	e.run(t, "invite", chromedp.Navigate(e.srv.URL+"/admin/users"),
		chromedp.SendKeys(chromedp.ID("u-people"), "ines.moreau@example.com,Ines Moreau,viewer\njonas.berg@example.com,Jonas Berg"),
		chromedp.Click(chromedp.ID("invite")),
		chromedp.WaitVisible(chromedp.ID("invited")))
	if got := e.text(t, "#invited tbody"); !strings.Contains(got, "Ines Moreau") || !strings.Contains(got, "Jonas Berg") || strings.Count(got, "/enrol?token=") != 2 {
		t.Errorf("invited: %q", got)
	}
	e.shot(t, "30-invite")
	for _, p := range []struct{ path, sel, name string }{{"/admin/sso", "#sso-rules", "26-sso"}, {"/admin/sftp", "#sftp-accounts", "27-sftp"}, {"/admin/flags", "#flags", "28-flags"}} {
		e.run(t, p.path, chromedp.Navigate(e.srv.URL+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
		e.shot(t, p.name)
	}
	if got := e.text(t, "#flags tbody"); !strings.Contains(got, flags.SMSSending) {
		t.Errorf("flags: %q", got)
	}
	t.Logf("screenshots in %s", e.shots)
}

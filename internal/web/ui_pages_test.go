package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// uiRequest sends a request as a session (no session when secret is
// empty) to the stack's handler; form, when not nil, is posted.
func (e *e2eEnv) uiRequest(t *testing.T, secret, method, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "https://relais.test"+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if secret != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: secret})
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (e *e2eEnv) session(t *testing.T, u identity.User) string {
	t.Helper()
	ns, err := e.id.StartSession(context.Background(), e.tenant.ID, u.ID, identity.MethodPassword, identity.Client{IP: "192.0.2.9", UserAgent: "ui-test"})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Secret
}

// TestUIPagesRenderSafely: every page an administrator can open renders
// (200), escapes the tenant's data, has no inline script, style or event
// handler, and carries the strict CSP; a contact whose name is markup is
// shown as text.
func TestUIPagesRenderSafely(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root <b>Admin</b>", "admin")
	sec := e.session(t, admin)
	c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "xss@example.com", FirstName: `<script>alert(1)</script>`, LastName: `"onmouseover="x`})
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.cs.CreateList(ctx, e.tenant.ID, `<img src=x onerror=alert(2)>`, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.AddToList(ctx, e.tenant.ID, list.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/contacts/" + c.ID, "/contacts?q=xss%40example.com", "/contacts?list=" + list.ID, "/admin/users/" + admin.ID}
	for _, rt := range e.server.uiAppRoutes() {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		if method == "GET" && !strings.Contains(path, "{") {
			paths = append(paths, path)
		}
	}
	paths = append(paths, "/", "/account/sessions", "/account/password", "/account/totp")
	for _, p := range paths {
		res, body := e.uiRequest(t, sec, "GET", p, nil)
		if res.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, res.StatusCode)
			continue
		}
		t.Run(p, func(t *testing.T) { assertSafePage(t, body, res) })
		for _, bad := range []string{"<script>alert", "<img src=x", `"onmouseover="`, "<b>Admin</b>"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: unescaped %q", p, bad)
			}
		}
	}
}

// TestUIFormsNeedTheCSRFToken: every state-changing page refuses a form
// without the session's CSRF token (403 page) and changes nothing, even
// from the same site; a cross-site form is refused before that.
func TestUIFormsNeedTheCSRFToken(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	before, _ := e.cs.Count(ctx, e.tenant.ID)
	routes := append(e.server.uiAppRoutes(), Route{Pattern: "POST /account/sessions/revoke"}, Route{Pattern: "POST /account/password"}, Route{Pattern: "POST /account/totp"})
	n := 0
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		if method != "POST" {
			continue
		}
		path = strings.NewReplacer("{id}", "x", "{action}", "disable").Replace(path)
		form := url.Values{"email": {"csrf@example.com"}, "name": {"csrf"}, "csrf_token": {"forged"}}
		res, body := e.uiRequest(t, sec, "POST", path, form)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Form refused") {
			t.Errorf("POST %s with a wrong CSRF token: %d", path, res.StatusCode)
		}
		n++
	}
	if n < 25 {
		t.Errorf("only %d forms checked", n)
	}
	// The right token works (the same request otherwise).
	res, _ := e.uiRequest(t, sec, "POST", "/contacts/new", url.Values{"email": {"ok@example.com"}, "csrf_token": {identity.CSRFToken(sec)}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /contacts/new with the token: %d", res.StatusCode)
	}
	if after, _ := e.cs.Count(ctx, e.tenant.ID); after != before+1 {
		t.Errorf("contacts: %d -> %d, want one more", before, after)
	}
	// Cross-site: refused with the token too.
	req := httptest.NewRequest("POST", "https://relais.test/contacts/new", strings.NewReader(url.Values{"email": {"x@example.com"}, "csrf_token": {identity.CSRFToken(sec)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: sec})
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "another site") {
		t.Errorf("cross-site form: %d", rec.Code)
	}
}

// TestTemplatePreviewIsolated: the preview of a template's HTML is served
// with a CSP that runs no script and lets only this site frame it.
func TestTemplatePreviewIsolated(t *testing.T) {
	e := newUIStack(t)
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	res, _ := e.uiRequest(t, sec, "POST", "/templates/new", url.Values{"csrf_token": {identity.CSRFToken(sec)}, "name": {"T"}, "channel": {"email"},
		"locale": {"en"}, "subject": {"Hi"}, "html": {`<p>Hi</p><script>alert(1)</script><a href="{{.links.unsubscribe}}">u</a>`}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create template: %d", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	id := strings.TrimPrefix(strings.Split(loc, "?")[0], "/templates/")
	res, _ = e.uiRequest(t, sec, "GET", "/templates/"+id+"/preview", nil)
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || !strings.Contains(csp, "frame-ancestors 'self'") {
		t.Errorf("preview: %d %q", res.StatusCode, csp)
	}
	_, page := e.uiRequest(t, sec, "GET", "/templates/"+id, nil)
	if !strings.Contains(page, `sandbox="allow-same-origin"`) || strings.Contains(page, "allow-scripts") {
		t.Error("the preview frames are not sandboxed without scripts")
	}
	// An SMS template: its text and segment count.
	res, _ = e.uiRequest(t, sec, "POST", "/templates/new", url.Values{"csrf_token": {identity.CSRFToken(sec)}, "name": {"S"}, "channel": {"sms"},
		"locale": {"en"}, "text": {"Hi {{.contact.first_name}}, " + strings.Repeat("sale! ", 30)}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create SMS template: %d", res.StatusCode)
	}
	_, page = e.uiRequest(t, sec, "GET", strings.Split(res.Header.Get("Location"), "?")[0], nil)
	if !strings.Contains(page, "Hi Ana, sale!") || !strings.Contains(page, "<strong>2 segments</strong>") || strings.Contains(page, "<iframe") {
		t.Errorf("SMS preview without its text or its 2 segments")
	}
	// Without a session: sign-in, never the content.
	res, _ = e.uiRequest(t, "", "GET", "/templates/"+id+"/preview", nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("anonymous preview: %d", res.StatusCode)
	}
}

func TestChartAxis(t *testing.T) {
	top, ticks := axis(5)
	if top != 6 || len(ticks) != 4 || ticks[1].Label != "2" {
		t.Errorf("axis(5): %d %v", top, ticks)
	}
	top, _ = axis(1234)
	if top != 1500 {
		t.Errorf("axis(1234): %d", top)
	}
	c := lineChart("x", []string{"a"}, []string{"s-sent"}, [][]int64{{0, 3}}, []string{"t0", "t1"})
	if c.Empty || len(c.Series) != 1 || c.Series[0].Last != 3 || strings.Count(c.Series[0].Points, ",") != 2 {
		t.Errorf("line chart: %+v", c)
	}
	if c := barChart("x", make([]int64, 24), nil); !c.Empty {
		t.Error("an all-zero bar chart is not empty")
	}
}

// TestSecurityPolicyForm: an administrator changes the policy from the
// page; the tenant's other overrides are kept, a value below the
// platform's floor is refused (nothing changes), and so is an allow-list
// that would lock the administrator out.
func TestSecurityPolicyForm(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	if _, err := e.id.Tenants.SetPolicy(ctx, e.tenant.ID, []byte(`{"audit":{"retention":"400d"}}`)); err != nil {
		t.Fatal(err)
	}
	form := func(idle, ui string) url.Values {
		return url.Values{"csrf_token": {identity.CSRFToken(sec)}, "preset": {"nist"}, "min_length": {"15"}, "max_failures": {"7"},
			"two_factor": {"none"}, "idle_timeout": {idle}, "absolute_lifetime": {"10h"}, "ui_allow": {ui}, "api_allow": {"198.51.100.0/24"}}
	}
	res, body := e.uiRequest(t, sec, "POST", "/admin/security", form("10m", ""))
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d %s", res.StatusCode, body)
	}
	pol, err := e.id.Tenants.Policy(ctx, e.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pol.Session.IdleTimeout.D() != 10*time.Minute || pol.Password.MinLength != 15 || pol.Password.Preset != "nist" ||
		len(pol.Network.APIAllow) != 1 || pol.Audit.Retention.D() != 400*24*time.Hour {
		t.Errorf("policy after the form: %+v", pol)
	}
	for _, bad := range []url.Values{form("10s", ""), form("10m", "203.0.113.0/24")} {
		res, _ := e.uiRequest(t, sec, "POST", "/admin/security", bad)
		if res.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("a bad policy: %d", res.StatusCode)
		}
	}
	if p2, _ := e.id.Tenants.Policy(ctx, e.tenant.ID); p2.Session.IdleTimeout != pol.Session.IdleTimeout || len(p2.Network.UIAllow) != 0 {
		t.Error("a refused form changed the policy")
	}
}

// TestCampaignControlsFromPages: a campaign made and scheduled from the
// pages for a later time is paused, resumed and cancelled with its
// buttons; a schedule in the past is refused on the page; an editor
// without campaigns:send sees no button and is refused.
func TestCampaignControlsFromPages(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	tok := identity.CSRFToken(sec)
	l, err := e.cs.CreateList(ctx, e.tenant.ID, "L", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "p@example.com", FirstName: "P",
		Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Source: contacts.SourceForm, Wording: "Yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.AddToList(ctx, e.tenant.ID, l.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	res, _ := e.uiRequest(t, sec, "POST", "/templates/new", url.Values{"csrf_token": {tok}, "name": {"T"}, "channel": {"email"}, "locale": {"en"},
		"subject": {"Hi"}, "html": {`<p>Hi {{.contact.first_name}}</p><a href="{{.links.unsubscribe}}">u</a>`}})
	tid := strings.TrimPrefix(strings.Split(res.Header.Get("Location"), "?")[0], "/templates/")
	res, body := e.uiRequest(t, sec, "POST", "/campaigns/new", url.Values{"csrf_token": {tok}, "name": {"Later"}, "template": {tid}, "list": {l.ID}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create campaign: %d %s", res.StatusCode, body)
	}
	path := strings.Split(res.Header.Get("Location"), "?")[0]
	id := strings.TrimPrefix(path, "/campaigns/")
	state := func() string {
		got, err := e.camp.Get(ctx, e.tenant.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		return got.State
	}
	// The draft is edited from its page: the form comes filled in, a bad
	// name is refused and changes nothing, a good one is saved.
	if _, body := e.uiRequest(t, sec, "GET", path, nil); !strings.Contains(body, `href="`+path+`/edit"`) || !strings.Contains(body, "Delete draft") {
		t.Fatal("a draft's page offers no Edit and Delete")
	}
	if res, body := e.uiRequest(t, sec, "GET", path+"/edit", nil); res.StatusCode != http.StatusOK || !strings.Contains(body, `value="Later"`) ||
		!strings.Contains(body, `value="`+l.ID+`" checked`) || !strings.Contains(body, `action="`+path+`/edit"`) {
		t.Fatalf("edit page: %d %s", res.StatusCode, body)
	}
	if res, body := e.uiRequest(t, sec, "POST", path+"/edit", url.Values{"csrf_token": {tok}, "name": {" "}, "template": {tid}, "list": {l.ID}}); res.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, `class="error"`) {
		t.Fatalf("edit with no name: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, sec, "POST", path+"/edit", url.Values{"csrf_token": {tok}, "name": {"Later, revised"}, "template": {tid}, "list": {l.ID}}); res.StatusCode != http.StatusSeeOther ||
		res.Header.Get("Location") != path+"?done=saved" {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if got, _ := e.camp.Get(ctx, e.tenant.ID, id); got.Name != "Later, revised" || got.State != "draft" {
		t.Fatalf("after edit: %+v", got)
	}
	// Another draft is deleted from its page.
	res, _ = e.uiRequest(t, sec, "POST", "/campaigns/new", url.Values{"csrf_token": {tok}, "name": {"Scratch"}, "template": {tid}, "list": {l.ID}})
	scratch := strings.Split(res.Header.Get("Location"), "?")[0]
	if res, _ := e.uiRequest(t, sec, "POST", scratch+"/delete", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/campaigns?done=deleted" {
		t.Fatalf("delete draft: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := e.uiRequest(t, sec, "GET", scratch, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted draft's page: %d", res.StatusCode)
	}
	past := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
	if res, body := e.uiRequest(t, sec, "POST", path+"/schedule", url.Values{"csrf_token": {tok}, "when": {"at"}, "send_at": {past}}); res.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, `class="error"`) || state() != "draft" {
		t.Fatalf("schedule in the past: %d, state %s", res.StatusCode, state())
	}
	later := time.Now().UTC().Add(48 * time.Hour).Format("2006-01-02T15:04")
	for _, step := range []struct{ action, want string }{{"schedule", "scheduled"}, {"pause", "paused"}, {"resume", "scheduled"}, {"cancel", "cancelled"}} {
		res, body := e.uiRequest(t, sec, "POST", path+"/"+step.action, url.Values{"csrf_token": {tok}, "when": {"at"}, "send_at": {later}})
		if res.StatusCode != http.StatusSeeOther || state() != step.want {
			t.Fatalf("%s: %d, state %s, want %s: %s", step.action, res.StatusCode, state(), step.want, body)
		}
	}
	if res, body := e.uiRequest(t, sec, "POST", path+"/resume", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusConflict || !strings.Contains(body, `class="error"`) {
		t.Errorf("resume a cancelled campaign: %d", res.StatusCode)
	}
	// Past the draft: neither edited nor deleted, and no button for it.
	if res, body := e.uiRequest(t, sec, "GET", path+"/edit", nil); res.StatusCode != http.StatusConflict || !strings.Contains(body, "Only a draft") {
		t.Errorf("edit page of a cancelled campaign: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, sec, "POST", path+"/edit", url.Values{"csrf_token": {tok}, "name": {"Sneaky"}, "template": {tid}, "list": {l.ID}}); res.StatusCode != http.StatusConflict {
		t.Errorf("edit a cancelled campaign: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, sec, "POST", path+"/delete", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusConflict {
		t.Errorf("delete a cancelled campaign: %d", res.StatusCode)
	}
	if got, _ := e.camp.Get(ctx, e.tenant.ID, id); got.Name != "Later, revised" {
		t.Errorf("a cancelled campaign was renamed: %q", got.Name)
	}
	if _, body := e.uiRequest(t, sec, "GET", path, nil); strings.Contains(body, "Delete draft") {
		t.Error("a cancelled campaign's page offers Delete draft")
	}
	// Quiet hours, from the campaigns page.
	if res, _ := e.uiRequest(t, sec, "POST", "/campaigns/settings", url.Values{"csrf_token": {tok}, "quiet_start": {"21:00"}, "quiet_end": {"08:00"}, "timezone": {"Europe/Paris"}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("campaign settings: %d", res.StatusCode)
	}
	if st, _ := e.camp.GetSettings(ctx, e.tenant.ID); st.QuietStart != "21:00" || st.TimeZone != "Europe/Paris" {
		t.Errorf("settings: %+v", st)
	}
	if res, _ := e.uiRequest(t, sec, "POST", "/campaigns/settings", url.Values{"csrf_token": {tok}, "quiet_start": {"25:00"}, "quiet_end": {"08:00"}, "timezone": {"Mars/Olympus"}}); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("bad campaign settings: %d", res.StatusCode)
	}
	// An editor of a role without campaigns:send.
	if _, err := e.acc.CreateRole(ctx, e.tenant.ID, access.Actor{Operator: true}, "Writer", "", []access.Permission{access.CampaignsRead, access.CampaignsWrite}); err != nil {
		t.Fatal(err)
	}
	writer := e.user(t, "w@acme.example", "Writer", "Writer")
	wsec := e.session(t, writer)
	_, body = e.uiRequest(t, wsec, "GET", path, nil)
	if strings.Contains(body, "/pause") || strings.Contains(body, "/schedule") {
		t.Error("a user without campaigns:send sees the controls")
	}
	if res, _ := e.uiRequest(t, wsec, "POST", path+"/pause", url.Values{"csrf_token": {identity.CSRFToken(wsec)}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("pause without campaigns:send: %d", res.StatusCode)
	}
}

// TestDashboardAndReportOnBothStores: on SQLite and PostgreSQL, a campaign
// sent from the pages to the SMTP sink shows on the dashboard (today's
// counts by channel) and in its report (counts and the chart's series).
func TestDashboardAndReportOnBothStores(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newUIStackOn(t, db)
		ctx := context.Background()
		admin := e.user(t, "root@acme.example", "Root", "admin")
		sec := e.session(t, admin)
		tok := identity.CSRFToken(sec)
		l, err := e.cs.CreateList(ctx, e.tenant.ID, "L", "")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: fmt.Sprintf("p%d@example.com", i), FirstName: "P",
				Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Source: contacts.SourceForm, Wording: "Yes"}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.cs.AddToList(ctx, e.tenant.ID, l.ID, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		res, _ := e.uiRequest(t, sec, "POST", "/templates/new", url.Values{"csrf_token": {tok}, "name": {"T"}, "channel": {"email"}, "locale": {"en"},
			"subject": {"Hi"}, "html": {`<p>Hi {{.contact.first_name}}</p><a href="{{.links.unsubscribe}}">u</a>`}})
		tid := strings.TrimPrefix(strings.Split(res.Header.Get("Location"), "?")[0], "/templates/")
		res, _ = e.uiRequest(t, sec, "POST", "/campaigns/new", url.Values{"csrf_token": {tok}, "name": {"Now"}, "template": {tid}, "list": {l.ID}})
		path := strings.Split(res.Header.Get("Location"), "?")[0]
		if res, body := e.uiRequest(t, sec, "POST", path+"/schedule", url.Values{"csrf_token": {tok}, "when": {"now"}}); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("schedule: %d %s", res.StatusCode, body)
		}
		if err := e.sink.WaitFor(3, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		var body string
		for i := 0; i < 200; i++ {
			_, body = e.uiRequest(t, sec, "GET", path, nil)
			if strings.Contains(body, `id="r-handed">3<`) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(body, `id="r-handed">3<`) || strings.Count(body, "<polyline") != 4 {
			t.Fatalf("report: no 3 handed off or no chart:\n%s", body)
		}
		_, body = e.uiRequest(t, sec, "GET", "/", nil)
		if !strings.Contains(body, "<td>email</td><td class=\"num\">3</td>") || !strings.Contains(body, `class="bar"`) {
			t.Errorf("dashboard without today's 3 emails:\n%s", body)
		}
		// A message's trace.
		var mid string
		if err := db.Tenant(e.tenant.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT id FROM messages WHERE tenant_id = $1 ORDER BY id LIMIT 1`).Scan(&mid)
		}); err != nil {
			t.Fatal(err)
		}
		res, body = e.uiRequest(t, sec, "GET", "/messages?id="+mid, nil)
		if res.StatusCode != 200 || !strings.Contains(body, `id="trace"`) || !strings.Contains(body, "@example.com") || !strings.Contains(body, "b-sent") {
			t.Errorf("message trace: %d", res.StatusCode)
		}
		if res, _ := e.uiRequest(t, sec, "GET", "/messages?id=0190b1c2-0000-7000-8000-000000000000", nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("unknown message: %d", res.StatusCode)
		}
		if res, _ := e.uiRequest(t, sec, "GET", "/messages?id=%27%3Bdrop", nil); res.StatusCode != http.StatusBadRequest && res.StatusCode != http.StatusNotFound {
			t.Errorf("bad message id: %d", res.StatusCode)
		}
	})
}

// TestContactPageEdits: from a contact's page, an editor changes the
// contact (a bad address is refused on the page, nothing written), adds it
// to a list and removes it, records a consent withdrawal with its proof;
// a viewer sees the page without the forms and is refused the changes.
func TestContactPageEdits(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	tok := identity.CSRFToken(sec)
	l, err := e.cs.CreateList(ctx, e.tenant.ID, "L", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "p@example.com", FirstName: "P"})
	if err != nil {
		t.Fatal(err)
	}
	path := "/contacts/" + c.ID
	if res, body := e.uiRequest(t, sec, "POST", path, url.Values{"csrf_token": {tok}, "email": {"not an address"}, "first_name": {"Q"}}); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `class="error"`) {
		t.Errorf("bad email: %d", res.StatusCode)
	}
	if got, _ := e.cs.Get(ctx, e.tenant.ID, c.ID); got.FirstName != "P" {
		t.Error("a refused edit was written")
	}
	if res, _ := e.uiRequest(t, sec, "POST", path, url.Values{"csrf_token": {tok}, "email": {"q@example.com"}, "first_name": {"Q"}, "status": {"active"}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("edit: %d", res.StatusCode)
	}
	if got, _ := e.cs.Get(ctx, e.tenant.ID, c.ID); got.FirstName != "Q" || got.Email != "q@example.com" {
		t.Errorf("after the edit: %+v", got)
	}
	for _, step := range []struct {
		op   string
		want int64
	}{{"add", 1}, {"add", 1}, {"remove", 0}} {
		if res, _ := e.uiRequest(t, sec, "POST", path+"/lists", url.Values{"csrf_token": {tok}, "op": {step.op}, "list": {l.ID}}); res.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: %d", step.op, res.StatusCode)
		}
		if n, _ := e.cs.CountList(ctx, e.tenant.ID, l.ID); n != step.want {
			t.Errorf("after %s: %d members, want %d", step.op, n, step.want)
		}
	}
	if res, _ := e.uiRequest(t, sec, "POST", path+"/consent", url.Values{"csrf_token": {tok}, "channel": {"email"}, "status": {"withdrawn"}, "wording": {"Stop"}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("consent: %d", res.StatusCode)
	}
	if h, _ := e.cs.ConsentHistory(ctx, e.tenant.ID, c.ID); len(h) != 1 || h[0].Status != contacts.ConsentWithdrawn || h[0].Source != contacts.SourceAdmin {
		t.Errorf("consent history: %+v", h)
	}
	viewer := e.user(t, "v@acme.example", "V", "viewer")
	vsec := e.session(t, viewer)
	_, body := e.uiRequest(t, vsec, "GET", path, nil)
	if !strings.Contains(body, "q@example.com") || strings.Contains(body, path+"/lists") || strings.Contains(body, path+"/delete") || !strings.Contains(body, "<fieldset disabled>") {
		t.Error("the viewer's contact page offers changes")
	}
	if res, _ := e.uiRequest(t, vsec, "POST", path+"/delete", url.Values{"csrf_token": {identity.CSRFToken(vsec)}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer deletes a contact: %d", res.StatusCode)
	}
}

// TestRolesAndExportFromPages: a custom role is created and deleted from
// the roles page (a built-in one cannot be), and the contacts page's
// export link downloads the CSV with the session.
func TestRolesAndExportFromPages(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	tok := identity.CSRFToken(sec)
	if res, _ := e.uiRequest(t, sec, "POST", "/admin/roles", url.Values{"csrf_token": {tok}, "name": {"Readers"}, "perm": {"contacts:read", "lists:read"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create role: %d", res.StatusCode)
	}
	role, err := e.acc.GetRole(ctx, e.tenant.ID, "Readers")
	if err != nil || len(role.Permissions) != 2 {
		t.Fatalf("role: %+v %v", role, err)
	}
	if res, _ := e.uiRequest(t, sec, "POST", "/admin/roles/"+role.ID+"/delete", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("delete role: %d", res.StatusCode)
	}
	if _, err := e.acc.GetRole(ctx, e.tenant.ID, role.ID); err == nil {
		t.Error("the role is still there")
	}
	builtin, _ := e.acc.GetRole(ctx, e.tenant.ID, "viewer")
	if res, _ := e.uiRequest(t, sec, "POST", "/admin/roles/"+builtin.ID+"/delete", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusConflict {
		t.Errorf("delete a built-in role: %d", res.StatusCode)
	}
	if _, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "x@example.com", FirstName: "X"}); err != nil {
		t.Fatal(err)
	}
	_, page := e.uiRequest(t, sec, "GET", "/contacts", nil)
	if !strings.Contains(page, `href="/api/v1/contacts/export?format=csv"`) {
		t.Fatal("no export link")
	}
	res, body := e.uiRequest(t, sec, "GET", "/api/v1/contacts/export?format=csv", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "x@example.com") {
		t.Errorf("export with the session: %d", res.StatusCode)
	}
}

// TestUsersGroupsAndClientsFromPages: an administrator adds a user with a
// role (the one-time enrolment link is shown), disables and enables them
// (an administrator cannot disable themselves), makes a group with a
// member and a role, and creates an API client whose secret is shown once.
func TestUsersGroupsAndClientsFromPages(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	tok := identity.CSRFToken(sec)
	res, body := e.uiRequest(t, sec, "POST", "/admin/users", url.Values{"csrf_token": {tok}, "name": {"Nina New"}, "email": {"nina@acme.example"}, "role": {"editor"}})
	if res.StatusCode != 200 || !strings.Contains(body, "/enrol?token=") {
		t.Fatalf("add user: %d", res.StatusCode)
	}
	nina, err := e.id.FindUserByEmail(ctx, e.tenant.ID, "nina@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if perms, _ := e.acc.UserPermissions(ctx, e.tenant.ID, nina.ID); !perms.Has(access.CampaignsSend) {
		t.Error("the new user lacks the editor role")
	}
	for _, step := range []struct{ action, want string }{{"disable", identity.StatusDisabled}, {"enable", identity.StatusActive}} {
		if res, _ := e.uiRequest(t, sec, "POST", "/admin/users/"+nina.ID+"/"+step.action, url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusSeeOther {
			t.Errorf("%s: %d", step.action, res.StatusCode)
		}
		if u, _ := e.id.GetUser(ctx, e.tenant.ID, nina.ID); u.Status != step.want {
			t.Errorf("after %s: %s", step.action, u.Status)
		}
	}
	if res, _ := e.uiRequest(t, sec, "POST", "/admin/users/"+admin.ID+"/disable", url.Values{"csrf_token": {tok}}); res.StatusCode != http.StatusConflict {
		t.Errorf("disable oneself: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, sec, "POST", "/admin/groups", url.Values{"csrf_token": {tok}, "name": {"Marketing"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("create group: %d", res.StatusCode)
	}
	g, err := e.acc.GetGroup(ctx, e.tenant.ID, "Marketing")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []url.Values{{"op": {"add-member"}, "user": {nina.ID}}, {"op": {"add-role"}, "role": {"auditor"}}} {
		f.Set("csrf_token", tok)
		if res, _ := e.uiRequest(t, sec, "POST", "/admin/groups/"+g.ID, f); res.StatusCode != http.StatusSeeOther {
			t.Errorf("group %s: %d", f.Get("op"), res.StatusCode)
		}
	}
	if perms, _ := e.acc.UserPermissions(ctx, e.tenant.ID, nina.ID); !perms.Has(access.AuditRead) {
		t.Error("the group's role does not reach its member")
	}
	_, page := e.uiRequest(t, sec, "GET", "/admin/groups", nil)
	if !strings.Contains(page, "Nina New") || !strings.Contains(page, "auditor") {
		t.Error("the groups page does not show the member and the role")
	}
	res, body = e.uiRequest(t, sec, "POST", "/admin/clients", url.Values{"csrf_token": {tok}, "name": {"CRM sync"}, "role": {"viewer"}, "allow": {"198.51.100.0/24"}})
	if res.StatusCode != 200 || !strings.Contains(body, `id="client-secret"`) {
		t.Fatalf("create client: %d", res.StatusCode)
	}
	_, page = e.uiRequest(t, sec, "GET", "/admin/clients", nil)
	if strings.Contains(page, `id="client-secret"`) || !strings.Contains(page, "CRM sync") {
		t.Error("the client's secret is shown again, or the client is missing")
	}
}

// TestSessionsPageRevokes: a user sees their sessions, signs one out from
// the page (it no longer works), and cannot sign out another user's.
func TestSessionsPageRevokes(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	u := e.user(t, "u@acme.example", "U", "viewer")
	other := e.user(t, "o@acme.example", "O", "viewer")
	a, b, o := e.session(t, u), e.session(t, u), e.session(t, other)
	list, err := e.id.ListSessions(ctx, e.tenant.ID, u.ID, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("sessions: %d %v", len(list), err)
	}
	_, page := e.uiRequest(t, a, "GET", "/account/sessions", nil)
	if strings.Count(page, `name="id"`) != 1 || !strings.Contains(page, "this session") {
		t.Error("the page should offer to sign out the other session only")
	}
	others, _ := e.id.ListSessions(ctx, e.tenant.ID, other.ID, nil)
	if res, _ := e.uiRequest(t, a, "POST", "/account/sessions/revoke", url.Values{"csrf_token": {identity.CSRFToken(a)}, "id": {others[0].ID}}); res.StatusCode != http.StatusNotFound {
		t.Errorf("revoke another user's session: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, o, "GET", "/", nil); res.StatusCode != 200 {
		t.Error("the other user's session was revoked")
	}
	var target string
	bList, _ := e.id.ListSessions(ctx, e.tenant.ID, u.ID, mustPrincipal(t, e, b).SessionHash)
	for _, s := range bList {
		if s.Current {
			target = s.ID
		}
	}
	if res, _ := e.uiRequest(t, a, "POST", "/account/sessions/revoke", url.Values{"csrf_token": {identity.CSRFToken(a)}, "id": {target}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, b, "GET", "/", nil); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login" {
		t.Errorf("the revoked session still works: %d", res.StatusCode)
	}
	if res, _ := e.uiRequest(t, a, "GET", "/", nil); res.StatusCode != 200 {
		t.Error("the current session was signed out")
	}
}

func mustPrincipal(t *testing.T, e *e2eEnv, secret string) *identity.Principal {
	t.Helper()
	p, err := e.id.Authenticate(context.Background(), secret, identity.Client{IP: "192.0.2.9"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

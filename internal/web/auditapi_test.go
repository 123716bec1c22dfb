package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
)

// TestAuditAPI: an auditor searches the trail with filters and a cursor,
// reads the log's public key and latest checkpoint, verifies the log, and
// exports a period that verifies offline with only that key (and fails
// when altered); each read and export is itself in the trail; bad queries
// are 400; a viewer is refused; tenant B sees only its own log.
func TestAuditAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		admin, _ := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		aud, _ := e.user(t, e.a.ID, "audrey@acme.example", "Audrey Auditor", access.RoleAuditor)
		viewer, _ := e.user(t, e.a.ID, "vic@acme.example", "Vic Viewer", access.RoleViewer)
		as := e.session(t, e.a.ID, admin.ID)
		au := e.session(t, e.a.ID, aud.ID)
		for i := 0; i < 3; i++ {
			res, body := e.call(t, as, "POST", "/api/v1/users/"+viewer.ID+"/disable", "")
			admWant(t, "disable", res, body, 200, "")
			res, body = e.call(t, as, "POST", "/api/v1/users/"+viewer.ID+"/enable", "")
			admWant(t, "enable", res, body, 200, "")
		}

		// Search: filters and pages, newest first.
		var page audit.Page
		res, body := e.call(t, au, "GET", "/api/v1/audit/events?action=user.disable&actor_id="+admin.ID+"&limit=2", "")
		admWant(t, "search", res, body, 200, "")
		admDecode(t, body, &page)
		if len(page.Events) != 2 || page.Next == "" || page.Events[0].Action != "user.disable" || page.Events[0].Seq <= page.Events[1].Seq {
			t.Fatalf("first page: %s", body)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/events?action=user.disable&actor_id="+admin.ID+"&limit=2&cursor="+page.Next, "")
		admWant(t, "next page", res, body, 200, "")
		page = audit.Page{}
		admDecode(t, body, &page)
		if len(page.Events) != 1 || page.Next != "" {
			t.Fatalf("second page: %s", body)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/events?action=user.*&from=2000-01-01&to="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), "")
		admWant(t, "prefix and period", res, body, 200, "")
		admDecode(t, body, &page)
		if len(page.Events) < 6 {
			t.Fatalf("user.* events: %d", len(page.Events))
		}
		for _, q := range []string{"bogus=1", "from=yesterday", "limit=0", "limit=5000", "cursor=x", "outcome=a%27b", "from=2025-02-01&to=2025-01-01", "action=a&action=b"} {
			res, body := e.call(t, au, "GET", "/api/v1/audit/events?"+q, "")
			admWant(t, "bad query "+q, res, body, 400, problem.CodeValidation)
		}
		vs := e.session(t, e.a.ID, viewer.ID)
		for _, path := range []string{"/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/audit/pubkey", "/api/v1/audit/checkpoint"} {
			res, body := e.call(t, vs, "GET", path, "")
			admWant(t, "viewer "+path, res, body, 403, problem.CodeForbidden)
		}

		// Key, checkpoint, verification.
		var pk struct{ Key, Origin string }
		res, body = e.call(t, au, "GET", "/api/v1/audit/pubkey", "")
		admWant(t, "pubkey", res, body, 200, "")
		admDecode(t, body, &pk)
		if pk.Origin != "relais-audit/"+e.a.ID || !strings.HasPrefix(pk.Key, pk.Origin+"+") {
			t.Fatalf("pubkey: %s", body)
		}
		var cp audit.Checkpoint
		res, body = e.call(t, au, "GET", "/api/v1/audit/checkpoint", "")
		admWant(t, "checkpoint", res, body, 200, "")
		admDecode(t, body, &cp)
		if _, size, _, err := audit.OpenCheckpoint([]byte(cp.Note), pk.Key); err != nil || size != cp.Size || size < 10 {
			t.Fatalf("checkpoint %+v: %v", cp, err)
		}
		var rep audit.Report
		res, body = e.call(t, au, "GET", "/api/v1/audit/verify", "")
		admWant(t, "verify", res, body, 200, "")
		admDecode(t, body, &rep)
		if !rep.OK || rep.Checkpoints != 1 || !rep.KeyAuthenticated {
			t.Fatalf("verify: %s", body)
		}

		// Export: streamed JSON Lines that verify offline.
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?from=2000-01-01", "")
		admWant(t, "export", res, body, 200, "")
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jsonl") || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export headers: %v", res.Header)
		}
		er, err := audit.VerifyExport(bytes.NewReader(body), pk.Key)
		if err != nil || er.TenantID != e.a.ID || er.FirstSeq != 1 || er.Events < 10 {
			t.Fatalf("export: %+v %v", er, err)
		}
		altered := bytes.Replace(body, []byte(`"user.disable"`), []byte(`"user.enable"`), 1)
		if _, err := audit.VerifyExport(bytes.NewReader(altered), pk.Key); err == nil || !strings.Contains(err.Error(), "was altered") {
			t.Fatalf("altered export: %v", err)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?to=2000-01-01&from=2001-01-01", "")
		admWant(t, "export with to before from", res, body, 400, problem.CodeValidation)
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?page=2", "")
		admWant(t, "export with an unknown parameter", res, body, 400, problem.CodeValidation)

		// Reading the trail is in the trail.
		counts := map[string]int{}
		for _, r := range admAudit(t, db, e.a.ID) {
			if r.ActorID == aud.ID {
				counts[r.Category+" "+r.Action]++
			}
		}
		if counts["access audit.search"] != 3 || counts["export audit.export"] != 1 || counts["access audit.verify"] != 1 {
			t.Fatalf("the auditor's reads recorded: %v", counts)
		}

		// Tenant B's auditor sees B's log only.
		bAud, _ := e.user(t, e.b.ID, "bert@beta.example", "Bert Auditor", access.RoleAuditor)
		bs := e.session(t, e.b.ID, bAud.ID)
		res, body = e.call(t, bs, "GET", "/api/v1/audit/export", "")
		admWant(t, "B export", res, body, 200, "")
		if bytes.Contains(body, []byte(e.a.ID)) || bytes.Contains(body, []byte(admin.ID)) {
			t.Fatalf("B's export shows A's log")
		}
		res, body = e.call(t, bs, "GET", "/api/v1/audit/events?actor_id="+admin.ID, "")
		admWant(t, "B searches for A's admin", res, body, 200, "")
		page = audit.Page{}
		admDecode(t, body, &page)
		if len(page.Events) != 0 {
			t.Fatalf("B sees A's events: %s", body)
		}
	})
}

// auditCall is one request of the coverage walk: as a session, or as the
// operator (token) when s is nil.
type auditCall struct {
	s                  *adminSession
	method, path, body string
	// actor is who the audit event must name.
	actor string
}

// notExercised are the mutating routes the coverage walk does not call,
// and why. Every other mutating route must have an example below.
var notExercised = map[string]string{
	"DELETE /api/v1/me/totp": "needs a recent second factor; identity.DisableTOTP records user.totp.disable (internal/identity tests)",
}

// pendingExamples are route areas whose examples their owners add (the
// area was being built when the walk was written, and its service is not
// in newAdminEnv): logged, not failed. Remove an entry once its examples
// are in.
var pendingExamples = map[string]string{
	"/api/v1/contacts":           "contacts API: needs Options.Contacts in the test env",
	"/api/v1/contact-attributes": "contacts API",
	"/api/v1/blocklist":          "contacts API",
	"/api/v1/lists":              "contacts API",
	"/api/v1/segments":           "contacts API",
}

func pendingExample(pattern string) (string, bool) {
	_, path, _ := strings.Cut(pattern, " ")
	for prefix, why := range pendingExamples {
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			return why, true
		}
	}
	return "", false
}

// TestEveryMutatingRouteWritesAnAuditEvent walks the route table: every
// POST, PUT, PATCH and DELETE route that is not public (sign-in, enrolment
// and token endpoints record their own attempts, AUTH-3) is called with a
// valid request by a caller allowed to make it, must succeed, and must
// leave at least one new audit event naming that caller, in the tenant's
// log or, for operator routes, in the operator's. A mutating route with no
// example here fails the test: add one when adding a route.
func TestEveryMutatingRouteWritesAnAuditEvent(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newAdminEnv(t, db)
		admin, _ := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		as := e.session(t, e.a.ID, admin.ID)
		tok, secret, err := optoken.Create(ctx, db, "coverage")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		fresh := func() identity.User {
			n++
			u, _ := e.user(t, e.a.ID, fmt.Sprintf("u%d@acme.example", n), fmt.Sprintf("Target Number%d", n), access.RoleViewer)
			return u
		}
		signedIn := func() (identity.User, *adminSession) {
			n++
			u, enrol := e.user(t, e.a.ID, fmt.Sprintf("me%d@acme.example", n), fmt.Sprintf("Member Number%d", n))
			return u, e.signIn(t, "acme", u.Email, enrol)
		}
		role := func() access.Role {
			n++
			return e.role(t, e.a.ID, fmt.Sprintf("Role %d", n), access.ContactsRead)
		}
		group := func() access.Group {
			n++
			g, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, fmt.Sprintf("Group %d", n), "")
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		client := func() identity.APIClient {
			n++
			c, _, err := e.id.CreateClient(ctx, e.a.ID, fmt.Sprintf("client-%d", n), nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		must := func(err error) {
			if err != nil {
				t.Helper()
				t.Fatal(err)
			}
		}
		ssoProvider := func() {
			if _, err := e.sso.GetProvider(ctx, e.a.ID, "corp"); err == nil {
				return
			}
			_, err := e.sso.CreateProvider(ctx, e.a.ID, sso.NewProvider{Name: "corp", Kind: sso.KindOIDC,
				Config: sso.Config{BaseURL: "https://relais.example", Issuer: "https://login.example.com", ClientID: "relais"}}, false)
			must(err)
		}
		op := "token:" + tok.ID
		examples := map[string]func() auditCall{
			"POST /api/v1/tenants": func() auditCall {
				return auditCall{nil, "POST", "/api/v1/tenants", `{"name":"Gamma","slug":"gamma"}`, op}
			},
			"POST /api/v1/tenants/{ref}/disable": func() auditCall { return auditCall{nil, "POST", "/api/v1/tenants/beta/disable", "", op} },
			"POST /api/v1/tenants/{ref}/enable":  func() auditCall { return auditCall{nil, "POST", "/api/v1/tenants/beta/enable", "", op} },
			"POST /api/v1/me/password": func() auditCall {
				u, s := signedIn()
				return auditCall{s, "POST", "/api/v1/me/password", admJSON(map[string]string{"current_password": adminPassword, "new_password": "Another-Lantern-Quartz-88!"}), u.ID}
			},
			"POST /api/v1/me/reauth": func() auditCall {
				u, s := signedIn()
				return auditCall{s, "POST", "/api/v1/me/reauth", admJSON(map[string]string{"password": adminPassword}), u.ID}
			},
			"DELETE /api/v1/me/sessions/{id}": func() auditCall {
				u, s := signedIn()
				e.session(t, e.a.ID, u.ID)
				return auditCall{s, "DELETE", "/api/v1/me/sessions/" + admSessionID(t, e, e.a.ID, u.ID), "", u.ID}
			},
			"POST /api/v1/me/totp": func() auditCall {
				u, s := signedIn()
				return auditCall{s, "POST", "/api/v1/me/totp", "", u.ID}
			},
			"POST /api/v1/me/totp/confirm": func() auditCall {
				u, s := signedIn()
				res, body := e.call(t, s, "POST", "/api/v1/me/totp", "")
				admWant(t, "begin totp", res, body, 200, "")
				var b struct{ Secret string }
				admDecode(t, body, &b)
				code, err := totp.GenerateCode(b.Secret, time.Now())
				must(err)
				return auditCall{s, "POST", "/api/v1/me/totp/confirm", admJSON(map[string]string{"code": code}), u.ID}
			},
			"POST /api/v1/users": func() auditCall {
				return auditCall{as, "POST", "/api/v1/users", `{"email":"created@acme.example","name":"Created Person"}`, admin.ID}
			},
			"POST /api/v1/users/{id}/disable": func() auditCall {
				return auditCall{as, "POST", "/api/v1/users/" + fresh().ID + "/disable", "", admin.ID}
			},
			"POST /api/v1/users/{id}/enable": func() auditCall {
				u := fresh()
				must(e.id.SetUserStatus(ctx, e.a.ID, u.ID, identity.StatusDisabled))
				return auditCall{as, "POST", "/api/v1/users/" + u.ID + "/enable", "", admin.ID}
			},
			"POST /api/v1/users/{id}/unlock": func() auditCall {
				return auditCall{as, "POST", "/api/v1/users/" + fresh().ID + "/unlock", "", admin.ID}
			},
			"POST /api/v1/users/{id}/reset-totp": func() auditCall {
				return auditCall{as, "POST", "/api/v1/users/" + fresh().ID + "/reset-totp", "", admin.ID}
			},
			"DELETE /api/v1/users/{id}/sessions/{sid}": func() auditCall {
				u := fresh()
				e.session(t, e.a.ID, u.ID)
				return auditCall{as, "DELETE", "/api/v1/users/" + u.ID + "/sessions/" + admSessionID(t, e, e.a.ID, u.ID), "", admin.ID}
			},
			"POST /api/v1/users/{id}/roles": func() auditCall {
				return auditCall{as, "POST", "/api/v1/users/" + fresh().ID + "/roles", `{"role":"editor"}`, admin.ID}
			},
			"DELETE /api/v1/users/{id}/roles/{role}": func() auditCall {
				return auditCall{as, "DELETE", "/api/v1/users/" + fresh().ID + "/roles/viewer", "", admin.ID}
			},
			"POST /api/v1/roles": func() auditCall {
				return auditCall{as, "POST", "/api/v1/roles", `{"name":"Readers","permissions":["contacts:read"]}`, admin.ID}
			},
			"PUT /api/v1/roles/{ref}": func() auditCall {
				return auditCall{as, "PUT", "/api/v1/roles/" + role().ID, `{"name":"Renamed","permissions":["contacts:read","reports:read"]}`, admin.ID}
			},
			"DELETE /api/v1/roles/{ref}": func() auditCall {
				return auditCall{as, "DELETE", "/api/v1/roles/" + role().ID, "", admin.ID}
			},
			"POST /api/v1/groups": func() auditCall {
				return auditCall{as, "POST", "/api/v1/groups", `{"name":"Marketing"}`, admin.ID}
			},
			"DELETE /api/v1/groups/{ref}": func() auditCall {
				return auditCall{as, "DELETE", "/api/v1/groups/" + group().ID, "", admin.ID}
			},
			"POST /api/v1/groups/{ref}/members/{user}": func() auditCall {
				return auditCall{as, "POST", "/api/v1/groups/" + group().ID + "/members/" + fresh().ID, "", admin.ID}
			},
			"DELETE /api/v1/groups/{ref}/members/{user}": func() auditCall {
				g, u := group(), fresh()
				must(e.acc.AddMember(ctx, e.a.ID, admOperator, g.ID, u.ID))
				return auditCall{as, "DELETE", "/api/v1/groups/" + g.ID + "/members/" + u.ID, "", admin.ID}
			},
			"POST /api/v1/groups/{ref}/roles/{role}": func() auditCall {
				return auditCall{as, "POST", "/api/v1/groups/" + group().ID + "/roles/viewer", "", admin.ID}
			},
			"DELETE /api/v1/groups/{ref}/roles/{role}": func() auditCall {
				g := group()
				must(e.acc.AddGroupRole(ctx, e.a.ID, admOperator, g.ID, access.RoleViewer))
				return auditCall{as, "DELETE", "/api/v1/groups/" + g.ID + "/roles/viewer", "", admin.ID}
			},
			"POST /api/v1/clients": func() auditCall {
				return auditCall{as, "POST", "/api/v1/clients", `{"name":"integration"}`, admin.ID}
			},
			"POST /api/v1/clients/{id}/disable": func() auditCall {
				return auditCall{as, "POST", "/api/v1/clients/" + client().ID + "/disable", "", admin.ID}
			},
			"POST /api/v1/clients/{id}/enable": func() auditCall {
				c := client()
				must(e.id.SetClientStatus(ctx, e.a.ID, c.ID, identity.StatusDisabled))
				return auditCall{as, "POST", "/api/v1/clients/" + c.ID + "/enable", "", admin.ID}
			},
			"POST /api/v1/clients/{id}/roles": func() auditCall {
				return auditCall{as, "POST", "/api/v1/clients/" + client().ID + "/roles", `{"role":"viewer"}`, admin.ID}
			},
			"POST /api/v1/sso/rules": func() auditCall {
				ssoProvider()
				return auditCall{as, "POST", "/api/v1/sso/rules", `{"provider":"corp","claim":"groups","value":"readers","role":"viewer"}`, admin.ID}
			},
			"DELETE /api/v1/sso/rules/{id}": func() auditCall {
				ssoProvider()
				r, err := e.sso.AddRule(ctx, e.a.ID, sso.NewRule{Provider: "corp", Claim: "groups", Value: "gone", Role: access.RoleViewer})
				must(err)
				return auditCall{as, "DELETE", "/api/v1/sso/rules/" + r.ID, "", admin.ID}
			},
			"PUT /api/v1/sso/settings": func() auditCall {
				return auditCall{as, "PUT", "/api/v1/sso/settings", `{"password_login":true}`, admin.ID}
			},
			"POST /api/v1/sso/scim-tokens": func() auditCall {
				return auditCall{as, "POST", "/api/v1/sso/scim-tokens", `{"name":"okta"}`, admin.ID}
			},
			"DELETE /api/v1/sso/scim-tokens/{id}": func() auditCall {
				tok, _, err := e.sso.CreateSCIMToken(ctx, e.a.ID, "old")
				must(err)
				return auditCall{as, "DELETE", "/api/v1/sso/scim-tokens/" + tok.ID, "", admin.ID}
			},
			"DELETE /api/v1/clients/{id}/roles/{role}": func() auditCall {
				c := client()
				must(e.acc.GrantClientRole(ctx, e.a.ID, admOperator, c.ID, access.RoleViewer))
				return auditCall{as, "DELETE", "/api/v1/clients/" + c.ID + "/roles/viewer", "", admin.ID}
			},
		}
		logOf := func(tenant string) []audit.Record {
			if tenant != "" {
				return admAudit(t, db, tenant)
			}
			var out []audit.Record
			must(db.Platform(ctx, func(p *store.PlatformTx) error {
				var err error
				out, err = audit.List(ctx, p.Tenant(""), 0, 1000)
				return err
			}))
			return out
		}
		checked := 0
		for _, rt := range e.srv.Routes() {
			method, _, _ := strings.Cut(rt.Pattern, " ")
			if method == "GET" || method == "HEAD" || rt.Permission == PermPublic || isPage(rt.Pattern) {
				continue
			}
			if why, ok := notExercised[rt.Pattern]; ok {
				t.Logf("not exercised: %s (%s)", rt.Pattern, why)
				continue
			}
			ex, ok := examples[rt.Pattern]
			if why, pending := pendingExample(rt.Pattern); !ok && pending {
				t.Logf("example pending: %s (%s)", rt.Pattern, why)
				continue
			}
			if !ok {
				t.Errorf("%s mutates but the audit coverage walk has no example for it: add one to TestEveryMutatingRouteWritesAnAuditEvent", rt.Pattern)
				continue
			}
			c := ex()
			tenant := e.a.ID
			if c.s == nil {
				tenant = ""
			}
			before := len(logOf(tenant))
			var res, body = e.callWithOperator(t, c, secret)
			if res.StatusCode/100 != 2 {
				t.Errorf("%s %s: %d %s", c.method, c.path, res.StatusCode, body)
				continue
			}
			found := false
			for _, r := range logOf(tenant)[before:] {
				if r.ActorID == c.actor {
					found = true
				}
			}
			if !found {
				t.Errorf("%s (%s %s) answered %d but wrote no audit event by %s", rt.Pattern, c.method, c.path, res.StatusCode, c.actor)
			}
			checked++
		}
		if checked < len(examples) {
			t.Errorf("%d routes checked, %d examples: an example names a route that is gone", checked, len(examples))
		}
		t.Logf("%d mutating routes checked", checked)
	})
}

// callWithOperator sends c as its session, or with the operator token.
func (e *adminEnv) callWithOperator(t *testing.T, c auditCall, secret string) (*http.Response, []byte) {
	t.Helper()
	if c.s != nil {
		return e.call(t, c.s, c.method, c.path, c.body)
	}
	return e.callWith(t, nil, c.method, c.path, c.body, map[string]string{"Authorization": "Bearer " + secret})
}

package web

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
)

// admIDs are plausible values for the route table's path parameters.
type admIDs struct {
	user, client, role, group, session string
}

// fill turns a route pattern into a method and a concrete path.
func (ids admIDs) fill(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	id, ref := ids.user, ids.role
	switch {
	case strings.HasPrefix(path, "/api/v1/clients/"):
		id = ids.client
	case strings.HasPrefix(path, "/api/v1/me/sessions/"):
		id = ids.session
	case strings.HasPrefix(path, "/api/v1/groups/"):
		ref = ids.group
	case strings.HasPrefix(path, "/api/v1/tenants/"):
		ref = "acme"
	}
	path = strings.NewReplacer("{id}", url.PathEscape(id), "{ref}", url.PathEscape(ref), "{sid}", ids.session,
		"{role}", "viewer", "{user}", ids.user, "{$}", "").Replace(path)
	return method, path
}

// admAudit returns a tenant's audit trail.
func admAudit(t *testing.T, db *store.DB, tenantID string) []audit.Record {
	t.Helper()
	var out []audit.Record
	err := db.Tenant(tenantID).Tx(context.Background(), func(tx *store.Tx) error {
		var after int64
		for {
			recs, err := audit.List(context.Background(), tx, after, 1000)
			if err != nil {
				return err
			}
			out = append(out, recs...)
			if len(recs) < 1000 {
				return nil
			}
			after = recs[len(recs)-1].Seq
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func admSessionID(t *testing.T, e *adminEnv, tenantID, userID string) string {
	t.Helper()
	list, err := e.id.ListSessions(context.Background(), tenantID, userID, nil)
	if err != nil || len(list) == 0 {
		t.Fatalf("sessions of %s: %v %v", userID, list, err)
	}
	return list[0].ID
}

// admRoutePermissions is the specification of the administration API's
// permissions (ACC-1): the route table must declare exactly these.
var admRoutePermissions = map[string]string{
	"GET /api/v1/users":                          "users:read",
	"POST /api/v1/users":                         "users:admin",
	"GET /api/v1/users/{id}":                     "users:read",
	"POST /api/v1/users/{id}/disable":            "users:admin",
	"POST /api/v1/users/{id}/enable":             "users:admin",
	"POST /api/v1/users/{id}/unlock":             "users:admin",
	"POST /api/v1/users/{id}/reset-totp":         "users:admin",
	"GET /api/v1/users/{id}/sessions":            "users:admin",
	"DELETE /api/v1/users/{id}/sessions/{sid}":   "users:admin",
	"POST /api/v1/users/{id}/roles":              "roles:admin",
	"DELETE /api/v1/users/{id}/roles/{role}":     "roles:admin",
	"GET /api/v1/roles":                          "users:read",
	"POST /api/v1/roles":                         "roles:admin",
	"GET /api/v1/roles/{ref}":                    "users:read",
	"PUT /api/v1/roles/{ref}":                    "roles:admin",
	"DELETE /api/v1/roles/{ref}":                 "roles:admin",
	"GET /api/v1/groups":                         "users:read",
	"POST /api/v1/groups":                        "roles:admin",
	"GET /api/v1/groups/{ref}":                   "users:read",
	"DELETE /api/v1/groups/{ref}":                "roles:admin",
	"POST /api/v1/groups/{ref}/members/{user}":   "roles:admin",
	"DELETE /api/v1/groups/{ref}/members/{user}": "roles:admin",
	"POST /api/v1/groups/{ref}/roles/{role}":     "roles:admin",
	"DELETE /api/v1/groups/{ref}/roles/{role}":   "roles:admin",
	"GET /api/v1/clients":                        "clients:admin",
	"POST /api/v1/clients":                       "clients:admin",
	"POST /api/v1/clients/{id}/disable":          "clients:admin",
	"POST /api/v1/clients/{id}/enable":           "clients:admin",
	"POST /api/v1/clients/{id}/roles":            "roles:admin",
	"DELETE /api/v1/clients/{id}/roles/{role}":   "roles:admin",
	"GET /api/v1/access/review":                  "users:read",
	"GET /api/v1/permissions":                    PermAuthenticated,
}

func TestAdminRoutesDeclareTheSpecifiedPermissions(t *testing.T) {
	s := New(Options{})
	got := map[string]string{}
	for _, rt := range s.adminRoutes() {
		if _, dup := got[rt.Pattern]; dup {
			t.Errorf("%s is declared twice", rt.Pattern)
		}
		got[rt.Pattern] = rt.Permission
		if rt.Permission != PermAuthenticated && !access.Permission(rt.Permission).Known() {
			t.Errorf("%s declares %q, which is not in the catalogue", rt.Pattern, rt.Permission)
		}
	}
	for pattern, perm := range admRoutePermissions {
		if got[pattern] != perm {
			t.Errorf("%s: declares %q, want %q", pattern, got[pattern], perm)
		}
	}
	for pattern := range got {
		if _, ok := admRoutePermissions[pattern]; !ok {
			t.Errorf("%s is not in the specification", pattern)
		}
	}
}

// TestAdminRoutesDenyWithoutTheirPermission walks the route table: every
// route that declares a catalogue permission answers 403 forbidden to a
// signed-in user who holds every permission but that one (and records the
// refusal), and every non-public route refuses a caller without
// credentials.
func TestAdminRoutesDenyWithoutTheirPermission(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		ctx := context.Background()
		probe, tok := e.user(t, e.a.ID, "probe@acme.example", "Probe Person")
		target, _ := e.user(t, e.a.ID, "target@acme.example", "Target Person", access.RoleViewer)
		targetSess := e.session(t, e.a.ID, target.ID)
		cl, _, err := e.id.CreateClient(ctx, e.a.ID, "probe-client", nil)
		if err != nil {
			t.Fatal(err)
		}
		role := e.role(t, e.a.ID, "Probe target", access.ContactsRead)
		grp, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Probe group", "")
		if err != nil {
			t.Fatal(err)
		}
		ids := admIDs{user: target.ID, client: cl.ID, role: role.ID, group: grp.ID, session: admSessionID(t, e, e.a.ID, target.ID)}
		_, v0, _ := e.id.ClientVersion(ctx, e.a.ID, cl.ID)

		routes := e.srv.Routes()
		byPerm := map[string][]Route{}
		for _, rt := range routes {
			if access.Permission(rt.Permission).Known() {
				byPerm[rt.Permission] = append(byPerm[rt.Permission], rt)
			}
		}
		for _, p := range []access.Permission{access.UsersRead, access.UsersAdmin, access.RolesAdmin, access.ClientsAdmin} {
			if len(byPerm[string(p)]) == 0 {
				t.Errorf("no route needs %s", p)
			}
		}
		perms := make([]string, 0, len(byPerm))
		for p := range byPerm {
			perms = append(perms, p)
		}
		slices.Sort(perms)

		var sess *adminSession
		var current string
		checked := 0
		for _, perm := range perms {
			var rest []access.Permission
			for _, info := range access.Catalogue() {
				if string(info.Permission) != perm {
					rest = append(rest, info.Permission)
				}
			}
			r := e.role(t, e.a.ID, "All but "+strings.ReplaceAll(perm, ":", " "), rest...)
			if current != "" {
				if err := e.acc.RevokeUserRole(ctx, e.a.ID, admOperator, probe.ID, current); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.acc.GrantUserRole(ctx, e.a.ID, admOperator, probe.ID, r.ID); err != nil {
				t.Fatal(err)
			}
			current = r.ID
			if sess == nil {
				sess = e.signIn(t, "acme", probe.Email, tok)
			}
			// The session is good and holds everything else.
			res, body := e.call(t, sess, "GET", "/api/v1/me", "")
			var me struct{ Permissions []string }
			admDecode(t, body, &me)
			if res.StatusCode != 200 || slices.Contains(me.Permissions, perm) || len(me.Permissions) != len(access.Catalogue())-1 {
				t.Fatalf("probe without %s: %d %v", perm, res.StatusCode, me.Permissions)
			}
			for _, rt := range byPerm[perm] {
				method, path := ids.fill(rt.Pattern)
				res, body := e.call(t, sess, method, path, `{}`)
				if isPage(rt.Pattern) { // a browser page: the 403 page, naming the permission
					if res.StatusCode != 403 || !strings.Contains(string(body), perm) {
						t.Errorf("page %s without %s: %d", rt.Pattern, perm, res.StatusCode)
					}
					checked++
					continue
				}
				admWant(t, rt.Pattern+" without "+perm, res, body, 403, problem.CodeForbidden)
				if res.StatusCode == 403 && !strings.Contains(admProblem(t, body).Detail, perm) {
					t.Errorf("%s: the refusal does not name %s: %s", rt.Pattern, perm, body)
				}
				checked++
			}
		}
		if checked < 30 {
			t.Errorf("only %d routes checked", checked)
		}
		// Each refusal is in the audit trail.
		denied := 0
		for _, rec := range admAudit(t, db, e.a.ID) {
			if rec.Action == "access.denied" && rec.ActorID == probe.ID {
				denied++
			}
		}
		if denied != checked {
			t.Errorf("%d refusals recorded, want %d", denied, checked)
		}
		// Nothing the probe aimed at changed.
		if u, _ := e.id.GetUser(ctx, e.a.ID, target.ID); u.Status != identity.StatusActive {
			t.Errorf("target user is %s", u.Status)
		}
		if _, err := e.id.Authenticate(ctx, targetSess.cookie, admClient); err != nil {
			t.Errorf("target session: %v", err)
		}
		if active, v, _ := e.id.ClientVersion(ctx, e.a.ID, cl.ID); !active || v != v0 {
			t.Errorf("client: active %v version %d (was %d)", active, v, v0)
		}
		if got, _ := e.acc.GetRole(ctx, e.a.ID, role.ID); got.Name != role.Name {
			t.Errorf("role changed: %+v", got)
		}

		// No credentials: 401 on every API route that is not public, a
		// redirect to the sign-in page on browser pages.
		for _, rt := range routes {
			if rt.Permission == PermPublic {
				continue
			}
			method, path := ids.fill(rt.Pattern)
			res, body := e.call(t, nil, method, path, `{}`)
			if strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/oauth2/") {
				admWant(t, rt.Pattern+" without credentials", res, body, 401, problem.CodeUnauthorized)
			} else if strings.HasPrefix(path, "/scim/") {
				if res.StatusCode != 401 || !strings.Contains(string(body), "urn:ietf:params:scim:api:messages:2.0:Error") {
					t.Errorf("SCIM %s without credentials: %d %s", rt.Pattern, res.StatusCode, body)
				}
			} else if res.StatusCode != 303 || res.Header.Get("Location") != "/login" {
				t.Errorf("page %s without credentials: %d %q", rt.Pattern, res.StatusCode, res.Header.Get("Location"))
			}
		}
	})
}

// TestAdminAPITenantIsolation: an administrator of tenant A who uses tenant
// B's ids gets 404 everywhere, and nothing changes in B.
func TestAdminAPITenantIsolation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		ctx := context.Background()
		admin, tok := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		sess := e.signIn(t, "acme", admin.Email, tok)
		ua, _ := e.user(t, e.a.ID, "anna@acme.example", "Anna Member")
		ga, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Acme group", "")
		if err != nil {
			t.Fatal(err)
		}

		ub, _ := e.user(t, e.b.ID, "bob@beta.example", "Bob Beta", access.RoleEditor, access.RoleAuditor)
		bSess := e.session(t, e.b.ID, ub.ID)
		rb := e.role(t, e.b.ID, "Beta role", access.ContactsRead)
		gb, err := e.acc.CreateGroup(ctx, e.b.ID, admOperator, "Beta group", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.acc.AddMember(ctx, e.b.ID, admOperator, gb.ID, ub.ID); err != nil {
			t.Fatal(err)
		}
		cb, _, err := e.id.CreateClient(ctx, e.b.ID, "beta-client", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.acc.GrantClientRole(ctx, e.b.ID, admOperator, cb.ID, access.RoleViewer); err != nil {
			t.Fatal(err)
		}
		sidB := admSessionID(t, e, e.b.ID, ub.ID)
		snapshot := func() string {
			review, err := e.acc.Review(ctx, e.b.ID)
			if err != nil {
				t.Fatal(err)
			}
			users, _ := e.id.ListUsers(ctx, e.b.ID)
			roles, _ := e.acc.ListRoles(ctx, e.b.ID)
			groups, _ := e.acc.ListGroups(ctx, e.b.ID)
			clients, _ := e.id.ListClients(ctx, e.b.ID)
			_, version, _ := e.id.ClientVersion(ctx, e.b.ID, cb.ID)
			b, _ := json.Marshal([]any{review, users, roles, groups, clients, version, len(admAudit(t, db, e.b.ID))})
			return string(b)
		}
		before := snapshot()

		reqs := []struct{ method, path, body string }{
			{"GET", "/api/v1/users/" + ub.ID, ""},
			{"POST", "/api/v1/users/" + ub.ID + "/disable", ""},
			{"POST", "/api/v1/users/" + ub.ID + "/enable", ""},
			{"POST", "/api/v1/users/" + ub.ID + "/unlock", ""},
			{"POST", "/api/v1/users/" + ub.ID + "/reset-totp", ""},
			{"GET", "/api/v1/users/" + ub.ID + "/sessions", ""},
			{"DELETE", "/api/v1/users/" + ub.ID + "/sessions/" + sidB, ""},
			{"DELETE", "/api/v1/users/" + ua.ID + "/sessions/" + sidB, ""},
			{"POST", "/api/v1/users/" + ub.ID + "/roles", `{"role":"viewer"}`},
			{"DELETE", "/api/v1/users/" + ub.ID + "/roles/editor", ""},
			{"POST", "/api/v1/users/" + ua.ID + "/roles", admJSON(map[string]string{"role": rb.ID})},
			{"GET", "/api/v1/roles/" + rb.ID, ""},
			{"PUT", "/api/v1/roles/" + rb.ID, `{"name":"Taken over","permissions":[]}`},
			{"DELETE", "/api/v1/roles/" + rb.ID, ""},
			{"GET", "/api/v1/groups/" + gb.ID, ""},
			{"DELETE", "/api/v1/groups/" + gb.ID, ""},
			{"POST", "/api/v1/groups/" + gb.ID + "/members/" + ua.ID, ""},
			{"DELETE", "/api/v1/groups/" + gb.ID + "/members/" + ub.ID, ""},
			{"POST", "/api/v1/groups/" + ga.ID + "/members/" + ub.ID, ""},
			{"POST", "/api/v1/groups/" + gb.ID + "/roles/viewer", ""},
			{"DELETE", "/api/v1/groups/" + gb.ID + "/roles/viewer", ""},
			{"POST", "/api/v1/groups/" + ga.ID + "/roles/" + rb.ID, ""},
			{"POST", "/api/v1/clients/" + cb.ID + "/disable", ""},
			{"POST", "/api/v1/clients/" + cb.ID + "/enable", ""},
			{"POST", "/api/v1/clients/" + cb.ID + "/roles", `{"role":"editor"}`},
			{"DELETE", "/api/v1/clients/" + cb.ID + "/roles/viewer", ""},
		}
		for _, rq := range reqs {
			res, body := e.call(t, sess, rq.method, rq.path, rq.body)
			admWant(t, rq.method+" "+rq.path, res, body, 404, problem.CodeNotFound)
			if strings.Contains(string(body), "bob@beta.example") || strings.Contains(string(body), "Beta") {
				t.Errorf("%s %s leaks tenant B: %s", rq.method, rq.path, body)
			}
		}
		if after := snapshot(); after != before {
			t.Errorf("tenant B changed:\nbefore %s\nafter  %s", before, after)
		}
		if _, err := e.id.Authenticate(ctx, bSess.cookie, admClient); err != nil {
			t.Errorf("B's session was revoked: %v", err)
		}
		// A's lists show only A.
		for _, path := range []string{"/api/v1/users", "/api/v1/roles", "/api/v1/groups", "/api/v1/clients", "/api/v1/access/review"} {
			res, body := e.call(t, sess, "GET", path, "")
			if res.StatusCode != 200 {
				t.Errorf("%s: %d %s", path, res.StatusCode, body)
			}
			for _, leak := range []string{ub.ID, rb.ID, gb.ID, cb.ID, "bob@beta.example"} {
				if strings.Contains(string(body), leak) {
					t.Errorf("%s shows tenant B's %s", path, leak)
				}
			}
		}
		// B's session (users:read through auditor) cannot reach A's objects
		// either.
		res, body := e.call(t, bSess, "GET", "/api/v1/users/"+ua.ID, "")
		admWant(t, "B reads A's user", res, body, 404, problem.CodeNotFound)
		res, body = e.call(t, bSess, "GET", "/api/v1/groups/"+ga.ID, "")
		admWant(t, "B reads A's group", res, body, 404, problem.CodeNotFound)
	})
}

// TestAdminAPIAntiEscalation: holding roles:admin is not enough to hand out
// a permission one does not hold, through any door; users:admin alone does
// not let one assign roles.
func TestAdminAPIAntiEscalation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		ctx := context.Background()
		limited := e.role(t, e.a.ID, "Access admin", access.UsersRead, access.UsersAdmin, access.RolesAdmin, access.ContactsRead)
		lu, tok := e.user(t, e.a.ID, "lena@acme.example", "Lena Limited", limited.ID)
		sess := e.signIn(t, "acme", lu.Email, tok)
		target, _ := e.user(t, e.a.ID, "tom@acme.example", "Tom Target")
		readers := e.role(t, e.a.ID, "Readers", access.ContactsRead)
		grp, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Auditors", "")
		if err != nil {
			t.Fatal(err)
		}
		usersBefore, _ := e.id.ListUsers(ctx, e.a.ID)

		for _, tc := range []struct{ name, method, path, body string }{
			{"grant auditor to a user", "POST", "/api/v1/users/" + target.ID + "/roles", `{"role":"auditor"}`},
			{"grant auditor to oneself", "POST", "/api/v1/users/" + lu.ID + "/roles", `{"role":"auditor"}`},
			{"create a user with auditor", "POST", "/api/v1/users", `{"email":"new@acme.example","name":"New","roles":["auditor"]}`},
			{"create a role with audit:read", "POST", "/api/v1/roles", `{"name":"Sneaky","permissions":["audit:read"]}`},
			{"add audit:read to one's own role", "PUT", "/api/v1/roles/" + limited.ID,
				admJSON(map[string]any{"name": limited.Name, "permissions": []string{"users:read", "users:admin", "roles:admin", "contacts:read", "audit:read"}})},
			{"give auditor to a group", "POST", "/api/v1/groups/" + grp.ID + "/roles/auditor", ""},
			{"create a client with auditor", "POST", "/api/v1/clients", `{"name":"sneaky","roles":["auditor"]}`},
		} {
			res, body := e.call(t, sess, tc.method, tc.path, tc.body)
			if tc.name == "create a client with auditor" {
				// clients:admin is missing too: the route refuses first.
				admWant(t, tc.name, res, body, 403, problem.CodeForbidden)
				continue
			}
			admWant(t, tc.name, res, body, 403, problem.CodeForbidden)
			if res.StatusCode == 403 && !strings.Contains(admProblem(t, body).Detail, "do not hold") {
				t.Errorf("%s: detail %q does not say why", tc.name, admProblem(t, body).Detail)
			}
		}
		for _, id := range []string{target.ID, lu.ID} {
			if set, _ := e.acc.UserPermissions(ctx, e.a.ID, id); set.Has(access.AuditRead) {
				t.Errorf("user %s gained audit:read", id)
			}
		}
		if usersAfter, _ := e.id.ListUsers(ctx, e.a.ID); len(usersAfter) != len(usersBefore) {
			t.Errorf("a refused creation created a user: %d -> %d", len(usersBefore), len(usersAfter))
		}
		if _, err := e.acc.GetRole(ctx, e.a.ID, "Sneaky"); err == nil {
			t.Error("a refused role exists")
		}
		// What the user holds, it may grant.
		res, body := e.call(t, sess, "POST", "/api/v1/users/"+target.ID+"/roles", admJSON(map[string]string{"role": readers.Name}))
		admWant(t, "grant a role within one's rights", res, body, 204, "")

		// users:admin without roles:admin: users, yes; roles, no.
		ur := e.role(t, e.a.ID, "User admin", access.UsersRead, access.UsersAdmin, access.ContactsRead)
		uu, _ := e.user(t, e.a.ID, "ursula@acme.example", "Ursula Users", ur.ID)
		us := e.session(t, e.a.ID, uu.ID)
		res, body = e.call(t, us, "POST", "/api/v1/users", `{"email":"x1@acme.example","name":"X","roles":["Readers"]}`)
		admWant(t, "users:admin assigns a role", res, body, 403, problem.CodeForbidden)
		if !strings.Contains(admProblem(t, body).Detail, "roles:admin") {
			t.Errorf("detail: %s", body)
		}
		res, body = e.call(t, us, "POST", "/api/v1/users", `{"email":"x1@acme.example","name":"X"}`)
		admWant(t, "users:admin creates a user without roles", res, body, 201, "")
	})
}

// TestAdminAPICSRF: a cookie-authenticated change needs the session's CSRF
// token in X-CSRF-Token.
func TestAdminAPICSRF(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	e := newAdminEnv(t, db)
	ctx := context.Background()
	admin, tok := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
	sess := e.signIn(t, "acme", admin.Email, tok)
	target, _ := e.user(t, e.a.ID, "tom@acme.example", "Tom Target")
	other := e.session(t, e.a.ID, target.ID)
	path := "/api/v1/users/" + target.ID + "/disable"
	for name, hdr := range map[string]map[string]string{
		"no token":                  {},
		"wrong token":               {CSRFHeader: "not-the-token"},
		"another session's token":   {CSRFHeader: other.csrf},
		"the token in another case": {CSRFHeader: strings.ToUpper(sess.csrf)},
	} {
		res, body := e.callWith(t, sess, "POST", path, "", hdr)
		admWant(t, name, res, body, 403, "csrf_failed")
	}
	res, body := e.callWith(t, sess, "DELETE", "/api/v1/users/"+target.ID+"/roles/viewer", "", nil)
	admWant(t, "DELETE without token", res, body, 403, "csrf_failed")
	res, body = e.callWith(t, sess, "POST", "/api/v1/users", admJSON(map[string]string{"email": "csrf@acme.example", "name": "C"}), nil)
	admWant(t, "create without token", res, body, 403, "csrf_failed")
	if u, _ := e.id.GetUser(ctx, e.a.ID, target.ID); u.Status != identity.StatusActive {
		t.Fatalf("a refused request disabled the user")
	}
	if users, _ := e.id.ListUsers(ctx, e.a.ID); len(users) != 2 {
		t.Fatalf("a refused request created a user: %d users", len(users))
	}
	// Reads need no token; the right token lets the change through.
	res, body = e.callWith(t, sess, "GET", "/api/v1/users/"+target.ID, "", nil)
	admWant(t, "GET without token", res, body, 200, "")
	res, body = e.call(t, sess, "POST", path, "")
	admWant(t, "with the token", res, body, 200, "")
}

type admUser struct {
	ID             string   `json:"id"`
	Email          string   `json:"email"`
	Name           string   `json:"name"`
	Status         string   `json:"status"`
	Locked         bool     `json:"locked"`
	TOTPEnabled    bool     `json:"totp_enabled"`
	MustChange     bool     `json:"must_change_password"`
	Roles          []string `json:"roles"`
	Groups         []string `json:"groups"`
	EnrolmentToken string   `json:"enrolment_token"`
}

// TestAdminAPIFlows: the happy paths of users (create with an enrolment
// token, enrol, sign in, sessions, disable revokes at once), roles, groups,
// API clients (role changes and disabling revoke tokens), the access review
// and the catalogue.
func TestAdminAPIFlows(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		ctx := context.Background()
		admin, tok := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		sess := e.signIn(t, "acme", admin.Email, tok)

		// Create a user: 201, roles, a one-time enrolment token.
		res, body := e.call(t, sess, "POST", "/api/v1/users", `{"email":" Carol@Acme.example ","name":"Carol Editor","roles":["editor"]}`)
		admWant(t, "create user", res, body, 201, "")
		var carol admUser
		admDecode(t, body, &carol)
		if carol.Email != "carol@acme.example" || carol.Status != "active" || !slices.Equal(carol.Roles, []string{"editor"}) ||
			!strings.HasPrefix(carol.EnrolmentToken, "rse_") || res.Header.Get("Location") != "/api/v1/users/"+carol.ID {
			t.Fatalf("created: %s (location %q)", body, res.Header.Get("Location"))
		}
		// Enrol through the API, sign in.
		res, body = e.call(t, nil, "POST", "/api/v1/auth/enrol", admJSON(map[string]string{"token": carol.EnrolmentToken, "password": adminPassword}))
		admWant(t, "enrol", res, body, 200, "")
		res, body = e.call(t, nil, "POST", "/api/v1/auth/enrol", admJSON(map[string]string{"token": carol.EnrolmentToken, "password": adminPassword + "x"}))
		admWant(t, "enrol twice", res, body, 401, "invalid_credentials")
		cs := e.login(t, "acme", "carol@acme.example", adminPassword)
		res, body = e.call(t, cs, "GET", "/api/v1/me", "")
		admWant(t, "carol signed in", res, body, 200, "")

		// List and show.
		res, body = e.call(t, sess, "GET", "/api/v1/users", "")
		admWant(t, "list users", res, body, 200, "")
		var list struct{ Users []admUser }
		admDecode(t, body, &list)
		if len(list.Users) != 2 || list.Users[1].ID != carol.ID || list.Users[1].Name != "Carol Editor" || !slices.Equal(list.Users[1].Roles, []string{"editor"}) ||
			!slices.Equal(list.Users[0].Roles, []string{"admin"}) {
			t.Fatalf("list: %s", body)
		}
		if strings.Contains(string(body), "enrolment_token") {
			t.Fatalf("the list shows an enrolment token")
		}
		res, body = e.call(t, sess, "GET", "/api/v1/users/"+carol.ID, "")
		admWant(t, "show user", res, body, 200, "")

		// Sessions: listed, one revoked by id.
		extra := e.session(t, e.a.ID, carol.ID)
		res, body = e.call(t, sess, "GET", "/api/v1/users/"+carol.ID+"/sessions", "")
		var sl struct{ Sessions []identity.Session }
		admDecode(t, body, &sl)
		if res.StatusCode != 200 || len(sl.Sessions) != 2 {
			t.Fatalf("sessions: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, sess, "DELETE", "/api/v1/users/"+carol.ID+"/sessions/"+sl.Sessions[0].ID, "") // newest: extra
		admWant(t, "revoke session", res, body, 204, "")
		res, body = e.call(t, extra, "GET", "/api/v1/me", "")
		admWant(t, "revoked session", res, body, 401, "session_expired")
		res, body = e.call(t, sess, "DELETE", "/api/v1/users/"+admin.ID+"/sessions/"+sl.Sessions[1].ID, "")
		admWant(t, "revoke carol's session as alice's", res, body, 404, problem.CodeNotFound)
		res, body = e.call(t, sess, "DELETE", "/api/v1/users/"+carol.ID+"/sessions/not-a-session", "")
		admWant(t, "revoke a malformed session id", res, body, 404, problem.CodeNotFound)

		// Disable (ACC-5): carol's session is refused at once.
		res, body = e.call(t, sess, "POST", "/api/v1/users/"+carol.ID+"/disable", "")
		admWant(t, "disable", res, body, 200, "")
		if !strings.Contains(string(body), `"disabled"`) {
			t.Errorf("disable answer: %s", body)
		}
		res, body = e.call(t, cs, "GET", "/api/v1/me", "")
		admWant(t, "disabled user's session", res, body, 401, "session_expired")
		if l, _ := e.id.ListSessions(ctx, e.a.ID, carol.ID, nil); len(l) != 0 {
			t.Errorf("sessions after disable: %v", l)
		}
		res, body = e.call(t, sess, "POST", "/api/v1/users/"+admin.ID+"/disable", "")
		admWant(t, "disable oneself", res, body, 409, problem.CodeConflict)
		for _, action := range []string{"enable", "unlock", "reset-totp"} {
			res, body = e.call(t, sess, "POST", "/api/v1/users/"+carol.ID+"/"+action, "")
			admWant(t, action, res, body, 200, "")
		}
		if u, _ := e.id.GetUser(ctx, e.a.ID, carol.ID); u.Status != identity.StatusActive {
			t.Errorf("after enable: %s", u.Status)
		}

		// User roles.
		res, body = e.call(t, sess, "POST", "/api/v1/users/"+carol.ID+"/roles", `{"role":"auditor"}`)
		admWant(t, "grant role", res, body, 204, "")
		if set, _ := e.acc.UserPermissions(ctx, e.a.ID, carol.ID); !set.Has(access.AuditRead) {
			t.Error("the grant did not take")
		}
		res, body = e.call(t, sess, "DELETE", "/api/v1/users/"+carol.ID+"/roles/auditor", "")
		admWant(t, "revoke role", res, body, 204, "")
		res, body = e.call(t, sess, "POST", "/api/v1/users/"+carol.ID+"/roles", `{"role":"no-such-role"}`)
		admWant(t, "grant unknown role", res, body, 404, problem.CodeNotFound)

		// Roles: create, show, update, delete; built-ins are fixed.
		res, body = e.call(t, sess, "POST", "/api/v1/roles", `{"name":"Campaigner","description":"Runs campaigns","permissions":["campaigns:read","campaigns:write"]}`)
		admWant(t, "create role", res, body, 201, "")
		var role access.Role
		admDecode(t, body, &role)
		res, body = e.call(t, sess, "GET", "/api/v1/roles/Campaigner", "")
		admWant(t, "show role by name", res, body, 200, "")
		res, body = e.call(t, sess, "GET", "/api/v1/roles", "")
		if res.StatusCode != 200 || !strings.Contains(string(body), "Campaigner") || !strings.Contains(string(body), `"auditor"`) {
			t.Errorf("list roles: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, sess, "POST", "/api/v1/roles", `{"name":"campaigner","permissions":[]}`)
		admWant(t, "duplicate role", res, body, 409, problem.CodeConflict)
		for _, m := range []string{"PUT", "DELETE"} {
			res, body = e.call(t, sess, m, "/api/v1/roles/admin", `{"name":"admin","permissions":[]}`)
			admWant(t, m+" built-in role", res, body, 409, "builtin_role")
		}

		// Groups: create, members, roles, show, delete.
		res, body = e.call(t, sess, "POST", "/api/v1/groups", `{"name":"Marketing","description":"The marketing team"}`)
		admWant(t, "create group", res, body, 201, "")
		var grp access.Group
		admDecode(t, body, &grp)
		res, body = e.call(t, sess, "POST", "/api/v1/groups/Marketing/members/"+carol.ID, "")
		admWant(t, "add member", res, body, 204, "")
		res, body = e.call(t, sess, "POST", "/api/v1/groups/"+grp.ID+"/roles/"+role.ID, "")
		admWant(t, "add group role", res, body, 204, "")
		res, body = e.call(t, sess, "GET", "/api/v1/groups/"+grp.ID, "")
		var gv struct {
			Roles   []access.RoleRef
			Members []struct{ ID, Email, Name string }
		}
		admDecode(t, body, &gv)
		if res.StatusCode != 200 || len(gv.Roles) != 1 || gv.Roles[0].Name != "Campaigner" || len(gv.Members) != 1 || gv.Members[0].Email != "carol@acme.example" {
			t.Errorf("show group: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, sess, "GET", "/api/v1/users/"+carol.ID, "")
		admDecode(t, body, &carol)
		if !slices.Equal(carol.Groups, []string{"Marketing"}) || !slices.Equal(carol.Roles, []string{"editor"}) {
			t.Errorf("carol's groups and roles: %s", body)
		}
		res, body = e.call(t, sess, "GET", "/api/v1/groups", "")
		if res.StatusCode != 200 || !strings.Contains(string(body), "Marketing") {
			t.Errorf("list groups: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, sess, "DELETE", "/api/v1/groups/"+grp.ID+"/roles/Campaigner", "")
		admWant(t, "remove group role", res, body, 204, "")
		res, body = e.call(t, sess, "DELETE", "/api/v1/groups/"+grp.ID+"/members/"+carol.ID, "")
		admWant(t, "remove member", res, body, 204, "")
		res, body = e.call(t, sess, "DELETE", "/api/v1/groups/Marketing", "")
		admWant(t, "delete group", res, body, 204, "")
		res, body = e.call(t, sess, "GET", "/api/v1/groups/"+grp.ID, "")
		admWant(t, "deleted group", res, body, 404, problem.CodeNotFound)

		// API clients: the secret once; role changes and disabling bump the
		// token version.
		res, body = e.call(t, sess, "POST", "/api/v1/clients", `{"name":"crm-sync","roles":["Campaigner"],"allow_cidrs":["192.0.2.0/24"]}`)
		admWant(t, "create client", res, body, 201, "")
		var cl struct {
			ClientID     string   `json:"client_id"`
			ClientSecret string   `json:"client_secret"`
			Roles        []string `json:"roles"`
			AllowCIDRs   []string `json:"allow_cidrs"`
			Status       string   `json:"status"`
		}
		admDecode(t, body, &cl)
		if !strings.HasPrefix(cl.ClientID, "rlc_"+e.a.ID) || !strings.HasPrefix(cl.ClientSecret, "rlk_") || !slices.Equal(cl.Roles, []string{"Campaigner"}) ||
			!slices.Equal(cl.AllowCIDRs, []string{"192.0.2.0/24"}) || cl.Status != "active" {
			t.Fatalf("created client: %s", body)
		}
		res, body = e.call(t, sess, "GET", "/api/v1/clients", "")
		if res.StatusCode != 200 || !strings.Contains(string(body), cl.ClientID) || strings.Contains(string(body), cl.ClientSecret) || strings.Contains(string(body), "client_secret") {
			t.Errorf("list clients: %d %s", res.StatusCode, body)
		}
		version := func() (bool, int) {
			active, v, err := e.id.ClientVersion(ctx, e.a.ID, cl.ClientID)
			if err != nil {
				t.Fatal(err)
			}
			return active, v
		}
		_, v := version()
		step := func(what, method, path, body string, status int, wantActive bool) {
			t.Helper()
			res, b := e.call(t, sess, method, path, body)
			admWant(t, what, res, b, status, "")
			active, nv := version()
			if nv <= v || active != wantActive {
				t.Errorf("%s: version %d -> %d, active %v", what, v, nv, active)
			}
			v = nv
		}
		base := "/api/v1/clients/" + cl.ClientID
		step("grant client role", "POST", base+"/roles", `{"role":"viewer"}`, 204, true)
		step("revoke client role", "DELETE", base+"/roles/viewer", "", 204, true)
		step("update a role the client holds", "PUT", "/api/v1/roles/"+role.ID, `{"name":"Campaigner","description":"Reads campaigns","permissions":["campaigns:read"]}`, 200, true)
		step("disable client", "POST", base+"/disable", "", 200, false)
		step("enable client", "POST", base+"/enable", "", 200, true)
		step("delete a role the client holds", "DELETE", "/api/v1/roles/Campaigner", "", 204, true)
		if set, _ := e.acc.ClientPermissions(ctx, e.a.ID, cl.ClientID); set.Len() != 0 {
			t.Errorf("client permissions after the role's deletion: %v", set.List())
		}

		// Access review (ACC-4), with names.
		res, body = e.call(t, sess, "GET", "/api/v1/access/review", "")
		admWant(t, "review", res, body, 200, "")
		var rv struct {
			Entries []struct {
				Kind, ID, Name, Email string
				Administrative        bool
			}
		}
		admDecode(t, body, &rv)
		found := map[string]bool{}
		for _, en := range rv.Entries {
			switch en.ID {
			case admin.ID:
				found["admin"] = en.Kind == "user" && en.Email == "alice@acme.example" && en.Name == "Alice Admin" && en.Administrative
			case carol.ID:
				found["carol"] = en.Email == "carol@acme.example" && !en.Administrative
			case cl.ClientID:
				found["client"] = en.Kind == "client" && en.Name == "crm-sync"
			}
		}
		if !found["admin"] || !found["carol"] || !found["client"] {
			t.Errorf("review %v: %s", found, body)
		}

		// The catalogue, to anyone signed in (carol signs in again).
		cs = e.session(t, e.a.ID, carol.ID)
		res, body = e.call(t, cs, "GET", "/api/v1/permissions", "")
		var cat struct{ Permissions []access.PermissionInfo }
		admDecode(t, body, &cat)
		if res.StatusCode != 200 || len(cat.Permissions) != len(access.Catalogue()) {
			t.Errorf("catalogue: %d %s", res.StatusCode, body)
		}
	})
}

// TestAdminAPIBadInput: caller mistakes get 4xx problem documents and
// create nothing.
func TestAdminAPIBadInput(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		ctx := context.Background()
		admin, tok := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		sess := e.signIn(t, "acme", admin.Email, tok)
		res, body := e.call(t, sess, "POST", "/api/v1/users", `{"email":"dana@acme.example","name":"Dana"}`)
		admWant(t, "create", res, body, 201, "")
		users := func() int {
			l, err := e.id.ListUsers(ctx, e.a.ID)
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}
		n := users()
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"unknown role", "POST", "/api/v1/users", `{"email":"eve@acme.example","name":"Eve","roles":["editor","nope"]}`, 422, problem.CodeValidation},
			{"bad email", "POST", "/api/v1/users", `{"email":"not an email","name":"Eve"}`, 422, problem.CodeValidation},
			{"duplicate email", "POST", "/api/v1/users", `{"email":"DANA@acme.example","name":"Dana Again"}`, 409, problem.CodeConflict},
			{"malformed json", "POST", "/api/v1/users", `{"email":`, 400, problem.CodeBadJSON},
			{"unknown field", "POST", "/api/v1/users", `{"email":"eve@acme.example","admin":true}`, 400, problem.CodeUnknownField},
			{"wrong type", "POST", "/api/v1/users", `{"email":"eve@acme.example","roles":"admin"}`, 400, problem.CodeValidation},
			{"oversized", "POST", "/api/v1/users", `{"email":"eve@acme.example","name":"` + strings.Repeat("x", 20<<10) + `"}`, 413, problem.CodeBodyTooLarge},
			{"control characters in name", "POST", "/api/v1/users", `{"email":"eve@acme.example","name":"Eve\u0007"}`, 422, problem.CodeValidation},
			{"too many roles", "POST", "/api/v1/users", admJSON(map[string]any{"email": "eve@acme.example", "roles": slices.Repeat([]string{"viewer"}, 40)}), 422, problem.CodeValidation},
			// An administrator's initial password must meet the privileged
			// length (20), which the roles decide before anything is made.
			{"short password for an admin", "POST", "/api/v1/users", `{"email":"eve@acme.example","name":"Eve","roles":["admin"],"password":"Short-Pass-1234"}`, 422, "password_policy"},
			{"role: unknown permission", "POST", "/api/v1/roles", `{"name":"Bad","permissions":["contacts:delete-all"]}`, 422, problem.CodeValidation},
			{"role: bad name", "POST", "/api/v1/roles", `{"name":"a/b","permissions":[]}`, 422, problem.CodeValidation},
			{"role: built-in name", "POST", "/api/v1/roles", `{"name":"Admin","permissions":[]}`, 409, problem.CodeConflict},
			{"role: unknown", "PUT", "/api/v1/roles/nope", `{"name":"nope","permissions":[]}`, 404, problem.CodeNotFound},
			{"group: empty name", "POST", "/api/v1/groups", `{"name":""}`, 422, problem.CodeValidation},
			{"group: unknown", "DELETE", "/api/v1/groups/nope", "", 404, problem.CodeNotFound},
			{"member: unknown user", "POST", "/api/v1/groups/nope/members/nobody", "", 404, problem.CodeNotFound},
			{"client: bad CIDR", "POST", "/api/v1/clients", `{"name":"x","allow_cidrs":["10.0.0.0/33"]}`, 422, problem.CodeValidation},
			{"client: no name", "POST", "/api/v1/clients", `{"name":""}`, 422, problem.CodeValidation},
			{"client: unknown role", "POST", "/api/v1/clients", `{"name":"x","roles":["nope"]}`, 422, problem.CodeValidation},
			{"client: unknown", "POST", "/api/v1/clients/rlc_nope/disable", "", 404, problem.CodeNotFound},
			{"grant: no role", "POST", "/api/v1/users/" + admin.ID + "/roles", `{}`, 422, problem.CodeValidation},
			{"grant: not JSON", "POST", "/api/v1/users/" + admin.ID + "/roles", `role=admin`, 400, problem.CodeBadJSON},
			{"user: unknown", "GET", "/api/v1/users/nobody", "", 404, problem.CodeNotFound},
			{"user: unknown disable", "POST", "/api/v1/users/nobody/disable", "", 404, problem.CodeNotFound},
			{"user: unknown reset-totp", "POST", "/api/v1/users/nobody/reset-totp", "", 404, problem.CodeNotFound},
			{"user: unknown sessions", "GET", "/api/v1/users/nobody/sessions", "", 404, problem.CodeNotFound},
		} {
			res, body := e.call(t, sess, tc.method, tc.path, tc.body)
			admWant(t, tc.name, res, body, tc.status, tc.code)
			if p := admProblem(t, body); strings.Contains(p.Detail, "access:") || strings.Contains(p.Detail, "json:") || strings.Contains(p.Detail, "sql") {
				t.Errorf("%s: detail leaks internals: %q", tc.name, p.Detail)
			}
		}
		if got := users(); got != n {
			t.Errorf("bad requests created users: %d -> %d", n, got)
		}
		if cls, _ := e.id.ListClients(ctx, e.a.ID); len(cls) != 0 {
			t.Errorf("bad requests created clients: %v", cls)
		}
		// A user with an initial password must change it at first sign-in.
		res, body = e.call(t, sess, "POST", "/api/v1/users", `{"email":"fay@acme.example","name":"Fay","roles":["viewer"],"password":"Plum-Violet-Canal-9"}`)
		admWant(t, "create with a password", res, body, 201, "")
		var fay admUser
		admDecode(t, body, &fay)
		if fay.EnrolmentToken != "" || !fay.MustChange {
			t.Errorf("created with a password: %s", body)
		}
	})
}

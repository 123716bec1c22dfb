package web

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/supervise"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// The audit coverage walk (LOG-1, LOG-2): every mutating route of the
// real server, called with a request that succeeds, must leave an audit
// event naming its caller.
//
// Adding a route: add its example to the map of its area below (one
// function per area, listed in walkAreas), or, only when the route truly
// cannot be called here, to notExercised with the reason. A route with
// neither fails TestEveryMutatingRouteWritesAnAuditEvent.

// auditCall is one request of the coverage walk.
type auditCall struct {
	// s is the session making the call; when nil, bearer is sent as
	// Authorization: Bearer (the operator token when bearer is empty).
	s      *adminSession
	bearer string
	method string
	path   string
	// body is sent as JSON unless ctype says otherwise.
	body, ctype string
	// actor is who the audit event must name.
	actor string
	// platform: the event is in the operator's log, not tenant A's.
	platform bool
	// personal are personal values the request carries: no new event may
	// contain them (field names only for personal fields).
	personal []string
}

// walkExample builds one call (creating what it acts on first).
type walkExample func(w *walkEnv) auditCall

// walkAreas are the examples, one map per area of the API. Add a new
// area's function here.
var walkAreas = map[string]func() map[string]walkExample{
	"core":      coreWalkExamples,
	"admin":     adminWalkExamples,
	"messages":  messageWalkExamples,
	"contacts":  contactWalkExamples,
	"campaigns": campaignWalkExamples,
	"sftp":      sftpWalkExamples,
	"sso":       ssoWalkExamples,
	"scim":      scimWalkExamples,
	"pages":     pageWalkExamples,
	"privacy":   privacyWalkExamples,
	"monitor":   monitorWalkExamples,
	"ui2":       ui2WalkExamples,
	"uipages":   uiPageWalkExamples,
}

// notExercised are the mutating, non-public routes the walk does not
// call, each with its reason. Keep it short: a route belongs here only
// when it changes nothing or cannot be driven from this test.
var notExercised = map[string]string{
	"DELETE /api/v1/me/totp":              "needs a recent second factor; identity.DisableTOTP records user.totp.disable (internal/identity tests)",
	"POST /api/v1/segments/validate":      "read-only: checks a filter's syntax, changes nothing (lists:read)",
	"POST /api/v1/templates/{id}/preview": "read-only: renders a template with sample data, changes nothing (templates:read)",
}

// walkEnv is the administration environment with every service the real
// server mounts (app.Serve's web.Options), an administrator session of
// tenant A and an operator token.
type walkEnv struct {
	*adminEnv
	t        *testing.T
	ctx      context.Context
	contacts *contacts.Service
	camp     *campaigns.Service
	tmpl     *templates.Service
	router   *router.Service
	sftp     *sftpd.Service
	sso      *sso.Service
	admin    identity.User
	as       *adminSession
	// op is the operator token's audit actor, opSecret its secret.
	op, opSecret string
	n            int
}

// walkOptions are the Options app.Serve gives web.New, over the test's
// store: every service set.
func walkOptions(t *testing.T, e *adminEnv) (Options, *walkEnv) {
	t.Helper()
	ctx := context.Background()
	db := e.db
	ks, err := jwtauth.NewKeyStore(db, e.ts.Master, jwtauth.KeyStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.EnsureCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	kr := e.id.Keyring
	ssoSvc := &sso.Service{DB: db, Tenants: e.ts, Keyring: kr, Identity: e.id, Access: e.acc}
	e.id.PasswordLogin = ssoSvc.PasswordLogin
	rs := &router.Service{DB: db, Keyring: kr}
	cs := &contacts.Service{DB: db, Keyring: kr}
	ts := &templates.Service{DB: db}
	camp := &campaigns.Service{DB: db, Contacts: cs, Templates: ts, Router: rs, PublicBaseURL: "https://relais.example"}
	sf := &sftpd.Service{DB: db, Keyring: kr, Tenants: e.ts, Contacts: cs, Blobs: sftpd.DirBlobs{Root: filepath.Join(t.TempDir(), "sftp")}, Config: config.Default().SFTP}
	// As app.Open builds them: privacy over the same keyring, tenants
	// and contacts; supervision with no other feature's provider.
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	priv := &privacy.Service{DB: db, Master: e.ts.Master, Keyring: kr, Tenants: e.ts, Contacts: cs,
		Audit: &audit.Service{DB: db, Master: e.ts.Master}, DestroyDelay: cfg.Privacy.DestroyDelay.D(),
		ContactShredder: contacts.KeyShredder{}, KeyShredder: e.ts}
	sup, err := supervise.New(supervise.Options{DB: db, Config: cfg, Tenants: e.ts, Master: e.ts.Master,
		Providers: monitor.Providers{}, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	jc := jwtauth.Config{}
	o := Options{DB: db, Tenants: e.ts, Identity: e.id, Access: e.acc, SSO: ssoSvc,
		Verifier: jwtauth.NewVerifier(ks, jc), Issuer: jwtauth.NewIssuer(ks, jc), Keys: ks,
		Router: rs, Connectors: &router.Connectors{Service: rs, Open: registry.Open, Redact: registry.Redact}, Contacts: cs,
		Campaigns: camp, Templates: ts, SFTP: sf, Privacy: priv, Monitor: sup,
		MaxBodyBytes: 64 << 10, MaxImportBytes: 1 << 20, ShutdownTimeout: time.Second, Version: "test"}
	return o, &walkEnv{adminEnv: e, t: t, ctx: ctx, contacts: cs, camp: camp, tmpl: ts, router: rs, sftp: sf, sso: ssoSvc}
}

func newWalkEnv(t *testing.T, db *store.DB) *walkEnv {
	t.Helper()
	e := newAdminEnv(t, db)
	o, w := walkOptions(t, e)
	e.srv = New(o)
	w.admin, _ = e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
	w.as = e.session(t, e.a.ID, w.admin.ID)
	tok, secret, err := optoken.Create(w.ctx, db, "coverage")
	if err != nil {
		t.Fatal(err)
	}
	w.op, w.opSecret = "token:"+tok.ID, secret
	return w
}

// referenceRoutes is the route table of a server with every service of
// Options set (each pointer field non-nil): what the real server mounts,
// including routes of a service added to Options later. Only pointer
// fields are set: a route gated on another kind of field (a func, a
// bool) must be added here by hand.
func referenceRoutes() []Route {
	var o Options
	v := reflect.ValueOf(&o).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && f.CanSet() {
			f.Set(reflect.New(f.Type().Elem()))
		}
	}
	return (&Server{opts: o}).Routes()
}

// mutating reports whether the walk must cover a route: an unsafe method
// and not public (sign-in, enrolment, token and link endpoints record
// their own attempts, AUTH-3).
func mutating(rt Route) bool {
	method, _, _ := strings.Cut(rt.Pattern, " ")
	return method != "GET" && method != "HEAD" && rt.Permission != PermPublic
}

// allWalkExamples merges the areas, failing on a route given twice.
func allWalkExamples(t *testing.T) map[string]walkExample {
	t.Helper()
	out := map[string]walkExample{}
	names := make([]string, 0, len(walkAreas))
	for name := range walkAreas {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for pattern, ex := range walkAreas[name]() {
			if _, dup := out[pattern]; dup {
				t.Errorf("%s: example given twice (area %s)", pattern, name)
			}
			out[pattern] = ex
		}
	}
	return out
}

// TestEveryMutatingRouteWritesAnAuditEvent walks the route table of the
// real server: every POST, PUT, PATCH and DELETE route that is not public
// is called with a valid request by a caller allowed to make it, must
// succeed, and must leave at least one new audit event naming that
// caller, in the tenant's log or, for operator routes, in the operator's.
// The test environment mounts every service (its table must equal the
// reference's, built with every Options service set), so a route added
// later without an example fails here.
func TestEveryMutatingRouteWritesAnAuditEvent(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		w := newWalkEnv(t, db)
		examples := allWalkExamples(t)

		// The walk sees every route of the real server.
		got := map[string]bool{}
		for _, rt := range w.srv.Routes() {
			got[rt.Pattern] = true
		}
		ref := referenceRoutes()
		for _, rt := range ref {
			if !got[rt.Pattern] {
				t.Errorf("%s is mounted by the real server but not by the walk's: set its service in walkOptions", rt.Pattern)
			}
		}
		if len(got) != len(ref) {
			t.Errorf("the walk's server has %d routes, the reference %d", len(got), len(ref))
		}
		refMut := map[string]bool{}
		for _, rt := range ref {
			if mutating(rt) {
				refMut[rt.Pattern] = true
			}
		}
		for pattern := range examples {
			if !refMut[pattern] {
				t.Errorf("example %s names no mutating route: remove it", pattern)
			}
		}
		for pattern := range notExercised {
			if !refMut[pattern] {
				t.Errorf("notExercised %s names no mutating route: remove it", pattern)
			}
			if examples[pattern] != nil {
				t.Errorf("%s has an example and is in notExercised", pattern)
			}
		}

		checked := 0
		for _, rt := range ref {
			if !mutating(rt) {
				continue
			}
			if why, ok := notExercised[rt.Pattern]; ok {
				t.Logf("not exercised: %s (%s)", rt.Pattern, why)
				continue
			}
			ex, ok := examples[rt.Pattern]
			if !ok {
				t.Errorf("%s mutates but the audit coverage walk has no example for it: add one to its area in auditwalk_test.go", rt.Pattern)
				continue
			}
			c := ex(w)
			before := len(w.log(c.platform))
			res, body := w.send(c)
			// A browser form succeeds with a page, or a redirect to one.
			if res.StatusCode/100 != 2 && !(browserForm(c.ctype) && res.StatusCode == http.StatusSeeOther) {
				t.Errorf("%s (%s %s): %d %s", rt.Pattern, c.method, c.path, res.StatusCode, body)
				continue
			}
			found := false
			for _, r := range w.log(c.platform)[before:] {
				if r.ActorID == c.actor {
					found = true
				}
				for _, v := range c.personal {
					if strings.Contains(strings.ToLower(string(r.Details)), strings.ToLower(v)) {
						t.Errorf("%s: event %s holds the personal value %q: record the field name only", rt.Pattern, r.Action, v)
					}
				}
			}
			if !found {
				t.Errorf("%s (%s %s) answered %d but wrote no audit event by %s", rt.Pattern, c.method, c.path, res.StatusCode, c.actor)
			}
			checked++
		}
		t.Logf("%d mutating routes checked, %d not exercised", checked, len(notExercised))
	})
}

// log is tenant A's audit log, or the operator's.
func (w *walkEnv) log(platform bool) []audit.Record {
	w.t.Helper()
	if !platform {
		return admAudit(w.t, w.db, w.a.ID)
	}
	var out []audit.Record
	w.must(w.db.Platform(w.ctx, func(p *store.PlatformTx) error {
		var err error
		out, err = audit.List(w.ctx, p.Tenant(""), 0, 10000)
		return err
	}))
	return out
}

// send makes the call c.
func (w *walkEnv) send(c auditCall) (*http.Response, []byte) {
	w.t.Helper()
	hdr := map[string]string{}
	switch {
	case c.s != nil && c.ctype == formType:
		// A browser form: the CSRF token is in the form only.
	case c.s != nil:
		hdr[CSRFHeader] = c.s.csrf
	default:
		sec := c.bearer
		if sec == "" {
			sec = w.opSecret
		}
		hdr["Authorization"] = "Bearer " + sec
	}
	if c.ctype != "" {
		hdr["Content-Type"] = c.ctype
	}
	return w.callWith(w.t, c.s, c.method, c.path, c.body, hdr)
}

func (w *walkEnv) must(err error) {
	if err != nil {
		w.t.Helper()
		w.t.Fatal(err)
	}
}

// next is a number for unique names.
func (w *walkEnv) next() int {
	w.n++
	return w.n
}

// api makes a set-up call as the administrator, which must succeed, and
// returns the decoded body.
func (w *walkEnv) api(method, path, body string) map[string]any {
	w.t.Helper()
	res, b := w.call(w.t, w.as, method, path, body)
	if res.StatusCode/100 != 2 {
		w.t.Fatalf("set-up %s %s: %d %s", method, path, res.StatusCode, b)
	}
	out := map[string]any{}
	if len(b) > 0 {
		admDecode(w.t, b, &out)
	}
	return out
}

// newID is api's "id" field.
func (w *walkEnv) newID(method, path, body string) string {
	w.t.Helper()
	id, _ := w.api(method, path, body)["id"].(string)
	if id == "" {
		w.t.Fatalf("set-up %s %s: no id", method, path)
	}
	return id
}

// as is a call by the administrator of tenant A.
func (w *walkEnv) asAdmin(method, path, body string) auditCall {
	return auditCall{s: w.as, method: method, path: path, body: body, actor: w.admin.ID}
}

// asOperator is a call with the operator token.
func (w *walkEnv) asOperator(method, path, body string) auditCall {
	return auditCall{method: method, path: path, body: body, actor: w.op, platform: true}
}

// viewer creates a user of tenant A with the viewer role.
func (w *walkEnv) viewer() identity.User {
	n := w.next()
	u, _ := w.user(w.t, w.a.ID, fmt.Sprintf("u%d@acme.example", n), fmt.Sprintf("Target Number%d", n), access.RoleViewer)
	return u
}

// member creates a user of tenant A and signs it in through the API.
func (w *walkEnv) member() (identity.User, *adminSession) {
	n := w.next()
	u, enrol := w.user(w.t, w.a.ID, fmt.Sprintf("me%d@acme.example", n), fmt.Sprintf("Member Number%d", n))
	return u, w.signIn(w.t, "acme", u.Email, enrol)
}

const formType = "application/x-www-form-urlencoded"

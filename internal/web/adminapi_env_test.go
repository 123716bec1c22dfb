package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/problem"
)

// adminPassword meets the privileged policy (20+ characters, 3 classes) and
// contains no part of the test users' names or addresses.
const adminPassword = "Quartz-Lantern-Orbit-77!"

// admOperator is the platform operator, who sets up the tests' grants.
var admOperator = access.Actor{Operator: true}

// admClient is the network identity of sessions started directly.
var admClient = identity.Client{IP: "192.0.2.1", Port: "1234", UserAgent: "adminapi-test"}

// adminEnv is a server with real identity and access services over one
// store, with two tenants: acme (A) and beta (B).
type adminEnv struct {
	srv *Server
	db  *store.DB
	ts  *tenants.Service
	id  *identity.Service
	acc *access.Service
	// sso is the single sign-on and SCIM service (its routes need it).
	sso  *sso.Service
	a, b tenants.Tenant
}

func newAdminEnv(t *testing.T, db *store.DB) *adminEnv {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	a, err := ts.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Create(ctx, "Beta", "beta")
	if err != nil {
		t.Fatal(err)
	}
	acc := &access.Service{DB: db}
	id := &identity.Service{DB: db, Tenants: ts, Keyring: tenants.NewKeyring(db, mk, 0), Perms: access.Source{S: acc}, Issuer: "Relais test"}
	svc := &sso.Service{DB: db, Tenants: ts, Keyring: id.Keyring, Identity: id, Access: acc}
	id.PasswordLogin = svc.PasswordLogin
	srv := New(Options{DB: db, Tenants: ts, Identity: id, Access: acc, SSO: svc, MaxBodyBytes: 64 << 10, ShutdownTimeout: time.Second, Version: "test"})
	return &adminEnv{srv: srv, db: db, ts: ts, id: id, acc: acc, sso: svc, a: a, b: b}
}

// user creates a user without a password (it gets an enrolment token) and
// grants it roles as the operator.
func (e *adminEnv) user(t *testing.T, tenantID, email, name string, roles ...string) (identity.User, string) {
	t.Helper()
	ctx := context.Background()
	u, tok, err := e.id.CreateUser(ctx, tenantID, identity.NewUser{Email: email, Name: name})
	if err != nil {
		t.Fatalf("create user %s: %v", email, err)
	}
	for _, r := range roles {
		if err := e.acc.GrantUserRole(ctx, tenantID, admOperator, u.ID, r); err != nil {
			t.Fatalf("grant %s to %s: %v", r, email, err)
		}
	}
	return u, tok
}

// role creates a custom role as the operator.
func (e *adminEnv) role(t *testing.T, tenantID, name string, perms ...access.Permission) access.Role {
	t.Helper()
	r, err := e.acc.CreateRole(context.Background(), tenantID, admOperator, name, "test role", perms)
	if err != nil {
		t.Fatalf("create role %s: %v", name, err)
	}
	return r
}

// adminSession is a signed-in browser: its cookie and CSRF token.
type adminSession struct {
	cookie, csrf string
}

// signIn enrols a user created by user() and signs it in through the API
// (POST /api/v1/auth/enrol, then POST /api/v1/auth/login).
func (e *adminEnv) signIn(t *testing.T, slug, email, enrolToken string) *adminSession {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": enrolToken, "password": adminPassword})
	if res, b := e.call(t, nil, "POST", "/api/v1/auth/enrol", string(body)); res.StatusCode != 200 {
		t.Fatalf("enrol %s: %d %s", email, res.StatusCode, b)
	}
	return e.login(t, slug, email, adminPassword)
}

// login signs in through POST /api/v1/auth/login.
func (e *adminEnv) login(t *testing.T, slug, email, password string) *adminSession {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"tenant": slug, "email": email, "password": password})
	req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("login %s: %d %s", email, res.StatusCode, b)
	}
	var out struct {
		CSRFToken string `json:"csrf_token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.CSRFToken == "" {
		t.Fatalf("login %s: no csrf token: %s", email, b)
	}
	for _, c := range res.Cookies() {
		if c.Name == SessionCookie && c.Value != "" {
			return &adminSession{cookie: c.Value, csrf: out.CSRFToken}
		}
	}
	t.Fatalf("login %s: no session cookie", email)
	return nil
}

// session opens a session directly (as single sign-on does), without the
// password hashing cost of a sign-in; the server checks it exactly like a
// sign-in's.
func (e *adminEnv) session(t *testing.T, tenantID, userID string) *adminSession {
	t.Helper()
	ns, err := e.id.StartSession(context.Background(), tenantID, userID, identity.MethodPassword, admClient)
	if err != nil {
		t.Fatal(err)
	}
	return &adminSession{cookie: ns.Secret, csrf: identity.CSRFToken(ns.Secret)}
}

// call sends a request as s (nil: no credentials). A body is sent as JSON;
// unsafe methods carry the session's CSRF token.
func (e *adminEnv) call(t *testing.T, s *adminSession, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	hdr := map[string]string{}
	if s != nil && method != "GET" && method != "HEAD" {
		hdr[CSRFHeader] = s.csrf
	}
	return e.callWith(t, s, method, path, body, hdr)
}

// callWith is call with explicit extra headers (and no automatic CSRF
// token).
func (e *adminEnv) callWith(t *testing.T, s *adminSession, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: s.cookie})
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// admWant checks a response's status and, for a problem, its code.
func admWant(t *testing.T, what string, res *http.Response, body []byte, status int, code string) {
	t.Helper()
	if res.StatusCode != status {
		t.Errorf("%s: status %d, want %d: %s", what, res.StatusCode, status, body)
		return
	}
	if code != "" {
		if p := decodeProblem(t, res, body); p.Code != code {
			t.Errorf("%s: code %q, want %q (%s)", what, p.Code, code, p.Detail)
		}
	}
}

// admJSON encodes v for a request.
func admJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// admDecode decodes a JSON response body.
func admDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// admProblem decodes a problem body.
func admProblem(t *testing.T, body []byte) problem.Problem {
	t.Helper()
	var p problem.Problem
	admDecode(t, body, &p)
	return p
}

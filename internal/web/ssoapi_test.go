package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/pquerna/otp/totp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// ssoEnv is a Relais server on a real TLS listener with single sign-on,
// and browsers (HTTP clients that keep cookies) to drive it.
type ssoEnv struct {
	*adminEnv
	sso *sso.Service
	ts  *httptest.Server
}

func newSSOEnv(t *testing.T, db *store.DB) *ssoEnv {
	t.Helper()
	e := newAdminEnv(t, db)
	ts := httptest.NewTLSServer(e.srv.Handler())
	t.Cleanup(ts.Close)
	return &ssoEnv{adminEnv: e, sso: e.sso, ts: ts}
}

// browser is an HTTP client with a cookie jar that trusts the test server.
func (e *ssoEnv) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.ts.Client()
	c.Jar = jar
	return c
}

func hasSession(c *http.Client, base string) bool {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == SessionCookie && ck.Value != "" {
			return true
		}
	}
	return false
}

func readAll(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lastSSOLogin returns the details of the tenant's last sso.login event.
func lastSSOLogin(t *testing.T, db *store.DB, tenantID string) map[string]any {
	t.Helper()
	var out map[string]any
	for _, r := range admAudit(t, db, tenantID) {
		if r.Action == "sso.login" {
			out = map[string]any{}
			if err := json.Unmarshal(r.Details, &out); err != nil {
				t.Fatal(err)
			}
			out["_object_id"] = r.ObjectID
		}
	}
	if out == nil {
		t.Fatal("no sso.login event")
	}
	return out
}

func countSessions(t *testing.T, db *store.DB, tenantID string) int {
	t.Helper()
	var n int
	err := db.Tenant(tenantID).Tx(context.Background(), func(tx *store.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT COUNT(*) FROM sessions WHERE tenant_id = $1`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tamperIdP is a real OpenID provider (mockoidc) whose token responses a
// test may rewrite, to play a hostile or broken identity provider.
type tamperIdP struct {
	*mockoidc.MockOIDC
	mu     sync.Mutex
	tamper func(claims map[string]any) string // returns the ID token to send; nil: unchanged
}

func (p *tamperIdP) set(f func(map[string]any) string) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

func startIdP(t *testing.T) *tamperIdP {
	t.Helper()
	// Each IdP its own key (mockoidc's default key is shared by all).
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mockoidc.NewServer(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &tamperIdP{MockOIDC: m}
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			f := p.tamper
			p.mu.Unlock()
			if r.URL.Path != mockoidc.TokenEndpoint || f == nil {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["id_token"] == nil {
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			parts := strings.Split(body["id_token"].(string), ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			claims := map[string]any{}
			_ = json.Unmarshal(payload, &claims)
			body["id_token"] = f(claims)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(body)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return p
}

// sign signs claims with the IdP's key (RS256, its key id).
func (p *tamperIdP) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := p.Keypair.SignJWT(jwt.MapClaims(claims))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *ssoEnv) addOIDC(t *testing.T, tenantID, name string, idp *tamperIdP, cfg sso.Config) sso.Provider {
	t.Helper()
	cfg.BaseURL, cfg.Issuer, cfg.ClientID = e.ts.URL, idp.Issuer(), idp.ClientID
	p, err := e.sso.CreateProvider(context.Background(), tenantID, sso.NewProvider{Name: name, Kind: sso.KindOIDC, Config: cfg, ClientSecret: idp.ClientSecret}, true)
	if err != nil {
		t.Fatalf("create provider: %v", err)
	}
	return p
}

// oidcLogin drives the whole redirect flow: Relais -> IdP -> Relais.
func (e *ssoEnv) oidcLogin(t *testing.T, c *http.Client, slug, provider string) (*http.Response, []byte) {
	t.Helper()
	res, err := c.Get(e.ts.URL + "/sso/" + slug + "/" + provider + "/login?return_to=/account/totp")
	if err != nil {
		t.Fatal(err)
	}
	return res, readAll(t, res)
}

// TestOIDCSignIn drives the authorization code flow with PKCE against a
// real OpenID provider: just-in-time provisioning, group and role mapping
// at every sign-in (added, then taken away), the session usable on the
// API, and the audit event with the subject and the mapped groups.
func TestOIDCSignIn(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		idp := startIdP(t)
		e.addOIDC(t, e.a.ID, "corp", idp, sso.Config{JIT: true})
		grp, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Engineers", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.acc.AddGroupRole(ctx, e.a.ID, admOperator, grp.ID, access.RoleEditor); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sso.AddRule(ctx, e.a.ID, sso.NewRule{Provider: "corp", Claim: "groups", Value: "engineering", Group: "Engineers"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sso.AddRule(ctx, e.a.ID, sso.NewRule{Provider: "corp", Claim: "groups", Value: "design", Role: access.RoleViewer}); err != nil {
			t.Fatal(err)
		}

		c := e.browser(t)
		res, body := e.oidcLogin(t, c, "acme", "corp")
		if res.StatusCode != 200 || !bytes.Contains(body, []byte("Signed in")) || !bytes.Contains(body, []byte("/account/totp")) {
			t.Fatalf("sign-in: %d %s", res.StatusCode, body)
		}
		if !hasSession(c, e.ts.URL) {
			t.Fatal("no session cookie after sign-in")
		}
		res, err = c.Get(e.ts.URL + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		var me struct {
			Method      string   `json:"method"`
			Permissions []string `json:"permissions"`
			User        struct {
				ID, Email, Source string
			} `json:"user"`
		}
		if b := readAll(t, res); res.StatusCode != 200 || json.Unmarshal(b, &me) != nil {
			t.Fatalf("me: %d %s", res.StatusCode, b)
		}
		if me.Method != "oidc" || me.User.Email != "jane.doe@example.com" || me.User.Source != "oidc" || !strings.Contains(strings.Join(me.Permissions, ","), "campaigns:") {
			t.Fatalf("me: %+v", me)
		}
		ev := lastSSOLogin(t, db, e.a.ID)
		if ev["outcome"] != "success" || ev["subject"] != "1234567890" || !strings.Contains(ev["reason"].(string), "provisioned") ||
			!equalJSON(ev["groups"], []string{"Engineers"}) || !equalJSON(ev["roles"], []string{"viewer"}) {
			t.Fatalf("audit: %v", ev)
		}

		// Next sign-in: the IdP no longer says "engineering": the group
		// membership the rules gave is taken away; a role granted by hand
		// stays.
		if err := e.acc.GrantUserRole(ctx, e.a.ID, admOperator, me.User.ID, access.RoleAuditor); err != nil {
			t.Fatal(err)
		}
		u := mockoidc.DefaultUser()
		u.Groups = []string{"design"}
		idp.QueueUser(u)
		c2 := e.browser(t)
		if res, body := e.oidcLogin(t, c2, "acme", "corp"); res.StatusCode != 200 {
			t.Fatalf("second sign-in: %d %s", res.StatusCode, body)
		}
		members, err := e.acc.GroupMembers(ctx, e.a.ID, grp.ID)
		if err != nil || len(members) != 0 {
			t.Fatalf("members after the IdP dropped the group: %v %v", members, err)
		}
		perms, err := e.acc.UserPermissions(ctx, e.a.ID, me.User.ID)
		if err != nil || perms.Has(access.CampaignsWrite) || !perms.Has(access.AuditRead) {
			t.Fatalf("permissions after the second sign-in: %v %v", perms.List(), err)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); !equalJSON(ev["groups"], []string{}) || strings.Contains(ev["reason"].(string), "provisioned") {
			t.Fatalf("second audit: %v", ev)
		}

		// With the userinfo endpoint read too: its claims complete the ID
		// token's (here the groups, absent from the ID token).
		p, err := e.sso.GetProvider(ctx, e.a.ID, "corp")
		if err != nil {
			t.Fatal(err)
		}
		cfg := p.Config
		cfg.Userinfo = true
		if _, err := e.sso.UpdateConfig(ctx, e.a.ID, "corp", cfg, true); err != nil {
			t.Fatal(err)
		}
		idp.set(func(claims map[string]any) string {
			delete(claims, "groups")
			return idp.sign(t, claims)
		})
		defer idp.set(nil)
		if res, body := e.oidcLogin(t, e.browser(t), "acme", "corp"); res.StatusCode != 200 {
			t.Fatalf("sign-in with userinfo: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); !equalJSON(ev["groups"], []string{"Engineers"}) {
			t.Fatalf("groups from userinfo: %v", ev)
		}
	})
}

func equalJSON(a any, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestOIDCRefusesBadTokens plays a hostile or broken identity provider and
// a login-CSRF attacker: each answer is refused, audited with its reason,
// and starts no session.
func TestOIDCRefusesBadTokens(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		idp := startIdP(t)
		other := startIdP(t) // the other tenant's identity provider
		e.addOIDC(t, e.a.ID, "corp", idp, sso.Config{JIT: true})
		e.addOIDC(t, e.b.ID, "corp", other, sso.Config{JIT: true})

		none := func(claims map[string]any) string {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			p, _ := json.Marshal(claims)
			return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
		}
		resign := func(key *tamperIdP, change func(map[string]any)) func(map[string]any) string {
			return func(claims map[string]any) string {
				change(claims)
				return key.sign(t, claims)
			}
		}
		cases := []struct {
			name, reason string
			tamper       func(map[string]any) string
		}{
			{"alg none", "id_token_invalid", none},
			{"wrong audience", "id_token_invalid", resign(idp, func(c map[string]any) { c["aud"] = "someone-else" })},
			{"wrong issuer", "id_token_invalid", resign(idp, func(c map[string]any) { c["iss"] = other.Issuer() })},
			{"expired", "id_token_invalid", resign(idp, func(c map[string]any) { c["exp"] = 1000000000 })},
			{"wrong nonce", "nonce_mismatch", resign(idp, func(c map[string]any) { c["nonce"] = "attacker-nonce" })},
			// A token for this tenant's client, signed by the other
			// tenant's IdP; and the other IdP's own token.
			{"signed by another tenant's IdP", "id_token_invalid", resign(other, func(map[string]any) {})},
			{"another tenant's IdP token", "id_token_invalid", resign(other, func(c map[string]any) {
				c["iss"], c["aud"] = other.Issuer(), other.ClientID
			})},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				idp.set(tc.tamper)
				defer idp.set(nil)
				before := countSessions(t, db, e.a.ID)
				c := e.browser(t)
				res, body := e.oidcLogin(t, c, "acme", "corp")
				if res.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("sso_refused")) {
					t.Fatalf("want 401 sso_refused, got %d %s", res.StatusCode, body)
				}
				if hasSession(c, e.ts.URL) || countSessions(t, db, e.a.ID) != before {
					t.Fatal("a session was started")
				}
				if ev := lastSSOLogin(t, db, e.a.ID); ev["outcome"] != "failure" || !strings.HasPrefix(ev["reason"].(string), tc.reason) {
					t.Fatalf("audit: %v", ev)
				}
			})
		}

		// State: the IdP's redirect carries a state that is not this
		// browser's (login CSRF), or the browser has no flow cookie.
		noRedirect := func(c *http.Client) *http.Client {
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			return c
		}
		for _, tc := range []struct{ name string }{{"wrong state"}, {"no flow cookie"}, {"replayed callback"}} {
			t.Run(tc.name, func(t *testing.T) {
				c := noRedirect(e.browser(t))
				res, err := c.Get(e.ts.URL + "/sso/acme/corp/login")
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				res, err = c.Get(res.Header.Get("Location")) // the IdP answers at once
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				cb, err := url.Parse(res.Header.Get("Location"))
				if err != nil {
					t.Fatal(err)
				}
				q := cb.Query()
				switch tc.name {
				case "wrong state":
					q.Set("state", "rsf_"+e.a.ID+"."+strings.Repeat("A", 43))
				case "no flow cookie":
					c = noRedirect(e.browser(t)) // another browser: the victim of a login CSRF
				case "replayed callback":
					res, err := c.Get(cb.String())
					if err != nil {
						t.Fatal(err)
					}
					if b := readAll(t, res); res.StatusCode != 200 {
						t.Fatalf("first use: %d %s", res.StatusCode, b)
					}
					c = noRedirect(e.browser(t))
					u, _ := url.Parse(e.ts.URL)
					c.Jar.SetCookies(u, []*http.Cookie{{Name: FlowCookie, Value: q.Get("state"), Path: "/"}})
				}
				cb.RawQuery = q.Encode()
				before := countSessions(t, db, e.a.ID)
				res, err = c.Get(cb.String())
				if err != nil {
					t.Fatal(err)
				}
				if b := readAll(t, res); res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("want 401, got %d %s", res.StatusCode, b)
				}
				if countSessions(t, db, e.a.ID) != before {
					t.Fatal("a session was started")
				}
				want := map[string]string{"wrong state": "state_mismatch", "no flow cookie": "state_mismatch", "replayed callback": "flow_unknown_or_expired"}[tc.name]
				if ev := lastSSOLogin(t, db, e.a.ID); ev["outcome"] != "failure" || ev["reason"] != want {
					t.Fatalf("audit: %v", ev)
				}
			})
		}

		// The other tenant's flow state presented to this tenant's callback.
		t.Run("another tenant's state", func(t *testing.T) {
			c := noRedirect(e.browser(t))
			res, err := c.Get(e.ts.URL + "/sso/beta/corp/login")
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
			res, err = c.Get(res.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
			cb, _ := url.Parse(res.Header.Get("Location"))
			cb.Path = strings.Replace(cb.Path, "/sso/beta/", "/sso/acme/", 1)
			res, err = c.Get(cb.String())
			if err != nil {
				t.Fatal(err)
			}
			if b := readAll(t, res); res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("want 401, got %d %s", res.StatusCode, b)
			}
			if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "flow_unknown_or_expired" {
				t.Fatalf("audit: %v", ev)
			}
			if countSessions(t, db, e.a.ID) != 0 && hasSession(c, e.ts.URL) {
				t.Fatal("a session was started")
			}
		})
	})
}

// TestSSOPolicies: provisioning off refuses unknown people; the tenant's
// own second factor versus the IdP's MFA (amr); local password sign-in
// turned off; a disabled provider; no open redirect after sign-in.
func TestSSOPolicies(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		idp := startIdP(t)
		e.addOIDC(t, e.a.ID, "corp", idp, sso.Config{JIT: false})

		t.Run("not provisioned", func(t *testing.T) {
			c := e.browser(t)
			res, body := e.oidcLogin(t, c, "acme", "corp")
			if res.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("sso_not_provisioned")) || hasSession(c, e.ts.URL) {
				t.Fatalf("want 403 sso_not_provisioned, got %d %s", res.StatusCode, body)
			}
			if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "not_provisioned" || ev["outcome"] != "failure" {
				t.Fatalf("audit: %v", ev)
			}
		})

		// The person exists now (created by an administrator).
		if _, _, err := e.id.CreateUser(ctx, e.a.ID, identity.NewUser{Email: "jane.doe@example.com", Name: "Jane"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.adminEnv.ts.SetPolicy(ctx, e.a.ID, json.RawMessage(`{"two_factor":{"required":"all"}}`)); err != nil {
			t.Fatal(err)
		}
		withAMR := func(claims map[string]any) string {
			claims["amr"] = []string{"pwd", "mfa"}
			return idp.sign(t, claims)
		}
		t.Run("own second factor required, none set up", func(t *testing.T) {
			idp.set(withAMR) // asserted, but the tenant does not accept it
			defer idp.set(nil)
			res, body := e.oidcLogin(t, e.browser(t), "acme", "corp")
			if res.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("mfa_unavailable")) {
				t.Fatalf("want 403 mfa_unavailable, got %d %s", res.StatusCode, body)
			}
			if ev := lastSSOLogin(t, db, e.a.ID); ev["outcome"] != "failure" || !strings.HasPrefix(ev["reason"].(string), "mfa_unavailable") {
				t.Fatalf("audit: %v", ev)
			}
		})
		p, err := e.sso.GetProvider(ctx, e.a.ID, "corp")
		if err != nil {
			t.Fatal(err)
		}
		cfg := p.Config
		cfg.AcceptIdPMFA = true
		if _, err := e.sso.UpdateConfig(ctx, e.a.ID, "corp", cfg, true); err != nil {
			t.Fatal(err)
		}
		t.Run("IdP MFA accepted but not asserted", func(t *testing.T) {
			res, body := e.oidcLogin(t, e.browser(t), "acme", "corp")
			if res.StatusCode != http.StatusForbidden {
				t.Fatalf("want 403, got %d %s", res.StatusCode, body)
			}
		})
		t.Run("IdP MFA accepted and asserted", func(t *testing.T) {
			idp.set(withAMR)
			defer idp.set(nil)
			c := e.browser(t)
			res, body := e.oidcLogin(t, c, "acme", "corp")
			if res.StatusCode != 200 || !hasSession(c, e.ts.URL) {
				t.Fatalf("want a session, got %d %s", res.StatusCode, body)
			}
			if ev := lastSSOLogin(t, db, e.a.ID); ev["outcome"] != "success" || !strings.Contains(ev["reason"].(string), "idp_mfa_accepted") {
				t.Fatalf("audit: %v", ev)
			}
		})
		t.Run("own TOTP asked after SSO", func(t *testing.T) {
			// The user has an authenticator app; the IdP asserts no MFA:
			// the tenant's own factor is asked before any session.
			u, err := e.id.FindUserByEmail(ctx, e.a.ID, "jane.doe@example.com")
			if err != nil {
				t.Fatal(err)
			}
			pr := &identity.Principal{TenantID: e.a.ID, UserID: u.ID, AuthTime: time.Now()}
			enr, err := e.id.BeginTOTP(ctx, pr)
			if err != nil {
				t.Fatal(err)
			}
			code, err := totp.GenerateCode(enr.Secret, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.id.ConfirmTOTP(ctx, pr, code); err != nil {
				t.Fatal(err)
			}
			c := e.browser(t)
			res, body := e.oidcLogin(t, c, "acme", "corp")
			if res.StatusCode != 200 || !bytes.Contains(body, []byte(`name="mfa_token"`)) || hasSession(c, e.ts.URL) {
				t.Fatalf("want the second-factor page and no session, got %d %s", res.StatusCode, body)
			}
			if ev := lastSSOLogin(t, db, e.a.ID); ev["outcome"] != "success" || ev["reason"] != "mfa_required" {
				t.Fatalf("audit: %v", ev)
			}
		})
		if _, err := e.adminEnv.ts.SetPolicy(ctx, e.a.ID, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}

		t.Run("password sign-in off", func(t *testing.T) {
			if err := e.sso.SetPasswordLogin(ctx, e.b.ID, false); err == nil {
				t.Fatal("turned passwords off in a tenant without an identity provider")
			}
			_, tok := e.user(t, e.a.ID, "local@acme.example", "Local User")
			e.signIn(t, "acme", "local@acme.example", tok) // works while passwords are on
			if err := e.sso.SetPasswordLogin(ctx, e.a.ID, false); err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(map[string]string{"tenant": "acme", "email": "local@acme.example", "password": adminPassword})
			res, b := e.call(t, nil, "POST", "/api/v1/auth/login", string(body))
			if res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "password_login_disabled") {
				t.Fatalf("password sign-in with passwords off: %d %s", res.StatusCode, b)
			}
			// The browser's sign-in form says what to do instead.
			res, err := e.browser(t).PostForm(e.ts.URL+"/login", url.Values{"tenant": {"acme"}, "email": {"local@acme.example"}, "password": {adminPassword}})
			if err != nil {
				t.Fatal(err)
			}
			if b := readAll(t, res); res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "single sign-on") {
				t.Fatalf("sign-in page with passwords off: %d %s", res.StatusCode, b)
			}
			var seen bool
			for _, r := range admAudit(t, db, e.a.ID) {
				if r.Action == "auth.login" && strings.Contains(string(r.Details), "password_login_disabled") {
					seen = true
				}
			}
			if !seen {
				t.Fatal("the refused password sign-in is not audited")
			}
			// The sign-in page learns what to offer; an unknown tenant
			// looks like any other.
			for slug, want := range map[string]string{
				"acme":    `{"password_login":false,"providers":[{"name":"corp","kind":"oidc","login_url":"/sso/acme/corp/login"}]}`,
				"nowhere": `{"password_login":true,"providers":[]}`,
			} {
				res, err := e.browser(t).Get(e.ts.URL + "/sso/" + slug)
				if err != nil {
					t.Fatal(err)
				}
				if b := readAll(t, res); res.StatusCode != 200 || strings.TrimSpace(string(b)) != want {
					t.Fatalf("sign-in options of %s: %d %s", slug, res.StatusCode, b)
				}
			}
			// Single sign-on still works.
			if res, body := e.oidcLogin(t, e.browser(t), "acme", "corp"); res.StatusCode != 200 {
				t.Fatalf("SSO with passwords off: %d %s", res.StatusCode, body)
			}
		})

		t.Run("no open redirect", func(t *testing.T) {
			c := e.browser(t)
			res, err := c.Get(e.ts.URL + "/sso/acme/corp/login?return_to=//evil.example/x")
			if err != nil {
				t.Fatal(err)
			}
			if b := readAll(t, res); res.StatusCode != 200 || bytes.Contains(b, []byte("evil.example")) {
				t.Fatalf("return_to: %d %s", res.StatusCode, b)
			}
		})

		t.Run("disabled provider", func(t *testing.T) {
			if err := e.sso.SetProviderEnabled(ctx, e.a.ID, "corp", false); err != nil {
				t.Fatal(err)
			}
			res, err := e.browser(t).Get(e.ts.URL + "/sso/acme/corp/login")
			if err != nil {
				t.Fatal(err)
			}
			if b := readAll(t, res); res.StatusCode != 404 {
				t.Fatalf("disabled provider: %d %s", res.StatusCode, b)
			}
		})
	})
}

// TestSSOAdminAPI: a tenant administrator with sso:admin manages mapping
// rules (never handing out a permission it lacks), the password switch
// and SCIM tokens; each change is audited with the user as actor.
func TestSSOAdminAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		idp := startIdP(t)
		e.addOIDC(t, e.a.ID, "corp", idp, sso.Config{})
		e.role(t, e.a.ID, "SSO admins", access.SSOAdmin, access.ContactsRead)
		e.role(t, e.a.ID, "Readers", access.ContactsRead)
		admins, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Admins", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.acc.AddGroupRole(ctx, e.a.ID, admOperator, admins.ID, access.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		u, tok := e.user(t, e.a.ID, "sso-admin@acme.example", "SSO Admin", "SSO admins")
		sess := e.signIn(t, "acme", u.Email, tok)

		for _, tc := range []struct {
			body string
			want int
		}{
			{`{"provider":"corp","claim":"groups","value":"x","role":"admin"}`, 403},
			{`{"provider":"corp","claim":"groups","value":"x","group":"Admins"}`, 403},
			{`{"provider":"corp","claim":"groups","value":"readers","role":"Readers"}`, 201},
			{`{"provider":"nope","claim":"groups","value":"x","role":"Readers"}`, 404},
			{`{"provider":"corp","claim":"","value":"x","role":"Readers"}`, 422},
		} {
			if res, b := e.call(t, sess, "POST", "/api/v1/sso/rules", tc.body); res.StatusCode != tc.want {
				t.Errorf("POST rule %s: %d %s, want %d", tc.body, res.StatusCode, b, tc.want)
			}
		}
		res, b := e.call(t, sess, "GET", "/api/v1/sso/rules", "")
		if res.StatusCode != 200 || strings.Count(string(b), `"claim"`) != 1 || !strings.Contains(string(b), `"role":"Readers"`) {
			t.Fatalf("rules: %d %s", res.StatusCode, b)
		}
		if res, b := e.call(t, sess, "PUT", "/api/v1/sso/settings", `{"password_login":false}`); res.StatusCode != 200 {
			t.Fatalf("settings: %d %s", res.StatusCode, b)
		}
		if ok, _ := e.sso.PasswordLogin(ctx, e.a.ID); ok {
			t.Fatal("password sign-in still on")
		}
		res, b = e.call(t, sess, "POST", "/api/v1/sso/scim-tokens", `{"name":"okta"}`)
		var created struct{ Token string }
		if res.StatusCode != 201 || json.Unmarshal(b, &created) != nil || !strings.HasPrefix(created.Token, "rst_") {
			t.Fatalf("SCIM token: %d %s", res.StatusCode, b)
		}
		if code, _ := e.scim(t, created.Token, "GET", "/scim/v2/Users", ""); code != 200 {
			t.Fatalf("SCIM with the new token: %d", code)
		}
		var byUser int
		for _, r := range admAudit(t, db, e.a.ID) {
			if (r.Action == "sso.rule.create" || r.Action == "sso.settings.update" || r.Action == "scim.token.create") && r.ActorID == u.ID {
				byUser++
			}
		}
		if byUser != 3 {
			t.Fatalf("%d changes audited with the user as actor, want 3", byUser)
		}
		// The provider list does not carry the IdP metadata or secrets.
		if res, b := e.call(t, sess, "GET", "/api/v1/sso/providers", ""); res.StatusCode != 200 || strings.Contains(string(b), idp.ClientSecret) {
			t.Fatalf("providers: %d %s", res.StatusCode, b)
		}
	})
}

package web

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

type uiFixture struct {
	srv    *httptest.Server
	client *http.Client
	id     *identity.Service
	tenant tenants.Tenant
}

func newUIFixture(t *testing.T, db *store.DB) *uiFixture {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	tn, err := ts.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	acc := &access.Service{DB: db}
	id := &identity.Service{DB: db, Tenants: ts, Keyring: tenants.NewKeyring(db, mk, 0), Perms: access.Source{S: acc}}
	s := New(Options{DB: db, Tenants: ts, Identity: id, Access: acc, ShutdownTimeout: time.Second})
	srv := httptest.NewTLSServer(s.Handler())
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := srv.Client()
	c.Jar = jar
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- httptest's own certificate
	return &uiFixture{srv: srv, client: c, id: id, tenant: tn}
}

var hiddenRE = regexp.MustCompile(`name="(csrf_token|mfa_token)" value="([^"]+)"`)

func hidden(body, name string) string {
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

func (f *uiFixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	res, err := f.client.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (f *uiFixture) post(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.srv.URL)
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func assertSafePage(t *testing.T, body string, res *http.Response) {
	t.Helper()
	// Scripts only from files of this site; no inline script, style or
	// event handler attribute.
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(tag, `src="/static/`) {
			t.Errorf("page has an inline script: %s", tag)
		}
	}
	if strings.Contains(body, "style=") || strings.Contains(body, "<style") || regexp.MustCompile(`<[a-zA-Z][a-zA-Z0-9]*(\s+[a-zA-Z-]+(="[^"]*")?)*\s+on[a-z]+=`).MatchString(body) {
		t.Errorf("page has inline style or an event handler")
	}
	if !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("page without a strict CSP")
	}
}

// TestBrowserSignInFlow: the pages work without JavaScript: sign-in with an
// initial password leads to the forced password change, then home; forms
// without the CSRF token are refused; sign-out ends the session.
func TestBrowserSignInFlow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newUIFixture(t, db)
		ctx := context.Background()
		if _, _, err := f.id.CreateUser(ctx, f.tenant.ID, identity.NewUser{Email: "jane@acme.test", Name: "Jane", Password: "Initial-Password-42"}); err != nil {
			t.Fatal(err)
		}
		res, body := f.get(t, "/")
		if res.Request.URL.Path != "/login" || !strings.Contains(body, `<label for="email">`) {
			t.Fatalf("anonymous home did not lead to the sign-in page: %s", res.Request.URL)
		}
		assertSafePage(t, body, res)
		res, body = f.post(t, "/login", url.Values{"tenant": {"acme"}, "email": {"jane@acme.test"}, "password": {"wrong-password-x"}})
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "wrong") || !strings.Contains(body, `value="jane@acme.test"`) {
			t.Fatalf("bad password page: %d", res.StatusCode)
		}
		if strings.Contains(body, "wrong-password-x") {
			t.Fatal("the password was echoed back")
		}
		res, body = f.post(t, "/login", url.Values{"tenant": {"acme"}, "email": {"jane@acme.test"}, "password": {"Initial-Password-42"}})
		if res.Request.URL.Path != "/account/password" || !strings.Contains(body, "must choose a new password") {
			t.Fatalf("initial password did not force a change: %s", res.Request.URL)
		}
		csrf := hidden(body, "csrf_token")
		if csrf == "" {
			t.Fatal("no CSRF token in the form")
		}
		// Without the token: refused, nothing changed.
		res, _ = f.post(t, "/account/password", url.Values{"current_password": {"Initial-Password-42"}, "new_password": {"Brand-New-Password-7"}})
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("password change without CSRF token: %d", res.StatusCode)
		}
		res, body = f.post(t, "/account/password", url.Values{"csrf_token": {csrf}, "current_password": {"Initial-Password-42"}, "new_password": {"short"}})
		if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "at least 12") {
			t.Fatalf("weak new password: %d", res.StatusCode)
		}
		res, body = f.post(t, "/account/password", url.Values{"csrf_token": {csrf}, "current_password": {"Initial-Password-42"}, "new_password": {"Brand-New-Password-7"}})
		if res.StatusCode != 200 || !strings.Contains(body, "is changed") {
			t.Fatalf("password change: %d %s", res.StatusCode, body)
		}
		res, body = f.get(t, "/")
		if res.Request.URL.Path != "/" || !strings.Contains(body, "Welcome, Jane") {
			t.Fatalf("home after the change: %s", res.Request.URL)
		}
		assertSafePage(t, body, res)
		// TOTP set-up page renders a QR code as a data: image.
		res, body = f.post(t, "/account/totp", url.Values{"csrf_token": {hidden(body, "csrf_token")}})
		if res.StatusCode != 200 || !strings.Contains(body, `src="data:image/png;base64,`) {
			t.Fatalf("TOTP set-up: %d", res.StatusCode)
		}
		// Sign out.
		res, _ = f.post(t, "/logout", url.Values{"csrf_token": {hidden(body, "csrf_token")}})
		if res.Request.URL.Path != "/login" {
			t.Fatalf("logout: %s", res.Request.URL)
		}
		if res, _ := f.get(t, "/"); res.Request.URL.Path != "/login" {
			t.Fatal("still signed in after logout")
		}
	})
}

func TestCrossOriginFormRefused(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newUIFixture(t, db)
	req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader("tenant=acme&email=a%40b.test&password=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site form post: %d", res.StatusCode)
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newUIFixture(t, db)
	if _, _, err := f.id.CreateUser(context.Background(), f.tenant.ID, identity.NewUser{Email: "jane@acme.test", Name: "Jane", Password: "Initial-Password-42"}); err != nil {
		t.Fatal(err)
	}
	f.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, _ := f.post(t, "/login", url.Values{"tenant": {"acme"}, "email": {"jane@acme.test"}, "password": {"Initial-Password-42"}})
	sc := res.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-relais_session=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("session cookie lacks %s: %s", want, sc)
		}
	}
	if strings.Contains(sc, "Domain=") {
		t.Error("session cookie has a Domain")
	}
}

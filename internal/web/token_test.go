package web

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

type tokenFixture struct {
	issuer   *jwtauth.Issuer
	verifier *jwtauth.Verifier
	h        http.Handler
	id       *identity.Service
	acc      *access.Service
	ks       *jwtauth.KeyStore
	a, b     tenants.Tenant
	clientA  identity.APIClient
	secretA  string
}

func newTokenFixture(t *testing.T, db *store.DB) *tokenFixture {
	t.Helper()
	ctx := context.Background()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	a, _ := ts.Create(ctx, "A", "ta")
	b, _ := ts.Create(ctx, "B", "tb")
	acc := &access.Service{DB: db}
	id := &identity.Service{DB: db, Tenants: ts, Keyring: tenants.NewKeyring(db, mk, 0), Perms: access.Source{S: acc}}
	ks, err := jwtauth.NewKeyStore(db, mk, jwtauth.KeyStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.EnsureCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	iss, ver := jwtauth.NewIssuer(ks, jwtauth.Config{}), jwtauth.NewVerifier(ks, jwtauth.Config{})
	s := New(Options{DB: db, Tenants: ts, Identity: id, Access: acc, Keys: ks, Issuer: iss, Verifier: ver})
	cl, secret, err := id.CreateClient(ctx, a.ID, "ci", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.GrantClientRole(ctx, a.ID, access.Actor{Operator: true}, cl.ID, "viewer"); err != nil {
		t.Fatal(err)
	}
	return &tokenFixture{h: s.Handler(), issuer: iss, verifier: ver, id: id, acc: acc, ks: ks, a: a, b: b, clientA: cl, secretA: secret}
}

func (f *tokenFixture) token(t *testing.T, form url.Values, basic bool) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(f.clientA.ID, f.secretA)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func (f *tokenFixture) call(t *testing.T, method, path, tok string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestClientCredentialsAndBearerTokens(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		f := newTokenFixture(t, db)
		ctx := context.Background()
		code, out := f.token(t, url.Values{"grant_type": {"client_credentials"}}, true)
		if code != 200 || out["token_type"] != "Bearer" {
			t.Fatalf("token: %d %v", code, out)
		}
		tok := out["access_token"].(string)
		if !strings.Contains(out["scope"].(string), "contacts:read") || strings.Contains(out["scope"].(string), "users:admin") {
			t.Fatalf("scope %q", out["scope"])
		}
		code, body := f.call(t, "GET", "/api/v1/me", tok)
		if code != 200 || !strings.Contains(body, f.a.ID) || !strings.Contains(body, f.clientA.ID) {
			t.Fatalf("me with a token: %d %s", code, body)
		}
		// Body credentials work too; bad ones are refused the OAuth way.
		if code, _ := f.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {f.clientA.ID}, "client_secret": {f.secretA}}, false); code != 200 {
			t.Fatalf("body credentials: %d", code)
		}
		for _, form := range []url.Values{
			{"grant_type": {"client_credentials"}, "client_id": {f.clientA.ID}, "client_secret": {"wrong"}},
			{"grant_type": {"client_credentials"}},
			{"grant_type": {"password"}, "client_id": {f.clientA.ID}, "client_secret": {f.secretA}},
			{"grant_type": {"client_credentials"}, "client_id": {f.clientA.ID}, "client_secret": {f.secretA}, "scope": {"users:admin"}},
		} {
			if code, out := f.token(t, form, false); code < 400 || out["error"] == nil {
				t.Errorf("%v: %d %v", form, code, out)
			}
		}

		// alg:none, HS256 with the public key, an unknown key: all refused.
		var jwks struct {
			Keys []struct{ Kid, X string } `json:"keys"`
		}
		raw, _ := f.ks.JWKS(ctx)
		_ = json.Unmarshal(raw, &jwks)
		kid := jwks.Keys[0].Kid
		now := time.Now().Unix()
		claims := map[string]any{"iss": "relais", "aud": "relais-api", "sub": f.clientA.ID, "client_id": f.clientA.ID, "tenant": f.a.ID,
			"scope": "users:admin contacts:read", "ver": 1, "iat": now, "nbf": now, "exp": now + 600, "jti": "x"}
		none := b64(map[string]string{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + b64(claims) + "."
		pub, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0].X)
		hsInput := b64(map[string]string{"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + b64(claims)
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(hsInput))
		hs := hsInput + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		edInput := b64(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": kid}) + "." + b64(claims)
		forged := edInput + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(edInput)))
		// The real token with its tenant claim changed to B.
		parts := strings.Split(tok, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var pc map[string]any
		_ = json.Unmarshal(payload, &pc)
		pc["tenant"] = f.b.ID
		swapped := parts[0] + "." + b64(pc) + "." + parts[2]
		for name, bad := range map[string]string{"alg none": none, "HS256 with the public key": hs, "unknown signing key": forged,
			"tenant changed to B": swapped, "garbage": "abc.def.ghi", "truncated": tok[:len(tok)-5]} {
			if code, body := f.call(t, "GET", "/api/v1/me", bad); code != 401 || strings.Contains(body, f.b.ID) {
				t.Errorf("%s: %d %s", name, code, body)
			}
		}

		// A token of tenant A never reaches tenant B: its tenant comes from
		// the signed claims, and B's ids are unknown in A.
		u, _, err := f.id.CreateUser(ctx, f.b.ID, identity.NewUser{Email: "bob@b.test", Name: "Bob"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.acc.GrantClientRole(ctx, f.a.ID, access.Actor{Operator: true}, f.clientA.ID, "admin"); err != nil {
			t.Fatal(err)
		}
		_ = f.id.BumpClientVersion(ctx, f.a.ID, f.clientA.ID)
		_, out = f.token(t, url.Values{"grant_type": {"client_credentials"}}, true)
		admin := out["access_token"].(string)
		if code, body := f.call(t, "GET", "/api/v1/users/"+u.ID, admin); code != 404 || strings.Contains(body, "bob") {
			t.Fatalf("tenant A's token read tenant B's user: %d %s", code, body)
		}
		// The old token was revoked by the version bump. The change went
		// around this server (as a CLI command in another process would):
		// its credential cache lets it through for at most ClientCacheTTL.
		revokedWithin := func(token string) {
			t.Helper()
			start := time.Now()
			for {
				code, body := f.call(t, "GET", "/api/v1/me", token)
				if code == 401 && strings.Contains(body, "token_revoked") {
					return
				}
				if time.Since(start) > ClientCacheTTL+500*time.Millisecond {
					t.Fatalf("revoked token still accepted after %v: %d %s", time.Since(start), code, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		revokedWithin(tok)
		if err := f.id.SetClientStatus(ctx, f.a.ID, f.clientA.ID, identity.StatusDisabled); err != nil {
			t.Fatal(err)
		}
		revokedWithin(admin)
		// JWKS is public and lists the key.
		req := httptest.NewRequest("GET", "/.well-known/jwks.json", nil)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), kid) || strings.Contains(rec.Body.String(), `"d"`) {
			t.Fatalf("jwks: %d %s", rec.Code, rec.Body)
		}
	})
}

func newIssuer(f *tokenFixture) *jwtauth.Issuer     { return f.issuer }
func newVerifier(f *tokenFixture) *jwtauth.Verifier { return f.verifier }

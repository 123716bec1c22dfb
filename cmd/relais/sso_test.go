package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// idpMetadata is a minimal SAML 2.0 IdP metadata document (test data; its
// certificate is never used to verify anything here).
const idpMetadata = `<?xml version="1.0"?>
<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/metadata" validUntil="2099-01-01T00:00:00Z">
  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
  </IDPSSODescriptor>
</EntityDescriptor>`

// TestSSOCommands configures a tenant's single sign-on from the CLI:
// providers of both kinds (with the URLs to register at the IdP), mapping
// rules, the password switch and a SCIM token, then uses the SCIM token
// against `relais serve` over HTTPS. Bad input is refused with what to do.
func TestSSOCommands(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")

	fails(t, dir, env, "", 2, []string{"--kind", "oidc or saml"}, "sso", "provider", "add", "--tenant", "acme", "--name", "x", "--kind", "ldap")
	fails(t, dir, env, "", 2, []string{"exactly one of --idp-metadata-url and --idp-metadata-file"},
		"sso", "provider", "add", "--tenant", "acme", "--name", "x", "--kind", "saml", "--base-url", "https://relais.example")
	fails(t, dir, env, "", 1, []string{"--base-url", "https://"},
		"sso", "provider", "add", "--tenant", "acme", "--name", "corp", "--kind", "oidc", "--base-url", "http://relais.example",
		"--issuer", "https://login.example.com", "--client-id", "relais")
	fails(t, dir, env, "", 1, []string{"--algorithms", "not accepted"},
		"sso", "provider", "add", "--tenant", "acme", "--name", "corp", "--kind", "oidc", "--base-url", "https://relais.example",
		"--issuer", "https://login.example.com", "--client-id", "relais", "--algorithms", "none")
	fails(t, dir, env, "", 1, []string{"add and enable an identity provider"}, "sso", "password-login", "off", "--tenant", "acme")

	// The issuer is a closed local port: discovery fails at once.
	r := ok(t, dir, env, "client-secret-value\n", "sso", "provider", "add", "--tenant", "acme", "--name", "corp", "--kind", "oidc",
		"--base-url", "https://relais.example", "--issuer", "https://127.0.0.1:9", "--client-id", "relais", "--client-secret-stdin", "--jit", "--json")
	var added map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &added); err != nil || added["redirect_uri"] != "https://relais.example/sso/acme/corp/oidc/callback" {
		t.Fatalf("provider add: %v %s", err, r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "client-secret-value") {
		t.Fatal("the client secret was echoed")
	}
	md := filepath.Join(dir, "idp.xml")
	if err := os.WriteFile(md, []byte(idpMetadata), 0o600); err != nil {
		t.Fatal(err)
	}
	r = ok(t, dir, env, "", "sso", "provider", "add", "--tenant", "acme", "--name", "adfs", "--kind", "saml",
		"--base-url", "https://relais.example", "--idp-metadata-file", md)
	if !strings.Contains(r.stdout, "https://relais.example/sso/acme/adfs/saml/metadata") {
		t.Fatalf("SAML provider add: %s", r.stdout)
	}
	// The compliance report reads the tenant's SSO state (AUTH-5).
	var rep struct {
		SSO struct {
			State  string `json:"state"`
			Detail struct {
				Protocols []string `json:"protocols"`
			} `json:"detail"`
		} `json:"sso"`
	}
	if err := json.Unmarshal([]byte(ok(t, dir, env, "", "compliance", "report", "--tenant", "acme", "--format", "json").stdout), &rep); err != nil ||
		rep.SSO.State != "configured" || !slices.Contains(rep.SSO.Detail.Protocols, "saml") {
		t.Fatalf("compliance report's SSO section: %+v %v", rep.SSO, err)
	}
	bad := filepath.Join(dir, "bad.xml")
	_ = os.WriteFile(bad, []byte("<html/>"), 0o600)
	fails(t, dir, env, "", 1, []string{"--idp-metadata", "not SAML 2.0 IdP metadata"}, "sso", "provider", "add", "--tenant", "acme",
		"--name", "bad", "--kind", "saml", "--base-url", "https://relais.example", "--idp-metadata-file", bad)
	fails(t, dir, env, "", 1, []string{"already exists", "another --name"}, "sso", "provider", "add", "--tenant", "acme",
		"--name", "adfs", "--kind", "saml", "--base-url", "https://relais.example", "--idp-metadata-file", md)

	ok(t, dir, env, "", "group", "create", "--tenant", "acme", "--name", "Marketing")
	ok(t, dir, env, "", "sso", "rule", "add", "--tenant", "acme", "--provider", "corp", "--claim", "groups", "--value", "mkt", "--group", "Marketing")
	ok(t, dir, env, "", "sso", "rule", "add", "--tenant", "acme", "--provider", "adfs", "--claim", "eduPersonAffiliation", "--value", "*", "--role", "viewer")
	fails(t, dir, env, "", 1, []string{"not found", "sso provider list"}, "sso", "rule", "add", "--tenant", "acme", "--provider", "nope",
		"--claim", "groups", "--value", "x", "--role", "viewer")
	fails(t, dir, env, "", 2, []string{"at least one of --group and --role"}, "sso", "rule", "add", "--tenant", "acme", "--provider", "corp",
		"--claim", "groups", "--value", "x")
	rules := decode[[]map[string]any](t, ok(t, dir, env, "", "sso", "rule", "list", "--tenant", "acme", "--json"))
	if len(rules) != 2 || rules[0]["group"] != "Marketing" || rules[1]["role"] != "viewer" {
		t.Fatalf("rules: %v", rules)
	}
	ps := decode[[]map[string]any](t, ok(t, dir, env, "", "sso", "provider", "list", "--tenant", "acme", "--json"))
	if len(ps) != 2 || ps[0]["has_client_secret"] != nil || ps[1]["has_client_secret"] != true {
		t.Fatalf("providers: %v", ps)
	}
	set := decode[map[string]any](t, ok(t, dir, env, "", "sso", "provider", "set", "--tenant", "acme", "corp", "--accept-idp-mfa", "--jit=false", "--json"))
	if cfg := set["provider"].(map[string]any)["config"].(map[string]any); cfg["accept_idp_mfa"] != true || cfg["jit"] != false {
		t.Fatalf("provider set: %v", set)
	}
	fails(t, dir, env, "", 2, []string{"--refresh-metadata needs a SAML provider"}, "sso", "provider", "set", "--tenant", "acme", "adfs", "--refresh-metadata")
	ok(t, dir, env, "", "sso", "password-login", "off", "--tenant", "acme")
	ok(t, dir, env, "", "sso", "provider", "disable", "--tenant", "acme", "adfs")

	tok := decode[map[string]any](t, ok(t, dir, env, "", "sso", "scim-token", "create", "--tenant", "acme", "--name", "okta", "--json"))
	secret, _ := tok["token"].(string)
	if !strings.HasPrefix(secret, "rst_") {
		t.Fatalf("scim token: %v", tok)
	}

	https := freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	base := "https://" + https
	waitHealthy(t, srv, base)
	hc := insecureClient()
	scim := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/scim+json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := scim("POST", "/scim/v2/Users", `{"userName":"ann@acme.test","displayName":"Ann"}`); code != 201 {
		t.Fatalf("SCIM create over HTTPS: %d %s", code, body)
	}
	if code, body := scim("GET", "/scim/v2/Users", ""); code != 200 || !strings.Contains(body, "ann@acme.test") {
		t.Fatalf("SCIM list: %d %s", code, body)
	}
	// Passwords are off in this tenant.
	b, _ := json.Marshal(map[string]string{"tenant": "acme", "email": "ann@acme.test", "password": "whatever-password-1"})
	res, err := hc.Post(base+"/api/v1/auth/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 403 || !strings.Contains(string(body), "password_login_disabled") {
		t.Fatalf("password sign-in with passwords off: %d %s", res.StatusCode, body)
	}
	// The SP metadata stays available while the provider is disabled (the
	// IdP's administrator needs it to set up), but sign-in does not start.
	res, err = hc.Get(base + "/sso/acme/adfs/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `Location="https://relais.example/sso/acme/adfs/saml/acs"`) {
		t.Fatalf("SP metadata: %d %s", res.StatusCode, body)
	}
	res, err = hc.Get(base + "/sso/acme/adfs/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("sign-in with a disabled provider: %d", res.StatusCode)
	}
	// The OIDC provider's issuer does not exist here: a clear 502.
	res, err = hc.Get(base + "/sso/acme/corp/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "sso_idp_unavailable") {
		t.Fatalf("unreachable IdP: %d %s", res.StatusCode, body)
	}
	ok(t, dir, env, "", "sso", "scim-token", "revoke", "--tenant", "acme", tok["id"].(string))
	if code, _ := scim("GET", "/scim/v2/Users", ""); code != 401 {
		t.Fatalf("revoked SCIM token: %d", code)
	}
}

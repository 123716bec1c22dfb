package sso

import (
	"strings"
	"testing"
)

// The flows end-to-end (real OpenID provider, real SAML IdP, forged
// responses) are tested in internal/web (ssoapi_test.go, ssosaml_test.go,
// scimapi_test.go), where they go through HTTP; these are the pure parts.

func TestSafeReturnTo(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "/",
		"/":                            "/",
		"/campaigns?x=1":               "/campaigns?x=1",
		"//evil.example/":              "/",
		"/\\evil.example":              "/",
		"https://evil.example/":        "/",
		"javascript:alert(1)":          "/",
		"/a\r\nSet-Cookie: x=y":        "/",
		"/" + strings.Repeat("a", 600): "/",
	} {
		if got := SafeReturnTo(in); got != want {
			t.Errorf("SafeReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckXMLShape(t *testing.T) {
	ok := `<?xml version="1.0"?><r><n>alice@acme.example</n></r>`
	if err := checkXMLShape([]byte(ok)); err != nil {
		t.Fatalf("plain document refused: %v", err)
	}
	for name, doc := range map[string]string{
		"comment in a NameID": `<r><n>alice@acme.example<!---->.evil.example</n></r>`,
		"comment at the top":  `<!-- x --><r/>`,
		"DOCTYPE":             `<!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>`,
		"processing inst.":    `<r><?evil x?></r>`,
		"not XML":             `<r>`,
		"too deep":            strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100),
	} {
		if err := checkXMLShape([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRulesMatchAndEvaluate(t *testing.T) {
	rules := []Rule{
		{Claim: "groups", Value: "eng", GroupID: "g1", GroupName: "Engineers"},
		{Claim: "groups", Value: "eng", RoleID: "r1", RoleName: "editor"},
		{Claim: "dept", Value: "*", GroupID: "g2", GroupName: "Staff"},
		{Claim: "groups", Value: "ops", RoleID: "r2", RoleName: "admin"},
	}
	m := evaluate(rules, Claims{"groups": {"eng", "design"}, "dept": {"sales"}})
	if strings.Join(m.groupNames, ",") != "Engineers,Staff" || strings.Join(m.roleNames, ",") != "editor" {
		t.Fatalf("evaluate: %+v", m)
	}
	// A wildcard needs the claim to be present; values are exact.
	m = evaluate(rules, Claims{"groups": {"Eng", "ops-team"}})
	if len(m.groupNames) != 0 || len(m.roleNames) != 0 {
		t.Fatalf("evaluate without matches: %+v", m)
	}
}

func TestFlattenClaims(t *testing.T) {
	c := flatten(map[string]any{"email": "a@b.c", "amr": []any{"pwd", "mfa"}, "email_verified": true, "level": float64(2),
		"nested": map[string]any{"x": 1}})
	if c.first("email") != "a@b.c" || strings.Join(c["amr"], ",") != "pwd,mfa" || c.first("email_verified") != "true" || c.first("level") != "2" {
		t.Fatalf("flatten: %v", c)
	}
	if _, ok := c["nested"]; ok {
		t.Fatal("an object claim became a value")
	}
}

func TestFlowSecrets(t *testing.T) {
	s := newSecret(prefixFlow, "tenant-1")
	if tid, ok := splitSecret(prefixFlow, s); !ok || tid != "tenant-1" {
		t.Fatalf("split %q: %q %v", s, tid, ok)
	}
	if derive(s, "pkce") == derive(s, "nonce") || derive(s, "pkce") != derive(s, "pkce") || len(derive(s, "pkce")) != 43 {
		t.Fatal("derived values must be stable, distinct per label, and 43 characters (RFC 7636)")
	}
	for _, bad := range []string{"", "rsf_", "rsf_t.short", "rss_tenant-1." + strings.Repeat("A", 43), "rsf_." + strings.Repeat("A", 43)} {
		if _, ok := splitSecret(prefixFlow, bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{BaseURL: "https://relais.example/", Issuer: "https://login.example.com", ClientID: "relais"}
	if err := good.normalise(KindOIDC, false); err != nil || good.BaseURL != "https://relais.example" || strings.Join(good.Algorithms, ",") != "RS256,ES256" {
		t.Fatalf("good config: %v %+v", err, good)
	}
	for name, c := range map[string]Config{
		"http base":       {BaseURL: "http://relais.example", Issuer: "https://login.example.com", ClientID: "x"},
		"http issuer":     {BaseURL: "https://relais.example", Issuer: "http://login.example.com", ClientID: "x"},
		"no client":       {BaseURL: "https://relais.example", Issuer: "https://login.example.com"},
		"alg none":        {BaseURL: "https://relais.example", Issuer: "https://login.example.com", ClientID: "x", Algorithms: []string{"none"}},
		"alg HS256":       {BaseURL: "https://relais.example", Issuer: "https://login.example.com", ClientID: "x", Algorithms: []string{"HS256"}},
		"userinfo in URL": {BaseURL: "https://u:p@relais.example", Issuer: "https://login.example.com", ClientID: "x"},
	} {
		if err := c.normalise(KindOIDC, false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	saml := Config{BaseURL: "https://relais.example", IdPMetadata: "<html/>"}
	if err := saml.normalise(KindSAML, false); err == nil {
		t.Error("SAML config with no IdP metadata accepted")
	}
	if err := validateProviderName("Corp/../x"); err == nil {
		t.Error("a provider name that is not URL-safe was accepted")
	}
}

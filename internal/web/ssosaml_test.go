package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"

	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// testIdP is crewjam/saml's samlidp, a real SAML IdP, in-process, signing
// with a test key.
type testIdP struct {
	*samlidp.Server
	url string
	// mfa makes the IdP assert multi-factor authentication (its sessions
	// carry the MobileTwoFactorContract class).
	mfa atomic.Bool
}

// mfaSessions wraps the IdP's own session provider to set the
// authentication context class of its sessions.
type mfaSessions struct {
	inner saml.SessionProvider
	p     *testIdP
}

func (m mfaSessions) GetSession(w http.ResponseWriter, r *http.Request, req *saml.IdpAuthnRequest) *saml.Session {
	s := m.inner.GetSession(w, r, req)
	if s != nil && m.p.mfa.Load() {
		s.AuthnContextClassRef = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
	}
	return s
}

func startSAMLIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test idp"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	u, _ := url.Parse(base)
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{Server: idp, url: base}
	idp.IDP.SessionProvider = mfaSessions{inner: idp.IDP.SessionProvider, p: p}
	srv := &http.Server{Handler: idp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.put(t, "/users/alice", `{"name":"alice","password":"correct horse battery","email":"alice@acme.example","common_name":"Alice A","groups":["staff","admins"]}`)
	return p
}

func (p *testIdP) put(t *testing.T, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, p.url+path, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, res); res.StatusCode/100 != 2 {
		t.Fatalf("IdP PUT %s: %d %s", path, res.StatusCode, b)
	}
}

func (p *testIdP) metadata(t *testing.T) string {
	t.Helper()
	res, err := http.Get(p.url + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	return string(readAll(t, res))
}

// addSAML adds a SAML provider to a tenant and registers its SP metadata
// at the IdP.
func (e *ssoEnv) addSAML(t *testing.T, tenantID, slug, name string, idp *testIdP, cfg sso.Config) {
	t.Helper()
	cfg.BaseURL, cfg.IdPMetadata = e.ts.URL, idp.metadata(t)
	if _, err := e.sso.CreateProvider(context.Background(), tenantID, sso.NewProvider{Name: name, Kind: sso.KindSAML, Config: cfg}, true); err != nil {
		t.Fatalf("create SAML provider: %v", err)
	}
	res, err := e.ts.Client().Get(e.ts.URL + "/sso/" + slug + "/" + name + "/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md := readAll(t, res)
	if res.StatusCode != 200 || !bytes.Contains(md, []byte("AssertionConsumerService")) {
		t.Fatalf("SP metadata: %d %s", res.StatusCode, md)
	}
	idp.put(t, "/services/"+slug+"-"+name, string(md))
}

var inputRE = regexp.MustCompile(`<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"`)
var actionRE = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)

// form extracts a page's form action and fields.
func form(t *testing.T, page []byte) (string, url.Values) {
	t.Helper()
	m := actionRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form in %s", page)
	}
	v := url.Values{}
	for _, in := range inputRE.FindAllSubmatch(page, -1) {
		v.Set(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	return html.UnescapeString(string(m[1])), v
}

// samlStart runs an SP-initiated sign-in up to the IdP's answer: the form
// the browser would post to the ACS (signing in at the IdP first when it
// asks).
func (e *ssoEnv) samlStart(t *testing.T, c *http.Client, slug, provider string) (string, url.Values) {
	t.Helper()
	res, err := c.Get(e.ts.URL + "/sso/" + slug + "/" + provider + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, res)
	if bytes.Contains(page, []byte(`name="password"`)) {
		action, f := form(t, page)
		f.Set("user", "alice")
		f.Set("password", "correct horse battery")
		if !strings.HasPrefix(action, "http") {
			action = res.Request.URL.ResolveReference(&url.URL{Path: action}).String()
		}
		res, err = c.PostForm(action, f)
		if err != nil {
			t.Fatal(err)
		}
		page = readAll(t, res)
	}
	action, f := form(t, page)
	if f.Get("SAMLResponse") == "" {
		t.Fatalf("no SAMLResponse in %s", page)
	}
	return action, f
}

func postACS(t *testing.T, c *http.Client, action string, f url.Values) (*http.Response, []byte) {
	t.Helper()
	res, err := c.PostForm(action, f)
	if err != nil {
		t.Fatal(err)
	}
	return res, readAll(t, res)
}

// rewrite applies an etree change to the SAMLResponse of a form.
func rewrite(t *testing.T, f url.Values, change func(doc *etree.Document)) url.Values {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(f.Get("SAMLResponse"))
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	change(doc)
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	g := url.Values{}
	for k, v := range f {
		g[k] = v
	}
	g.Set("SAMLResponse", base64.StdEncoding.EncodeToString(out))
	return g
}

// dropResponseSignature removes the Response's own signature (not the
// assertion's).
func dropResponseSignature(doc *etree.Document) {
	root := doc.Root()
	for _, s := range root.SelectElements("Signature") {
		root.RemoveChild(s)
	}
}

// attackerCert is a self-signed certificate of a key the IdP never had.
func attackerCert(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func assertionOf(t *testing.T, doc *etree.Document) *etree.Element {
	t.Helper()
	a := doc.FindElement("//Assertion")
	if a == nil {
		t.Fatalf("no assertion in the response")
	}
	return a
}

// TestSAMLSignIn: SP-initiated sign-in through a real IdP (login form,
// signed response posted to the ACS), the mapping of its attributes, and
// IdP-initiated sign-in refused unless the provider allows it.
func TestSAMLSignIn(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		idp := startSAMLIdP(t)
		e.addSAML(t, e.a.ID, "acme", "corp", idp, sso.Config{JIT: true})
		if _, err := e.sso.AddRule(ctx, e.a.ID, sso.NewRule{Provider: "corp", Claim: "eduPersonAffiliation", Value: "staff", Role: "manager"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sso.AddRule(ctx, e.a.ID, sso.NewRule{Provider: "corp", Claim: "urn:oid:1.3.6.1.4.1.5923.1.1.1.1", Value: "admins", Role: "admin"}); err != nil {
			t.Fatal(err)
		}
		c := e.browser(t)
		action, f := e.samlStart(t, c, "acme", "corp")
		res, body := postACS(t, c, action, f)
		if res.StatusCode != 200 || !hasSession(c, e.ts.URL) {
			t.Fatalf("ACS: %d %s", res.StatusCode, body)
		}
		res, err := c.Get(e.ts.URL + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode != 200 || !bytes.Contains(b, []byte(`"method":"saml"`)) || !bytes.Contains(b, []byte("alice@acme.example")) {
			t.Fatalf("me: %d %s", res.StatusCode, b)
		}
		ev := lastSSOLogin(t, db, e.a.ID)
		// Attributes match by Name or FriendlyName; an administrative
		// right given by the mapping carries the ACC-4 alert.
		if ev["outcome"] != "success" || ev["subject"] != "alice@acme.example" || !equalJSON(ev["roles"], []string{"admin", "manager"}) ||
			ev["alert"] != "admin_grant" || !strings.Contains(fmt.Sprint(ev["permissions"]), "users:admin") {
			t.Fatalf("audit: %v", ev)
		}
		// The next sign-in gives nothing new: no alert.
		c2 := e.browser(t)
		action, f = e.samlStart(t, c2, "acme", "corp")
		if res, body := postACS(t, c2, action, f); res.StatusCode != 200 {
			t.Fatalf("second sign-in: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); ev["alert"] != nil {
			t.Fatalf("second sign-in alert: %v", ev)
		}

		// IdP-initiated: off by default.
		idp.put(t, "/shortcuts/relais", `{"name":"relais","service_provider":"`+e.ts.URL+`/sso/acme/corp/saml/metadata"}`)
		res, err = c.Get(idp.url + "/login/relais")
		if err != nil {
			t.Fatal(err)
		}
		action, f = form(t, readAll(t, res))
		before := countSessions(t, db, e.a.ID)
		if res, body := postACS(t, e.browser(t), action, f); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("IdP-initiated with it off: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "unsolicited_response" || countSessions(t, db, e.a.ID) != before {
			t.Fatalf("audit: %v", ev)
		}
	})
}

// TestSAMLRefusesForgedResponses manipulates real signed XML from the test
// IdP: each forgery is refused, audited, and starts no session.
func TestSAMLRefusesForgedResponses(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		var offset atomic.Int64
		e.sso.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		idp := startSAMLIdP(t)
		other := startSAMLIdP(t) // the other tenant's IdP, with its own key
		e.addSAML(t, e.a.ID, "acme", "corp", idp, sso.Config{JIT: true})
		e.addSAML(t, e.a.ID, "acme", "corp2", idp, sso.Config{JIT: true})
		e.addSAML(t, e.a.ID, "acme", "open", idp, sso.Config{JIT: true, AllowIdPInitiated: true})
		// The other tenant's IdP also knows acme's SP: it will sign a
		// well-formed response for it.
		e.addSAML(t, e.b.ID, "beta", "corp", other, sso.Config{JIT: true})
		res, err := e.ts.Client().Get(e.ts.URL + "/sso/acme/corp/saml/metadata")
		if err != nil {
			t.Fatal(err)
		}
		other.put(t, "/services/acme-corp", string(readAll(t, res)))
		idp.put(t, "/shortcuts/open", `{"name":"open","service_provider":"`+e.ts.URL+`/sso/acme/open/saml/metadata"}`)

		c := e.browser(t)
		refused := func(t *testing.T, c *http.Client, action string, f url.Values, reason string) {
			t.Helper()
			before := countSessions(t, db, e.a.ID)
			res, body := postACS(t, c, action, f)
			want := map[bool]int{true: http.StatusRequestEntityTooLarge, false: http.StatusUnauthorized}[reason == "response_too_large"]
			if res.StatusCode != want {
				t.Fatalf("want %d, got %d %s", want, res.StatusCode, body)
			}
			if countSessions(t, db, e.a.ID) != before || hasSession(c, e.ts.URL) {
				t.Fatal("a session was started")
			}
			ev := lastSSOLogin(t, db, e.a.ID)
			if ev["outcome"] != "failure" || !strings.HasPrefix(ev["reason"].(string), reason) {
				t.Fatalf("audit: %v (want reason %s)", ev, reason)
			}
			t.Logf("refused: %s", ev["reason"])
		}
		nameID := func(doc *etree.Document) *etree.Element { return assertionOf(t, doc).FindElement("./Subject/NameID") }

		cases := []struct {
			name, reason string
			change       func(doc *etree.Document)
		}{
			{"unsigned", "assertion_invalid", func(doc *etree.Document) {
				for _, s := range doc.FindElements("//Signature") {
					s.Parent().RemoveChild(s)
				}
			}},
			{"wrongly signed (changed after signing)", "assertion_invalid", func(doc *etree.Document) {
				nameID(doc).SetText("admin@acme.example")
			}},
			{"assertion changed after signing, response unsigned", "assertion_invalid", func(doc *etree.Document) {
				dropResponseSignature(doc)
				nameID(doc).SetText("admin@acme.example")
			}},
			{"signed by an attacker's own key", "assertion_invalid", func(doc *etree.Document) {
				// Replace the embedded certificates with a self-signed one:
				// the SP must trust only the IdP metadata's keys.
				dropResponseSignature(doc)
				for _, c := range doc.FindElements("//X509Certificate") {
					c.SetText(attackerCert(t))
				}
			}},
			// The wrapping cases drop the Response's own signature first, so
			// that only the assertion's signature stands: the attack then
			// targets which assertion the SP reads.
			{"wrapping: a second, unsigned assertion first", "assertion_invalid", func(doc *etree.Document) {
				dropResponseSignature(doc)
				signed := assertionOf(t, doc)
				evil := signed.Copy()
				for _, s := range evil.FindElements("./Signature") {
					evil.RemoveChild(s)
				}
				evil.CreateAttr("ID", "_evil")
				evil.FindElement("./Subject/NameID").SetText("admin@acme.example")
				signed.Parent().InsertChildAt(signed.Index(), evil)
			}},
			{"wrapping: the signed assertion moved into an extension", "assertion_invalid", func(doc *etree.Document) {
				dropResponseSignature(doc)
				signed := assertionOf(t, doc)
				resp := signed.Parent()
				evil := signed.Copy()
				for _, s := range evil.FindElements("./Signature") {
					evil.RemoveChild(s)
				}
				evil.FindElement("./Subject/NameID").SetText("admin@acme.example")
				resp.RemoveChild(signed)
				ext := resp.CreateElement("samlp:Extensions")
				ext.AddChild(signed)
				resp.InsertChildAt(ext.Index(), evil)
			}},
			{"comment inside the NameID", "response_shape", func(doc *etree.Document) {
				n := nameID(doc)
				v := n.Text() // alice@acme.example
				n.SetText(v[:5])
				n.CreateComment("x")
				n.CreateText(v[5:])
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				action, f := e.samlStart(t, c, "acme", "corp")
				refused(t, c, action, rewrite(t, f, tc.change), tc.reason)
			})
		}

		t.Run("wrong audience and recipient (issued for another SP)", func(t *testing.T) {
			// An unsolicited response the IdP signed for corp2, posted to
			// "open" (which accepts unsolicited ones): no request id in
			// play, only the destination, recipient and audience differ.
			idp.put(t, "/shortcuts/corp2", `{"name":"corp2","service_provider":"`+e.ts.URL+`/sso/acme/corp2/saml/metadata"}`)
			ic := e.browser(t)
			e.samlStart(t, ic, "acme", "corp")
			res, err := ic.Get(idp.url + "/login/corp2")
			if err != nil {
				t.Fatal(err)
			}
			_, f := form(t, readAll(t, res))
			refused(t, e.browser(t), e.ts.URL+"/sso/acme/open/saml/acs", f, "assertion_invalid")
			ev := lastSSOLogin(t, db, e.a.ID)
			if r := ev["reason"].(string); !strings.Contains(r, "Destination") && !strings.Contains(r, "Recipient") && !strings.Contains(r, "udience") {
				t.Fatalf("refused for another reason: %s", r)
			}
		})
		t.Run("signed by another tenant's IdP", func(t *testing.T) {
			oc := e.browser(t)
			action, _ := e.samlStart(t, oc, "acme", "corp") // flow at acme's IdP
			// The other IdP's signed response for acme's SP.
			res, err := oc.Get(other.url + "/login")
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
			res, err = oc.PostForm(other.url+"/login", url.Values{"user": {"alice"}, "password": {"correct horse battery"}})
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
			other.put(t, "/shortcuts/acme", `{"name":"acme","service_provider":"`+e.ts.URL+`/sso/acme/corp/saml/metadata"}`)
			res, err = oc.Get(other.url + "/login/acme")
			if err != nil {
				t.Fatal(err)
			}
			_, f := form(t, readAll(t, res))
			refused(t, oc, action, f, "assertion_invalid")
		})
		t.Run("replayed assertion", func(t *testing.T) {
			// SP-initiated: the flow is used up.
			action, f := e.samlStart(t, c, "acme", "corp")
			if res, body := postACS(t, c, action, f); res.StatusCode != 200 {
				t.Fatalf("first use: %d %s", res.StatusCode, body)
			}
			c = e.browser(t)
			e.samlStart(t, c, "acme", "corp") // even with a new flow in the browser
			refused(t, c, action, f, "assertion_invalid")
			// IdP-initiated (allowed on "open"): the replay cache.
			ic := e.browser(t)
			e.samlStart(t, ic, "acme", "corp") // signs in at the IdP
			res, err := ic.Get(idp.url + "/login/open")
			if err != nil {
				t.Fatal(err)
			}
			action, f = form(t, readAll(t, res))
			if res, body := postACS(t, e.browser(t), action, f); res.StatusCode != 200 {
				t.Fatalf("IdP-initiated first use: %d %s", res.StatusCode, body)
			}
			refused(t, e.browser(t), action, f, "assertion_replayed")
		})
		t.Run("expired", func(t *testing.T) {
			ic := e.browser(t)
			e.samlStart(t, ic, "acme", "corp")
			res, err := ic.Get(idp.url + "/login/open")
			if err != nil {
				t.Fatal(err)
			}
			action, f := form(t, readAll(t, res))
			offset.Store(int64(2 * time.Hour)) // it arrives two hours later
			defer offset.Store(0)
			refused(t, e.browser(t), action, f, "assertion_invalid")
		})
		t.Run("clock skew beyond the provider's bound", func(t *testing.T) {
			// The IdP's clock runs two minutes ahead of ours: within the
			// library's 180 s, outside the provider's 60 s.
			ic := e.browser(t)
			e.samlStart(t, ic, "acme", "corp")
			res, err := ic.Get(idp.url + "/login/open")
			if err != nil {
				t.Fatal(err)
			}
			action, f := form(t, readAll(t, res))
			offset.Store(int64(-2 * time.Minute))
			defer offset.Store(0)
			refused(t, e.browser(t), action, f, "clock_skew")
		})
		t.Run("oversized", func(t *testing.T) {
			action, f := e.samlStart(t, c, "acme", "corp")
			f.Set("SAMLResponse", strings.Repeat("A", sso.MaxSAMLResponseBytes+4))
			refused(t, c, action, f, "response_too_large")
		})
	})
}

// TestSAMLIdPMFA: with a tenant policy requiring a second factor, the
// IdP's AuthnContextClassRef counts only when the provider accepts the
// IdP's MFA and the class is a multi-factor one.
func TestSAMLIdPMFA(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		idp := startSAMLIdP(t)
		e.addSAML(t, e.a.ID, "acme", "strict", idp, sso.Config{JIT: true})
		e.addSAML(t, e.a.ID, "acme", "trusting", idp, sso.Config{JIT: true, AcceptIdPMFA: true})
		if _, err := e.adminEnv.ts.SetPolicy(ctx, e.a.ID, json.RawMessage(`{"two_factor":{"required":"all"}}`)); err != nil {
			t.Fatal(err)
		}
		signIn := func(provider string) (*http.Client, *http.Response, []byte) {
			c := e.browser(t)
			action, f := e.samlStart(t, c, "acme", provider)
			res, body := postACS(t, c, action, f)
			return c, res, body
		}
		// Password-only at the IdP: refused by both.
		for _, p := range []string{"strict", "trusting"} {
			if c, res, body := signIn(p); res.StatusCode != http.StatusForbidden || hasSession(c, e.ts.URL) {
				t.Fatalf("%s without IdP MFA: %d %s", p, res.StatusCode, body)
			}
		}
		idp.mfa.Store(true)
		if c, res, body := signIn("strict"); res.StatusCode != http.StatusForbidden || hasSession(c, e.ts.URL) {
			t.Fatalf("strict with IdP MFA: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "mfa_unavailable; idp_mfa_not_accepted" {
			t.Fatalf("audit: %v", ev)
		}
		if c, res, body := signIn("trusting"); res.StatusCode != 200 || !hasSession(c, e.ts.URL) {
			t.Fatalf("trusting with IdP MFA: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "ok; idp_mfa_accepted" {
			t.Fatalf("audit: %v", ev)
		}
	})
}

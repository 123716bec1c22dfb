package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
)

// ctMaxBody is the server's body limit in these tests: small, so that the
// oversized cases stay fast.
const ctMaxBody = 256 << 10

// ctEnv is the administration test environment (tenants acme and beta,
// real identity and access) with the contacts service mounted and API
// tokens enabled.
type ctEnv struct {
	*adminEnv
	svc *contacts.Service
	// editorA and viewerA are sessions of tenant A; tokB is an editor API
	// client's bearer token of tenant B.
	editorA, viewerA *adminSession
	tokB             string
}

func newCtEnv(t *testing.T, db *store.DB) *ctEnv {
	t.Helper()
	ctx := context.Background()
	e := newAdminEnv(t, db)
	ks, err := jwtauth.NewKeyStore(db, e.ts.Master, jwtauth.KeyStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.EnsureCurrent(ctx); err != nil {
		t.Fatal(err)
	}
	svc := &contacts.Service{DB: db, Keyring: tenants.NewKeyring(db, e.ts.Master, 0)}
	e.srv = New(Options{DB: db, Tenants: e.ts, Identity: e.id, Access: e.acc, Contacts: svc, Keys: ks,
		Issuer: jwtauth.NewIssuer(ks, jwtauth.Config{}), Verifier: jwtauth.NewVerifier(ks, jwtauth.Config{}),
		MaxBodyBytes: ctMaxBody, MaxImportBytes: ctMaxBody, ShutdownTimeout: time.Second, Version: "test"})
	c := &ctEnv{adminEnv: e, svc: svc}
	ed, _ := e.user(t, e.a.ID, "ed@acme.example", "Ed Editor", access.RoleEditor)
	c.editorA = e.session(t, e.a.ID, ed.ID)
	vw, _ := e.user(t, e.a.ID, "vera@acme.example", "Vera Viewer", access.RoleViewer)
	c.viewerA = e.session(t, e.a.ID, vw.ID)
	c.tokB = c.clientToken(t, e.b.ID, "beta-app", access.RoleEditor)
	return c
}

// clientToken creates an API client with a role and returns a bearer
// token from POST /oauth2/token.
func (c *ctEnv) clientToken(t *testing.T, tenantID, name, role string) string {
	t.Helper()
	ctx := context.Background()
	cl, secret, err := c.id.CreateClient(ctx, tenantID, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.acc.GrantClientRole(ctx, tenantID, admOperator, cl.ID, role); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cl.ID, secret)
	rec := httptest.NewRecorder()
	c.srv.Handler().ServeHTTP(rec, req)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.AccessToken == "" {
		t.Fatalf("token for %s: %d %s", name, rec.Code, rec.Body)
	}
	return out.AccessToken
}

// bearer sends a request with a bearer token.
func (c *ctEnv) bearer(t *testing.T, tok, method, path, ctype, body string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	c.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// send sends a body of any type as a session (with its CSRF token).
func (c *ctEnv) send(t *testing.T, s *adminSession, method, path, ctype, body string) (*http.Response, []byte) {
	t.Helper()
	return c.callWith(t, s, method, path, body, map[string]string{"Content-Type": ctype, CSRFHeader: s.csrf})
}

// public sends a request without credentials.
func (c *ctEnv) public(t *testing.T, method, path, ctype, body string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	c.srv.Handler().ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// create creates a contact through the API and returns it.
func (c *ctEnv) create(t *testing.T, s *adminSession, body string) contacts.Contact {
	t.Helper()
	res, b := c.call(t, s, "POST", "/api/v1/contacts", body)
	if res.StatusCode != 201 {
		t.Fatalf("create %s: %d %s", body, res.StatusCode, b)
	}
	var ct contacts.Contact
	admDecode(t, b, &ct)
	if ct.ID == "" || res.Header.Get("Location") != "/api/v1/contacts/"+ct.ID {
		t.Fatalf("create: no id or location: %s", b)
	}
	return ct
}

func (c *ctEnv) count(t *testing.T, tenantID string) int64 {
	t.Helper()
	n, err := c.svc.Count(context.Background(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitJob polls an import job until it has finished.
func (c *ctEnv) waitJob(t *testing.T, s *adminSession, id string) importJobView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, b := c.call(t, s, "GET", "/api/v1/contacts/imports/"+id, "")
		if res.StatusCode != 200 {
			t.Fatalf("job %s: %d %s", id, res.StatusCode, b)
		}
		var j importJobView
		admDecode(t, b, &j)
		if j.Status != contacts.JobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still running: %s", id, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// multipartBody builds a multipart/form-data body with a file part and
// fields.
func multipartBody(t *testing.T, fileName, content string, fields map[string][]string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			_ = mw.WriteField(k, v)
		}
	}
	fw, err := mw.CreateFormFile("file", fileName)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(fw, content)
	_ = mw.Close()
	return mw.FormDataContentType(), buf.String()
}

// TestContactsAPICRUD: create (with attributes and a consent whose proof
// records source api and the request's IP), read, patch, find by email
// (blind index, any case), cursor pagination, delete; reads leave
// personal-data access events.
func TestContactsAPICRUD(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		s := c.editorA
		res, b := c.call(t, s, "PUT", "/api/v1/contact-attributes/points", `{"type":"number","description":"Loyalty points"}`)
		admWant(t, "declare points", res, b, 201, "")
		res, b = c.call(t, s, "PUT", "/api/v1/contact-attributes/points", `{"type":"number","description":"Points"}`)
		admWant(t, "re-describe points", res, b, 200, "")
		res, b = c.call(t, s, "GET", "/api/v1/contact-attributes/points", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"Points"`) {
			t.Fatalf("get attribute: %d %s", res.StatusCode, b)
		}

		ct := c.create(t, s, `{"email":"Jane.Doe@Example.com","phone":"+33 6 12 34 56 78","first_name":"Jane","last_name":"Doe",
			"locale":"fr-FR","timezone":"Europe/Paris","attributes":{"points":12},
			"consents":[{"channel":"email","purpose":"marketing","status":"granted","wording":"Yes, send me news","wording_version":"v2"}]}`)
		if ct.Email != "jane.doe@example.com" || ct.Phone != "+33612345678" || ct.Attributes["points"] != float64(12) || ct.Status != contacts.StatusActive {
			t.Fatalf("created: %+v", ct)
		}
		if len(ct.Consents) != 1 || ct.Consents[0].Source != contacts.SourceAPI || ct.Consents[0].SourceIP != "192.0.2.1" ||
			ct.Consents[0].WordingHash != contacts.WordingHash("Yes, send me news") || ct.Consents[0].WordingVersion != "v2" {
			t.Fatalf("consent proof: %+v", ct.Consents)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts/"+ct.ID, "")
		if res.StatusCode != 200 || !strings.Contains(string(b), "jane.doe@example.com") || !strings.Contains(string(b), `"source_ip":"192.0.2.1"`) {
			t.Fatalf("get: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "PATCH", "/api/v1/contacts/"+ct.ID, `{"first_name":"Janet","attributes":{"points":null}}`)
		var patched contacts.Contact
		admDecode(t, b, &patched)
		if res.StatusCode != 200 || patched.FirstName != "Janet" || patched.LastName != "Doe" || patched.Attributes["points"] != nil {
			t.Fatalf("patch: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?email="+url.QueryEscape("JANE.DOE@example.COM"), "")
		var page contacts.Page
		admDecode(t, b, &page)
		if res.StatusCode != 200 || len(page.Contacts) != 1 || page.Contacts[0].ID != ct.ID {
			t.Fatalf("find by email: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?phone="+url.QueryEscape("+33612345678"), "")
		if res.StatusCode != 200 || !strings.Contains(string(b), ct.ID) {
			t.Fatalf("find by phone: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?email=nobody@example.com", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"contacts":[]`) {
			t.Fatalf("find nobody: %d %s", res.StatusCode, b)
		}

		// Pagination: 6 contacts, pages of 4.
		for i := range 5 {
			c.create(t, s, fmt.Sprintf(`{"email":"p%d@example.com"}`, i))
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			path := "/api/v1/contacts?limit=4"
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			res, b := c.call(t, s, "GET", path, "")
			var p contacts.Page
			admDecode(t, b, &p)
			if res.StatusCode != 200 || len(p.Contacts) > 4 {
				t.Fatalf("page: %d %s", res.StatusCode, b)
			}
			for _, x := range p.Contacts {
				if seen[x.ID] {
					t.Fatalf("contact %s on two pages", x.ID)
				}
				seen[x.ID] = true
			}
			pages++
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if len(seen) != 6 || pages != 2 {
			t.Fatalf("pagination: %d contacts over %d pages", len(seen), pages)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?status=active&limit=500", "")
		if res.StatusCode != 200 || strings.Count(string(b), `"status":"active"`) != 6 {
			t.Fatalf("status filter: %d %s", res.StatusCode, b)
		}

		res, b = c.call(t, s, "DELETE", "/api/v1/contacts/"+ct.ID, "")
		admWant(t, "delete", res, b, 204, "")
		res, b = c.call(t, s, "GET", "/api/v1/contacts/"+ct.ID, "")
		admWant(t, "get deleted", res, b, 404, problem.CodeNotFound)
		res, b = c.call(t, s, "DELETE", "/api/v1/contacts/"+ct.ID, "")
		admWant(t, "delete twice", res, b, 404, problem.CodeNotFound)
		// The consent proofs outlive the contact.
		res, b = c.call(t, s, "GET", "/api/v1/contacts/"+ct.ID+"/consents", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"source_ip":"192.0.2.1"`) {
			t.Fatalf("history after delete: %d %s", res.StatusCode, b)
		}

		reads := map[string]int{}
		for _, rec := range admAudit(t, db, c.a.ID) {
			reads[rec.Action]++
		}
		for _, a := range []string{"contact.read", "contact.find", "contact.list", "consent.history.read", "contact.create", "contact.delete"} {
			if reads[a] == 0 {
				t.Errorf("no %s event in the audit trail", a)
			}
		}
	})
}

// TestContactsAPIConsentsAndDoubleOptIn: withdraw, pending with a link
// path; GET on the link confirms nothing, POST confirms once; every proof
// records the request's IP.
func TestContactsAPIConsentsAndDoubleOptIn(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		ctx := context.Background()
		ct := c.create(t, c.editorA, `{"email":"opt@example.com"}`)
		path := "/api/v1/contacts/" + ct.ID + "/consents"
		res, b := c.call(t, c.editorA, "POST", path, `{"channel":"email","status":"pending","wording":"Newsletter","wording_version":"3"}`)
		var out consentResponse
		admDecode(t, b, &out)
		if res.StatusCode != 200 || out.Consent.Status != contacts.ConsentPending || !strings.HasPrefix(out.ConfirmPath, "/confirm/rc1.") {
			t.Fatalf("pending: %d %s", res.StatusCode, b)
		}
		canSend := func() contacts.Reason {
			_, reason, err := c.svc.CanSend(ctx, c.a.ID, ct.ID, contacts.ChannelEmail, "")
			if err != nil {
				t.Fatal(err)
			}
			return reason
		}
		// A link scanner's GET confirms nothing.
		res, b = c.public(t, "GET", out.ConfirmPath, "", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `method="post"`) || strings.Contains(string(b), "<script") ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("confirm page: %d %s", res.StatusCode, b)
		}
		if r := canSend(); r != contacts.ReasonConsentPending {
			t.Fatalf("after GET: %s", r)
		}
		res, b = c.public(t, "POST", out.ConfirmPath, "application/x-www-form-urlencoded", "confirm=yes")
		if res.StatusCode != 200 || !strings.Contains(string(b), "confirmed") {
			t.Fatalf("confirm: %d %s", res.StatusCode, b)
		}
		if r := canSend(); r != contacts.ReasonOK {
			t.Fatalf("after confirmation: %s", r)
		}
		// Once only; a forged link gets the same answer as a used one.
		res, used := c.public(t, "POST", out.ConfirmPath, "application/x-www-form-urlencoded", "confirm=yes")
		if res.StatusCode != 404 {
			t.Fatalf("second confirmation: %d", res.StatusCode)
		}
		res, forged := c.public(t, "POST", out.ConfirmPath[:len(out.ConfirmPath)-3]+"AAA", "", "")
		if res.StatusCode != 404 || !bytes.Equal(used, forged) {
			t.Fatalf("forged confirmation: %d %s / %s", res.StatusCode, forged, used)
		}

		res, b = c.call(t, c.editorA, "POST", path, `{"channel":"email","status":"withdrawn"}`)
		if res.StatusCode != 200 || canSend() != contacts.ReasonConsentWithdrawn {
			t.Fatalf("withdraw: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, c.editorA, "POST", path, `{"channel":"sms","status":"granted"}`)
		admWant(t, "sms without a phone", res, b, 422, problem.CodeValidation)
		res, b = c.call(t, c.editorA, "POST", path, `{"channel":"email","status":"maybe"}`)
		admWant(t, "unknown status", res, b, 422, problem.CodeValidation)

		res, b = c.call(t, c.editorA, "GET", path, "")
		var hist struct {
			Events []contacts.ConsentEvent `json:"events"`
		}
		admDecode(t, b, &hist)
		if res.StatusCode != 200 || len(hist.Events) != 3 {
			t.Fatalf("history: %d %s", res.StatusCode, b)
		}
		want := []struct {
			status contacts.ConsentStatus
			source contacts.Source
		}{{contacts.ConsentPending, contacts.SourceAPI}, {contacts.ConsentGranted, contacts.SourceLink}, {contacts.ConsentWithdrawn, contacts.SourceAPI}}
		for i, ev := range hist.Events {
			if ev.Status != want[i].status || ev.Source != want[i].source || ev.SourceIP != "192.0.2.1" {
				t.Errorf("event %d: %+v", i, ev)
			}
		}
		if hist.Events[1].ConfirmedAt == nil || hist.Events[1].WordingVersion != "3" {
			t.Errorf("confirmation proof: %+v", hist.Events[1])
		}
		res, b = c.call(t, c.editorA, "GET", "/api/v1/contacts/00000000-0000-7000-8000-000000000000/consents", "")
		admWant(t, "history of nobody", res, b, 404, problem.CodeNotFound)
	})
}

// TestContactsAPIUnsubscribeOneClick: the RFC 8058 POST stops sending at
// once and answers 200 without a redirect; the GET page only shows a form.
func TestContactsAPIUnsubscribeOneClick(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		ctx := context.Background()
		ct := c.create(t, c.editorA, `{"email":"leave@example.com","consents":[{"channel":"email","status":"granted"}]}`)
		tok, err := c.svc.UnsubscribeToken(ctx, c.a.ID, ct.ID, contacts.ChannelEmail, "")
		if err != nil {
			t.Fatal(err)
		}
		can := func() bool {
			ok, _, err := c.svc.CanSend(ctx, c.a.ID, ct.ID, contacts.ChannelEmail, "")
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !can() {
			t.Fatal("cannot send before unsubscribing")
		}
		res, b := c.public(t, "GET", "/u/"+tok, "", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `name="List-Unsubscribe" value="One-Click"`) || strings.Contains(string(b), "<script") {
			t.Fatalf("unsubscribe page: %d %s", res.StatusCode, b)
		}
		if !can() {
			t.Fatal("a GET unsubscribed")
		}
		res, b = c.public(t, "POST", "/u/"+tok, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
		if res.StatusCode != 200 || res.Header.Get("Location") != "" || !strings.Contains(string(b), "unsubscribed") {
			t.Fatalf("one-click: %d %v %s", res.StatusCode, res.Header, b)
		}
		if ok, reason, _ := c.svc.CanSend(ctx, c.a.ID, ct.ID, contacts.ChannelEmail, ""); ok || reason != contacts.ReasonConsentWithdrawn {
			t.Fatalf("after one-click: %v %s", ok, reason)
		}
		res, _ = c.public(t, "POST", "/u/"+tok, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
		if res.StatusCode != 200 {
			t.Fatalf("second one-click: %d", res.StatusCode)
		}
		// The proof names the link and the IP.
		hist, err := c.svc.ConsentHistory(ctx, c.a.ID, ct.ID)
		if err != nil || len(hist) != 2 || hist[1].Source != contacts.SourceLink || hist[1].SourceIP != "192.0.2.1" {
			t.Fatalf("history: %+v %v", hist, err)
		}
		// Every bad token gets one and the same answer.
		var first []byte
		for i, bad := range []string{"nope", tok[:len(tok)-4] + "AAAA", "ru1.eyJrIjoidW5zdWJzY3JpYmUiLCJ0IjoiZ2hvc3QiLCJjIjoieCJ9.AAAA",
			"rc1." + tok[4:], strings.Repeat("x", 2000)} {
			res, b := c.public(t, "POST", "/u/"+bad, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
			if res.StatusCode != 404 {
				t.Errorf("bad token %d: %d %s", i, res.StatusCode, b)
			}
			if first == nil {
				first = b
			} else if !bytes.Equal(first, b) {
				t.Errorf("bad token %d answers differently: %s", i, b)
			}
		}
	})
}

// TestContactsAPIImport: a text/csv body and a multipart upload become
// jobs with status, counts, progress and a per-line error report; a dry run
// writes nothing; a 0-byte file, a bad option, a wrong media type and an
// oversized file are refused with nothing written.
func TestContactsAPIImport(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		spool := t.TempDir()
		t.Setenv("TMPDIR", spool) // where the uploads are spooled
		c := newCtEnv(t, db)
		s := c.editorA
		csv := "email,first_name,phone\nann@example.com,Ann,+33612345678\nnot-an-email,Bob,\ncid@example.com,Cid,12\ndee@example.com,Dee,\n"
		res, b := c.send(t, s, "POST", "/api/v1/contacts/imports?consent=email:granted", "text/csv", csv)
		if res.StatusCode != 202 {
			t.Fatalf("import: %d %s", res.StatusCode, b)
		}
		var j importJobView
		admDecode(t, b, &j)
		if j.ID == "" || res.Header.Get("Location") != "/api/v1/contacts/imports/"+j.ID {
			t.Fatalf("job: %s", b)
		}
		j = c.waitJob(t, s, j.ID)
		if j.Status != contacts.JobCompleted || j.Created != 2 || j.Failed != 2 || j.Processed != 4 || j.Progress != 1 {
			t.Fatalf("job: %+v", j)
		}
		res, b = c.call(t, s, "GET", j.ErrorsPath, "")
		var errs struct {
			Errors []contacts.ImportError `json:"errors"`
		}
		admDecode(t, b, &errs)
		if res.StatusCode != 200 || len(errs.Errors) != 2 || errs.Errors[0].Line != 3 || errs.Errors[0].Column != "email" || errs.Errors[1].Line != 4 ||
			errs.Errors[1].Column != "phone" || strings.Contains(string(b), "not-an-email") {
			t.Fatalf("errors: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", j.ErrorsPath+"?after=3&limit=1", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"line":4`) || strings.Contains(string(b), `"line":3`) {
			t.Fatalf("errors page: %d %s", res.StatusCode, b)
		}
		ann, err := c.svc.FindByEmail(context.Background(), c.a.ID, "ann@example.com")
		if err == nil {
			ann, err = c.svc.Get(context.Background(), c.a.ID, ann.ID)
		}
		if err != nil || len(ann.Consents) != 1 || ann.Consents[0].Source != contacts.SourceImport || ann.Consents[0].JobID == "" {
			t.Fatalf("imported contact: %+v %v", ann, err)
		}

		// Multipart, add mode, into a list.
		res, b = c.call(t, s, "POST", "/api/v1/lists", `{"name":"Imported"}`)
		var l contacts.List
		admDecode(t, b, &l)
		ctype, body := multipartBody(t, "../../more.csv", "email\nann@example.com\neve@example.com\n",
			map[string][]string{"mode": {"add"}, "list": {l.ID}})
		res, b = c.send(t, s, "POST", "/api/v1/contacts/imports", ctype, body)
		if res.StatusCode != 202 {
			t.Fatalf("multipart import: %d %s", res.StatusCode, b)
		}
		admDecode(t, b, &j)
		j = c.waitJob(t, s, j.ID)
		if j.Created != 1 || j.Skipped != 1 || j.FileName != "more.csv" || j.Mode != contacts.ModeAdd {
			t.Fatalf("multipart job: %+v", j)
		}
		if n, _ := c.svc.CountList(context.Background(), c.a.ID, l.ID); n != 1 {
			t.Fatalf("list members: %d", n)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts/imports", "")
		if res.StatusCode != 200 || strings.Count(string(b), `"status_path"`) != 2 {
			t.Fatalf("jobs: %d %s", res.StatusCode, b)
		}

		before := c.count(t, c.a.ID)
		jobsBefore, _ := c.svc.ImportJobs(context.Background(), c.a.ID)
		// A dry run reports and writes nothing.
		res, b = c.send(t, s, "POST", "/api/v1/contacts/imports?dry_run=true", "text/csv", "email\nnew1@example.com\nbad\n")
		var dry importJobView
		admDecode(t, b, &dry)
		if res.StatusCode != 200 || !dry.DryRun || dry.Created != 1 || dry.Failed != 1 || len(dry.Errors) != 1 {
			t.Fatalf("dry run: %d %s", res.StatusCode, b)
		}
		big := "email\n" + strings.Repeat("someone.with.a.long.address@example.com\n", ctMaxBody/40+10)
		mpType, mpBig := multipartBody(t, "big.csv", big, nil)
		for _, tc := range []struct {
			name, path, ctype, body string
			status                  int
			code                    string
		}{
			{"0-byte file", "/api/v1/contacts/imports", "text/csv", "", 422, "empty_file"},
			{"blank lines only", "/api/v1/contacts/imports", "text/csv", "\n\n\n", 422, "empty_file"},
			{"no address column", "/api/v1/contacts/imports", "text/csv", "name\nAnn\n", 422, "bad_file"},
			{"UTF-16", "/api/v1/contacts/imports", "text/csv", "\xff\xfee\x00m\x00", 422, "bad_file"},
			{"unknown option", "/api/v1/contacts/imports?dryrun=true", "text/csv", "email\nx@example.com\n", 422, problem.CodeValidation},
			{"bad mode", "/api/v1/contacts/imports?mode=merge", "text/csv", "email\nx@example.com\n", 422, problem.CodeValidation},
			{"bad consent", "/api/v1/contacts/imports?consent=email:yes", "text/csv", "email\nx@example.com\n", 422, problem.CodeValidation},
			{"unknown list", "/api/v1/contacts/imports?list=00000000-0000-7000-8000-000000000000", "text/csv", "email\nx@example.com\n", 422, problem.CodeValidation},
			{"JSON", "/api/v1/contacts/imports", "application/json", `{"email":"x@example.com"}`, 415, problem.CodeUnsupportedMediaType},
			{"Latin-1 declared", "/api/v1/contacts/imports", "text/csv; charset=iso-8859-1", "email\nx@example.com\n", 415, problem.CodeUnsupportedMediaType},
			{"multipart without file", "/api/v1/contacts/imports", "multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"mode\"\r\n\r\nadd\r\n--xyz--\r\n", 422, problem.CodeValidation},
			{"oversized text/csv", "/api/v1/contacts/imports", "text/csv", big, 413, problem.CodeBodyTooLarge},
			{"oversized multipart", "/api/v1/contacts/imports", mpType, mpBig, 413, problem.CodeBodyTooLarge},
		} {
			res, b := c.send(t, s, "POST", tc.path, tc.ctype, tc.body)
			admWant(t, tc.name, res, b, tc.status, tc.code)
		}
		if after := c.count(t, c.a.ID); after != before {
			t.Errorf("refused imports wrote contacts: %d -> %d", before, after)
		}
		if jobs, _ := c.svc.ImportJobs(context.Background(), c.a.ID); len(jobs) != len(jobsBefore) {
			t.Errorf("refused imports created jobs: %d -> %d", len(jobsBefore), len(jobs))
		}
		// Every spooled upload is removed once its import has ended.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			left, _ := os.ReadDir(spool)
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("spooled uploads left behind: %v", left)
			}
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts/imports/00000000-0000-7000-8000-000000000000", "")
		admWant(t, "unknown job", res, b, 404, problem.CodeNotFound)
		res, b = c.call(t, s, "GET", "/api/v1/contacts/imports/00000000-0000-7000-8000-000000000000/errors", "")
		admWant(t, "errors of an unknown job", res, b, 404, problem.CodeNotFound)
	})
}

// TestContactsAPIExport: CSV and JSON Lines, of everything or a list;
// pseudonymised output holds no email, phone or name.
func TestContactsAPIExport(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		s := c.editorA
		a := c.create(t, s, `{"email":"xavier@example.com","phone":"+33611111111","first_name":"Xavier","last_name":"Export","consents":[{"channel":"email","status":"granted"}]}`)
		c.create(t, s, `{"email":"yolanda@example.com","first_name":"Yolanda"}`)
		res, b := c.call(t, s, "POST", "/api/v1/lists", `{"name":"VIP"}`)
		var l contacts.List
		admDecode(t, b, &l)
		res, b = c.call(t, s, "POST", "/api/v1/lists/"+l.ID+"/members", admJSON(map[string]any{"contact_ids": []string{a.ID}}))
		if res.StatusCode != 200 || !strings.Contains(string(b), `"added":1`) {
			t.Fatalf("add member: %d %s", res.StatusCode, b)
		}

		res, b = c.call(t, s, "GET", "/api/v1/contacts/export", "")
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") ||
			!strings.Contains(res.Header.Get("Content-Disposition"), "attachment") ||
			!strings.HasPrefix(string(b), "id,email,phone,first_name,last_name") || !strings.Contains(string(b), "yolanda@example.com") {
			t.Fatalf("csv export: %d %v %s", res.StatusCode, res.Header, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts/export?format=jsonl&list="+l.ID, "")
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" || len(lines) != 1 ||
			!strings.Contains(lines[0], "xavier@example.com") {
			t.Fatalf("jsonl export of a list: %d %s", res.StatusCode, b)
		}
		var row map[string]any
		admDecode(t, []byte(lines[0]), &row)
		for _, format := range []string{"csv", "jsonl"} {
			res, b := c.call(t, s, "GET", "/api/v1/contacts/export?pseudonymise=true&format="+format, "")
			if res.StatusCode != 200 || !strings.Contains(string(b), "email_token") {
				t.Fatalf("pseudonymised %s: %d %s", format, res.StatusCode, b)
			}
			for _, clear := range []string{"xavier@example.com", "yolanda", "+33611111111", "Xavier", "Export"} {
				if strings.Contains(strings.ToLower(string(b)), strings.ToLower(clear)) {
					t.Errorf("pseudonymised %s export shows %q: %s", format, clear, b)
				}
			}
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts/export?format=xml", "")
		admWant(t, "unknown format", res, b, 422, problem.CodeValidation)
		res, b = c.call(t, s, "GET", "/api/v1/contacts/export?pseudonymise=maybe", "")
		admWant(t, "bad flag", res, b, 422, problem.CodeValidation)
		res, b = c.call(t, s, "GET", "/api/v1/contacts/export?list=00000000-0000-7000-8000-000000000000", "")
		admWant(t, "unknown list", res, b, 404, problem.CodeNotFound)
		var exports int
		for _, rec := range admAudit(t, db, c.a.ID) {
			if rec.Action == "contact.export.done" {
				exports++
			}
		}
		if exports != 4 {
			t.Errorf("%d export events, want 4", exports)
		}
	})
}

// TestContactsAPISegments: saved segments and their counts; validate
// answers a position for a filter that does not parse, and an attempt at
// SQL injection is either refused (422) or is a mere string value.
func TestContactsAPISegments(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		s := c.editorA
		if res, b := c.call(t, s, "PUT", "/api/v1/contact-attributes/country", `{"type":"string"}`); res.StatusCode != 201 {
			t.Fatalf("attribute: %d %s", res.StatusCode, b)
		}
		c.create(t, s, `{"email":"fr1@example.com","attributes":{"country":"FR"}}`)
		c.create(t, s, `{"email":"fr2@example.com","attributes":{"country":"FR"}}`)
		c.create(t, s, `{"email":"be@example.com","attributes":{"country":"BE"}}`)
		res, b := c.call(t, s, "POST", "/api/v1/segments", `{"name":"France","filter":"attr.country = \"FR\""}`)
		var seg contacts.Segment
		admDecode(t, b, &seg)
		if res.StatusCode != 201 || seg.ID == "" {
			t.Fatalf("create segment: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/segments/"+seg.ID+"/count", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"count":2`) {
			t.Fatalf("count: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?segment="+seg.ID, "")
		if res.StatusCode != 200 || strings.Count(string(b), `"country":"FR"`) != 2 {
			t.Fatalf("contacts of the segment: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "PATCH", "/api/v1/segments/"+seg.ID, `{"filter":"attr.country IN (\"FR\", \"BE\")"}`)
		if res.StatusCode != 200 {
			t.Fatalf("patch segment: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/segments/"+seg.ID+"/count", "")
		if !strings.Contains(string(b), `"count":3`) {
			t.Fatalf("count after patch: %s", b)
		}
		res, b = c.call(t, s, "POST", "/api/v1/segments/validate", `{"filter":"attr.country = \"BE\""}`)
		if res.StatusCode != 200 || !strings.Contains(string(b), `"valid":true`) || !strings.Contains(string(b), `"count":1`) {
			t.Fatalf("validate: %d %s", res.StatusCode, b)
		}
		for _, f := range []string{
			`status = "active"; DROP TABLE contacts; --`,
			`status = "active" OR 1=1`,
			`attr.country = "FR" UNION SELECT email_enc FROM contacts`,
			`attr.nope = "x"`,
			`email = "x@example.com"`,
		} {
			res, b := c.call(t, s, "POST", "/api/v1/segments/validate", admJSON(map[string]string{"filter": f}))
			admWant(t, "validate "+f, res, b, 422, "invalid_filter")
			if res.StatusCode == 422 && !strings.Contains(admProblem(t, b).Errors[0].Message, "position") {
				t.Errorf("%s: no position: %s", f, b)
			}
			res, b = c.call(t, s, "GET", "/api/v1/contacts?filter="+url.QueryEscape(f), "")
			admWant(t, "list with "+f, res, b, 422, "invalid_filter")
			res, b = c.call(t, s, "POST", "/api/v1/segments", admJSON(map[string]string{"name": "Evil", "filter": f}))
			admWant(t, "save "+f, res, b, 422, "invalid_filter")
		}
		// Quotes inside a string are a value, compared through a
		// placeholder: nothing matches and nothing breaks.
		res, b = c.call(t, s, "POST", "/api/v1/segments/validate", admJSON(map[string]string{"filter": `attr.country = "FR' OR '1'='1"`}))
		if res.StatusCode != 200 || !strings.Contains(string(b), `"count":0`) {
			t.Fatalf("quoted value: %d %s", res.StatusCode, b)
		}
		if n := c.count(t, c.a.ID); n != 3 {
			t.Fatalf("contacts after the attempts: %d", n)
		}
		res, b = c.call(t, s, "GET", "/api/v1/segments", "")
		if res.StatusCode != 200 || strings.Count(string(b), `"id"`) != 1 {
			t.Fatalf("segments: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "DELETE", "/api/v1/segments/"+seg.ID, "")
		admWant(t, "delete segment", res, b, 204, "")
		res, b = c.call(t, s, "GET", "/api/v1/segments/"+seg.ID, "")
		admWant(t, "deleted segment", res, b, 404, problem.CodeNotFound)
	})
}

// TestContactsAPIBlocklistAndLists: the blocklist takes effect at once and
// no API call overrides it; lists with members and counts.
func TestContactsAPIBlocklistAndLists(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		s := c.editorA
		ctx := context.Background()
		ct := c.create(t, s, `{"email":"spam@example.com","consents":[{"channel":"email","status":"granted"}]}`)
		res, b := c.call(t, s, "POST", "/api/v1/blocklist", `{"kind":"email","value":"SPAM@example.com","reason":"complaint"}`)
		if res.StatusCode != 200 || strings.Contains(string(b), "spam@") {
			t.Fatalf("block: %d %s", res.StatusCode, b)
		}
		if ok, reason, _ := c.svc.CanSend(ctx, c.a.ID, ct.ID, contacts.ChannelEmail, ""); ok || reason != contacts.ReasonBlocklisted {
			t.Fatalf("after block: %v %s", ok, reason)
		}
		res, b = c.call(t, s, "GET", "/api/v1/blocklist/check?email=spam@example.com", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"blocked":true`) {
			t.Fatalf("check: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "PATCH", "/api/v1/contacts/"+ct.ID, `{"status":"active"}`)
		admWant(t, "override the blocklist", res, b, 409, "blocklisted")
		again := c.create(t, s, `{"email":"spam+x@example.com"}`)
		if again.Status != contacts.StatusActive {
			t.Fatalf("another address: %s", again.Status)
		}
		res, b = c.call(t, s, "DELETE", "/api/v1/contacts/"+ct.ID, "")
		admWant(t, "delete the blocked contact", res, b, 204, "")
		if back := c.create(t, s, `{"email":"spam@example.com"}`); back.Status != contacts.StatusBlocklisted {
			t.Fatalf("re-created blocked address: %s", back.Status)
		}
		res, b = c.call(t, s, "POST", "/api/v1/blocklist", `{"kind":"fax","value":"1"}`)
		admWant(t, "bad kind", res, b, 422, problem.CodeValidation)
		res, b = c.call(t, s, "DELETE", "/api/v1/blocklist", `{"kind":"email","value":"spam@example.com"}`)
		admWant(t, "unblock", res, b, 204, "")
		res, b = c.call(t, s, "DELETE", "/api/v1/blocklist", `{"kind":"email","value":"spam@example.com"}`)
		admWant(t, "unblock twice", res, b, 404, problem.CodeNotFound)
		res, b = c.call(t, s, "GET", "/api/v1/blocklist/check?phone=%2B33612345678", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"blocked":false`) {
			t.Fatalf("check phone: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/blocklist/check", "")
		admWant(t, "check nothing", res, b, 422, problem.CodeValidation)

		// Lists.
		res, b = c.call(t, s, "POST", "/api/v1/lists", `{"name":"Newsletter","description":"Monthly"}`)
		var l contacts.List
		admDecode(t, b, &l)
		if res.StatusCode != 201 {
			t.Fatalf("create list: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "POST", "/api/v1/lists", `{"name":"Newsletter"}`)
		admWant(t, "duplicate list", res, b, 409, problem.CodeConflict)
		members := admJSON(map[string]any{"contact_ids": []string{again.ID}})
		res, b = c.call(t, s, "POST", "/api/v1/lists/"+l.ID+"/members", admJSON(map[string]any{"contact_ids": []string{again.ID, "00000000-0000-7000-8000-000000000000"}}))
		admWant(t, "add an unknown contact", res, b, 404, problem.CodeNotFound)
		res, b = c.call(t, s, "POST", "/api/v1/lists/"+l.ID+"/members", members)
		if res.StatusCode != 200 || !strings.Contains(string(b), `"added":1`) {
			t.Fatalf("add: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/lists/"+l.ID, "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"count":1`) || !strings.Contains(string(b), `"Monthly"`) {
			t.Fatalf("get list: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/contacts?list="+l.ID, "")
		if res.StatusCode != 200 || !strings.Contains(string(b), again.ID) || strings.Count(string(b), `"id"`) != 1 {
			t.Fatalf("members: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "PATCH", "/api/v1/lists/"+l.ID, `{"name":"Weekly"}`)
		if res.StatusCode != 200 || !strings.Contains(string(b), `"Weekly"`) {
			t.Fatalf("rename: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "DELETE", "/api/v1/lists/"+l.ID+"/members", members)
		if res.StatusCode != 200 || !strings.Contains(string(b), `"removed":1`) {
			t.Fatalf("remove: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/lists/"+l.ID+"/count", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"count":0`) {
			t.Fatalf("count: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "GET", "/api/v1/lists", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), l.ID) {
			t.Fatalf("lists: %d %s", res.StatusCode, b)
		}
		res, b = c.call(t, s, "DELETE", "/api/v1/lists/"+l.ID, "")
		admWant(t, "delete list", res, b, 204, "")
		res, b = c.call(t, s, "GET", "/api/v1/lists/"+l.ID, "")
		admWant(t, "deleted list", res, b, 404, problem.CodeNotFound)
	})
}

// TestContactsAPITenantIsolation: tenant B's API client (editor) cannot
// read, update, delete, list, export, find by email, or see the consents
// and import jobs of tenant A: 404 or an empty answer, and A is unchanged.
func TestContactsAPITenantIsolation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		ctx := context.Background()
		s := c.editorA
		ct := c.create(t, s, `{"email":"alice@acme.example","first_name":"Alice","consents":[{"channel":"email","status":"granted"}]}`)
		res, b := c.call(t, s, "POST", "/api/v1/lists", `{"name":"Acme list"}`)
		var l contacts.List
		admDecode(t, b, &l)
		res, b = c.call(t, s, "POST", "/api/v1/segments", `{"name":"Acme segment","filter":"status = \"active\""}`)
		var seg contacts.Segment
		admDecode(t, b, &seg)
		res, b = c.send(t, s, "POST", "/api/v1/contacts/imports", "text/csv", "email\nbob@acme.example\nbroken\n")
		var j importJobView
		admDecode(t, b, &j)
		c.waitJob(t, s, j.ID)
		before, _ := c.svc.Get(ctx, c.a.ID, ct.ID)

		// B's own list, to try to pull A's contact into it.
		res, b = c.bearer(t, c.tokB, "POST", "/api/v1/lists", "application/json", `{"name":"Beta list"}`)
		var lb contacts.List
		admDecode(t, b, &lb)
		if res.StatusCode != 201 {
			t.Fatalf("B's list: %d %s", res.StatusCode, b)
		}
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/api/v1/contacts/" + ct.ID, ""},
			{"PATCH", "/api/v1/contacts/" + ct.ID, `{"first_name":"Mallory"}`},
			{"DELETE", "/api/v1/contacts/" + ct.ID, ""},
			{"GET", "/api/v1/contacts/" + ct.ID + "/consents", ""},
			{"POST", "/api/v1/contacts/" + ct.ID + "/consents", `{"channel":"email","status":"withdrawn"}`},
			{"GET", "/api/v1/contacts?list=" + l.ID, ""},
			{"GET", "/api/v1/contacts?segment=" + seg.ID, ""},
			{"GET", "/api/v1/contacts/export?list=" + l.ID, ""},
			{"GET", "/api/v1/lists/" + l.ID, ""},
			{"PATCH", "/api/v1/lists/" + l.ID, `{"name":"Taken"}`},
			{"DELETE", "/api/v1/lists/" + l.ID, ""},
			{"GET", "/api/v1/lists/" + l.ID + "/count", ""},
			{"POST", "/api/v1/lists/" + l.ID + "/members", admJSON(map[string]any{"contact_ids": []string{ct.ID}})},
			{"POST", "/api/v1/lists/" + lb.ID + "/members", admJSON(map[string]any{"contact_ids": []string{ct.ID}})},
			{"GET", "/api/v1/segments/" + seg.ID, ""},
			{"GET", "/api/v1/segments/" + seg.ID + "/count", ""},
			{"DELETE", "/api/v1/segments/" + seg.ID, ""},
			{"GET", "/api/v1/contacts/imports/" + j.ID, ""},
			{"GET", "/api/v1/contacts/imports/" + j.ID + "/errors", ""},
		} {
			ctype := ""
			if rq.body != "" {
				ctype = "application/json"
			}
			res, b := c.bearer(t, c.tokB, rq.method, rq.path, ctype, rq.body)
			admWant(t, "B: "+rq.method+" "+rq.path, res, b, 404, problem.CodeNotFound)
			if strings.Contains(string(b), "alice") || strings.Contains(string(b), "Acme") {
				t.Errorf("%s %s leaks tenant A: %s", rq.method, rq.path, b)
			}
		}
		for _, path := range []string{"/api/v1/contacts?email=alice@acme.example", "/api/v1/contacts", "/api/v1/contacts/export",
			"/api/v1/contacts/export?format=jsonl", "/api/v1/contacts/imports", "/api/v1/lists", "/api/v1/segments"} {
			res, b := c.bearer(t, c.tokB, "GET", path, "", "")
			if res.StatusCode != 200 {
				t.Errorf("B: %s: %d %s", path, res.StatusCode, b)
			}
			for _, leak := range []string{ct.ID, "alice@acme.example", "bob@acme.example", j.ID, l.ID, seg.ID, "Acme"} {
				if strings.Contains(string(b), leak) {
					t.Errorf("B: %s shows A's %s: %s", path, leak, b)
				}
			}
		}
		res, b = c.bearer(t, c.tokB, "GET", "/api/v1/blocklist/check?email=alice@acme.example", "", "")
		if res.StatusCode != 200 || !strings.Contains(string(b), `"blocked":false`) {
			t.Errorf("B's blocklist check: %d %s", res.StatusCode, b)
		}
		after, err := c.svc.Get(ctx, c.a.ID, ct.ID)
		if err != nil || after.FirstName != "Alice" || !after.UpdatedAt.Equal(before.UpdatedAt) || len(after.Consents) != 1 ||
			after.Consents[0].Status != contacts.ConsentGranted {
			t.Fatalf("A's contact changed: %+v %v", after, err)
		}
		if n, _ := c.svc.CountList(ctx, c.b.ID, lb.ID); n != 0 {
			t.Fatalf("B's list holds %d of A's contacts", n)
		}
		if _, err := c.svc.GetList(ctx, c.a.ID, l.ID); err != nil {
			t.Fatalf("A's list: %v", err)
		}
		// B's user session, too.
		ub, _ := c.user(t, c.b.ID, "bea@beta.example", "Bea Beta", access.RoleEditor)
		bs := c.session(t, c.b.ID, ub.ID)
		res, b = c.call(t, bs, "GET", "/api/v1/contacts/"+ct.ID, "")
		admWant(t, "B's session reads A's contact", res, b, 404, problem.CodeNotFound)
	})
}

// TestContactsAPIBadInput: invalid emails and phones, unknown attributes,
// wrong types, malformed JSON, NUL characters, oversized bodies and bad
// query values: 4xx, never 500, and nothing written.
func TestContactsAPIBadInput(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		s := c.editorA
		if res, b := c.call(t, s, "PUT", "/api/v1/contact-attributes/points", `{"type":"number"}`); res.StatusCode != 201 {
			t.Fatalf("attribute: %d %s", res.StatusCode, b)
		}
		if res, b := c.call(t, s, "PUT", "/api/v1/contact-attributes/notes", `{"type":"string"}`); res.StatusCode != 201 {
			t.Fatalf("attribute: %d %s", res.StatusCode, b)
		}
		existing := c.create(t, s, `{"email":"keep@example.com"}`)
		huge := `{"email":"big@example.com","first_name":"` + strings.Repeat("a", ctMaxBody) + `"}`
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"invalid email", "POST", "/api/v1/contacts", `{"email":"not an email"}`, 422, "email"},
			{"invalid phone", "POST", "/api/v1/contacts", `{"phone":"12"}`, 422, "phone"},
			{"no address", "POST", "/api/v1/contacts", `{"first_name":"Nobody"}`, 422, "email"},
			{"unknown attribute", "POST", "/api/v1/contacts", `{"email":"u@example.com","attributes":{"shoe_size":42}}`, 422, "attributes.shoe_size"},
			{"attribute of the wrong type", "POST", "/api/v1/contacts", `{"email":"u@example.com","attributes":{"points":"many"}}`, 422, "attributes.points"},
			{"field of the wrong type", "POST", "/api/v1/contacts", `{"email":5}`, 400, "email"},
			{"unknown field", "POST", "/api/v1/contacts", `{"email":"u@example.com","source":"import"}`, 400, "source"},
			{"malformed JSON", "POST", "/api/v1/contacts", `{"email":"u@example.com"`, 400, ""},
			{"not an object", "POST", "/api/v1/contacts", `[]`, 400, ""},
			{"NUL in an attribute", "POST", "/api/v1/contacts", `{"email":"u@example.com","attributes":{"notes":"a\u0000b"}}`, 422, ""},
			{"NUL in a wording", "POST", "/api/v1/contacts", `{"email":"u@example.com","consents":[{"channel":"email","status":"granted","wording":"\u0000"}]}`, 422, ""},
			{"bad consent channel", "POST", "/api/v1/contacts", `{"email":"u@example.com","consents":[{"channel":"fax","status":"granted"}]}`, 422, "consents[0].channel"},
			{"consent source import", "POST", "/api/v1/contacts", `{"email":"u@example.com","consents":[{"channel":"email","status":"granted","source":"import"}]}`, 422, "consents[0].source"},
			{"bad source IP", "POST", "/api/v1/contacts", `{"email":"u@example.com","consents":[{"channel":"email","status":"granted","source_ip":"999.1.1.1"}]}`, 422, "consents[0].source_ip"},
			{"oversized body", "POST", "/api/v1/contacts", huge, 413, ""},
			{"duplicate email", "POST", "/api/v1/contacts", `{"email":"KEEP@example.com"}`, 409, ""},
			{"bad patch", "PATCH", "/api/v1/contacts/" + existing.ID, `{"email":"nope"}`, 422, "email"},
			{"patch status blocklisted", "PATCH", "/api/v1/contacts/" + existing.ID, `{"status":"blocklisted"}`, 422, "status"},
			{"patch unknown contact", "PATCH", "/api/v1/contacts/00000000-0000-7000-8000-000000000000", `{"first_name":"X"}`, 404, ""},
			{"odd id", "GET", "/api/v1/contacts/%00%ff", "", 404, ""},
			{"long id", "GET", "/api/v1/contacts/" + strings.Repeat("a", 300), "", 404, ""},
			{"limit 0", "GET", "/api/v1/contacts?limit=0", "", 422, "limit"},
			{"limit 501", "GET", "/api/v1/contacts?limit=501", "", 422, "limit"},
			{"garbage cursor", "GET", "/api/v1/contacts?cursor=%25%25", "", 422, "cursor"},
			{"cursor of bytes", "GET", "/api/v1/contacts?cursor=_w", "", 422, "cursor"},
			{"unknown status", "GET", "/api/v1/contacts?status=gone", "", 422, "status"},
			{"unknown query parameter", "GET", "/api/v1/contacts?emial=x", "", 422, "emial"},
			{"NUL in a query", "GET", "/api/v1/contacts?filter=%00", "", 422, "filter"},
			{"invalid UTF-8 in a query", "GET", "/api/v1/contacts?email=%ff", "", 422, "email"},
			{"bad email search", "GET", "/api/v1/contacts?email=nope", "", 422, "email"},
			{"email search with a filter", "GET", "/api/v1/contacts?email=keep@example.com&status=active", "", 422, "status"},
			{"HEAD of an export", "HEAD", "/api/v1/contacts/export", "", 405, ""},
			{"bad attribute key", "PUT", "/api/v1/contact-attributes/Bad-Key", `{"type":"string"}`, 422, "key"},
			{"bad attribute type", "PUT", "/api/v1/contact-attributes/size", `{"type":"color"}`, 422, "type"},
			{"retype an attribute", "PUT", "/api/v1/contact-attributes/points", `{"type":"string"}`, 422, "type"},
			{"members: not ids", "POST", "/api/v1/lists/00000000-0000-7000-8000-000000000000/members", `{"contact_ids":["x y"]}`, 422, "contact_ids[0]"},
			{"segment without name", "POST", "/api/v1/segments", `{"filter":"status = \"active\""}`, 422, "name"},
		} {
			res, b := c.call(t, s, tc.method, tc.path, tc.body)
			if res.StatusCode != tc.status {
				t.Errorf("%s: %d, want %d: %s", tc.name, res.StatusCode, tc.status, b)
				continue
			}
			p := decodeProblem(t, res, b)
			if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
				t.Errorf("%s: errors %+v, want field %s", tc.name, p.Errors, tc.field)
			}
		}
		if n := c.count(t, c.a.ID); n != 1 {
			t.Errorf("%d contacts after bad input, want 1", n)
		}
		if got, _ := c.svc.Get(context.Background(), c.a.ID, existing.ID); got.Email != "keep@example.com" {
			t.Errorf("a refused patch changed the contact: %+v", got)
		}
	})
}

// TestContactsAPIPermissions: a viewer (and an API client with the viewer
// role) reads but gets 403 on every write, import and export; the shared
// GET pattern checks contacts:read for consents and contacts:import for
// import jobs, and records the refusals.
func TestContactsAPIPermissions(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	c := newCtEnv(t, db)
	ct := c.create(t, c.editorA, `{"email":"perm@example.com"}`)
	res, b := c.send(t, c.editorA, "POST", "/api/v1/contacts/imports", "text/csv", "email\nimp@example.com\n")
	var j importJobView
	admDecode(t, b, &j)
	c.waitJob(t, c.editorA, j.ID)
	tokViewer := c.clientToken(t, c.a.ID, "reader", access.RoleViewer)
	for _, rq := range []struct{ method, path, ctype, body string }{
		{"POST", "/api/v1/contacts", "application/json", `{"email":"new@example.com"}`},
		{"PATCH", "/api/v1/contacts/" + ct.ID, "application/json", `{"first_name":"X"}`},
		{"DELETE", "/api/v1/contacts/" + ct.ID, "", ""},
		{"POST", "/api/v1/contacts/" + ct.ID + "/consents", "application/json", `{"channel":"email","status":"granted"}`},
		{"PUT", "/api/v1/contact-attributes/x", "application/json", `{"type":"string"}`},
		{"POST", "/api/v1/blocklist", "application/json", `{"kind":"email","value":"perm@example.com"}`},
		{"POST", "/api/v1/lists", "application/json", `{"name":"L"}`},
		{"POST", "/api/v1/contacts/imports", "text/csv", "email\nx@example.com\n"},
		{"GET", "/api/v1/contacts/imports/" + j.ID, "", ""},
		{"GET", "/api/v1/contacts/export", "", ""},
	} {
		res, b := c.send(t, c.viewerA, rq.method, rq.path, rq.ctype, rq.body)
		admWant(t, "viewer: "+rq.method+" "+rq.path, res, b, 403, problem.CodeForbidden)
		res, b = c.bearer(t, tokViewer, rq.method, rq.path, rq.ctype, rq.body)
		admWant(t, "viewer client: "+rq.method+" "+rq.path, res, b, 403, problem.CodeForbidden)
	}
	for _, path := range []string{"/api/v1/contacts/" + ct.ID, "/api/v1/contacts/" + ct.ID + "/consents", "/api/v1/lists", "/api/v1/contacts?email=perm@example.com"} {
		if res, b := c.call(t, c.viewerA, "GET", path, ""); res.StatusCode != 200 {
			t.Errorf("viewer: GET %s: %d %s", path, res.StatusCode, b)
		}
	}
	if n := c.count(t, c.a.ID); n != 2 {
		t.Fatalf("refused writes wrote: %d contacts", n)
	}
	// An importer that may not read contacts follows its jobs, not
	// consents.
	importer := c.role(t, c.a.ID, "Importer", access.ContactsImport)
	iu, _ := c.user(t, c.a.ID, "ivan@acme.example", "Ivan Importer", importer.ID)
	is := c.session(t, c.a.ID, iu.ID)
	res, b = c.call(t, is, "GET", "/api/v1/contacts/imports/"+j.ID, "")
	admWant(t, "importer reads its job", res, b, 200, "")
	res, b = c.call(t, is, "GET", "/api/v1/contacts/"+ct.ID+"/consents", "")
	admWant(t, "importer reads consents", res, b, 403, problem.CodeForbidden)
	if res.StatusCode == 403 && !strings.Contains(admProblem(t, b).Detail, "contacts:read") {
		t.Errorf("refusal does not name the permission: %s", b)
	}
	denied := map[string]bool{}
	for _, rec := range admAudit(t, db, c.a.ID) {
		if rec.Action == "access.denied" && rec.ActorID == iu.ID {
			denied[rec.ObjectID] = true
		}
	}
	if !denied["GET /api/v1/contacts/{id}/{sub}"] {
		t.Errorf("the importer's refusal is not in the audit trail: %v", denied)
	}
}

// TestContactRoutesNeverAnswer500: every contacts route, called by a user
// holding every contacts and lists permission with an empty JSON object
// and plausible path values, answers without a server error; so do the
// public links with junk tokens.
func TestContactRoutesNeverAnswer500(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		c := newCtEnv(t, db)
		all := c.role(t, c.a.ID, "Contacts all", access.ContactsRead, access.ContactsWrite, access.ContactsImport, access.ContactsExport,
			access.ListsRead, access.ListsWrite)
		u, _ := c.user(t, c.a.ID, "max@acme.example", "Max All", all.ID)
		s := c.session(t, c.a.ID, u.ID)
		ct := c.create(t, c.editorA, `{"email":"walk@example.com"}`)
		fill := strings.NewReplacer("{id}", ct.ID, "{key}", "points", "{token}", "ru1.junk", "{sub}", "consents")
		n := 0
		for _, rt := range c.srv.contactRoutes() {
			method, path, _ := strings.Cut(rt.Pattern, " ")
			path = fill.Replace(path)
			res, b := c.call(t, s, method, path, `{}`)
			if res.StatusCode >= 500 {
				t.Errorf("%s: %d %s", rt.Pattern, res.StatusCode, b)
			}
			if res.StatusCode >= 400 && res.Header.Get("Content-Type") != problem.ContentType && !strings.HasPrefix(rt.Pattern, "POST /u/") &&
				!strings.HasPrefix(rt.Pattern, "POST /confirm/") {
				t.Errorf("%s: %d without a problem document: %s", rt.Pattern, res.StatusCode, b)
			}
			n++
		}
		if n < 35 {
			t.Errorf("only %d routes", n)
		}
	})
}

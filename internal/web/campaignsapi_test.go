package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// cpEnv mounts the campaigns and templates API with an editor token for
// tenants A and B and a viewer token for A.
type cpEnv struct {
	h                      http.Handler
	tokA, tokB, viewerA    string
	contacts               *contacts.Service
	camp                   *campaigns.Service
	tenantA, tenantB, list string
}

func newCpEnv(t *testing.T, db *store.DB) *cpEnv {
	t.Helper()
	ctx := context.Background()
	f := newTokenFixture(t, db)
	kr := f.id.Keyring
	rs := &router.Service{DB: db, Keyring: kr}
	cs := &contacts.Service{DB: db, Keyring: kr}
	ts := &templates.Service{DB: db}
	camp := &campaigns.Service{DB: db, Contacts: cs, Templates: ts, Router: rs, PublicBaseURL: "https://relais.example"}
	s := New(Options{DB: db, Tenants: f.id.Tenants, Identity: f.id, Access: f.acc, Keys: f.ks, Router: rs, Connectors: &router.Connectors{Service: rs},
		Campaigns: camp, Templates: ts, Issuer: newIssuer(f), Verifier: newVerifier(f)})
	f.h = s.Handler()
	token := func(tenantID, role string) string {
		cl, sec, err := f.id.CreateClient(ctx, tenantID, "cl-"+role+tenantID[:8], nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.acc.GrantClientRole(ctx, tenantID, access.Actor{Operator: true}, cl.ID, role); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(cl.ID, sec)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		tok, _ := out["access_token"].(string)
		if tok == "" {
			t.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		return tok
	}
	e := &cpEnv{h: f.h, contacts: cs, camp: camp, tenantA: f.a.ID, tenantB: f.b.ID,
		tokA: token(f.a.ID, "editor"), tokB: token(f.b.ID, "editor"), viewerA: token(f.a.ID, "viewer")}
	// Tenant A's audience: three contacts with consent in a list.
	l, err := cs.CreateList(ctx, f.a.ID, "Newsletter", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c, err := cs.Create(ctx, f.a.ID, contacts.NewContact{Email: fmt.Sprintf("p%d@example.com", i), FirstName: "P",
			Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Source: contacts.SourceForm, Wording: "Yes please"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AddToList(ctx, f.a.ID, l.ID, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.list = l.ID
	return e
}

func (e *cpEnv) do(method, path, tok, body string) (int, map[string]any) {
	var req *http.Request
	if body == "" {
		req = httptest.NewRequest(method, path, nil)
	} else {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// TestCampaignsAPI: templates and campaigns through the API, from creation
// to report: create, preview and read a template; create a campaign;
// scheduling in the past or with a template field a campaign cannot fill
// is refused (422, naming the field); schedule, pause, resume, cancel;
// report. Bad input is 4xx, never 500; a viewer may read, not write.
func TestCampaignsAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newCpEnv(t, db)
		code, tmpl := e.do("POST", "/api/v1/templates", e.tokA, `{"name":"News","channel":"email","variants":{"en":{"subject":"Hi {{.contact.first_name}}",
			"html":"<p>Hello {{.contact.first_name}}</p><a href=\"{{.links.unsubscribe}}\">Unsubscribe</a>"}}}`)
		if code != 201 {
			t.Fatalf("create template: %d %v", code, tmpl)
		}
		tid := tmpl["id"].(string)
		if code, out := e.do("POST", "/api/v1/templates", e.tokA, `{"name":"Bad","channel":"email","variants":{"en":{"subject":"{{.contact.shoe_size}}","text":"x"}}}`); code != 422 ||
			!strings.Contains(fmt.Sprint(out["detail"]), "shoe_size") {
			t.Fatalf("unknown field: %d %v", code, out)
		}
		if code, out := e.do("POST", "/api/v1/templates/"+tid+"/preview", e.tokA, `{"sample":{"contact":{"first_name":"Ana"}}}`); code != 200 ||
			!strings.Contains(fmt.Sprint(out["content"]), "Hello Ana") {
			t.Fatalf("preview: %d %v", code, out)
		}
		if code, _ := e.do("GET", "/api/v1/templates/"+tid, e.viewerA, ""); code != 200 {
			t.Fatalf("viewer reads a template: %d", code)
		}
		if code, _ := e.do("PUT", "/api/v1/templates/"+tid, e.tokA, `{"variants":{"en":{"subject":"Hi again","text":"Hello"}},"base_version":1}`); code != 200 {
			t.Fatalf("update template: %d", code)
		}
		body := fmt.Sprintf(`{"name":"March","channel":"email","template_id":%q,"audience":{"list_ids":[%q]}}`, tid, e.list)
		if code, _ := e.do("POST", "/api/v1/campaigns", e.viewerA, body); code != 403 {
			t.Fatalf("a viewer creates a campaign: %d", code)
		}
		code, c := e.do("POST", "/api/v1/campaigns", e.tokA, body)
		if code != 201 || c["state"] != "draft" {
			t.Fatalf("create campaign: %d %v", code, c)
		}
		id := c["id"].(string)
		// A draft is edited (the whole campaign, as created); bad input
		// and a viewer change nothing.
		edit := fmt.Sprintf(`{"name":"March (final)","channel":"email","template_id":%q,"audience":{"list_ids":[%q]},"throttle_per_second":20}`, tid, e.list)
		if code, _ := e.do("PUT", "/api/v1/campaigns/"+id, e.viewerA, edit); code != 403 {
			t.Fatalf("a viewer edits a campaign: %d", code)
		}
		for bad, want := range map[string]int{`{"name":"","channel":"email"}`: 422, `{"nope":1}`: 400, `[`: 400,
			fmt.Sprintf(`{"name":"X","channel":"email","template_id":"nope","audience":{"list_ids":[%q]}}`, e.list): 422} {
			if code, out := e.do("PUT", "/api/v1/campaigns/"+id, e.tokA, bad); code != want {
				t.Fatalf("edit %s: %d %v", bad, code, out)
			}
		}
		if code, _ := e.do("PUT", "/api/v1/campaigns/unknown", e.tokA, edit); code != 404 {
			t.Fatalf("edit unknown: %d", code)
		}
		if code, out := e.do("PUT", "/api/v1/campaigns/"+id, e.tokA, edit); code != 200 || out["name"] != "March (final)" || out["throttle_per_second"] != float64(20) || out["state"] != "draft" {
			t.Fatalf("edit: %d %v", code, out)
		}
		// A draft is deleted; then it is gone.
		_, scratch := e.do("POST", "/api/v1/campaigns", e.tokA, body)
		if code, _ := e.do("DELETE", "/api/v1/campaigns/"+scratch["id"].(string), e.viewerA, ""); code != 403 {
			t.Fatalf("a viewer deletes a campaign: %d", code)
		}
		if code, out := e.do("DELETE", "/api/v1/campaigns/"+scratch["id"].(string), e.tokA, ""); code != 204 {
			t.Fatalf("delete draft: %d %v", code, out)
		}
		if code, _ := e.do("GET", "/api/v1/campaigns/"+scratch["id"].(string), e.tokA, ""); code != 404 {
			t.Fatalf("get deleted: %d", code)
		}
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		code, out := e.do("POST", "/api/v1/campaigns/"+id+"/schedule", e.tokA, `{"schedule":{"kind":"at","send_at":"`+past+`"}}`)
		if code != 422 || !strings.Contains(fmt.Sprint(out["errors"]), "schedule.send_at") {
			t.Fatalf("schedule in the past: %d %v", code, out)
		}
		for _, bad := range []string{`{"schedule":{"kind":"soon"}}`, `{"throttle_per_second":-1}`, `{"nope":1}`, `[`} {
			if code, out := e.do("POST", "/api/v1/campaigns/"+id+"/schedule", e.tokA, bad); code < 400 || code >= 500 {
				t.Fatalf("schedule %s: %d %v", bad, code, out)
			}
		}
		// A transactional template (data.*) cannot be sent by a campaign.
		code, tx := e.do("POST", "/api/v1/templates", e.tokA, `{"name":"Receipt","channel":"email","transactional":true,"variants":{"en":{"subject":"Order {{.data.order}}","text":"x"}}}`)
		if code != 201 {
			t.Fatalf("transactional template: %d %v", code, tx)
		}
		_, c2 := e.do("POST", "/api/v1/campaigns", e.tokA, fmt.Sprintf(`{"name":"Receipt","channel":"email","template_id":%q,"audience":{"list_ids":[%q]}}`, tx["id"], e.list))
		if code, out := e.do("POST", "/api/v1/campaigns/"+c2["id"].(string)+"/schedule", e.tokA, ""); code != 422 || !strings.Contains(fmt.Sprint(out["detail"]), "data.order") {
			t.Fatalf("campaign with data.*: %d %v", code, out)
		}
		future := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
		code, out = e.do("POST", "/api/v1/campaigns/"+id+"/schedule", e.tokA, `{"schedule":{"kind":"at","send_at":"`+future+`"},"throttle_per_second":50}`)
		if code != 200 || out["state"] != "scheduled" || out["template_version"] != float64(2) {
			t.Fatalf("schedule: %d %v", code, out)
		}
		// Scheduled: no longer edited nor deleted.
		if code, out := e.do("PUT", "/api/v1/campaigns/"+id, e.tokA, edit); code != 409 || !strings.Contains(fmt.Sprint(out["detail"]), "only a draft") {
			t.Fatalf("edit scheduled: %d %v", code, out)
		}
		if code, _ := e.do("DELETE", "/api/v1/campaigns/"+id, e.tokA, ""); code != 409 {
			t.Fatalf("delete scheduled: %d", code)
		}
		if code, out := e.do("POST", "/api/v1/campaigns/"+id+"/pause", e.tokA, ""); code != 200 || out["campaign"].(map[string]any)["state"] != "paused" {
			t.Fatalf("pause: %d %v", code, out)
		}
		if code, _ := e.do("POST", "/api/v1/campaigns/"+id+"/pause", e.tokA, ""); code != 409 {
			t.Fatalf("pause twice: %d", code)
		}
		if code, out := e.do("POST", "/api/v1/campaigns/"+id+"/resume", e.tokA, ""); code != 200 || out["campaign"].(map[string]any)["state"] != "scheduled" {
			t.Fatalf("resume: %d %v", code, out)
		}
		if code, _ := e.do("POST", "/api/v1/campaigns/"+id+"/schedule", e.viewerA, ""); code != 403 {
			t.Fatalf("a viewer schedules: %d", code)
		}
		if code, out := e.do("GET", "/api/v1/campaigns/"+id+"/report", e.viewerA, ""); code != 200 || out["campaign"] == nil || out["counts"] == nil {
			t.Fatalf("report: %d %v", code, out)
		}
		if code, out := e.do("POST", "/api/v1/campaigns/"+id+"/cancel", e.tokA, ""); code != 200 || out["campaign"].(map[string]any)["state"] != "cancelled" {
			t.Fatalf("cancel: %d %v", code, out)
		}
		if code, out := e.do("GET", "/api/v1/campaigns", e.tokA, ""); code != 200 || len(out["campaigns"].([]any)) != 2 {
			t.Fatalf("list: %d %v", code, out)
		}
		if code, _ := e.do("PUT", "/api/v1/campaign-settings", e.tokA, `{"quiet_start":"21:00","quiet_end":"08:00","timezone":"Europe/Paris"}`); code != 403 {
			t.Fatalf("an editor sets quiet hours (settings:admin): %d", code)
		}
		if code, out := e.do("GET", "/api/v1/campaign-settings", e.tokA, ""); code != 200 || out["timezone"] != "UTC" {
			t.Fatalf("settings: %d %v", code, out)
		}
		if code, _ := e.do("GET", "/api/v1/campaigns/nope/report", e.tokA, ""); code != 404 {
			t.Fatalf("unknown campaign: %d", code)
		}
	})
}

// TestCampaignsAPITenantIsolation: tenant B's editor cannot see, schedule,
// control or report on tenant A's campaign, nor read or preview A's
// template, nor build a campaign from A's template or list (404 or 422,
// never A's data), and nothing of A changes.
func TestCampaignsAPITenantIsolation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newCpEnv(t, db)
		_, tmpl := e.do("POST", "/api/v1/templates", e.tokA, `{"name":"Secret plan","channel":"email","variants":{"en":{"subject":"S","text":"Secret text"}}}`)
		tid := tmpl["id"].(string)
		_, c := e.do("POST", "/api/v1/campaigns", e.tokA, fmt.Sprintf(`{"name":"Secret campaign","channel":"email","template_id":%q,"audience":{"list_ids":[%q]}}`, tid, e.list))
		id := c["id"].(string)
		for _, rq := range [][2]string{{"GET", "/api/v1/campaigns/" + id}, {"GET", "/api/v1/campaigns/" + id + "/report"}, {"POST", "/api/v1/campaigns/" + id + "/schedule"},
			{"POST", "/api/v1/campaigns/" + id + "/pause"}, {"POST", "/api/v1/campaigns/" + id + "/resume"}, {"POST", "/api/v1/campaigns/" + id + "/cancel"},
			{"GET", "/api/v1/templates/" + tid}, {"POST", "/api/v1/templates/" + tid + "/preview"}, {"GET", "/api/v1/templates/" + tid + "/versions"},
			{"PUT", "/api/v1/templates/" + tid}, {"DELETE", "/api/v1/templates/" + tid},
			{"PUT", "/api/v1/campaigns/" + id}, {"DELETE", "/api/v1/campaigns/" + id}} {
			body := ""
			switch {
			case rq[0] == "PUT" && strings.Contains(rq[1], "/templates/"):
				body = `{"variants":{"en":{"subject":"Mine","text":"Mine"}}}`
			case rq[0] == "PUT":
				body = fmt.Sprintf(`{"name":"Mine","channel":"email","template_id":%q,"audience":{"list_ids":[%q]}}`, tid, e.list)
			}
			code, out := e.do(rq[0], rq[1], e.tokB, body)
			if code != 404 || strings.Contains(fmt.Sprint(out), "Secret") {
				t.Errorf("tenant B %s %s: %d %v", rq[0], rq[1], code, out)
			}
		}
		if code, out := e.do("GET", "/api/v1/campaigns", e.tokB, ""); code != 200 || len(out["campaigns"].([]any)) != 0 {
			t.Errorf("tenant B lists: %d %v", code, out)
		}
		if code, out := e.do("GET", "/api/v1/templates", e.tokB, ""); code != 200 || len(out["templates"].([]any)) != 0 {
			t.Errorf("tenant B lists templates: %d %v", code, out)
		}
		code, out := e.do("POST", "/api/v1/campaigns", e.tokB, fmt.Sprintf(`{"name":"Steal","channel":"email","template_id":%q,"audience":{"list_ids":[%q]}}`, tid, e.list))
		if code != 422 {
			t.Errorf("tenant B uses A's template and list: %d %v", code, out)
		}
		// A's campaign and template are untouched.
		got, err := e.camp.Get(context.Background(), e.tenantA, id)
		if err != nil || got.State != campaigns.StateDraft {
			t.Fatalf("A's campaign: %+v %v", got, err)
		}
		if code, out := e.do("GET", "/api/v1/templates/"+tid, e.tokA, ""); code != 200 || out["version"] != float64(1) {
			t.Fatalf("A's template: %d %v", code, out)
		}
	})
}

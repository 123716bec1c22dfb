package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/supervise"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// monitorEnv is the admin env's server with supervision mounted.
func monitorEnv(t *testing.T, db *store.DB) (*adminEnv, *supervise.Supervisor, string) {
	t.Helper()
	e := newAdminEnv(t, db)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	sup, err := supervise.New(supervise.Options{DB: db, Config: cfg, Tenants: e.ts, Master: e.ts.Master, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = New(Options{DB: db, Tenants: e.ts, Identity: e.id, Access: e.acc, Monitor: sup, MaxBodyBytes: 64 << 10, ShutdownTimeout: time.Second, Version: "test"})
	_, secret, err := optoken.Create(context.Background(), db, "monitor-test")
	if err != nil {
		t.Fatal(err)
	}
	return e, sup, secret
}

func (e *adminEnv) operatorCall(t *testing.T, secret, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	return e.callWith(t, nil, method, path, body, map[string]string{"Authorization": "Bearer " + secret})
}

// TestMonitorAPI: flags, silences, security contacts, incidents, the
// compliance report and the indicators through the API, each tenant seeing
// only its own, each mutation audited, permissions enforced.
func TestMonitorAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e, _, op := monitorEnv(t, db)
		alice, _ := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		as := e.session(t, e.a.ID, alice.ID)
		bob, _ := e.user(t, e.b.ID, "bob@beta.example", "Bob Admin", access.RoleAdmin)
		bs := e.session(t, e.b.ID, bob.ID)
		vic, _ := e.user(t, e.a.ID, "victor@acme.example", "Victor Viewer", access.RoleViewer)
		vs := e.session(t, e.a.ID, vic.ID)

		res, body := e.call(t, as, "PUT", "/api/v1/flags/sms_sending", `{"enabled":false}`)
		admWant(t, "set flag", res, body, 200, "")
		res, body = e.call(t, vs, "PUT", "/api/v1/flags/sms_sending", `{"enabled":true}`)
		admWant(t, "viewer sets a flag", res, body, 403, "forbidden")
		res, body = e.call(t, as, "PUT", "/api/v1/flags/launch_missiles", `{"enabled":true}`)
		admWant(t, "unknown flag", res, body, 422, "validation_failed")
		res, body = e.call(t, as, "PUT", "/api/v1/flags/sms_sending", `{}`)
		admWant(t, "flag without enabled", res, body, 422, "validation_failed")
		flagOf := func(s *adminSession) bool {
			res, body := e.call(t, s, "GET", "/api/v1/flags", "")
			admWant(t, "list flags", res, body, 200, "")
			var out struct{ Flags []flags.State }
			admDecode(t, body, &out)
			for _, f := range out.Flags {
				if f.Name == flags.SMSSending {
					return f.Enabled
				}
			}
			t.Fatal("no sms_sending flag")
			return false
		}
		if flagOf(as) || !flagOf(bs) {
			t.Fatal("flags not per tenant")
		}
		// The transactional API refuses SMS while the flag is off.
		rec := httptest.NewRecorder()
		if e.srv.featureAllows(rec, httptest.NewRequest("POST", "/api/v1/messages", nil), e.a.ID, "sms") || rec.Code != 403 {
			t.Fatalf("sms with the flag off: %d", rec.Code)
		}
		if !e.srv.featureAllows(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/v1/messages", nil), e.a.ID, "email") {
			t.Fatal("email refused")
		}

		res, body = e.call(t, as, "POST", "/api/v1/monitor/silences", `{"rule":"nope","duration":"2h","reason":"x"}`)
		admWant(t, "silence of an unknown rule", res, body, 422, "validation_failed")
		res, body = e.call(t, as, "POST", "/api/v1/monitor/silences", `{"rule":"latency_threshold","duration":"forever","reason":"x"}`)
		admWant(t, "silence with a bad duration", res, body, 400, "validation_failed")
		res, body = e.call(t, as, "POST", "/api/v1/monitor/silences", `{"rule":"latency_threshold","duration":"2d","reason":"load test"}`)
		admWant(t, "silence", res, body, 201, "")
		res, body = e.call(t, bs, "GET", "/api/v1/monitor/silences", "")
		if admWant(t, "beta silences", res, body, 200, ""); strings.Contains(string(body), "load test") {
			t.Fatal("beta sees acme's silence")
		}
		res, body = e.call(t, as, "PUT", "/api/v1/security-contacts", `{"emails":["dpo@acme.example"],"webhook_url":"http://x.example/"}`)
		admWant(t, "plain http webhook", res, body, 422, "validation_failed")
		res, body = e.call(t, as, "PUT", "/api/v1/security-contacts", `{"emails":["dpo@acme.example"]}`)
		admWant(t, "contacts", res, body, 200, "")

		// The operator's register; each tenant sees only its incidents.
		res, body = e.operatorCall(t, op, "POST", "/api/v1/operator/incidents", `{"category":"data_breach","criticality":"high","title":"Leak","affected_tenants":["acme"]}`)
		admWant(t, "create incident", res, body, 201, "")
		res, body = e.call(t, as, "POST", "/api/v1/operator/incidents", `{"category":"data_breach","criticality":"high","title":"Leak"}`)
		admWant(t, "a tenant admin creates an incident", res, body, 401, "unauthenticated")
		res, body = e.call(t, as, "GET", "/api/v1/incidents", "")
		if admWant(t, "acme incidents", res, body, 200, ""); !strings.Contains(string(body), "INC-1") {
			t.Fatalf("acme does not see INC-1: %s", body)
		}
		res, body = e.call(t, bs, "GET", "/api/v1/incidents", "")
		if admWant(t, "beta incidents", res, body, 200, ""); strings.Contains(string(body), "INC-1") {
			t.Fatal("beta sees acme's incident")
		}
		res, body = e.operatorCall(t, op, "POST", "/api/v1/operator/incidents/INC-1/close", `{"report":"done"}`)
		admWant(t, "close before notifying", res, body, 409, "conflict")
		res, body = e.operatorCall(t, op, "POST", "/api/v1/operator/incidents/INC-1/notify", `{"manual":"called the DPO"}`)
		admWant(t, "notify", res, body, 200, "")
		res, body = e.operatorCall(t, op, "POST", "/api/v1/operator/incidents/INC-1/timeline", `{"text":"keys rotated"}`)
		admWant(t, "timeline", res, body, 200, "")
		res, body = e.operatorCall(t, op, "POST", "/api/v1/operator/incidents/INC-1/close", `{"report":"Rotated.","lessons":"Scan for secrets."}`)
		admWant(t, "close", res, body, 200, "")
		res, body = e.operatorCall(t, op, "GET", "/api/v1/operator/incidents/INC-9", "")
		admWant(t, "unknown incident", res, body, 404, "not_found")
		res, body = e.operatorCall(t, op, "GET", "/api/v1/operator/incidents/bogus", "")
		admWant(t, "bad incident ref", res, body, 422, "validation_failed")

		// Compliance report: formats, and the tenant's own only.
		res, body = e.call(t, as, "GET", "/api/v1/compliance/report?format=md", "")
		if admWant(t, "report md", res, body, 200, ""); !strings.HasPrefix(res.Header.Get("Content-Type"), "text/markdown") || !strings.Contains(string(body), "(acme)") {
			t.Fatalf("md report: %s", body)
		}
		res, body = e.call(t, as, "GET", "/api/v1/compliance/report?format=xml", "")
		admWant(t, "report xml", res, body, 400, "validation_failed")
		res, body = e.operatorCall(t, op, "GET", "/api/v1/operator/tenants/beta/compliance", "")
		if admWant(t, "operator report", res, body, 200, ""); !strings.Contains(string(body), `"slug": "beta"`) {
			t.Fatalf("operator report: %.200s", body)
		}

		// Indicators: the tenant's own; the operator sees route availability.
		res, body = e.call(t, as, "GET", "/api/v1/monitor/indicators", "")
		admWant(t, "indicators", res, body, 200, "")
		res, body = e.operatorCall(t, op, "GET", "/api/v1/operator/monitor/indicators", "")
		admWant(t, "operator indicators", res, body, 200, "")
		var ind struct {
			Availability []struct {
				Route    string
				Requests int64
			}
		}
		if err := json.Unmarshal(body, &ind); err != nil || len(ind.Availability) == 0 {
			t.Fatalf("availability: %v %s", err, body)
		}
		res, body = e.call(t, as, "GET", "/api/v1/monitor/clock", "")
		if admWant(t, "clock", res, body, 200, ""); !strings.Contains(string(body), `"configured":false`) || !strings.Contains(string(body), `"flagged_audit_seqs":[]`) {
			t.Fatalf("clock: %s", body)
		}
		res, body = e.call(t, as, "GET", "/api/v1/monitor/alerts?limit=0", "")
		admWant(t, "alerts bad limit", res, body, 400, "validation_failed")
		res, body = e.call(t, as, "GET", "/api/v1/monitor/alerts", "")
		admWant(t, "alerts", res, body, 200, "")

		// Every mutation above is in the tenant's (or operator's) trail.
		var actions []string
		for _, r := range admAudit(t, db, e.a.ID) {
			actions = append(actions, r.Action)
		}
		all := strings.Join(actions, ",")
		for _, want := range []string{"flag.set", "alert.silence", "security_contacts.set", "incident.notify"} {
			if !strings.Contains(all, want) {
				t.Errorf("acme's trail lacks %s: %s", want, all)
			}
		}
	})
}

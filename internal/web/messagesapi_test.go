package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// messagesFixture is the token fixture with the router's API mounted and a
// token for each of two tenants' clients.
func messagesFixture(t *testing.T, db *store.DB) (http.Handler, string, string, *router.Service) {
	t.Helper()
	ctx := context.Background()
	f := newTokenFixture(t, db)
	kr := f.id.Keyring
	rs := &router.Service{DB: db, Keyring: kr}
	s := New(Options{DB: db, Tenants: f.id.Tenants, Identity: f.id, Access: f.acc, Keys: f.ks, Router: rs,
		Connectors: &router.Connectors{Service: rs}, Issuer: newIssuer(f), Verifier: newVerifier(f)})
	if err := f.acc.GrantClientRole(ctx, f.a.ID, access.Actor{Operator: true}, f.clientA.ID, "editor"); err != nil {
		t.Fatal(err)
	}
	_ = f.id.BumpClientVersion(ctx, f.a.ID, f.clientA.ID)
	f.h = s.Handler()
	_, out := f.token(t, url.Values{"grant_type": {"client_credentials"}}, true)
	tokA := out["access_token"].(string)
	// Tenant B's client, with the same role.
	clB, secB, err := f.id.CreateClient(ctx, f.b.ID, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.acc.GrantClientRole(ctx, f.b.ID, access.Actor{Operator: true}, clB.ID, "editor"); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clB.ID, secB)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var tb map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &tb)
	return f.h, tokA, tb["access_token"].(string), rs
}

func post(h http.Handler, path, tok, key, body string) (int, map[string]any) {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestMessagesAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		h, tokA, tokB, _ := messagesFixture(t, db)
		const msg = `{"channel":"email","to":"jane@example.test","subject":"Order 42","text":"Thanks"}`
		code, first := post(h, "/api/v1/messages", tokA, "order-42", msg)
		if code != 202 || first["status"] != "queued" {
			t.Fatalf("send: %d %v", code, first)
		}
		// The same key 100 times at once: one message, always the same id.
		var wg sync.WaitGroup
		ids := make(chan string, 100)
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, out := post(h, "/api/v1/messages", tokA, "order-43", msg)
				if code != 202 {
					t.Errorf("concurrent send: %d %v", code, out)
					return
				}
				ids <- out["id"].(string)
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			seen[id] = true
		}
		if len(seen) != 1 {
			t.Fatalf("100 concurrent requests with one key made %d messages", len(seen))
		}
		if _, again := post(h, "/api/v1/messages", tokA, "order-42", msg); again["id"] != first["id"] || again["duplicate"] != true {
			t.Fatalf("repeat with the same key: %v", again)
		}
		// Tenant B's token does not see tenant A's message, even with A's key.
		req := httptest.NewRequest("GET", "/api/v1/messages/"+first["id"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+tokB)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 404 || strings.Contains(rec.Body.String(), "jane") {
			t.Fatalf("tenant B read tenant A's message: %d %s", rec.Code, rec.Body)
		}
		if code, out := post(h, "/api/v1/messages", tokB, "order-42", msg); code != 202 || out["id"] == first["id"] {
			t.Fatalf("idempotency keys are per tenant: %d %v", code, out)
		}
		req = httptest.NewRequest("GET", "/api/v1/messages/"+first["id"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+tokA)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"jane@example.test"`) || !strings.Contains(rec.Body.String(), `"accepted"`) {
			t.Fatalf("get: %d %s", rec.Code, rec.Body)
		}
		// Batch: all or nothing, the bad message named by index.
		code, out := post(h, "/api/v1/messages/batch", tokA, "", `[`+msg+`,{"channel":"sms","to":"0612","text":"x"}]`)
		if code != 422 || !strings.Contains(out["detail"].(string), "[1].to") {
			t.Fatalf("bad batch: %d %v", code, out)
		}
		code, out = post(h, "/api/v1/messages/batch", tokA, "", `[`+msg+`,{"channel":"sms","to":"+33612345678","text":"x"}]`)
		if code != 202 || len(out["messages"].([]any)) != 2 {
			t.Fatalf("batch: %d %v", code, out)
		}
		for _, bad := range []string{`{"channel":"email","to":"x","text":"y"}`, `{"channel":"pigeon","to":"x"}`, `{"channel":"email","to":"a@b.test"}`,
			`{"channel":"email","to":"a@b.test","text":"y","extra":1}`, `not json`} {
			if code, out := post(h, "/api/v1/messages", tokA, "", bad); code < 400 || code >= 500 || out["code"] == nil {
				t.Errorf("%s: %d %v", bad, code, out)
			}
		}
	})
}

func TestMessagesNeedTheirPermission(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	f := newTokenFixture(t, db) // its client holds "viewer": messages:read, not messages:send
	rs := &router.Service{DB: db, Keyring: f.id.Keyring}
	h := New(Options{DB: db, Tenants: f.id.Tenants, Identity: f.id, Access: f.acc, Keys: f.ks, Router: rs,
		Connectors: &router.Connectors{Service: rs}, Issuer: newIssuer(f), Verifier: newVerifier(f)}).Handler()
	f.h = h
	_, out := f.token(t, url.Values{"grant_type": {"client_credentials"}}, true)
	code, body := post(h, "/api/v1/messages", out["access_token"].(string), "", `{"channel":"email","to":"a@b.test","text":"x"}`)
	if code != 403 || body["code"] != "forbidden" {
		t.Fatalf("viewer sending: %d %v", code, body)
	}
}

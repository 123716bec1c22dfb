package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/smsop"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestSMSDeliveryReceipts: an SMS goes through a real HTTP operator API
// (the fake operator server), which posts a signed delivery receipt back to
// the callback endpoint: the message becomes delivered. A replayed receipt
// changes nothing; a receipt with a bad signature is refused.
func TestSMSDeliveryReceipts(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		f := newTokenFixture(t, db)
		op := smsop.Start(t, smsop.Options{})
		const secret = "callback-secret-0123456789abcdef"
		cfg, _ := json.Marshal(map[string]any{
			"url": op.URL(), "format": "json", "fields": map[string]string{"to": "to", "text": "text", "ref": "client_ref"},
			"response_id_path": "messages.0.id", "callback_secret": secret,
			"callback": map[string]any{"items_path": "receipts", "id_path": "message_id", "ref_path": "client_ref", "status_path": "status",
				"reason_path": "error", "statuses": map[string]string{"DELIVRD": "delivered", "UNDELIV": "failed"}},
		})
		rs := &router.Service{DB: db, Keyring: f.id.Keyring}
		conns := &router.Connectors{Service: rs, Open: registry.Open, Redact: registry.Redact}
		info, err := conns.AddConnector(ctx, f.a.ID, "operator", "sms-http", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if string(info.Config) == string(cfg) {
			t.Fatal("the stored public configuration is not redacted")
		}
		h := New(Options{DB: db, Tenants: f.id.Tenants, Identity: f.id, Access: f.acc, Router: rs, Connectors: conns}).Handler()
		srv := httptest.NewServer(h)
		defer srv.Close()

		acc, err := rs.Accept(ctx, f.a.ID, []router.NewMessage{{Channel: "sms", To: "+33612345678", Content: router.Content{Text: "Your code is 1234"}}})
		if err != nil {
			t.Fatal(err)
		}
		en := router.NewEngine(db, f.id.Keyring, registry.Open, router.EngineOptions{Node: "n"})
		if err := router.MaintainLeases(ctx, en); err != nil {
			t.Fatal(err)
		}
		if _, err := en.Step(ctx); err != nil {
			t.Fatal(err)
		}
		m, _ := rs.Get(ctx, f.a.ID, acc[0].ID)
		if m.State != router.StateSent || m.ProviderRef == "" || op.Accepted() != 1 {
			t.Fatalf("after hand-off: %+v (operator accepted %d)", m, op.Accepted())
		}
		url := srv.URL + "/api/v1/callbacks/" + f.a.ID + "/" + info.ID
		receipt := smsop.Receipt{ID: m.ProviderRef, Status: "DELIVRD"}
		req, body, err := smsop.ReceiptRequest(ctx, url, []byte(secret), time.Now(), receipt)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("receipt: %v %v", res, err)
		}
		res.Body.Close()
		m, _ = rs.Get(ctx, f.a.ID, acc[0].ID)
		if m.State != router.StateDelivered || m.DeliveredAt == nil {
			t.Fatalf("after the receipt: %+v", m)
		}
		// The same signed request again: acknowledged, nothing changes.
		again, _ := http.NewRequest("POST", url, bytesReader(body))
		again.Header = req.Header.Clone()
		res, err = http.DefaultClient.Do(again)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("replay: %v %v", res, err)
		}
		res.Body.Close()
		m2, _ := rs.Get(ctx, f.a.ID, acc[0].ID)
		if len(m2.Events) != len(m.Events) {
			t.Fatal("a replayed receipt added an event")
		}
		// A bad signature, another tenant's path, an unknown connector.
		bad, _, _ := smsop.ReceiptRequest(ctx, url, []byte("not-the-secret-0123456789abcdef"), time.Now(), smsop.Receipt{ID: m.ProviderRef, Status: "UNDELIV"})
		if res, _ := http.DefaultClient.Do(bad); res.StatusCode != 401 {
			t.Fatalf("bad signature: %d", res.StatusCode)
		}
		for _, u := range []string{srv.URL + "/api/v1/callbacks/" + f.b.ID + "/" + info.ID, srv.URL + "/api/v1/callbacks/" + f.a.ID + "/nope"} {
			r2, _, _ := smsop.ReceiptRequest(ctx, u, []byte(secret), time.Now(), receipt)
			if res, _ := http.DefaultClient.Do(r2); res.StatusCode != 404 {
				t.Fatalf("%s: %d", u, res.StatusCode)
			}
		}
		if m3, _ := rs.Get(ctx, f.a.ID, acc[0].ID); m3.State != router.StateDelivered {
			t.Fatalf("a refused receipt changed the message: %s", m3.State)
		}
	})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

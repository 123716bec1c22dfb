package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/signature"
	"github.com/relais-dev/relais/internal/connectors/webhook"
)

const secret = "whsec-0123456789abcdefghij"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// receiver is a webhook endpoint that verifies signatures independently
// (its own HMAC, not package signature), deduplicates on Idempotency-Key
// and can be told what to answer.
type receiver struct {
	mu       sync.Mutex
	bodies   map[string][]byte // Idempotency-Key -> first body
	requests int
	answer   func(w http.ResponseWriter) bool // true: answered
	errs     []error
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if rc.answer != nil && rc.answer(w) {
		return
	}
	// Independent verification: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>.
	sig := r.Header.Get("X-Relais-Signature")
	var ts, v1 string
	for p := range strings.SplitSeq(sig, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	if want := hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(v1), []byte(want)) {
		rc.errs = append(rc.errs, fmt.Errorf("signature %q does not verify", sig))
	}
	if r.Header.Get("X-Relais-Timestamp") != ts {
		rc.errs = append(rc.errs, fmt.Errorf("X-Relais-Timestamp %q, t=%q", r.Header.Get("X-Relais-Timestamp"), ts))
	}
	if unix, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(unix, 0)).Abs() > time.Minute {
		rc.errs = append(rc.errs, fmt.Errorf("timestamp %q not current", ts))
	}
	if err := webhook.Verify([]byte(secret), r, body, time.Now()); err != nil {
		rc.errs = append(rc.errs, fmt.Errorf("webhook.Verify: %w", err))
	}
	key := r.Header.Get("Idempotency-Key")
	if _, dup := rc.bodies[key]; !dup {
		rc.bodies[key] = body
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"rcv-`+key+`"}`)
}

func start(t *testing.T, rc *receiver) (*httptest.Server, webhook.Config) {
	rc.bodies = map[string][]byte{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv, webhook.Config{URL: srv.URL + "/hooks/relais", Secret: secret, Channel: connectors.ChannelEmail, Timeout: connectors.Duration(2 * time.Second)}
}

func newConnector(t *testing.T, cfg webhook.Config) *webhook.Connector {
	t.Helper()
	c, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSignedIdempotentDelivery: the receiver verifies every signature with
// its own HMAC and with webhook.Verify, finds Idempotency-Key equal to the
// Ref and the message in the JSON payload; a message sent again with the
// same Ref is recognised by its key.
func TestSignedIdempotentDelivery(t *testing.T) {
	rc := &receiver{}
	_, cfg := start(t, rc)
	c := newConnector(t, cfg)
	batch := []connectors.Message{
		{Ref: "w1", TenantID: "acme", Channel: connectors.ChannelEmail, To: "a@example.test", From: "news@acme.test",
			Subject: "Hi <you> & co", Text: "text", HTML: "<p>html</p>", Headers: map[string]string{"List-Unsubscribe": "<https://acme.test/u>"}, Attempt: 1},
		{Ref: "w2", TenantID: "acme", Channel: connectors.ChannelEmail, To: "b@example.test", Text: "text only", Attempt: 1},
	}
	out := c.Send(ctx(t), batch)
	for _, o := range out {
		if o.Err != nil || o.ProviderRef != "rcv-"+o.Ref {
			t.Fatalf("outcome %+v", o)
		}
	}
	out = c.Send(ctx(t), batch[:1]) // a retry after a hand-off in doubt
	if out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, err := range rc.errs {
		t.Error(err)
	}
	if rc.requests != 3 || len(rc.bodies) != 2 {
		t.Fatalf("%d requests, %d distinct keys", rc.requests, len(rc.bodies))
	}
	var p webhook.Payload
	if err := json.Unmarshal(rc.bodies["w1"], &p); err != nil {
		t.Fatal(err)
	}
	m := batch[0]
	if p.ID != m.Ref || p.TenantID != m.TenantID || p.Channel != m.Channel || p.To != m.To || p.From != m.From ||
		p.Subject != m.Subject || p.Text != m.Text || p.HTML != m.HTML || p.Headers["List-Unsubscribe"] != m.Headers["List-Unsubscribe"] || p.Attempt != 1 {
		t.Errorf("payload %+v", p)
	}
	if !strings.Contains(string(rc.bodies["w1"]), "Hi <you> & co") {
		t.Errorf("HTML-escaped payload: %s", rc.bodies["w1"])
	}
	if caps := c.Capabilities(); !caps.Idempotent || len(caps.Channels) != 1 || caps.Channels[0] != connectors.ChannelEmail {
		t.Errorf("capabilities %+v", caps)
	}
}

// TestVerifyRefuses: webhook.Verify refuses a tampered body, a wrong
// secret, a stale signature and a missing header.
func TestVerifyRefuses(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	now := time.Now()
	req := func(sig string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if sig != "" {
			r.Header.Set(signature.Header, sig)
		}
		return r
	}
	good := signature.Sign([]byte(secret), now, body)
	if err := webhook.Verify([]byte(secret), req(good), body, now); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"tampered", webhook.Verify([]byte(secret), req(good), []byte(`{"id":"y"}`), now), signature.ErrMismatch},
		{"wrong secret", webhook.Verify([]byte("other-secret-0123456789"), req(good), body, now), signature.ErrMismatch},
		{"stale", webhook.Verify([]byte(secret), req(signature.Sign([]byte(secret), now.Add(-10*time.Minute), body)), body, now), signature.ErrStale},
		{"missing", webhook.Verify([]byte(secret), req(""), body, now), signature.ErrMissing},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

// TestClassification: 500, 429, 401 and a timeout are temporary; 400 and a
// redirect are permanent; a message for a channel the webhook does not
// take is permanent.
func TestClassification(t *testing.T) {
	var mode string
	var mu sync.Mutex
	rc := &receiver{answer: func(w http.ResponseWriter) bool {
		mu.Lock()
		defer mu.Unlock()
		switch mode {
		case "500":
			w.WriteHeader(500)
		case "429":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(429)
		case "401":
			w.WriteHeader(401)
		case "400":
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":"bad payload"}`)
		case "redirect":
			w.Header().Set("Location", "https://elsewhere.example/hook")
			w.WriteHeader(307)
		case "slow":
			time.Sleep(600 * time.Millisecond)
		default:
			return false
		}
		return true
	}}
	_, cfg := start(t, rc)
	cfg.Timeout = connectors.Duration(200 * time.Millisecond)
	c := newConnector(t, cfg)
	for _, tc := range []struct {
		mode      string
		temporary bool
		mention   string
	}{
		{"500", true, "500"}, {"429", true, "Retry-After: 3"}, {"401", true, "credentials"}, {"slow", true, "timed out"},
		{"400", false, "bad payload"}, {"redirect", false, "elsewhere.example"},
	} {
		mu.Lock()
		mode = tc.mode
		mu.Unlock()
		out := c.Send(ctx(t), []connectors.Message{{Ref: "c-" + tc.mode, Channel: connectors.ChannelEmail, To: "a@example.test", Text: "x"}})
		err := out[0].Err
		if err == nil || connectors.IsTemporary(err) != tc.temporary || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v (temporary %v wanted, mentioning %q)", tc.mode, err, tc.temporary, tc.mention)
		}
	}
	out := c.Send(ctx(t), []connectors.Message{{Ref: "sms", Channel: connectors.ChannelSMS, To: "+33612345678", Text: "x"}})
	if out[0].Err == nil || connectors.IsTemporary(out[0].Err) {
		t.Errorf("unhandled channel: %v", out[0].Err)
	}
}

// TestHTTPSOnly: plain http is refused except to a loopback host; an https
// receiver is reached with its CA trusted and refused without it.
func TestHTTPSOnly(t *testing.T) {
	for _, u := range []string{"http://hooks.example.com/x", "http://10.1.2.3/x", "ftp://hooks.example.com/", "https://u:p@hooks.example.com/"} {
		if err := (webhook.Config{URL: u, Secret: secret, Channel: "sms"}).Validate(); !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), "url") {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9/x", "https://hooks.example.com/x"} {
		if err := (webhook.Config{URL: u, Secret: secret, Channel: "sms"}).Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if err := (webhook.Config{URL: "https://hooks.example.com/x", Secret: "short", Channel: "sms"}).Validate(); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("short secret: %v", err)
	}
	for _, ch := range []string{"", "fax", "email,sms"} {
		if err := (webhook.Config{URL: "https://hooks.example.com/x", Secret: secret, Channel: ch}).Validate(); !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), "channel") {
			t.Errorf("channel %q: %v", ch, err)
		}
	}
	rc := &receiver{bodies: map[string][]byte{}}
	srv := httptest.NewUnstartedServer(rc)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	srv.StartTLS()
	defer srv.Close()
	cfg := webhook.Config{URL: srv.URL, Secret: secret, Channel: connectors.ChannelEmail, RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	c := newConnector(t, cfg)
	if out := c.Send(ctx(t), []connectors.Message{{Ref: "tls", Channel: connectors.ChannelEmail, To: "a@example.test"}}); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	cfg.RootCAs = nil
	c2 := newConnector(t, cfg)
	out := c2.Send(ctx(t), []connectors.Message{{Ref: "tls2", Channel: connectors.ChannelEmail, To: "a@example.test"}})
	if !connectors.IsTemporary(out[0].Err) || !strings.Contains(out[0].Err.Error(), "certificate") {
		t.Errorf("untrusted receiver: %v", out[0].Err)
	}
	if s := fmt.Sprint(cfg); strings.Contains(s, secret) {
		t.Errorf("printed config shows the secret: %s", s)
	}
}

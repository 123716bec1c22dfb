package smshttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/signature"
	"github.com/relais-dev/relais/internal/connectors/smshttp"
	"github.com/relais-dev/relais/internal/testkit/smsop"
)

const (
	token          = "Bearer op-token-0123456789abcdef"
	callbackSecret = "cb-secret-0123456789abcdef"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func sms(ref, to, text string) connectors.Message {
	return connectors.Message{Ref: ref, Channel: connectors.ChannelSMS, To: to, Text: text, Attempt: 1}
}

// baseConfig maps onto the fake operator's default field names.
func baseConfig(op *smsop.Operator) smshttp.Config {
	return smshttp.Config{
		URL:            op.URL(),
		Format:         smshttp.FormatJSON,
		Fields:         map[string]string{"to": "to", "text": "text", "from": "from", "ref": "client_ref"},
		Token:          token,
		ResponseIDPath: "messages.0.id",
		CallbackSecret: callbackSecret,
		Callback: smshttp.CallbackMapping{
			ItemsPath: "receipts", IDPath: "message_id", RefPath: "client_ref",
			StatusPath: "status", ReasonPath: "error", TimePath: "timestamp",
			Statuses: map[string]string{"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "failed", "REJECTD": "bounced"},
		},
		Timeout: connectors.Duration(2 * time.Second),
	}
}

func newConnector(t *testing.T, cfg smshttp.Config) *smshttp.Connector {
	t.Helper()
	c, err := smshttp.New(cfg)
	if err != nil {
		t.Fatalf("smshttp.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestJSONMapping: the configured field names, fixed and secret fields,
// the token header and the client reference reach the operator as JSON
// (nested objects for dotted names), and ProviderRef is the operator's id.
func TestJSONMapping(t *testing.T) {
	op := smsop.Start(t, smsop.Options{Token: strings.TrimPrefix(token, "Bearer "),
		ToField: "message.destination", TextField: "message.body", RefField: "client_ref"})
	cfg := baseConfig(op)
	cfg.Fields = map[string]string{"to": "message.destination", "text": "message.body", "from": "message.sender", "ref": "client_ref"}
	cfg.Static = map[string]string{"route": "premium"}
	cfg.SecretStatic = map[string]string{"api_secret": "shh-0123456789abcdef"}
	cfg.From = "ACME"
	c := newConnector(t, cfg)
	out := c.Send(ctx(t), []connectors.Message{sms("r1", "+33612345678", "Bonjour <Marie> & co, -20 % 🎉"), sms("r2", "+33698765432", "Second")})
	for _, o := range out {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.ProviderRef == "" || o.ProviderRef != op.IDFor(o.Ref) {
			t.Errorf("ProviderRef %q, operator id %q", o.ProviderRef, op.IDFor(o.Ref))
		}
	}
	reqs := op.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.ContentType != "application/json" || r.Header.Get("Authorization") != token {
		t.Errorf("content type %q, authorization %q", r.ContentType, r.Header.Get("Authorization"))
	}
	want := map[string]string{
		"message.destination": "+33612345678", "message.body": "Bonjour <Marie> & co, -20 % 🎉",
		"message.sender": "ACME", "client_ref": "r1", "route": "premium", "api_secret": "shh-0123456789abcdef",
	}
	for k, v := range want {
		if r.Fields[k] != v {
			t.Errorf("field %s = %q, want %q (body %s)", k, r.Fields[k], v, r.Body)
		}
	}
	if len(r.Fields) != len(want) {
		t.Errorf("fields %v, want exactly %v", r.Fields, want)
	}
	if !bytes.Contains(r.Body, []byte("<Marie> & co")) {
		t.Errorf("text escaped in the JSON body: %s", r.Body)
	}
	caps := c.Capabilities()
	if !caps.Idempotent || caps.MaxBatch != 1 || len(caps.Channels) != 1 || caps.Channels[0] != connectors.ChannelSMS {
		t.Errorf("capabilities %+v", caps)
	}
}

// TestFormMapping: the same mapping as an URL-encoded form.
func TestFormMapping(t *testing.T) {
	op := smsop.Start(t, smsop.Options{ToField: "To", TextField: "Body", RefField: "StatusCallbackRef"})
	cfg := baseConfig(op)
	cfg.Format = smshttp.FormatForm
	cfg.Fields = map[string]string{"to": "To", "text": "Body", "from": "From", "ref": "StatusCallbackRef"}
	cfg.Token = ""
	cfg.Static = map[string]string{"MessagingServiceSid": "MG123"}
	c := newConnector(t, cfg)
	m := sms("f1", "+33612345678", "a=b&c d+é")
	m.From = "+33700000000"
	out := c.Send(ctx(t), []connectors.Message{m})
	if out[0].Err != nil || out[0].ProviderRef != op.IDFor("f1") {
		t.Fatalf("outcome %+v", out[0])
	}
	r := op.Requests()[0]
	if r.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("content type %q", r.ContentType)
	}
	for k, v := range map[string]string{"To": "+33612345678", "Body": "a=b&c d+é", "From": "+33700000000", "StatusCallbackRef": "f1", "MessagingServiceSid": "MG123"} {
		if r.Fields[k] != v {
			t.Errorf("field %s = %q, want %q", k, r.Fields[k], v)
		}
	}
	if r.Header.Get("Authorization") != "" {
		t.Error("an Authorization header was sent without a token")
	}
}

// TestTemporaryFailures: 500, 429, 401, a timeout, an unreadable or
// id-less 2xx are temporary with a clear error; retried with the same Ref,
// each message ends up accepted once, with one operator id (the operator
// deduplicates on the reference, including after the timeout where it had
// accepted the message).
func TestTemporaryFailures(t *testing.T) {
	op := smsop.Start(t, smsop.Options{Token: strings.TrimPrefix(token, "Bearer ")})
	op.SetTimeoutDelay(time.Second)
	cfg := baseConfig(op)
	cfg.Timeout = connectors.Duration(200 * time.Millisecond)
	c := newConnector(t, cfg)
	for i, tc := range []struct {
		fault smsop.Fault
		want  string
	}{
		{smsop.Fault500, "500"},
		{smsop.Fault429, "Retry-After: 1"},
		{smsop.Fault401, "credentials"},
		{smsop.FaultTimeout, "timed out"},
		{smsop.FaultGarbage, "not JSON"},
		{smsop.FaultNoID, "no message id"},
	} {
		ref := fmt.Sprintf("tmp-%d", i)
		op.FailNext(1, tc.fault)
		out := c.Send(ctx(t), []connectors.Message{sms(ref, "+33612345678", "hello")})
		err := out[0].Err
		if err == nil || !connectors.IsTemporary(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fault %d: %v, want a temporary error mentioning %q", tc.fault, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "op-token") {
			t.Errorf("the token appears in the error: %v", err)
		}
		out = c.Send(ctx(t), []connectors.Message{sms(ref, "+33612345678", "hello")})
		if out[0].Err != nil || out[0].ProviderRef == "" || out[0].ProviderRef != op.IDFor(ref) {
			t.Errorf("fault %d, retry: %+v (operator id %q)", tc.fault, out[0], op.IDFor(ref))
		}
	}
	if got := op.Accepted(); got != 6 {
		t.Errorf("operator accepted %d distinct messages, want 6", got)
	}
}

// TestPermanentFailures: a 400 and a message that cannot be mapped are
// permanent for that message only.
func TestPermanentFailures(t *testing.T) {
	op := smsop.Start(t, smsop.Options{})
	cfg := baseConfig(op)
	cfg.Token = ""
	c := newConnector(t, cfg)
	op.FailNext(1, smsop.Fault400)
	out := c.Send(ctx(t), []connectors.Message{
		sms("p1", "+33612345678", "refused by the operator"),
		sms("p2", "", "no recipient"),
		sms("p3", "+33612345678", ""),
		sms("p4", "+336\n12", "line break"),
		sms("p5", "+33612345678", "fine"),
	})
	for i, o := range out[:4] {
		if o.Err == nil || connectors.IsTemporary(o.Err) {
			t.Errorf("message %d: %v, want permanent", i, o.Err)
		}
	}
	if !strings.Contains(out[0].Err.Error(), "400") {
		t.Errorf("400 not named: %v", out[0].Err)
	}
	if out[4].Err != nil {
		t.Errorf("message 4: %v", out[4].Err)
	}
	if op.Accepted() != 1 {
		t.Errorf("operator accepted %d", op.Accepted())
	}
}

// TestTLS: an https operator is reached with its CA trusted and refused
// (temporary, naming the certificate) without.
func TestTLS(t *testing.T) {
	op := smsop.Start(t, smsop.Options{TLS: true})
	cfg := baseConfig(op)
	cfg.Token = ""
	cfg.RootCAs = op.CertPool()
	c := newConnector(t, cfg)
	if out := c.Send(ctx(t), []connectors.Message{sms("tls1", "+33612345678", "hi")}); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	cfg.RootCAs = nil
	c2 := newConnector(t, cfg)
	out := c2.Send(ctx(t), []connectors.Message{sms("tls2", "+33612345678", "hi")})
	if !connectors.IsTemporary(out[0].Err) || !strings.Contains(out[0].Err.Error(), "certificate") {
		t.Errorf("untrusted operator: %v", out[0].Err)
	}
}

// TestConfigValidation: each refused setting is named; secrets never
// appear in errors or in the printed config.
func TestConfigValidation(t *testing.T) {
	op := smsop.Start(t, smsop.Options{})
	base := baseConfig(op)
	for _, tc := range []struct {
		field string
		mod   func(*smshttp.Config)
	}{
		{"url", func(c *smshttp.Config) { c.URL = "http://api.operator.example/sms" }},
		{"url", func(c *smshttp.Config) { c.URL = "ftp://api.operator.example/sms" }},
		{"url", func(c *smshttp.Config) { c.URL = "https://user:pass@api.operator.example/sms" }},
		{"method", func(c *smshttp.Config) { c.Method = "GET" }},
		{"format", func(c *smshttp.Config) { c.Format = "xml" }},
		{"fields.ref", func(c *smshttp.Config) { delete(c.Fields, "ref") }},
		{"fields.to", func(c *smshttp.Config) { c.Fields["to"] = "" }},
		{"fields.subject", func(c *smshttp.Config) { c.Fields["subject"] = "s" }},
		{"fields.text", func(c *smshttp.Config) { c.Fields["text"] = "to" }},
		{"static.to", func(c *smshttp.Config) { c.Static = map[string]string{"to": "x"} }},
		{"auth_header", func(c *smshttp.Config) { c.AuthHeader = "Bad Header" }},
		{"token", func(c *smshttp.Config) { c.Token = "Bearer x\r\nX-Evil: 1" }},
		{"response_id_path", func(c *smshttp.Config) { c.ResponseIDPath = "messages..id" }},
		{"callback_secret", func(c *smshttp.Config) { c.CallbackSecret = "short" }},
		{"callback.statuses.DELIVRD", func(c *smshttp.Config) { c.Callback.Statuses = map[string]string{"DELIVRD": "ok"} }},
		{"timeout", func(c *smshttp.Config) { c.Timeout = connectors.Duration(time.Hour) }},
	} {
		cfg := base
		cfg.Fields = map[string]string{}
		for k, v := range base.Fields {
			cfg.Fields[k] = v
		}
		tc.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), ": "+tc.field+":") {
			t.Errorf("%s: Validate = %v", tc.field, err)
		}
		if err != nil && (strings.Contains(err.Error(), "op-token") || strings.Contains(err.Error(), callbackSecret)) {
			t.Errorf("%s: secret in error %v", tc.field, err)
		}
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	cfg := base
	cfg.SecretStatic = map[string]string{"api_secret": "secret-static-0123456789"}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		for _, secret := range []string{"op-token-0123456789ab", "cb-secret-0123456789ab", "secret-static-012345"} {
			if strings.Contains(s, secret) {
				t.Errorf("printed config shows %q: %s", secret, s)
			}
		}
	}
}

// callbackRequest builds a signed receipt request at time at.
func callbackRequest(t *testing.T, secret string, at time.Time, receipts ...smsop.Receipt) *http.Request {
	t.Helper()
	req, _, err := smsop.ReceiptRequest(context.Background(), "http://127.0.0.1/cb", []byte(secret), at, receipts...)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestCallback: a signed receipt batch is mapped onto receipts (final
// statuses only, with id, reference, reason and time); a tampered body, a
// wrong secret, a missing or malformed header, a stale or future
// timestamp, a replay of the same request, an oversized body and a
// non-POST are refused with errors that say why.
func TestCallback(t *testing.T) {
	op := smsop.Start(t, smsop.Options{})
	c := newConnector(t, baseConfig(op))
	now := time.Now()
	at := now.Add(-time.Minute).UTC().Truncate(time.Second)
	good := []smsop.Receipt{
		{ID: "op-1", Ref: "r1", Status: "DELIVRD", Timestamp: at.Format(time.RFC3339)},
		{ID: "op-2", Ref: "r2", Status: "UNDELIV", Error: "absent subscriber", Timestamp: fmt.Sprint(at.Unix())},
		{ID: "op-3", Status: "ENROUTE"},
		{Ref: "r4", Status: "REJECTD", Error: "blocked"},
	}
	got, err := c.ParseCallback(callbackRequest(t, callbackSecret, now, good...), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []connectors.Receipt{
		{Ref: "r1", ProviderRef: "op-1", Status: connectors.StatusDelivered, At: at},
		{Ref: "r2", ProviderRef: "op-2", Status: connectors.StatusFailed, Reason: "absent subscriber", At: at},
		{Ref: "r4", Status: connectors.StatusBounced, Reason: "blocked", At: now},
	}
	if len(got) != len(want) {
		t.Fatalf("receipts %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Ref != w.Ref || g.ProviderRef != w.ProviderRef || g.Status != w.Status || g.Reason != w.Reason || !g.At.Equal(w.At) {
			t.Errorf("receipt %d: %+v, want %+v", i, g, w)
		}
	}

	// Replay of the very same request.
	replay := callbackRequest(t, callbackSecret, now, good[:1]...)
	replayBody, _ := io.ReadAll(replay.Body)
	mk := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/cb", bytes.NewReader(replayBody))
		r.Header.Set(signature.Header, replay.Header.Get(signature.Header))
		return r
	}
	if _, err := c.ParseCallback(mk(), now); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if _, err := c.ParseCallback(mk(), now.Add(time.Second)); !errors.Is(err, smshttp.ErrReplay) {
		t.Errorf("replay: %v, want ErrReplay", err)
	}
	// The receipts could not be applied: forgotten, the operator's retry
	// is taken in once more.
	c.ForgetCallback(mk())
	if _, err := c.ParseCallback(mk(), now.Add(2*time.Second)); err != nil {
		t.Errorf("retry after ForgetCallback: %v", err)
	}
	if _, err := c.ParseCallback(mk(), now.Add(3*time.Second)); !errors.Is(err, smshttp.ErrReplay) {
		t.Errorf("second replay: %v, want ErrReplay", err)
	}

	tampered := callbackRequest(t, callbackSecret, now, good[0])
	tb, _ := io.ReadAll(tampered.Body)
	tb = bytes.Replace(tb, []byte("DELIVRD"), []byte("UNDELIV"), 1)
	tampered.Body = io.NopCloser(bytes.NewReader(tb))
	tampered.ContentLength = int64(len(tb))

	noHeader := callbackRequest(t, callbackSecret, now, good[0])
	noHeader.Header.Del(signature.Header)
	malformed := callbackRequest(t, callbackSecret, now, good[0])
	malformed.Header.Set(signature.Header, "sha256=deadbeef")

	big := strings.Repeat("x", smshttp.MaxCallbackBody)
	oversized := callbackRequest(t, callbackSecret, now, smsop.Receipt{ID: "op-9", Status: "DELIVRD", Error: big})
	chunked := callbackRequest(t, callbackSecret, now, smsop.Receipt{ID: "op-9", Status: "DELIVRD", Error: big})
	chunked.ContentLength = -1

	get := callbackRequest(t, callbackSecret, now, good[0])
	get.Method = http.MethodGet

	for _, tc := range []struct {
		name string
		req  *http.Request
		want error
	}{
		{"tampered body", tampered, signature.ErrMismatch},
		{"wrong secret", callbackRequest(t, "another-secret-0123456789", now, good[0]), signature.ErrMismatch},
		{"no header", noHeader, signature.ErrMissing},
		{"malformed header", malformed, signature.ErrMalformed},
		{"stale", callbackRequest(t, callbackSecret, now.Add(-6*time.Minute), good[0]), signature.ErrStale},
		{"future", callbackRequest(t, callbackSecret, now.Add(6*time.Minute), good[0]), signature.ErrStale},
		{"oversized", oversized, smshttp.ErrCallbackTooLarge},
		{"oversized, no length", chunked, smshttp.ErrCallbackTooLarge},
		{"GET", get, nil},
	} {
		_, err := c.ParseCallback(tc.req, now)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), callbackSecret) {
			t.Errorf("%s: secret in error", tc.name)
		}
	}

	// A body that does not match the mapping.
	req, _, _ := smsop.ReceiptRequest(context.Background(), "http://127.0.0.1/cb", []byte(callbackSecret), now, smsop.Receipt{Status: "DELIVRD"})
	if _, err := c.ParseCallback(req, now); !errors.Is(err, smshttp.ErrCallbackBody) {
		t.Errorf("receipt without id or ref: %v", err)
	}

	// Not configured.
	cfg := baseConfig(op)
	cfg.CallbackSecret = ""
	bare := newConnector(t, cfg)
	if _, err := bare.ParseCallback(callbackRequest(t, callbackSecret, now, good[0]), now); !errors.Is(err, smshttp.ErrCallbackNotConfigured) {
		t.Errorf("no secret: %v", err)
	}
}

// TestCallbackEndToEnd: the operator posts signed receipts to an HTTP
// endpoint that hands the request to ParseCallback, for a message sent
// through the connector; the receipt names the message's ProviderRef and
// Ref.
func TestCallbackEndToEnd(t *testing.T) {
	op := smsop.Start(t, smsop.Options{})
	cfg := baseConfig(op)
	cfg.Token = ""
	c := newConnector(t, cfg)
	out := c.Send(ctx(t), []connectors.Message{sms("e2e-1", "+33612345678", "hello")})
	if out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	var mu sync.Mutex
	var got []connectors.Receipt
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs, err := c.ParseCallback(r, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, rs...)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	code, err := op.PostReceipts(ctx(t), nil, srv.URL, []byte(callbackSecret), smsop.Receipt{ID: out[0].ProviderRef, Ref: "e2e-1", Status: "DELIVRD"})
	if err != nil || code != http.StatusNoContent {
		t.Fatalf("post: %d %v", code, err)
	}
	code, _ = op.PostReceipts(ctx(t), nil, srv.URL, []byte("not-the-secret-0123456789"), smsop.Receipt{ID: out[0].ProviderRef, Status: "UNDELIV"})
	if code != http.StatusUnauthorized {
		t.Errorf("wrongly signed receipts answered %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].ProviderRef != out[0].ProviderRef || got[0].Ref != "e2e-1" || got[0].Status != connectors.StatusDelivered {
		t.Fatalf("receipts %+v", got)
	}
}

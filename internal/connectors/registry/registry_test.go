package registry_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/registry"
)

func dkimKey(t *testing.T) string {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func raw(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	smtpPassword = "smtp-password-0123456789WXYZ"
	smsToken     = "Bearer sms-token-0123456789ABCD"
	apiSecret    = "api-secret-0123456789EFGH"
	cbSecret     = "callback-secret-0123456789IJKL"
	hookSecret   = "hook-secret-0123456789MNOP"
)

func configs(t *testing.T) map[string]json.RawMessage {
	return map[string]json.RawMessage{
		registry.TypeSMTP: raw(t, map[string]any{
			"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "acme", "password": smtpPassword,
			"from": "news@acme.test", "pool_size": 2, "timeout": "5s",
			"dkim": map[string]any{"domain": "acme.test", "selector": "s1", "private_key_pem": dkimKey(t)},
		}),
		registry.TypeSMSHTTP: raw(t, map[string]any{
			"url": "https://api.operator.example/v1/sms", "format": "json",
			"fields":        map[string]string{"to": "to", "text": "text", "ref": "client_ref"},
			"secret_static": map[string]string{"api_secret": apiSecret},
			"token":         smsToken, "response_id_path": "messages.0.id", "callback_secret": cbSecret,
			"callback": map[string]any{"id_path": "id", "status_path": "status", "statuses": map[string]string{"DELIVRD": "delivered"}},
		}),
		registry.TypeWebhook: raw(t, map[string]any{"url": "https://hooks.acme.test/relais", "secret": hookSecret, "channel": "email", "timeout": "3s"}),
	}
}

// TestOpen opens a valid configuration of every type.
func TestOpen(t *testing.T) {
	if got := strings.Join(registry.Types(), ","); got != "sms-http,smtp,webhook" {
		t.Errorf("Types() = %s", got)
	}
	for kind, cfg := range configs(t) {
		c, err := registry.Open(kind, cfg)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if c.Capabilities().MaxBatch < 1 {
			t.Errorf("%s: capabilities %+v", kind, c.Capabilities())
		}
		_, isParser := c.(registry.CallbackParser)
		if isParser != (kind == registry.TypeSMSHTTP) {
			t.Errorf("%s: CallbackParser %v", kind, isParser)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if err := registry.Validate(kind, cfg); err != nil {
			t.Errorf("%s: Validate: %v", kind, err)
		}
	}
}

// TestStrictDecoding: unknown fields (top level and nested) are named
// with the accepted ones, names must match exactly, wrong types and bad
// durations name their field, trailing data and unknown types are refused;
// every error wraps ErrConfig and shows no secret.
func TestStrictDecoding(t *testing.T) {
	for _, tc := range []struct {
		kind, raw, want string
	}{
		{"smtp", `{"host":"127.0.0.1","tls":"none","passwrd":"x"}`, "passwrd: unknown field (accepted here: bounce_mailbox, dkim, envelope_from, from, helo_name, host, password,"},
		{"smtp", `{"host":"127.0.0.1","tls":"none","dkim":{"domain":"a.test","selektor":"s"}}`, "dkim.selektor: unknown field (accepted here: domain, private_key_pem, selector)"},
		{"smtp", `{"Host":"127.0.0.1","tls":"none"}`, "Host: unknown field"},
		{"smtp", `{"host":"127.0.0.1","port":"25"}`, "port: wrong type: string given, int expected"},
		{"smtp", `{"host":"127.0.0.1","timeout":"soon"}`, `timeout: "soon" is not a duration`},
		{"smtp", `{"host":"127.0.0.1","timeout":30}`, "timeout: a string is expected"},
		{"smtp", `{"host":"127.0.0.1","tls":"none"} {"x":1}`, "unexpected data after the JSON object"},
		{"smtp", `{"host":"127.0.0.1",`, "invalid JSON"},
		{"smtp", ``, "empty"},
		{"smtp", `{"host":"relay.example.com","tls":"none","password":"` + smtpPassword + `","username":"u"}`, "loopback"},
		{"sms-http", `{"url":"https://x.example","fields":{"to":"to"},"callback":{"status_pth":"s"}}`, "callback.status_pth: unknown field"},
		{"sms-http", `{"url":"https://x.example","token":"` + smsToken + `","fields":{"to":"a","text":"b"}}`, "fields.ref: required"},
		{"webhook", `{"url":"https://x.example","secret":"` + hookSecret + `","retries":3}`, "retries: unknown field (accepted here: channel, rate_per_second, root_cas_pem, secret, timeout, url)"},
		{"webhook", `{"url":"https://x.example","secret":"` + hookSecret + `","channel":["email"]}`, "channel: wrong type"},
		{"webhook", `{"url":"https://x.example","secret":"` + hookSecret + `"}`, `channel: "": use "email" or "sms"`},
		{"carrier-pigeon", `{}`, `type: "carrier-pigeon" is not a connector type (known: sms-http, smtp, webhook)`},
	} {
		_, err := registry.Open(tc.kind, json.RawMessage(tc.raw))
		if !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s:\n got %v\nwant ...%s...", tc.kind, tc.raw, err, tc.want)
		}
		for _, s := range []string{smtpPassword, smsToken, hookSecret} {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("secret in error: %v", err)
			}
		}
		if verr := registry.Validate(tc.kind, json.RawMessage(tc.raw)); verr == nil {
			t.Errorf("%s %s: Validate accepted it", tc.kind, tc.raw)
		}
	}
}

// TestRedact: secrets are replaced by the mask and at most their last 4
// characters (none for keys), nothing else changes, and the result still
// decodes strictly.
func TestRedact(t *testing.T) {
	for kind, cfg := range configs(t) {
		out, err := registry.Redact(kind, cfg)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		s := string(out)
		for _, secret := range []string{smtpPassword, smsToken, apiSecret, cbSecret, hookSecret, "PRIVATE KEY"} {
			if strings.Contains(s, secret) || strings.Contains(s, secret[:len(secret)-4]) {
				t.Errorf("%s: redacted config shows %q: %s", kind, secret, s)
			}
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		switch kind {
		case registry.TypeSMTP:
			if m["password"] != "********WXYZ" || m["host"] != "127.0.0.1" || m["username"] != "acme" {
				t.Errorf("smtp: %s", s)
			}
			if d := m["dkim"].(map[string]any); d["private_key_pem"] != "********" || d["selector"] != "s1" {
				t.Errorf("smtp dkim: %v", d)
			}
		case registry.TypeSMSHTTP:
			if m["token"] != "********ABCD" || m["callback_secret"] != "********IJKL" ||
				m["secret_static"].(map[string]any)["api_secret"] != "********EFGH" || m["url"] != "https://api.operator.example/v1/sms" {
				t.Errorf("sms-http: %s", s)
			}
		case registry.TypeWebhook:
			if m["secret"] != "********MNOP" || m["timeout"] != "3s" {
				t.Errorf("webhook: %s", s)
			}
		}
		if !registry.IsMasked("********WXYZ") || registry.IsMasked(smtpPassword) {
			t.Error("IsMasked")
		}
		again, err := registry.Redact(kind, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("%s: redacting twice: %v\n%s\n%s", kind, err, again, out)
		}
	}
	short, err := registry.Redact("webhook", json.RawMessage(`{"url":"https://x.example","secret":"shortsecret","channel":"sms"}`))
	if err != nil || !strings.Contains(string(short), `"secret":"********"`) {
		t.Errorf("short secret: %s %v", short, err)
	}
	if _, err := registry.Redact("smtp", json.RawMessage(`{"host":"x","pasword":"`+smtpPassword+`"}`)); err == nil || strings.Contains(err.Error(), smtpPassword) {
		t.Errorf("Redact of an unknown field: %v", err)
	}
}

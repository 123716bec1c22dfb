package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

// TestTransactionalEmailEndToEnd: a tenant, an SMTP connector to a real
// SMTP server (STARTTLS with a private CA, AUTH), an API client; `relais
// serve` accepts POST /api/v1/messages twice with one Idempotency-Key and
// the server receives exactly one message, traced as sent.
func TestTransactionalEmailEndToEnd(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: "starttls", Username: "relais", Password: "sink-password-123"})
	dir := t.TempDir()
	env := cleanEnv()
	if r := relais(t, dir, env, "", "tenant", "create", "--name", "Acme", "--slug", "acme"); r.code != 0 {
		t.Fatalf("tenant: %+v", r)
	}
	cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": sink.Port(), "tls": "starttls", "username": "relais",
		"password": "sink-password-123", "from": "news@acme.test", "root_cas_pem": string(sink.CertPEM())})
	cfgFile := filepath.Join(dir, "smtp.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := relais(t, dir, env, "", "connector", "add", "--tenant", "acme", "--name", "mail", "--type", "smtp", "--config-file", cfgFile); r.code != 0 {
		t.Fatalf("connector add: %+v", r)
	}
	r := relais(t, dir, env, "", "connector", "list", "--tenant", "acme", "--json")
	if r.code != 0 || strings.Contains(r.stdout, "sink-password-123") || !strings.Contains(r.stdout, `"mail"`) {
		t.Fatalf("connector list shows the secret or lacks the connector: %s", r.stdout)
	}
	// A plaintext relay that is not on loopback is refused.
	bad, _ := json.Marshal(map[string]any{"host": "smtp.example.net", "port": 25, "tls": "none"})
	_ = os.WriteFile(cfgFile, bad, 0o600)
	if r := relais(t, dir, env, "", "connector", "add", "--tenant", "acme", "--name", "plain", "--type", "smtp", "--config-file", cfgFile); r.code == 0 || !strings.Contains(r.stderr, "loopback") {
		t.Fatalf("plaintext to a remote relay: %+v", r)
	}
	r = relais(t, dir, env, "", "client", "create", "--tenant", "acme", "--name", "app", "--role", "editor", "--json")
	if r.code != 0 {
		t.Fatalf("client: %+v", r)
	}
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	_ = json.Unmarshal([]byte(r.stdout), &cl)

	https := freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	base := "https://" + https
	waitHealthy(t, srv, base)
	client := insecureClient()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cl.ID, cl.Secret)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	if tok.AccessToken == "" {
		t.Fatalf("no token: %d", res.StatusCode)
	}
	send := func() (int, map[string]any) {
		body := `{"channel":"email","to":"jane@example.test","subject":"Your order","text":"Thanks for your order.","html":"<p>Thanks</p>"}`
		req, _ := http.NewRequest("POST", base+"/api/v1/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Idempotency-Key", "order-1001")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	code, first := send()
	if code != 202 {
		t.Fatalf("send: %d %v", code, first)
	}
	if code, again := send(); code != 202 || again["id"] != first["id"] {
		t.Fatalf("repeat: %d %v", code, again)
	}
	if err := sink.WaitFor(1, 15*time.Second); err != nil {
		t.Fatalf("the SMTP server got nothing: %v\n%s", err, srv.stderr)
	}
	time.Sleep(500 * time.Millisecond) // a second message would have arrived by now
	if sink.Count() != 1 || len(sink.Duplicates()) != 0 {
		t.Fatalf("the SMTP server got %d messages", sink.Count())
	}
	m := sink.Messages()[0]
	if m.To[0] != "jane@example.test" || !m.TLS || m.User != "relais" || !strings.Contains(m.MessageID, first["id"].(string)) {
		t.Fatalf("received %+v", m)
	}
	// The message is traced as sent.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+"/api/v1/messages/"+first["id"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), `"state":"sent"`) {
			if !strings.Contains(string(b), `"kind":"sent"`) || !strings.Contains(string(b), `"kind":"attempt"`) {
				t.Fatalf("events: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message not traced as sent: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Package webhook is the connector that hands messages to the tenant's own
// HTTPS endpoint: one POST per message of a JSON Payload, signed.
//
// Each request carries:
//
//	Content-Type: application/json
//	Idempotency-Key: <Message.Ref>
//	X-Relais-Timestamp: <unix seconds>
//	X-Relais-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// The receiver checks the signature with Verify (or any HMAC-SHA256
// implementation, see package signature), refuses timestamps more than 5
// minutes away from its clock, and deduplicates on Idempotency-Key:
// Capabilities.Idempotent is true, so the router may send a message again
// with the same key after a hand-off in doubt.
//
// Outcomes are classified as in package smshttp: 2xx accepted; 429, 5xx,
// 408, 401/403 (credentials), timeouts and network errors temporary; other
// 4xx permanent; redirects not followed. ProviderRef is the "id" of a JSON
// object answer when there is one, else the Ref. The URL must be https
// (http only to a loopback host, for tests).
package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/signature"
)

// Defaults and limits.
const (
	DefaultTimeout = 10 * time.Second
	// MaxBatch is the largest batch Send takes.
	MaxBatch = 100
	// concurrency is the number of requests one Send has in flight.
	concurrency = 8
)

// Config configures a webhook connector. Secret is a secret (DATA-3).
type Config struct {
	// URL of the receiver: https, or http to a loopback host (tests).
	URL string `json:"url"`
	// Secret is the HMAC-SHA256 signing key shared with the receiver, at
	// least 16 characters.
	Secret string `json:"secret"`
	// Channel is the one channel the webhook takes: "email" or "sms"
	// (required; the router routes one channel per connector).
	Channel string `json:"channel"`
	// Timeout bounds one request (default 10s).
	Timeout connectors.Duration `json:"timeout,omitempty"`
	// RatePerSecond is the receiver's limit, reported in Capabilities for
	// the router to enforce (0: none known).
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// RootCAsPEM is a PEM bundle of the CAs trusted for the receiver's
	// certificate; empty means the system's roots.
	RootCAsPEM string `json:"root_cas_pem,omitempty"`
	// RootCAs, when set, is used instead of RootCAsPEM (tests).
	RootCAs *x509.CertPool `json:"-"`
}

// Payload is the JSON document posted for each message.
type Payload struct {
	// ID is Message.Ref, also sent as Idempotency-Key.
	ID string `json:"id"`
	// TenantID, Channel, To, From, ReplyTo, Subject, Text, HTML and
	// Headers are those of the message (Subject, HTML and Headers for
	// email only).
	TenantID string            `json:"tenant_id,omitempty"`
	Channel  string            `json:"channel"`
	To       string            `json:"to"`
	From     string            `json:"from,omitempty"`
	ReplyTo  string            `json:"reply_to,omitempty"`
	Subject  string            `json:"subject,omitempty"`
	Text     string            `json:"text,omitempty"`
	HTML     string            `json:"html,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	// Attempt counts hand-offs of this message, from 1.
	Attempt int `json:"attempt"`
}

type compiled struct {
	cfg     Config
	url     *url.URL
	timeout time.Duration
	roots   *x509.CertPool
}

func (c Config) compile() (*compiled, error) {
	out := &compiled{cfg: c}
	var err error
	if out.url, err = netx.CheckURL("url", c.URL); err != nil {
		return nil, err
	}
	if len(c.Secret) < signature.MinSecretLen {
		return nil, connectors.ConfigError("secret", "at least %d characters are required", signature.MinSecretLen)
	}
	if c.Channel != connectors.ChannelEmail && c.Channel != connectors.ChannelSMS {
		return nil, connectors.ConfigError("channel", "%q: use %q or %q", c.Channel, connectors.ChannelEmail, connectors.ChannelSMS)
	}
	if out.timeout, err = netx.CheckTimeout("timeout", c.Timeout, DefaultTimeout); err != nil {
		return nil, err
	}
	if err := netx.CheckRate("rate_per_second", c.RatePerSecond); err != nil {
		return nil, err
	}
	if out.roots, err = netx.Roots("root_cas_pem", c.RootCAs, c.RootCAsPEM); err != nil {
		return nil, err
	}
	return out, nil
}

// Validate reports the first setting that cannot work, as an error
// wrapping connectors.ErrConfig that names it; it never quotes the secret.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// Redacted returns a copy of c with the secret masked (DATA-3).
func (c Config) Redacted() Config {
	c.Secret = netx.MaskSecret(c.Secret)
	return c
}

// String prints the redacted configuration as JSON.
func (c Config) String() string {
	b, err := json.Marshal(c.Redacted()) // #nosec G117 -- the Redacted copy: the secret is masked
	if err != nil {
		return "webhook.Config{?}"
	}
	return string(b)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the redacted configuration.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Connector posts messages to one webhook. It is safe for concurrent use.
type Connector struct {
	cfg    Config
	url    *url.URL
	what   string
	secret []byte
	client *http.Client
	tr     *http.Transport
	now    func() time.Time
}

var _ connectors.Connector = (*Connector)(nil)

// New validates cfg and returns a connector.
func New(cfg Config) (*Connector, error) {
	cc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	client, tr := netx.NewHTTPClient(cc.timeout, cc.roots)
	return &Connector{
		cfg:    cc.cfg,
		url:    cc.url,
		what:   "POST " + netx.SafeURL(cc.url),
		secret: []byte(cc.cfg.Secret),
		client: client,
		tr:     tr,
		now:    time.Now,
	}, nil
}

// Capabilities reports the configured channel, idempotent (on
// Idempotency-Key), batches of up to MaxBatch and the configured rate.
func (c *Connector) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		Channels:      []string{c.cfg.Channel},
		Idempotent:    true,
		MaxBatch:      MaxBatch,
		RatePerSecond: c.cfg.RatePerSecond,
	}
}

// Close drops the idle connections to the receiver.
func (c *Connector) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// Send posts the messages of the batch, a few at a time, and returns one
// outcome per message, in order.
func (c *Connector) Send(ctx context.Context, batch []connectors.Message) []connectors.Outcome {
	out := make([]connectors.Outcome, len(batch))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(concurrency, len(batch)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batch) {
					return
				}
				out[i] = c.sendOne(ctx, &batch[i])
			}
		})
	}
	wg.Wait()
	return out
}

func (c *Connector) sendOne(ctx context.Context, m *connectors.Message) connectors.Outcome {
	o := connectors.Outcome{Ref: m.Ref}
	if m.Ref == "" || len(m.Ref) > 255 || !visibleASCII(m.Ref) {
		o.Err = connectors.Permanent(fmt.Errorf("webhook: message refused: Ref must be 1 to 255 visible ASCII characters (it is the Idempotency-Key)"))
		return o
	}
	if m.Channel != c.cfg.Channel {
		o.Err = connectors.Permanent(fmt.Errorf("webhook: message refused: channel %q is not handled by this webhook (%s)", m.Channel, c.cfg.Channel))
		return o
	}
	body, err := Marshal(m)
	if err != nil {
		o.Err = connectors.Permanent(fmt.Errorf("webhook: encoding the message: %w", err))
		return o
	}
	if err := ctx.Err(); err != nil {
		o.Err = connectors.Temporary(fmt.Errorf("webhook: not sent: %w", err))
		return o
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.String(), bytes.NewReader(body))
	if err != nil {
		o.Err = connectors.Permanent(fmt.Errorf("webhook: %s: %w", c.what, err))
		return o
	}
	now := c.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "relais-webhook/1")
	req.Header.Set("Idempotency-Key", m.Ref)
	req.Header.Set(signature.TimestampHeader, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(signature.Header, signature.Sign(c.secret, now, body))
	resp, err := c.client.Do(req)
	if err != nil {
		o.Err = netx.TransportError("webhook: "+c.what, err)
		return o
	}
	answer, err := netx.ReadBody(resp)
	if err != nil {
		o.Err = connectors.Temporary(fmt.Errorf("webhook: %s: reading the answer: %w", c.what, err))
		return o
	}
	if err := netx.ClassifyStatus("webhook: "+c.what, resp, answer); err != nil {
		o.Err = err
		return o
	}
	o.ProviderRef = m.Ref
	var id struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(answer, &id) == nil {
		switch v := id.ID.(type) {
		case string:
			if v != "" && len(v) <= 256 {
				o.ProviderRef = v
			}
		case float64:
			o.ProviderRef = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return o
}

// Marshal returns the JSON body posted for m: a Payload, with <, > and &
// left as they are.
func Marshal(m *connectors.Message) ([]byte, error) {
	p := Payload{
		ID: m.Ref, TenantID: m.TenantID, Channel: m.Channel, To: m.To, From: m.From,
		ReplyTo: m.ReplyTo, Subject: m.Subject, Text: m.Text, HTML: m.HTML,
		Headers: m.Headers, Attempt: m.Attempt,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Verify checks the signature of a webhook request as a receiver should:
// body is the request body as received, secret the shared key, now the
// receiver's clock. It returns nil when the X-Relais-Signature header
// matches and was made at most 5 minutes from now; its errors wrap those
// of package signature. The receiver must still deduplicate on
// Idempotency-Key.
func Verify(secret []byte, r *http.Request, body []byte, now time.Time) error {
	_, err := signature.Verify(secret, r.Header.Get(signature.Header), body, now, signature.MaxAge)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

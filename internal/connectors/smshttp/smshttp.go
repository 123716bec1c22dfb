// Package smshttp is the SMS connector for operators with an HTTP API: one
// POST per message, with a request mapping set in the configuration (JSON
// or form body, field names, fixed fields, a credential header), the
// operator's message id read from its answer, and delivery receipts taken
// in by ParseCallback.
//
//	c, err := smshttp.New(cfg) // see Config for an example
//	outcomes := c.Send(ctx, batch)
//	// in the callback handler (POST /api/v1/callbacks/{connector}):
//	receipts, err := c.ParseCallback(r, time.Now())
//
// # Idempotence
//
// Every request carries Message.Ref in the mapped "ref" field (the
// operator's client reference). Capabilities.Idempotent is true: the router
// may send a message again with the same Ref when a hand-off is in doubt
// (a timeout, an unreadable answer), and the operator MUST deduplicate on
// that reference for this to be safe. Configure this connector only for an
// operator that does (most offer it as "client_ref", "reference" or an
// idempotency key); otherwise a retry can send the SMS twice.
//
// # Outcomes
//
// A 2xx answer is accepted; ProviderRef is the id at Config.ResponseIDPath.
// 429, 503 (with their Retry-After), other 5xx, 408, timeouts and network
// errors are connectors.Temporary. 401, 403 and 407 are temporary too: they
// mean the connector's credentials are wrong, which should not fail a whole
// campaign permanently. Other 4xx are connectors.Permanent. A 2xx whose body
// does not hold a message id is temporary with a clear error: the router
// retries with the same Ref, which the operator deduplicates. Redirects
// are not followed.
//
// # Receipts
//
// ParseCallback checks the X-Relais-Signature header (HMAC-SHA256 with
// Config.CallbackSecret over "t.body", see package signature), refuses
// signatures older than 5 minutes and callbacks already seen (by this
// process: receipts should be applied idempotently anyway when several
// nodes take them in), bounds the body to 64 KiB, and maps the operator's
// JSON onto connectors.Receipts with Config.Callback.
package smshttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/signature"
)

// Errors of ParseCallback, wrapped with details; signature failures wrap
// the errors of package signature (ErrMissing, ErrMalformed, ErrStale,
// ErrMismatch).
var (
	// ErrCallbackNotConfigured: the connector has no callback_secret or
	// no callback mapping.
	ErrCallbackNotConfigured = errors.New("smshttp: delivery receipts are not configured (callback_secret and callback mapping)")
	// ErrCallbackTooLarge: the body exceeds MaxCallbackBody.
	ErrCallbackTooLarge = errors.New("smshttp: callback body too large")
	// ErrReplay: the same signed callback was already taken in.
	ErrReplay = errors.New("smshttp: callback replayed")
	// ErrCallbackBody: the body does not match the callback mapping.
	ErrCallbackBody = errors.New("smshttp: callback body does not match the mapping")
)

var errTrailing = errors.New("data after the JSON value")

// maxReplayEntries bounds the replay cache.
const maxReplayEntries = 200_000

// Connector sends SMS through one operator API. It is safe for concurrent
// use.
type Connector struct {
	cfg     Config
	url     *url.URL
	what    string // "POST https://host/path", for errors
	idPath  []string
	cb      compiledCallback
	client  *http.Client
	tr      *http.Transport
	secret  []byte
	replays replayCache
}

var _ connectors.Connector = (*Connector)(nil)

// New validates cfg and returns a connector.
func New(cfg Config) (*Connector, error) {
	cc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	client, tr := netx.NewHTTPClient(cc.timeout, cc.roots)
	c := &Connector{
		cfg:    cc.cfg,
		url:    cc.url,
		what:   cc.cfg.Method + " " + netx.SafeURL(cc.url),
		idPath: cc.idPath,
		cb:     cc.cb,
		client: client,
		tr:     tr,
	}
	if cc.cfg.CallbackSecret != "" {
		c.secret = []byte(cc.cfg.CallbackSecret)
	}
	c.replays.m = make(map[[32]byte]time.Time)
	return c, nil
}

// Capabilities reports SMS, idempotent (on the client reference), one
// message per request, and the configured rate.
func (c *Connector) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		Channels:      []string{connectors.ChannelSMS},
		Idempotent:    true,
		MaxBatch:      1,
		RatePerSecond: c.cfg.RatePerSecond,
	}
}

// Close drops the idle connections to the operator.
func (c *Connector) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// Send posts each message of the batch in turn (Capabilities.MaxBatch is
// 1) and returns one outcome per message, in order.
func (c *Connector) Send(ctx context.Context, batch []connectors.Message) []connectors.Outcome {
	out := make([]connectors.Outcome, len(batch))
	for i := range batch {
		out[i] = c.sendOne(ctx, &batch[i])
	}
	return out
}

func (c *Connector) sendOne(ctx context.Context, m *connectors.Message) connectors.Outcome {
	o := connectors.Outcome{Ref: m.Ref}
	body, contentType, err := c.buildRequest(m)
	if err != nil {
		o.Err = err
		return o
	}
	if err := ctx.Err(); err != nil {
		o.Err = connectors.Temporary(fmt.Errorf("smshttp: not sent: %w", err))
		return o
	}
	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, c.url.String(), bytes.NewReader(body))
	if err != nil {
		o.Err = connectors.Permanent(fmt.Errorf("smshttp: %s: %w", c.what, err))
		return o
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "relais-smshttp/1")
	if c.cfg.Token != "" {
		req.Header.Set(c.cfg.AuthHeader, c.cfg.Token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		o.Err = netx.TransportError("smshttp: "+c.what, err)
		return o
	}
	answer, err := netx.ReadBody(resp)
	if err != nil {
		o.Err = connectors.Temporary(fmt.Errorf("smshttp: %s: reading the answer: %w", c.what, err))
		return o
	}
	if err := netx.ClassifyStatus("smshttp: "+c.what, resp, answer); err != nil {
		o.Err = err
		return o
	}
	if c.idPath == nil {
		return o
	}
	v, err := decodeJSON(answer)
	if err != nil {
		o.Err = connectors.Temporary(fmt.Errorf("smshttp: %s: %s but the answer is not JSON (%v): %q; retry with the same ref", c.what, resp.Status, err, netx.Snippet(answer)))
		return o
	}
	id, ok := lookupString(v, c.idPath)
	if !ok || id == "" {
		o.Err = connectors.Temporary(fmt.Errorf("smshttp: %s: %s but the answer has no message id at %q: %q; retry with the same ref", c.what, resp.Status, c.cfg.ResponseIDPath, netx.Snippet(answer)))
		return o
	}
	o.ProviderRef = id
	return o
}

// buildRequest maps m onto the operator's request body. Its errors are
// Permanent: the message itself cannot be sent.
func (c *Connector) buildRequest(m *connectors.Message) ([]byte, string, error) {
	bad := func(format string, args ...any) ([]byte, string, error) {
		return nil, "", connectors.Permanent(fmt.Errorf("smshttp: message refused: "+format, args...))
	}
	if m.Ref == "" || len(m.Ref) > 128 || !printable(m.Ref) {
		return bad("Ref must be 1 to 128 printable characters")
	}
	to := strings.TrimSpace(m.To)
	if to == "" || len(to) > 64 || !printable(to) {
		return bad("To must be 1 to 64 printable characters")
	}
	if m.Text == "" {
		return bad("empty text")
	}
	if !utf8.ValidString(m.Text) || len(m.Text) > 4096 {
		return bad("text must be valid UTF-8 of at most 4096 bytes")
	}
	from := m.From
	if from == "" {
		from = c.cfg.From
	}
	if from != "" && (len(from) > 64 || !printable(from)) {
		return bad("From must be at most 64 printable characters")
	}
	values := make(map[string]string, 4+len(c.cfg.Static)+len(c.cfg.SecretStatic))
	for k, v := range c.cfg.Static {
		values[k] = v
	}
	for k, v := range c.cfg.SecretStatic {
		values[k] = v
	}
	values[c.cfg.Fields[FieldTo]] = to
	values[c.cfg.Fields[FieldText]] = m.Text
	values[c.cfg.Fields[FieldRef]] = m.Ref
	if name := c.cfg.Fields[FieldFrom]; name != "" && from != "" {
		values[name] = from
	}
	if c.cfg.Format == FormatForm {
		form := url.Values{}
		for k, v := range values {
			form.Set(k, v)
		}
		return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
	}
	root := map[string]any{}
	for k, v := range values {
		setPath(root, k, v)
	}
	b, err := jsonMarshal(root)
	if err != nil {
		return nil, "", connectors.Permanent(fmt.Errorf("smshttp: encoding the request: %w", err))
	}
	return b, "application/json", nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// ParseCallback authenticates and decodes a delivery receipt request from
// the operator: POST, a body of at most 64 KiB, a valid X-Relais-Signature
// made with Config.CallbackSecret at most 5 minutes before now, not seen
// before. It returns the receipts whose status maps onto delivered, failed
// or bounced (others are skipped). Errors say which check failed and never
// contain the secret; the caller answers 4xx and applies nothing, except
// for ErrReplay, a request already taken in, which it may acknowledge
// (2xx) without applying it again. When the receipts of an accepted
// request cannot be applied (the store is down), the caller calls
// ForgetCallback before answering 5xx, so that the operator's retry of the
// same request is accepted.
func (c *Connector) ParseCallback(r *http.Request, now time.Time) ([]connectors.Receipt, error) {
	if c.secret == nil || !c.cb.configured() {
		return nil, ErrCallbackNotConfigured
	}
	if r.Method != http.MethodPost {
		return nil, fmt.Errorf("smshttp: callback method %s, POST expected", r.Method)
	}
	if r.ContentLength > MaxCallbackBody {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCallbackTooLarge, r.ContentLength, MaxCallbackBody)
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxCallbackBody+1))
	if err != nil {
		return nil, fmt.Errorf("smshttp: reading the callback: %w", err)
	}
	if len(body) > MaxCallbackBody {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrCallbackTooLarge, MaxCallbackBody)
	}
	header := r.Header.Get(signature.Header)
	signedAt, err := signature.Verify(c.secret, header, body, now, signature.MaxAge)
	if err != nil {
		return nil, fmt.Errorf("smshttp: callback refused: %w", err)
	}
	if c.replays.seen(sha256.Sum256([]byte(header)), signedAt.Add(signature.MaxAge+time.Minute), now) {
		return nil, fmt.Errorf("%w: this signature (t=%d) was already taken in", ErrReplay, signedAt.Unix())
	}
	return c.decodeReceipts(body, now)
}

// ForgetCallback removes the signature of r from the replay cache (see
// ParseCallback).
func (c *Connector) ForgetCallback(r *http.Request) {
	c.replays.forget(sha256.Sum256([]byte(r.Header.Get(signature.Header))))
}

func (c *Connector) decodeReceipts(body []byte, now time.Time) ([]connectors.Receipt, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrCallbackBody, err)
	}
	var items []any
	switch {
	case c.cb.items != nil:
		x, ok := lookup(v, c.cb.items)
		if items, ok = x.([]any); !ok {
			return nil, fmt.Errorf("%w: no array at %q", ErrCallbackBody, c.cfg.Callback.ItemsPath)
		}
	default:
		if a, ok := v.([]any); ok {
			items = a
		} else {
			items = []any{v}
		}
	}
	if len(items) > MaxReceipts {
		return nil, fmt.Errorf("%w: %d receipts, at most %d", ErrCallbackBody, len(items), MaxReceipts)
	}
	out := make([]connectors.Receipt, 0, len(items))
	for i, item := range items {
		status, ok := lookupString(item, c.cb.status)
		if !ok {
			return nil, fmt.Errorf("%w: receipt %d has no status at %q", ErrCallbackBody, i, c.cfg.Callback.StatusPath)
		}
		mapped, ok := c.cb.statuses[status]
		if !ok {
			continue // an intermediate state
		}
		rc := connectors.Receipt{Status: mapped, At: now}
		rc.ProviderRef, _ = lookupString(item, c.cb.id)
		rc.Ref, _ = lookupString(item, c.cb.ref)
		if rc.ProviderRef == "" && rc.Ref == "" {
			return nil, fmt.Errorf("%w: receipt %d has neither an id nor a reference", ErrCallbackBody, i)
		}
		if len(rc.ProviderRef) > 256 || len(rc.Ref) > 256 {
			return nil, fmt.Errorf("%w: receipt %d: id or reference longer than 256 characters", ErrCallbackBody, i)
		}
		if reason, ok := lookupString(item, c.cb.reason); ok {
			rc.Reason = netx.Snippet([]byte(reason))
		}
		if ts, ok := lookupString(item, c.cb.at); ok && ts != "" {
			at, err := parseTime(ts)
			if err != nil {
				return nil, fmt.Errorf("%w: receipt %d: time %q: %v", ErrCallbackBody, i, netx.Snippet([]byte(ts)), err)
			}
			rc.At = at
		}
		out = append(out, rc)
	}
	return out, nil
}

// parseTime reads RFC 3339 or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("neither RFC 3339 nor Unix seconds")
	}
	return t, nil
}

// replayCache remembers the signatures of accepted callbacks until they
// could no longer pass the timestamp check.
type replayCache struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time // signature hash -> forget after
}

// forget removes key.
func (rc *replayCache) forget(key [32]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.m, key)
}

// seen records key until expires and reports whether it was already
// there. When the cache is full of live entries it records nothing (the
// timestamp window still bounds replays).
func (rc *replayCache) seen(key [32]byte, expires, now time.Time) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if exp, ok := rc.m[key]; ok && now.Before(exp) {
		return true
	}
	if len(rc.m) >= maxReplayEntries {
		for k, exp := range rc.m {
			if !now.Before(exp) {
				delete(rc.m, k)
			}
		}
		if len(rc.m) >= maxReplayEntries {
			return false
		}
	}
	rc.m[key] = expires
	return false
}

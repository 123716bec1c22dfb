// Package smsop is a fake SMS operator for tests: an httptest server that
// behaves like an operator's HTTP API. It takes JSON or form requests at
// URL(), answers {"messages":[{"id":"..."}]}, deduplicates on the client
// reference like a real operator (the same reference gets the same id and
// is sent once), records every request, can be told to misbehave for the
// next calls (500, 429, 400, 401, garbage, an answer without id, a timeout
// after accepting), and posts signed delivery receipts back to a callback
// URL.
//
//	op := smsop.Start(t, smsop.Options{Token: "t0k3n"})
//	cfg := smshttp.Config{URL: op.URL(), Fields: map[string]string{"to": "to", "text": "text", "ref": "client_ref"}, ...}
//	op.FailNext(2, smsop.Fault500)
//	...
//	op.PostReceipts(ctx, nil, callbackURL, secret, smsop.Receipt{ID: id, Status: "DELIVRD"})
//
// An Operator has no package state; its methods are safe for concurrent use.
package smsop

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors/signature"
)

// Fault is a programmed misbehaviour.
type Fault int

// Faults.
const (
	// Fault500 answers 500 without accepting the message.
	Fault500 Fault = iota + 1
	// Fault429 answers 429 with Retry-After: 1, without accepting.
	Fault429
	// Fault400 answers 400 (a request the operator refuses).
	Fault400
	// Fault401 answers 401 (bad credentials).
	Fault401
	// FaultGarbage accepts the message, then answers 200 with a body that
	// is not JSON.
	FaultGarbage
	// FaultNoID accepts the message, then answers 200 with JSON that has
	// no message id.
	FaultNoID
	// FaultTimeout accepts the message, then waits (SetTimeoutDelay,
	// default 2s) before answering: the client gives up first, and the
	// hand-off is in doubt although the operator has the message.
	FaultTimeout
)

// Options configures an Operator.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer <Token>".
	Token string
	// ToField, TextField and RefField name the request fields holding the
	// recipient, the text and the client reference (defaults "to",
	// "text", "client_ref"); nested JSON fields are named with dots.
	ToField, TextField, RefField string
	// TLS serves https with httptest's certificate (see CertPool).
	TLS bool
}

// Request is one request received.
type Request struct {
	Method      string
	ContentType string
	Header      http.Header
	Body        []byte
	// Fields are the body's fields, nested JSON objects flattened with
	// dots ("message.to").
	Fields map[string]string
	At     time.Time
}

// Message is one message the operator accepted (once per reference).
type Message struct {
	ID, Ref, To, Text string
	Fields            map[string]string
}

// Receipt is a delivery receipt the operator posts back.
type Receipt struct {
	// ID is the operator's message id; Ref the client reference; Status
	// the operator's status word (DELIVRD, UNDELIV...); Error a reason;
	// Timestamp RFC 3339 or Unix seconds.
	ID        string `json:"message_id,omitempty"`
	Ref       string `json:"client_ref,omitempty"`
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
}

// Operator is a running fake operator.
type Operator struct {
	opts   Options
	server *httptest.Server

	mu       sync.Mutex
	requests []Request
	byRef    map[string]*Message
	order    []*Message
	faults   []Fault
	delay    time.Duration
	seq      int
}

// Start starts an operator for the calling test and closes it when the
// test ends.
func Start(t testing.TB, opts Options) *Operator {
	t.Helper()
	if opts.ToField == "" {
		opts.ToField = "to"
	}
	if opts.TextField == "" {
		opts.TextField = "text"
	}
	if opts.RefField == "" {
		opts.RefField = "client_ref"
	}
	o := &Operator{opts: opts, byRef: make(map[string]*Message), delay: 2 * time.Second}
	h := http.NewServeMux()
	h.HandleFunc("/v1/sms", o.handle)
	o.server = httptest.NewUnstartedServer(h)
	o.server.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in tests
	if opts.TLS {
		o.server.StartTLS()
	} else {
		o.server.Start()
	}
	t.Cleanup(o.server.Close)
	return o
}

// URL is the send endpoint.
func (o *Operator) URL() string { return o.server.URL + "/v1/sms" }

// CertPool trusts the server's certificate (Options.TLS).
func (o *Operator) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	if c := o.server.Certificate(); c != nil {
		p.AddCert(c)
	}
	return p
}

// FailNext makes the next n calls misbehave with f (after those already
// programmed).
func (o *Operator) FailNext(n int, f Fault) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for range n {
		o.faults = append(o.faults, f)
	}
}

// SetTimeoutDelay sets how long FaultTimeout waits before answering.
func (o *Operator) SetTimeoutDelay(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delay = d
}

// Requests returns every request received, in order.
func (o *Operator) Requests() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.requests...)
}

// Messages returns the accepted messages, one per client reference, in
// order of first acceptance.
func (o *Operator) Messages() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Message, len(o.order))
	for i, m := range o.order {
		out[i] = *m
	}
	return out
}

// Accepted returns the number of distinct messages accepted.
func (o *Operator) Accepted() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.order)
}

// IDFor returns the operator id given to a client reference ("" if none).
func (o *Operator) IDFor(ref string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m := o.byRef[ref]; m != nil {
		return m.ID
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (o *Operator) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unreadable body"})
		return
	}
	req := Request{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Header: r.Header.Clone(), Body: body, At: time.Now()}
	fields, perr := parseFields(req.ContentType, body)
	req.Fields = fields
	o.mu.Lock()
	o.requests = append(o.requests, req)
	var fault Fault
	if len(o.faults) > 0 {
		fault, o.faults = o.faults[0], o.faults[1:]
	}
	delay := o.delay
	o.mu.Unlock()

	switch {
	case r.Method != http.MethodPost:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST only"})
		return
	case o.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+o.opts.Token:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
		return
	case fault == Fault401:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid credentials"})
		return
	case fault == Fault500:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	case fault == Fault429:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow down"})
		return
	case fault == Fault400:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid destination"})
		return
	case perr != nil:
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": perr.Error()})
		return
	}
	ref, to, text := fields[o.opts.RefField], fields[o.opts.ToField], fields[o.opts.TextField]
	if ref == "" || to == "" || text == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%s, %s and %s are required", o.opts.ToField, o.opts.TextField, o.opts.RefField)})
		return
	}
	o.mu.Lock()
	m := o.byRef[ref]
	if m == nil {
		o.seq++
		m = &Message{ID: "op-" + strconv.Itoa(1000000+o.seq), Ref: ref, To: to, Text: text, Fields: fields}
		o.byRef[ref] = m
		o.order = append(o.order, m)
	}
	id := m.ID
	o.mu.Unlock()

	switch fault {
	case FaultGarbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<html><body>Gateway OK</body></html>")
		return
	case FaultNoID:
		writeJSON(w, http.StatusOK, map[string]any{"messages": []any{}})
		return
	case FaultTimeout:
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": []map[string]string{{"id": id, "status": "accepted"}}})
}

// parseFields reads a JSON or form body into flat fields.
func parseFields(contentType string, body []byte) (map[string]string, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	out := map[string]string{}
	switch mt {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			return out, fmt.Errorf("invalid JSON: %v", err)
		}
		flatten("", v, out)
	case "application/x-www-form-urlencoded":
		r, err := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if err != nil {
			return out, err
		}
		r.Header.Set("Content-Type", mt)
		if err := r.ParseForm(); err != nil {
			return out, fmt.Errorf("invalid form: %v", err)
		}
		for k, v := range r.PostForm {
			out[k] = strings.Join(v, ",")
		}
	default:
		return out, fmt.Errorf("unsupported content type %q", contentType)
	}
	return out, nil
}

func flatten(prefix string, v map[string]any, out map[string]string) {
	for k, x := range v {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch y := x.(type) {
		case map[string]any:
			flatten(name, y, out)
		case string:
			out[name] = y
		default:
			out[name] = fmt.Sprint(y)
		}
	}
}

// ReceiptRequest builds a delivery receipt request to url with body
// {"receipts":[...]} signed with secret at time at (X-Relais-Signature).
// It returns the request and its body, so that tests can tamper with them.
func ReceiptRequest(ctx context.Context, url string, secret []byte, at time.Time, receipts ...Receipt) (*http.Request, []byte, error) {
	body, err := json.Marshal(map[string]any{"receipts": receipts})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signature.Header, signature.Sign(secret, at, body))
	return req, body, nil
}

// PostReceipts posts receipts signed now to a callback URL with client
// (nil: a plain client with a 10s timeout) and returns the answer's status
// code.
func (o *Operator) PostReceipts(ctx context.Context, client *http.Client, url string, secret []byte, receipts ...Receipt) (int, error) {
	req, _, err := ReceiptRequest(ctx, url, secret, time.Now(), receipts...)
	if err != nil {
		return 0, err
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("smsop: posting receipts: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// LastFields returns a copy of the fields of the last request (nil if
// none).
func (o *Operator) LastFields() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.requests) == 0 {
		return nil
	}
	return maps.Clone(o.requests[len(o.requests)-1].Fields)
}

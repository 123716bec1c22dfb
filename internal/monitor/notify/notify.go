// Package notify sends supervision notifications: plain-text email through
// an SMTP relay, and JSON webhooks signed with HMAC-SHA256.
//
// A webhook request carries
//
//	X-Relais-Event:     the event id (the same id for a retry: receivers de-duplicate on it)
//	X-Relais-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + body)>
//
// [Verify] checks a signature (receivers and tests use it); a timestamp
// older than the tolerance is refused so that a captured request cannot be
// replayed later.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// Email sends plain-text mail through an SMTP relay (Addr "host:port").
// It uses STARTTLS when the relay offers it.
type Email struct {
	Addr string
	From string
}

// Configured reports whether a relay is set.
func (e *Email) Configured() bool { return e != nil && e.Addr != "" }

// clean keeps header values on one line.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// Send mails one message to the recipients.
func (e *Email) Send(ctx context.Context, to []string, subject, body string) error {
	if !e.Configured() {
		return errors.New("notify: no SMTP relay configured (monitor.smtp_addr)")
	}
	if len(to) == 0 {
		return errors.New("notify: no recipient")
	}
	for _, r := range to {
		if strings.ContainsAny(r, "\r\n<>,") || !strings.Contains(r, "@") {
			return fmt.Errorf("notify: invalid recipient %q", clean(r))
		}
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		clean(e.From), strings.Join(to, ", "), clean(subject), time.Now().UTC().Format(time.RFC1123Z))
	msg.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	done := make(chan error, 1)
	go func() { done <- smtp.SendMail(e.Addr, nil, e.From, to, msg.Bytes()) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("notify: send mail via %s: %w", e.Addr, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Webhook posts signed JSON.
type Webhook struct {
	Key    []byte
	Client *http.Client // a 10 s client when nil
	Now    func() time.Time
}

// Configured reports whether a key is set.
func (w *Webhook) Configured() bool { return w != nil && len(w.Key) > 0 }

// Sign returns the signature header value for body at t.
func Sign(key []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// ErrSignature reports a missing, stale or wrong signature.
var ErrSignature = errors.New("notify: bad webhook signature")

// Verify checks a signature header against body at now, refusing
// timestamps further than tolerance from now.
func Verify(key []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return ErrSignature
	}
	if d := now.Sub(time.Unix(n, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp outside the tolerance", ErrSignature)
	}
	want := Sign(key, time.Unix(n, 0), body)
	if !hmac.Equal([]byte(want), []byte(header)) && !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return ErrSignature
	}
	return nil
}

// Post sends payload to url with the event id and signature headers. A
// non-2xx answer is an error.
func (w *Webhook) Post(ctx context.Context, url, eventID string, payload any) error {
	if !w.Configured() {
		return errors.New("notify: no webhook signing key configured (monitor.webhook_secret_file)")
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return errors.New("notify: webhook URL must be http(s)")
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("notify: encode webhook: %w", err)
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "relais-notify")
	req.Header.Set("X-Relais-Event", eventID)
	req.Header.Set("X-Relais-Signature", Sign(w.Key, now(), body))
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req) // #nosec G107 G704 -- the URL is the operator's or tenant's configured webhook
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("notify: webhook timed out: %w", err)
		}
		return fmt.Errorf("notify: webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("notify: webhook answered %d", resp.StatusCode)
	}
	return nil
}

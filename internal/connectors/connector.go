// Package connectors is the one interface between the message router and
// the outside world: an SMTP relay (smtp/), an SMS operator's HTTP API
// (smshttp/), a webhook (webhook/). The router hands a connector a batch of
// rendered messages; the connector answers one Outcome per message.
//
// Like filippo.io/age's Recipient and Identity, the interface is small so
// that new operators plug in without touching the router:
//
//	type Connector interface {
//		Send(ctx context.Context, batch []Message) []Outcome
//		Capabilities() Capabilities
//		Close() error
//	}
//
// # Idempotence
//
// Every Message carries Ref, the router's stable message id. A connector
// whose remote end deduplicates on a reference (webhook Idempotency-Key,
// SMS client reference) says so in Capabilities.Idempotent; the router may
// then retry a hand-off left in doubt by a crash with the same Ref, and the
// remote end sends it once. A connector that cannot (plain SMTP) is never
// retried after an in-doubt hand-off: the router marks the message unknown
// for review instead of risking a second send.
//
// # Errors
//
// An Outcome's Err is nil (accepted), Temporary (retry later with
// back-off, possibly on the secondary connector) or Permanent (the message
// fails with the reason). Errors never contain credentials.
package connectors

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Channels.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// Message is one rendered message, ready to hand off.
type Message struct {
	// Ref is the router's message id: unique, stable across retries; use it
	// as the idempotency reference and in the Message-ID.
	Ref      string
	TenantID string
	Channel  string
	To       string
	From     string
	// ReplyTo, Subject, Text and HTML are for email; Text alone for SMS.
	ReplyTo string
	Subject string
	Text    string
	HTML    string
	// Headers are extra email headers (List-Unsubscribe,
	// List-Unsubscribe-Post...).
	Headers map[string]string
	// Attempt counts hand-offs of this message, from 1.
	Attempt int
}

// Outcome is a connector's answer for one message.
type Outcome struct {
	Ref string
	// ProviderRef is the remote end's id for the message (the SMTP queue
	// id, the operator's message id), kept for receipts.
	ProviderRef string
	Err         error
}

// Capabilities describe what the router may rely on.
type Capabilities struct {
	// Channels the connector sends.
	Channels []string
	// Idempotent: the remote end deduplicates on Message.Ref.
	Idempotent bool
	// MaxBatch is the largest batch Send takes (at least 1).
	MaxBatch int
	// RatePerSecond is the remote end's limit (0: none known).
	RatePerSecond float64
}

// Connector sends messages.
type Connector interface {
	// Send hands off a batch and returns one Outcome per message, in the
	// same order. It never returns fewer outcomes than messages; when the
	// whole batch fails each outcome carries the error.
	Send(ctx context.Context, batch []Message) []Outcome
	Capabilities() Capabilities
	Close() error
}

// Receipt is a delivery report taken in from a connector's callback
// (delivery receipts, bounces).
type Receipt struct {
	// Ref is the router's message id when the remote end echoes it;
	// otherwise ProviderRef identifies the message.
	Ref         string
	ProviderRef string
	Status      string // delivered, bounced, failed
	Reason      string
	At          time.Time
}

// Receipt statuses.
const (
	StatusDelivered = "delivered"
	StatusBounced   = "bounced"
	StatusFailed    = "failed"
)

// temporary and permanent classify errors.
type classified struct {
	err       error
	temporary bool
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Temporary marks err as worth retrying later.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, temporary: true}
}

// Permanent marks err as final for this message.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err}
}

// IsTemporary reports whether err should be retried. Unclassified errors
// (network failures, timeouts) count as temporary.
func IsTemporary(err error) bool {
	var c *classified
	if errors.As(err, &c) {
		return c.temporary
	}
	return err != nil
}

// Failed returns one outcome per message, all with err: for a batch that
// failed as a whole.
func Failed(batch []Message, err error) []Outcome {
	out := make([]Outcome, len(batch))
	for i, m := range batch {
		out[i] = Outcome{Ref: m.Ref, Err: err}
	}
	return out
}

// ErrConfig reports a connector configuration that cannot work.
var ErrConfig = errors.New("connector configuration")

// ConfigError names the setting that is wrong.
func ConfigError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

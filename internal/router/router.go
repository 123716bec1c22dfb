// Package router is the central message router (MSG-1..7): every message,
// transactional or from a campaign, is accepted here into the store, then
// scheduled, routed to a connector, handed off at most once per key,
// counted and traced.
//
// # The queue is the store
//
// A message row is its own queue entry, written in the transaction that
// accepts it (with its first event), so there is no second system to lose
// or duplicate it. Messages are spread over a fixed number of shards by a
// hash of their tenant and id; each node holds leases on shards
// (shard_leases) and works only the messages of the shards it holds. A
// lease carries a fence that grows at every change of owner: a node writes
// an outcome only while its fence is current, so a node that paused past
// its lease cannot overwrite the work of the next owner.
//
// # States
//
//	queued -> sending -> sent -> delivered | bounced
//	                  \-> queued (temporary failure, back-off) -> ... -> failed (dead letter)
//	                  \-> failed (permanent failure)
//	sending, owner lost -> queued (idempotent connector: retried with the same reference)
//	                    -> unknown (plain SMTP: never sent twice; counted and reported for review)
//	suppressed: refused before hand-off (no consent, blocklisted)
//
// # Idempotence (MSG-3)
//
// An API caller's Idempotency-Key is unique per tenant (messages.idem_key):
// a repeat returns the first message's id and creates nothing. A message is
// handed to a connector only by the node holding its shard, after moving it
// to 'sending' in a committed transaction. If that node dies before
// recording the outcome, the hand-off is in doubt: the next owner retries
// it with the same reference only when the connector's remote end
// deduplicates on it; otherwise it marks the message unknown.
package router

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Shards is the number of queue shards. It is fixed: changing it would
// move messages between shards.
const Shards = 64

// Message states.
const (
	StateQueued     = "queued"
	StateSending    = "sending"
	StateSent       = "sent"
	StateDelivered  = "delivered"
	StateBounced    = "bounced"
	StateFailed     = "failed"
	StateUnknown    = "unknown"
	StateSuppressed = "suppressed"
)

// States lists every state, in lifecycle order.
func States() []string {
	return []string{StateQueued, StateSending, StateSent, StateDelivered, StateBounced, StateFailed, StateUnknown, StateSuppressed}
}

// Errors.
var (
	ErrNotFound = errors.New("not found")
	ErrNoRoute  = errors.New("no connector route for this channel")
)

// ValidationError names a bad field of a message.
type ValidationError struct{ Field, Message string }

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// ShardOf returns the shard of a message.
func ShardOf(tenantID, id string) int {
	h := sha256.Sum256([]byte(tenantID + "\x00" + id))
	return int(binary.BigEndian.Uint32(h[:4]) % Shards)
}

// Content is what a message says; sealed as one JSON document.
type Content struct {
	From    string            `json:"from,omitempty"`
	ReplyTo string            `json:"reply_to,omitempty"`
	Subject string            `json:"subject,omitempty"`
	Text    string            `json:"text,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// NewMessage is a message to accept.
type NewMessage struct {
	Channel        string
	To             string
	Content        Content
	IdempotencyKey string
	CampaignID     string
	ContactID      string
	// SendAt delays the message (zero: now).
	SendAt time.Time
}

// Accepted is the answer for one accepted message.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Duplicate: the idempotency key was seen before; ID is the first
	// message's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Event is one step of a message's history.
type Event struct {
	Seq    int64           `json:"seq"`
	At     time.Time       `json:"at"`
	Kind   string          `json:"kind"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Message is a stored message with its history.
type Message struct {
	ID          string     `json:"id"`
	TenantID    string     `json:"tenant_id"`
	Channel     string     `json:"channel"`
	To          string     `json:"to"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	CampaignID  string     `json:"campaign_id,omitempty"`
	ContactID   string     `json:"contact_id,omitempty"`
	ConnectorID string     `json:"connector_id,omitempty"`
	ProviderRef string     `json:"provider_ref,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	AcceptedAt  time.Time  `json:"accepted_at"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	Events      []Event    `json:"events"`
}

// Service accepts messages and answers questions about them. The Engine
// sends them.
type Service struct {
	DB      *store.DB
	Keyring *tenants.Keyring
	// Wake, when set, is told that new messages are due (the local
	// engine polls sooner).
	Wake func()
	// NoGroupCommit runs every Accept call in a transaction of its own
	// (for comparison; concurrent calls share transactions otherwise).
	NoGroupCommit bool

	groups acceptQueues
}

// MaxBatch is the largest batch Accept takes.
const MaxBatch = 1000

func validate(m NewMessage) error {
	switch m.Channel {
	case connectors.ChannelEmail:
		if !strings.Contains(m.To, "@") || len(m.To) > 254 || strings.ContainsAny(m.To, " <>\r\n,;") {
			return &ValidationError{Field: "to", Message: "must be one email address"}
		}
		if m.Content.Text == "" && m.Content.HTML == "" {
			return &ValidationError{Field: "text", Message: "an email needs a text or an html part"}
		}
		if len(m.Content.Subject) > 998 || strings.ContainsAny(m.Content.Subject, "\r\n") {
			return &ValidationError{Field: "subject", Message: "must be one line of at most 998 characters"}
		}
	case connectors.ChannelSMS:
		if !isE164(m.To) {
			return &ValidationError{Field: "to", Message: "must be a phone number in E.164 form, such as +33612345678"}
		}
		if m.Content.Text == "" || len([]rune(m.Content.Text)) > 1600 {
			return &ValidationError{Field: "text", Message: "an SMS needs a text of at most 1600 characters"}
		}
	default:
		return &ValidationError{Field: "channel", Message: "must be email or sms"}
	}
	if len(m.IdempotencyKey) > 255 {
		return &ValidationError{Field: "idempotency_key", Message: "must be at most 255 characters"}
	}
	if !utf8.ValidString(m.IdempotencyKey) || strings.ContainsFunc(m.IdempotencyKey, unicode.IsControl) {
		// PostgreSQL refuses a NUL or invalid UTF-8 in text: refuse it
		// here, in both dialects, rather than fail the transaction.
		return &ValidationError{Field: "idempotency_key", Message: "must be UTF-8 text without control characters"}
	}
	if len(m.Content.Text)+len(m.Content.HTML) > 1<<20 {
		return &ValidationError{Field: "content", Message: "must be at most 1 MiB"}
	}
	for k, v := range m.Content.Headers {
		if strings.ContainsAny(k+v, "\r\n") || k == "" {
			return &ValidationError{Field: "headers", Message: "header names and values must be single lines"}
		}
	}
	return nil
}

func isE164(s string) bool {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Accept validates and stores messages in one transaction with their
// first event and one audit event. A message whose idempotency key was
// already used returns the first message's id and creates nothing. Either
// every message of the batch is accepted, or none (a bad one is reported
// by index).
//
// Concurrent calls for the same tenant share transactions (group commit,
// see acceptQueue): each call is answered once the transaction holding its
// messages has committed, with its own audit event in it.
func (s *Service) Accept(ctx context.Context, tenantID string, batch []NewMessage) ([]Accepted, error) {
	if len(batch) == 0 || len(batch) > MaxBatch {
		return nil, &ValidationError{Field: "messages", Message: fmt.Sprintf("send 1 to %d messages", MaxBatch)}
	}
	p, err := s.prepare(ctx, tenantID, batch, len(batch) > 1, true)
	if err != nil {
		return nil, err
	}
	req := &acceptReq{ctx: ctx, batch: batch, rows: p.rows}
	if s.NoGroupCommit {
		return s.acceptAlone(tenantID, req)
	}
	return s.grouped(tenantID, req)
}

// acceptAlone stores one call's messages in a transaction of its own.
func (s *Service) acceptAlone(tenantID string, req *acceptReq) ([]Accepted, error) {
	for try := 0; ; try++ {
		_, err := s.acceptGroup(req.ctx, tenantID, []*acceptReq{req})
		// A concurrent request took one of the keys: its transaction has
		// committed, so running again answers it as a duplicate.
		if errors.Is(err, errRetryIdempotent) && try < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.Wake != nil {
			s.Wake()
		}
		return req.out, nil
	}
}

// acceptReq is one Accept call: its messages, prepared, and its answer.
type acceptReq struct {
	ctx   context.Context
	batch []NewMessage
	rows  []preparedRow
	out   []Accepted
	err   error
	done  chan struct{}
}

// acceptGroup stores the messages of one or more Accept calls of a tenant
// in one transaction: one multi-row insert for them all, the answers of
// repeated keys (within a call, across the calls, or of earlier messages),
// and one audit event per call that created messages (with that call's
// actor). It sets each call's out only when the transaction committed.
// committing reports whether the error, if any, came from the commit
// itself (the outcome is then unknown) rather than from a statement.
func (s *Service) acceptGroup(ctx context.Context, tenantID string, reqs []*acceptReq) (committing bool, err error) {
	n := 0
	for _, r := range reqs {
		n += len(r.batch)
	}
	// A key repeated within the group: the later messages answer the
	// first one's id.
	firstOf := map[string]int{}
	keys := make([]string, 0, n)
	sendAt := make([]time.Time, 0, n)
	channel := make([]string, 0, n)
	owner := make([]int, 0, n)
	insert := make([]preparedRow, 0, n)
	index := make(map[string]int, n) // message id -> index in the group
	for ri, r := range reqs {
		for i, m := range r.batch {
			g := len(keys)
			keys = append(keys, m.IdempotencyKey)
			sendAt = append(sendAt, m.SendAt)
			channel = append(channel, m.Channel)
			owner = append(owner, ri)
			if m.IdempotencyKey != "" {
				if _, seen := firstOf[m.IdempotencyKey]; seen {
					continue
				}
				firstOf[m.IdempotencyKey] = g
			}
			insert = append(insert, r.rows[i])
			index[r.rows[i].id] = g
		}
	}
	out := make([]Accepted, n)
	fnDone := false
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := tx.Now().UTC()
		// Accept sends a message whose time has passed now.
		for j := range insert {
			if !sendAt[index[insert[j].id]].After(now) {
				insert[j].due = 0
			}
		}
		// One statement for the messages (and on PostgreSQL their
		// contents and events): a row whose key the tenant already used
		// is skipped, and answered below as a duplicate.
		created, err := insertMessages(ctx, tx, insert, store.Micros(now))
		if err != nil {
			return err
		}
		for _, id := range created {
			out[index[id]] = Accepted{ID: id, Status: StateQueued}
		}
		if len(created) < len(insert) {
			if err := answerDuplicates(ctx, tx, insert, index, out); err != nil {
				return err
			}
		}
		for g, k := range keys {
			if f, ok := firstOf[k]; ok && f != g {
				out[g] = Accepted{ID: out[f].ID, Status: out[f].Status, Duplicate: true}
			}
		}
		// One audit event per call that created messages, named by the
		// first message it created (its first answer may be an earlier
		// message answered as a duplicate).
		first := make([]string, len(reqs))
		count := make([]int, len(reqs))
		for _, id := range created {
			ri := owner[index[id]]
			if first[ri] == "" {
				first[ri] = id
			}
			count[ri]++
		}
		for ri, r := range reqs {
			if count[ri] == 0 {
				continue
			}
			// The call's context for its actor and request id; the
			// group's transaction does not end with that call.
			_, err := audit.Append(context.WithoutCancel(r.ctx), tx, audit.Event{Category: audit.CategoryChange, Action: "message.accept", ObjectType: "message",
				ObjectID: first[ri], Details: map[string]any{"count": count[ri], "channel": channel[index[first[ri]]]}})
			if err != nil {
				return err
			}
		}
		fnDone = true
		return nil
	})
	if err != nil {
		return fnDone, err
	}
	g := 0
	for _, r := range reqs {
		r.out = out[g : g+len(r.batch) : g+len(r.batch)]
		g += len(r.batch)
	}
	return false, nil
}

// answerDuplicates fills the answers of the rows insertMessages skipped
// (their key was used before): the first message's id and state, read in
// one query per 1,000 keys.
func answerDuplicates(ctx context.Context, tx *store.Tx, insert []preparedRow, index map[string]int, out []Accepted) error {
	byKey := map[string]int{}
	var keys []string
	for _, r := range insert {
		if i := index[r.id]; out[i].ID == "" {
			if r.idem == "" {
				return fmt.Errorf("router: message %d was not stored", i)
			}
			byKey[r.idem] = i
			keys = append(keys, r.idem)
		}
	}
	sqlite := tx.Dialect() == store.SQLite
	for start := 0; start < len(keys); start += 1000 {
		chunk := keys[start:min(start+1000, len(keys))]
		m := newMarks(sqlite, 1, len(chunk))
		list := make([]string, len(chunk))
		for j, k := range chunk {
			list[j] = m.mark(k)
		}
		rows, err := tx.QueryBulk(ctx, `SELECT id, state, idem_key FROM messages WHERE tenant_id = $1 AND idem_key IN (`+strings.Join(list, ", ")+`)`, m.args...)
		if err != nil {
			return fmt.Errorf("router: read duplicates: %w", err)
		}
		for rows.Next() {
			var id, state, key string
			if err := rows.Scan(&id, &state, &key); err != nil {
				_ = rows.Close()
				return err
			}
			if i, ok := byKey[key]; ok {
				out[i] = Accepted{ID: id, Status: state, Duplicate: true}
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	for _, i := range byKey {
		if out[i].ID == "" {
			// The row that took the key is gone again (a retention
			// purge removed it): run the whole batch again.
			return errRetryIdempotent
		}
	}
	return nil
}

var errRetryIdempotent = errors.New("idempotency key taken concurrently")

// EventAccepted is the kind of a message's first event.
const EventAccepted = "accepted"

// WithAcceptedEvent returns a message's stored events (in order) with its
// 'accepted' event first. Messages accepted before this release have that
// event stored; later ones do not: accepting a message writes no event row
// (the row's accepted_at is the same fact, and a third row per message was
// a fifth of the cost of accepting it), so the event is derived from
// accepted_at, with seq 0 (stored events have seq 1 and up).
func WithAcceptedEvent(stored []Event, acceptedAt time.Time) []Event {
	for _, e := range stored {
		if e.Kind == EventAccepted {
			return stored
		}
	}
	out := make([]Event, 0, len(stored)+1)
	out = append(out, Event{Seq: 0, At: acceptedAt, Kind: EventAccepted})
	return append(out, stored...)
}

// Get returns a message with its events (decrypted recipient). It records a
// personal-data access event.
func (s *Service) Get(ctx context.Context, tenantID, id string) (Message, error) {
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return Message{}, err
	}
	var m Message
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var to []byte
		var campaign, contact *string
		var accepted int64
		var sent, delivered *int64
		err := tx.QueryRow(ctx, `SELECT id, channel, recipient_enc, state, attempts, campaign_id, contact_id, connector_id, provider_ref, last_error,
			accepted_at, sent_at, delivered_at FROM messages WHERE tenant_id = $1 AND id = $2`, id).Scan(&m.ID, &m.Channel, &to, &m.State, &m.Attempts,
			&campaign, &contact, &m.ConnectorID, &m.ProviderRef, &m.LastError, &accepted, &sent, &delivered)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		m.TenantID = tenantID
		if m.To, err = c.OpenString("message.to", to); err != nil {
			return fmt.Errorf("decrypt recipient: %w", err)
		}
		if campaign != nil {
			m.CampaignID = *campaign
		}
		if contact != nil {
			m.ContactID = *contact
		}
		m.AcceptedAt = store.FromMicros(accepted)
		if sent != nil {
			t := store.FromMicros(*sent)
			m.SentAt = &t
		}
		if delivered != nil {
			t := store.FromMicros(*delivered)
			m.DeliveredAt = &t
		}
		rows, err := tx.Query(ctx, `SELECT id, at, kind, detail FROM message_events WHERE tenant_id = $1 AND message_id = $2 ORDER BY id`, id)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		m.Events = []Event{}
		for rows.Next() {
			var e Event
			var at int64
			var detail string
			if err := rows.Scan(&e.Seq, &at, &e.Kind, &detail); err != nil {
				return err
			}
			e.At = store.FromMicros(at)
			if detail != "" {
				e.Detail = json.RawMessage(detail)
			}
			m.Events = append(m.Events, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		m.Events = WithAcceptedEvent(m.Events, m.AcceptedAt)
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAccess, Action: "message.read", ObjectType: "message", ObjectID: id,
			Details: map[string]any{"fields": []string{"to"}}})
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Message{}, fmt.Errorf("%w: message %q", ErrNotFound, id)
	}
	return m, err
}

// Counts returns exact message counts by state for a tenant, optionally
// one campaign (MSG-4).
func (s *Service) Counts(ctx context.Context, tenantID, campaignID string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, st := range States() {
		out[st] = 0
	}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		q := `SELECT state, count(*) FROM messages WHERE tenant_id = $1 GROUP BY state`
		args := []any{}
		if campaignID != "" {
			q = `SELECT state, count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY state`
			args = append(args, campaignID)
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var st string
			var n int64
			if err := rows.Scan(&st, &n); err != nil {
				return err
			}
			out[st] = n
		}
		return rows.Err()
	})
	return out, err
}

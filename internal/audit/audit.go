// Package audit is Relais's trail of who did what, when: every change to a
// business object, every administrative action, every authentication attempt
// and every read of personal data is appended here in the same transaction
// as the change itself, so that a change without its trace cannot commit.
//
// Each tenant has its own log, and the operator has one (tenant id ""). An
// event's leaf hash is the RFC 6962 record hash of its canonical encoding
// (the golang.org/x/mod/sumdb/tlog form, so a Merkle tree can be built over
// the same leaves), and each event's chain hash links it to the one before:
//
//	leaf  = SHA-256(0x00 || canonical(event))
//	chain = SHA-256("relais-audit-chain-v1" || previous chain || leaf)
//
// Verify recomputes both and reports the first event that does not match:
// an altered field, a removed or reordered event, or a head that does not
// match the last event.
//
// Personal values never go in an event: record field names for personal
// fields, before and after values only for non-personal ones.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/store"
)

// Categories of events (LOG-1, LOG-2, AUTH-3...). Retention may differ per
// category: reads of personal data are kept 6 months by default.
const (
	CategoryChange = "change" // create / update / delete of a business object
	CategoryAdmin  = "admin"  // administrative action (tenants, users, roles, settings)
	CategoryAuth   = "auth"   // authentication attempt
	CategoryAccess = "access" // read of personal data
	CategoryExport = "export"
	CategoryKey    = "key"
	CategoryBackup = "backup"
)

// Actor types.
const (
	ActorOperator = "operator" // the CLI or an operator token
	ActorUser     = "user"
	ActorAPI      = "api" // an API credential
	ActorSystem   = "system"
)

// Actor is who did it.
type Actor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Change is one changed field. For a personal field set Personal and leave
// Before/After empty: the trail records that it changed, not the value.
type Change struct {
	Field    string `json:"field"`
	Before   any    `json:"before,omitempty"`
	After    any    `json:"after,omitempty"`
	Personal bool   `json:"personal,omitempty"`
}

// Event is what a caller records.
type Event struct {
	Category   string
	Action     string // e.g. "tenant.create", "contact.update"
	Actor      Actor  // taken from the context when empty
	ObjectType string
	ObjectID   string
	Changes    []Change
	Details    map[string]any
	// IP, UserAgent and RequestID are taken from the context when empty.
	IP        string
	UserAgent string
	RequestID string
}

// Record is a stored event.
type Record struct {
	TenantID   string          `json:"tenant_id"`
	Seq        int64           `json:"seq"`
	At         time.Time       `json:"at"`
	Category   string          `json:"category"`
	Action     string          `json:"action"`
	ActorType  string          `json:"actor_type"`
	ActorID    string          `json:"actor_id"`
	ObjectType string          `json:"object_type"`
	ObjectID   string          `json:"object_id"`
	IP         string          `json:"ip"`
	UserAgent  string          `json:"user_agent"`
	RequestID  string          `json:"request_id"`
	Details    json.RawMessage `json:"details"`
	LeafHash   []byte          `json:"leaf_hash"`
	Hash       []byte          `json:"hash"`
}

// Meta is request metadata carried in a context.
type Meta struct {
	Actor     Actor
	IP        string
	UserAgent string
	RequestID string
}

type metaKey struct{}

// WithMeta returns a context carrying who acts and from where.
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaFrom returns the metadata in ctx, if any.
func MetaFrom(ctx context.Context) Meta {
	m, _ := ctx.Value(metaKey{}).(Meta)
	return m
}

// Limits bound hostile or careless input.
const (
	maxActionLen  = 128
	maxDetailsLen = 64 << 10
)

// ErrInvalid reports an event that cannot be recorded as given.
var ErrInvalid = errors.New("audit: invalid event")

var genesis = make([]byte, sha256.Size)

// Append records ev in tx's tenant log, hash-linked to the previous event.
// It must run in the transaction that makes the change it records.
func Append(ctx context.Context, tx *store.Tx, ev Event) (Record, error) {
	m := MetaFrom(ctx)
	if ev.Actor.Type == "" {
		ev.Actor = m.Actor
	}
	if ev.Actor.Type == "" {
		ev.Actor = Actor{Type: ActorSystem, ID: "relais"}
	}
	if ev.IP == "" {
		ev.IP = m.IP
	}
	if ev.UserAgent == "" {
		ev.UserAgent = m.UserAgent
	}
	if ev.RequestID == "" {
		ev.RequestID = m.RequestID
	}
	if ev.Category == "" || ev.Action == "" || len(ev.Action) > maxActionLen {
		return Record{}, fmt.Errorf("%w: category and action are required (action at most %d bytes)", ErrInvalid, maxActionLen)
	}
	details, err := encodeDetails(ev)
	if err != nil {
		return Record{}, err
	}
	rec := Record{
		TenantID:   tx.TenantID(),
		At:         tx.Now().UTC().Truncate(time.Microsecond),
		Category:   ev.Category,
		Action:     ev.Action,
		ActorType:  ev.Actor.Type,
		ActorID:    ev.Actor.ID,
		ObjectType: ev.ObjectType,
		ObjectID:   ev.ObjectID,
		IP:         ev.IP,
		UserAgent:  truncate(ev.UserAgent, 512),
		RequestID:  ev.RequestID,
		Details:    details,
	}

	// Take the head row first: on PostgreSQL the UPDATE locks it, so
	// appends to one tenant's log serialise; SQLite serialises writers.
	var prev []byte
	const take = `UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq, hash`
	err = tx.QueryRow(ctx, take).Scan(&rec.Seq, &prev)
	if errors.Is(err, store.ErrNotFound) {
		// First event of this log. Two first appends may race: the
		// insert that loses does nothing and waits on the winner's row.
		if _, err = tx.Exec(ctx, `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING`, genesis); err != nil {
			return Record{}, fmt.Errorf("audit: start the log: %w", err)
		}
		err = tx.QueryRow(ctx, take).Scan(&rec.Seq, &prev)
	}
	if err != nil {
		return Record{}, fmt.Errorf("audit: read the log head: %w", err)
	}
	rec.LeafHash, rec.Hash = hashes(rec, prev)
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id,
		object_type, object_id, ip, user_agent, request_id, details, leaf_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		rec.Seq, store.Micros(rec.At), rec.Category, rec.Action, rec.ActorType, rec.ActorID,
		rec.ObjectType, rec.ObjectID, rec.IP, rec.UserAgent, rec.RequestID, string(rec.Details), rec.LeafHash, rec.Hash)
	if err != nil {
		return Record{}, fmt.Errorf("audit: append: %w", err)
	}
	if _, err = tx.Exec(ctx, `UPDATE audit_heads SET hash = $2 WHERE tenant_id = $1`, rec.Hash); err != nil {
		return Record{}, fmt.Errorf("audit: move the log head: %w", err)
	}
	return rec, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func encodeDetails(ev Event) (json.RawMessage, error) {
	body := map[string]any{}
	for k, v := range ev.Details {
		body[k] = v
	}
	if len(ev.Changes) > 0 {
		for i, c := range ev.Changes {
			if c.Personal && (c.Before != nil || c.After != nil) {
				return nil, fmt.Errorf("%w: change %d (%s) is personal: record the field name only", ErrInvalid, i, c.Field)
			}
		}
		body["changes"] = ev.Changes
	}
	b, err := json.Marshal(body) // maps marshal with sorted keys: canonical
	if err != nil {
		return nil, fmt.Errorf("%w: details: %v", ErrInvalid, err)
	}
	if len(b) > maxDetailsLen {
		return nil, fmt.Errorf("%w: details exceed %d bytes", ErrInvalid, maxDetailsLen)
	}
	return b, nil
}

// canonical is the hashed encoding of a record: a fixed field order, the
// details as their stored text.
func canonical(r Record) []byte {
	v := struct {
		V          int    `json:"v"`
		TenantID   string `json:"tenant_id"`
		Seq        int64  `json:"seq"`
		At         int64  `json:"at"`
		Category   string `json:"category"`
		Action     string `json:"action"`
		ActorType  string `json:"actor_type"`
		ActorID    string `json:"actor_id"`
		ObjectType string `json:"object_type"`
		ObjectID   string `json:"object_id"`
		IP         string `json:"ip"`
		UserAgent  string `json:"user_agent"`
		RequestID  string `json:"request_id"`
		Details    string `json:"details"`
	}{1, r.TenantID, r.Seq, store.Micros(r.At), r.Category, r.Action, r.ActorType, r.ActorID,
		r.ObjectType, r.ObjectID, r.IP, r.UserAgent, r.RequestID, string(r.Details)}
	b, err := json.Marshal(v)
	if err != nil { // strings and ints only: cannot fail
		panic(fmt.Sprintf("audit: canonical encoding: %v", err))
	}
	return b
}

func hashes(r Record, prev []byte) (leaf, chain []byte) {
	lh := tlog.RecordHash(canonical(r))
	h := sha256.New()
	h.Write([]byte("relais-audit-chain-v1"))
	h.Write(prev)
	h.Write(lh[:])
	return lh[:], h.Sum(nil)
}

// Problem is the first inconsistency Verify found.
type Problem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// Report is the result of Verify.
type Report struct {
	TenantID string   `json:"tenant_id"`
	Events   int64    `json:"events"`
	OK       bool     `json:"ok"`
	Problem  *Problem `json:"problem,omitempty"`
}

// Verify recomputes the tenant's chain and reports the first inconsistency.
func Verify(ctx context.Context, tx *store.Tx) (Report, error) {
	rep := Report{TenantID: tx.TenantID()}
	var headSeq int64
	var headHash []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_heads WHERE tenant_id = $1`).Scan(&headSeq, &headHash)
	if errors.Is(err, store.ErrNotFound) {
		headSeq, headHash = 0, genesis
	} else if err != nil {
		return rep, fmt.Errorf("audit: read the log head: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE tenant_id = $1 ORDER BY seq`)
	if err != nil {
		return rep, fmt.Errorf("audit: read the log: %w", err)
	}
	defer func() { _ = rows.Close() }()
	prev := genesis
	var want int64 = 1
	fail := func(seq int64, format string, args ...any) (Report, error) {
		rep.Problem = &Problem{Seq: seq, Reason: fmt.Sprintf(format, args...)}
		return rep, nil
	}
	for rows.Next() {
		r, err := scanRecord(rows, tx.TenantID())
		if err != nil {
			return rep, err
		}
		rep.Events++
		if r.Seq != want {
			return fail(want, "event %d is missing (next stored event is %d)", want, r.Seq)
		}
		leaf, chain := hashes(r, prev)
		if !bytes.Equal(leaf, r.LeafHash) {
			return fail(r.Seq, "event %d was altered: its content does not match its leaf hash", r.Seq)
		}
		if !bytes.Equal(chain, r.Hash) {
			return fail(r.Seq, "event %d does not link to event %d: an event before it was altered, removed or reordered", r.Seq, r.Seq-1)
		}
		prev, want = r.Hash, want+1
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit: read the log: %w", err)
	}
	if want-1 != headSeq {
		return fail(min(want, headSeq+1), "the log head says %d events, %d are stored: events at the end were removed or added", headSeq, want-1)
	}
	if !bytes.Equal(prev, headHash) {
		return fail(headSeq, "the log head hash does not match the last event")
	}
	rep.OK = true
	return rep, nil
}

// List returns a tenant's events with seq > after, oldest first, at most limit.
func List(ctx context.Context, tx *store.Tx, after int64, limit int) ([]Record, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events
		WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows, tx.TenantID())
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return out, nil
}

const recordColumns = `seq, at, category, action, actor_type, actor_id, object_type, object_id,
	ip, user_agent, request_id, details, leaf_hash, hash`

func scanRecord(rows *sql.Rows, tenant string) (Record, error) {
	r := Record{TenantID: tenant}
	var at int64
	var details string
	if err := rows.Scan(&r.Seq, &at, &r.Category, &r.Action, &r.ActorType, &r.ActorID, &r.ObjectType,
		&r.ObjectID, &r.IP, &r.UserAgent, &r.RequestID, &details, &r.LeafHash, &r.Hash); err != nil {
		return Record{}, fmt.Errorf("audit: read the log: %w", err)
	}
	r.At, r.Details = store.FromMicros(at), json.RawMessage(details)
	return r, nil
}

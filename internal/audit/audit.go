// Package audit is Relais's trail of who did what, when: every change to a
// business object, every administrative action, every authentication attempt
// and every read of personal data is appended here in the same transaction
// as the change itself, so that a change without its trace cannot commit.
//
// # Which functions to use
//
// Domain code needs only [Append], in the transaction of the change it
// records (with [WithMeta] setting who acts, from where). Everything else
// goes through a [Service] (the store and the master key): [Service.Checkpoint]
// and [Service.Run] sign checkpoints, [Service.Verify] checks a whole log,
// [Service.Export] writes a verifiable export that [VerifyExport] checks
// offline with only the log's public key ([Service.PublicKey]),
// [Service.Search] reads the trail (and records that read), [Service.Purge]
// applies retention.
//
// # Logs, leaves and the chain
//
// Each tenant has its own log, and the operator has one (tenant id ""). Events
// are numbered 1, 2, 3... (seq) in their log. An event's leaf hash is the
// RFC 6962 record hash (golang.org/x/mod/sumdb/tlog.RecordHash) of its
// canonical encoding, and each event's chain hash links it to the one before:
//
//	body  = SHA-256(canonical JSON of action, actor, object, ip, user agent, request id, details)
//	leaf  = SHA-256(0x00 || canonical JSON of {v:2, tenant, seq, at, category, body})
//	chain = SHA-256("relais-audit-chain-v1" || previous chain || leaf)
//
// The body is hashed apart from the header so that retention can remove an
// expired body while the header (when, which category) stays verifiable:
// see [Service.Purge]. Events written before format 2 (body_hash NULL) hash
// their whole canonical encoding (format 1) and are never purged.
//
// # The Merkle tree and checkpoints
//
// The leaves of a log form a Merkle tree in the tlog layout; its stored
// hashes (tlog.StoredHashes) are kept in the store so that proofs read
// O(log n) hashes. They are computed by the checkpoint job, not by Append:
// the chain already makes every append tamper-evident, and Append stays at
// two statements. Before it extends the tree, the job recomputes each new
// event's leaf and chain, so it never signs an altered event. Proofs and
// exports cover checkpointed events.
//
// A checkpoint is a note (golang.org/x/mod/sumdb/note) in the C2SP
// tlog-checkpoint form, signed with the log's own Ed25519 key:
//
//	relais-audit/<tenant id>     (origin; relais-audit/operator for the operator's log)
//	<tree size>
//	<base64 root hash>
//
//	— relais-audit/<tenant id> <base64 key hash and signature>
//
// The key is created on first use; its private half is stored only wrapped
// by the master key, bound to the tenant and the public key. Checkpoints are
// written by [Service.Run] (every minute when the log grew) and at every
// export and purge. They close the gap the chain leaves open: someone able
// to write the database could rewrite the chain consistently, but not sign.
//
// Personal values never go in an event: record field names for personal
// fields, before and after values only for non-personal ones.
package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

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
	// BodyHash is the digest of the body (format 2); nil for format 1.
	BodyHash []byte `json:"body_hash,omitempty"`
	// PurgedAt is when retention removed the body (nil while it is kept).
	// A purged record keeps TenantID, Seq, At, Category and the hashes.
	PurgedAt *time.Time `json:"purged_at,omitempty"`
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

// genesis is the chain hash before the first event.
func genesis() []byte { return make([]byte, sha256.Size) }

// Append records ev in tx's tenant log. It must run in the transaction that
// makes the change it records: the event commits with the change or not at
// all. It is queued there (audit_queue) and given its place in the log, its
// seq and its hashes by the sequencer ([Sequence]), which every reader of
// the log runs first and `relais serve` runs in the background; so the
// returned Record has Seq 0 and no hashes.
func Append(ctx context.Context, tx *store.Tx, ev Event) (Record, error) {
	rec, _, err := enqueue(ctx, tx, ev, false)
	return rec, err
}

// AppendSequenced is Append followed by sequencing the log in the same
// transaction: the returned Record has its seq and hashes. It holds the log
// head's lock until the transaction ends (appends of other transactions
// still go on), so use it only where the seq is needed at once, as in a
// certificate that cites it.
func AppendSequenced(ctx context.Context, tx *store.Tx, ev Event) (Record, error) {
	_, id, err := enqueue(ctx, tx, ev, true)
	if err != nil {
		return Record{}, err
	}
	for {
		got, err := sequenceTx(ctx, tx)
		if err != nil {
			return Record{}, err
		}
		for _, g := range got {
			if g.id == id {
				return g.rec, nil
			}
		}
		if len(got) == 0 {
			return Record{}, fmt.Errorf("audit: the event just queued (%d) was not sequenced", id)
		}
	}
}

// enqueue validates ev and queues it, returning the queue row's id when
// wantID.
func enqueue(ctx context.Context, tx *store.Tx, ev Event, wantID bool) (Record, int64, error) {
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
		return Record{}, 0, fmt.Errorf("%w: category and action are required (action at most %d bytes)", ErrInvalid, maxActionLen)
	}
	details, err := encodeDetails(ev)
	if err != nil {
		return Record{}, 0, err
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

	// Queue it: one narrow row, no index but its id. The sequencer
	// (sequence.go) numbers and chains it soon after, in commit order.
	q := encodeQueued(rec)
	insert := `INSERT INTO audit_queue (tenant_id, at, event) VALUES ($1, $2, $3)`
	if tx.Dialect() == store.SQLite {
		// SQLite would reuse the ids of sequenced rows once the queue is
		// empty: the id is the time (microseconds) or one more than the
		// last, so it keeps growing across restarts and a queued row
		// restored from a backup cannot collide with a live one.
		insert = `INSERT INTO audit_queue (id, tenant_id, at, event)
			VALUES (MAX(COALESCE((SELECT MAX(id) FROM audit_queue), 0) + 1, $2), $1, $2, $3)`
	}
	var id int64
	if wantID {
		err = tx.QueryRow(ctx, insert+` RETURNING id`, store.Micros(rec.At), string(q)).Scan(&id)
	} else {
		// On PostgreSQL the row goes with the commit (or the next
		// statement), in its round trip: no round trip of its own.
		err = tx.ExecDeferred(ctx, insert, store.Micros(rec.At), string(q))
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("audit: append: %w", err)
	}
	return rec, id, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func encodeDetails(ev Event) (json.RawMessage, error) {
	for i, c := range ev.Changes {
		if c.Personal && (c.Before != nil || c.After != nil) {
			return nil, fmt.Errorf("%w: change %d (%s) is personal: record the field name only", ErrInvalid, i, c.Field)
		}
	}
	b, err := appendDetails(make([]byte, 0, 128), ev)
	if err != nil {
		return nil, fmt.Errorf("%w: details: %v", ErrInvalid, err)
	}
	if len(b) > maxDetailsLen {
		return nil, fmt.Errorf("%w: details exceed %d bytes", ErrInvalid, maxDetailsLen)
	}
	return b, nil
}

// appendDetails appends the canonical JSON of ev's details and changes:
// exactly what json.Marshal writes for the map of Details plus "changes"
// (keys sorted, HTML characters escaped; TestDetailsEncoding compares
// them), written by hand for the common values (strings, integers,
// booleans), which spares Append, run in every audited transaction, the
// map copy and reflection.
func appendDetails(b []byte, ev Event) ([]byte, error) {
	keys := make([]string, 0, len(ev.Details)+1)
	for k := range ev.Details {
		if k != "changes" || len(ev.Changes) == 0 {
			keys = append(keys, k)
		}
	}
	if len(ev.Changes) > 0 {
		keys = append(keys, "changes")
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if k == "changes" && len(ev.Changes) > 0 {
			b, err = appendChanges(b, ev.Changes)
		} else {
			b, err = appendJSONValue(b, ev.Details[k])
		}
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendChanges appends changes as json.Marshal writes []Change.
func appendChanges(b []byte, changes []Change) ([]byte, error) {
	b = append(b, '[')
	for i, c := range changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"field":`...)
		b = appendJSONString(b, c.Field)
		var err error
		if c.Before != nil {
			b = append(b, `,"before":`...)
			if b, err = appendJSONValue(b, c.Before); err != nil {
				return nil, err
			}
		}
		if c.After != nil {
			b = append(b, `,"after":`...)
			if b, err = appendJSONValue(b, c.After); err != nil {
				return nil, err
			}
		}
		if c.Personal {
			b = append(b, `,"personal":true`...)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendJSONValue appends v as json.Marshal writes it.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

// List returns a tenant's events with seq > after, oldest first, at most limit.
func List(ctx context.Context, tx *store.Tx, after int64, limit int) ([]Record, error) {
	if err := SequenceLog(ctx, tx); err != nil {
		return nil, err
	}
	return listSequenced(ctx, tx, after, limit)
}

// listSequenced is List without sequencing first, for a reader that has
// just sequenced the log (forwarding, after Logs).
func listSequenced(ctx context.Context, tx *store.Tx, after int64, limit int) ([]Record, error) {
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
	ip, user_agent, request_id, details, leaf_hash, hash, body_hash, purged_at`

func scanRecord(rows *sql.Rows, tenant string) (Record, error) {
	r := Record{TenantID: tenant}
	var at int64
	var details string
	var purged sql.NullInt64
	if err := rows.Scan(&r.Seq, &at, &r.Category, &r.Action, &r.ActorType, &r.ActorID, &r.ObjectType,
		&r.ObjectID, &r.IP, &r.UserAgent, &r.RequestID, &details, &r.LeafHash, &r.Hash, &r.BodyHash, &purged); err != nil {
		return Record{}, fmt.Errorf("audit: read the log: %w", err)
	}
	r.At, r.Details = store.FromMicros(at), json.RawMessage(details)
	if purged.Valid {
		p := store.FromMicros(purged.Int64)
		r.PurgedAt, r.Details = &p, nil
	}
	return r, nil
}

package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/store"
)

// Deferred sequencing. Append only queues an event (one row in
// audit_queue, in the transaction of the change it records); the sequencer
// gives queued events their place in the log, as transparency logs do: it
// takes a batch of a log's queued rows, oldest first, numbers them after
// the head, computes their leaves and chain hashes, inserts them into
// audit_events and moves the head, in one transaction. So an event commits
// with its change (the queue row) and is never lost (the queue row is only
// deleted by the transaction that inserts the event); several sequencers
// (nodes) may run at once: the head row's lock serialises them per log, and
// a queued row is taken by one transaction only.
//
// Every reader of the log runs the sequencer first (Search, Verify,
// Export, Checkpoint, Purge, Forward, the tenant export, backups, the
// monitor's rules), so they see every committed event; `relais serve` also
// runs it in the background (Sequencer).

// sequenceBatch is how many queued events one transaction sequences.
const sequenceBatch = 1000

// insertRows is how many events one INSERT statement writes.
const insertRows = 100

// queued is a queued event: the record without its tenant (the row's),
// time (the row's), seq and hashes.
type queued struct {
	Category   string          `json:"c"`
	Action     string          `json:"a"`
	ActorType  string          `json:"t"`
	ActorID    string          `json:"i"`
	ObjectType string          `json:"ot"`
	ObjectID   string          `json:"oi"`
	IP         string          `json:"ip"`
	UserAgent  string          `json:"ua"`
	RequestID  string          `json:"r"`
	Details    json.RawMessage `json:"d"`
}

// sequenced is an event the sequencer placed, with its queue row's id.
type sequenced struct {
	id  int64
	rec Record
}

// encodeQueued is the queued form of rec: the JSON object of type queued,
// written by hand (Append runs in every audited transaction; this is
// several times faster than json.Marshal of the struct). The details are
// embedded as they are (valid JSON from encodeDetails), so the sequencer
// reads back the very bytes the body digest covers.
func encodeQueued(rec Record) []byte {
	b := make([]byte, 0, 160+len(rec.Details)+len(rec.UserAgent))
	for i, f := range [...]struct{ k, v string }{{"c", rec.Category}, {"a", rec.Action}, {"t", rec.ActorType}, {"i", rec.ActorID},
		{"ot", rec.ObjectType}, {"oi", rec.ObjectID}, {"ip", rec.IP}, {"ua", rec.UserAgent}, {"r", rec.RequestID}} {
		if i == 0 {
			b = append(b, '{', '"')
		} else {
			b = append(b, ',', '"')
		}
		b = append(b, f.k...)
		b = append(b, '"', ':')
		b = appendJSONString(b, f.v)
	}
	b = append(b, `,"d":`...)
	b = append(b, rec.Details...)
	return append(b, '}')
}

// appendJSONString appends s as json.Marshal writes it: printable ASCII
// other than the quote, the backslash and the characters it escapes for
// HTML (<, >, &) as is, anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return append(b, mustJSON(s)...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// SequenceLog sequences every queued event of tx's log (tenant "" in a
// platform transaction's Tenant("") for the operator's), for readers that
// read the log in their own read-write transaction: they call it first.
func SequenceLog(ctx context.Context, tx *store.Tx) error {
	for {
		got, err := sequenceTx(ctx, tx)
		if err != nil || len(got) < sequenceBatch {
			return err
		}
	}
}

// sequenceTx sequences up to one batch (sequenceBatch) of the queued
// events of tx's log and returns them.
func sequenceTx(ctx context.Context, tx *store.Tx) ([]sequenced, error) {
	// Nothing queued (the common case for a reader): no write at all.
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM audit_queue WHERE tenant_id = $1 LIMIT 1`).Scan(&one)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read the queue: %w", err)
	}
	// Lock the head first, so that concurrent sequencers of one log take
	// turns and each continues the chain where the last one left it
	// (SQLite: the transaction already holds the write lock).
	lock := `SELECT seq, hash FROM audit_heads WHERE tenant_id = $1`
	if tx.Dialect() == store.Postgres {
		lock += ` FOR UPDATE`
	}
	var head int64
	var prev []byte
	err = tx.QueryRow(ctx, lock).Scan(&head, &prev)
	if errors.Is(err, store.ErrNotFound) {
		// The log's first events. Two first sequencers may race: the
		// insert that loses does nothing and waits on the winner's row.
		// (Taking queued rows before holding the head would let two
		// sequencers lock the same rows in different orders.)
		if _, err := tx.Exec(ctx, `INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING`, genesis()); err != nil {
			return nil, fmt.Errorf("audit: start the log: %w", err)
		}
		err = tx.QueryRow(ctx, lock).Scan(&head, &prev)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: lock the log head: %w", err)
	}
	if head > 0 {
		// Link to the last event's own hash, not to the head's: logs
		// last appended to on SQLite before deferred sequencing keep
		// there the hash of the event before the last. A statement of
		// its own, after the lock: joined to the locking SELECT, on
		// PostgreSQL it would read the events of the snapshot taken
		// before waiting for a concurrent sequencer, without the ones
		// that sequencer added (TestSequencersRaceToOneChain).
		if err := tx.QueryRow(ctx, `SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2`, head).Scan(&prev); err != nil {
			return nil, fmt.Errorf("audit: read the last event (%d): %w", head, err)
		}
	}
	// Take the oldest queued rows. On PostgreSQL a row a concurrent
	// sequencer deleted first is skipped, so each row is taken once.
	rows, err := tx.Query(ctx, `DELETE FROM audit_queue WHERE tenant_id = $1 AND id IN
		(SELECT id FROM audit_queue WHERE tenant_id = $1 ORDER BY id LIMIT $2) RETURNING id, at, event`, sequenceBatch)
	if err != nil {
		return nil, fmt.Errorf("audit: take queued events: %w", err)
	}
	type item struct {
		id, at int64
		event  string
	}
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.id, &it.at, &it.event); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("audit: take queued events: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("audit: take queued events: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: take queued events: %w", err)
	}
	if len(items) == 0 {
		return nil, nil
	}
	sort.Slice(items, func(i, j int) bool { return items[i].id < items[j].id }) // RETURNING has no order
	recs := make([]Record, len(items))
	out := make([]sequenced, len(items))
	for i, it := range items {
		var q queued
		if err := json.Unmarshal([]byte(it.event), &q); err != nil {
			return nil, fmt.Errorf("audit: queued event %d cannot be read: %w", it.id, err)
		}
		head++
		r := Record{TenantID: tx.TenantID(), Seq: head, At: store.FromMicros(it.at), Category: q.Category, Action: q.Action,
			ActorType: q.ActorType, ActorID: q.ActorID, ObjectType: q.ObjectType, ObjectID: q.ObjectID, IP: q.IP,
			UserAgent: q.UserAgent, RequestID: q.RequestID, Details: q.Details}
		if len(r.Details) == 0 {
			r.Details = json.RawMessage("{}")
		}
		r.BodyHash = bodyDigest(r)
		leaf := leafV2(r, r.BodyHash)
		r.LeafHash, r.Hash = leaf[:], chainHash(prev, leaf)
		prev = r.Hash
		recs[i], out[i] = r, sequenced{it.id, r}
	}
	if err := insertRecords(ctx, tx, recs); err != nil {
		return nil, err
	}
	// The head keeps the last event's own hash (Verify accepts it).
	if _, err := tx.Exec(ctx, `UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1`, head, prev); err != nil {
		return nil, fmt.Errorf("audit: move the log head: %w", err)
	}
	return out, nil
}

// insertRecords writes sequenced events, in statements of insertRows, 10
// or 1 rows: three statement texts in all, each prepared once per
// connection (the SQLite statement cache through ExecBulk, pgx's own on
// PostgreSQL) rather than a text per batch size, parsed anew each time.
func insertRecords(ctx context.Context, tx *store.Tx, recs []Record) error {
	sqlite := tx.Dialect() == store.SQLite
	for len(recs) > 0 {
		n := chunkRows(len(recs))
		var q strings.Builder
		q.WriteString(`INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id,
			object_type, object_id, ip, user_agent, request_id, details, leaf_hash, hash, body_hash) VALUES `)
		args := make([]any, 0, n*15)
		for i, r := range recs[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("($1")
			for _, v := range []any{r.Seq, store.Micros(r.At), r.Category, r.Action, r.ActorType, r.ActorID, r.ObjectType,
				r.ObjectID, r.IP, r.UserAgent, r.RequestID, string(r.Details), r.LeafHash, r.Hash, r.BodyHash} {
				args = append(args, v)
				if sqlite {
					q.WriteString(", ?")
				} else {
					q.WriteString(", $" + strconv.Itoa(len(args)+1))
				}
			}
			q.WriteString(")")
		}
		if _, err := tx.ExecBulk(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("audit: sequence: %w", err)
		}
		recs = recs[n:]
	}
	return nil
}

// chunkRows is how many of n remaining events the next statement writes:
// insertRows, 10 or 1.
func chunkRows(n int) int {
	switch {
	case n >= insertRows:
		return insertRows
	case n >= 10:
		return 10
	}
	return 1
}

// Sequence sequences every queued event of one log (tenant "" for the
// operator's), one batch per transaction, and returns how many. Readers of
// the log call it first, so that they see every committed event.
func Sequence(ctx context.Context, db *store.DB, tenantID string) (int, error) {
	total := 0
	for {
		var n int
		err := inLog(ctx, db, tenantID, func(tx *store.Tx) error {
			got, err := sequenceTx(ctx, tx)
			n = len(got)
			return err
		})
		total += n
		if err != nil || n < sequenceBatch {
			return total, err
		}
	}
}

// SequenceAll sequences the queued events of every log (platform scope),
// for readers that span logs, and returns how many.
func SequenceAll(ctx context.Context, db *store.DB) (int, error) {
	var logs []string
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT DISTINCT tenant_id FROM audit_queue`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				return err
			}
			logs = append(logs, t)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("audit: list queued logs: %w", err)
	}
	total := 0
	var errs []error
	for _, t := range logs {
		n, err := Sequence(ctx, db, t)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("log %q: %w", t, err))
		}
	}
	return total, errors.Join(errs...)
}

// DefaultSequenceEvery is how often Sequencer drains the queue.
const DefaultSequenceEvery = 200 * time.Millisecond

// Sequencer runs SequenceAll every interval (DefaultSequenceEvery when
// zero) until ctx ends, logging failures (retried next time). `relais
// serve` runs it; several nodes may.
func Sequencer(ctx context.Context, db *store.DB, every time.Duration, logger *slog.Logger) {
	if every <= 0 {
		every = DefaultSequenceEvery
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := SequenceAll(ctx, db); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, "audit sequencing failed", "error", err)
			}
		}
	}
}

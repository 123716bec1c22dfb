package router

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// StateHeld is the state of a campaign message held while its campaign is
// paused: the engine does not claim it; resuming the campaign queues it
// again. It is a campaign state of the queue, beside those of States.
const StateHeld = "held"

// Bulk enqueue (campaigns). Where Accept answers each message (its id, or
// the first one's for a repeated key) and takes the whole batch or nothing,
// Enqueue is the expansion's path: messages carry idempotency keys
// ("campaign:<id>:<contact id>"), rows are written with multi-row INSERTs
// that skip a key already present (ON CONFLICT DO NOTHING), so running an
// expansion again after a crash creates nothing twice, and only the count
// of messages created is returned. Each batch is one transaction with one
// audit event. A message's 'accepted' event is not a row: it is derived
// from messages.accepted_at when the history is read (WithAcceptedEvent).
//
// On SQLite, the big statements use $1 for the tenant and plain "?" for
// the rest: SQLite resolves "$N" names by a linear search, so thousands of
// them cost quadratic time; PostgreSQL (pgx) needs $N.

// enqueueRowsPerStatement bounds the rows of one INSERT (11 parameters
// each: 11,000 per statement, below the 32,766 of SQLite and the 65,535 of
// PostgreSQL).
const enqueueRowsPerStatement = 1000

// Prepared is a batch of messages validated and sealed for one tenant,
// ready to be written by EnqueueTx. Preparing is CPU work (JSON, AES-GCM)
// that needs no transaction: do it before opening one, possibly in
// several goroutines, and join the parts with Append.
type Prepared struct {
	tenant   string
	channels map[string]int
	campaign string
	rows     []preparedRow
}

type preparedRow struct {
	id, channel, idem, campaign, contact string
	shard                                int
	to, content                          []byte
	due                                  int64 // 0: now
}

// Len is the number of messages prepared.
func (p *Prepared) Len() int { return len(p.rows) }

// Append adds q's messages to p (both for the same tenant).
func (p *Prepared) Append(q *Prepared) error {
	if q == nil {
		return nil
	}
	if p.tenant != q.tenant {
		return errors.New("router: prepared batches of different tenants")
	}
	p.rows = append(p.rows, q.rows...)
	for ch, n := range q.channels {
		p.channels[ch] += n
	}
	if p.campaign != q.campaign {
		p.campaign = ""
	}
	return nil
}

// Prepare validates and seals messages for EnqueueTx. A bad message is
// reported by its index in batch; nothing is prepared then.
func (s *Service) Prepare(ctx context.Context, tenantID string, batch []NewMessage) (*Prepared, error) {
	return s.prepare(ctx, tenantID, batch, true, false)
}

// prepare is Prepare; indexed says whether a bad message's field is named
// with its index ("[3].to") or, for a batch of one, alone ("to"); parallel
// seals a large batch on several cores (Accept, whose sealing is on its
// call's path; Enqueue and the campaigns' expansion already seal the next
// batch while the current one is written).
func (s *Service) prepare(ctx context.Context, tenantID string, batch []NewMessage, indexed, parallel bool) (*Prepared, error) {
	p := &Prepared{tenant: tenantID, channels: map[string]int{}, rows: make([]preparedRow, 0, len(batch))}
	if len(batch) == 0 {
		return p, nil
	}
	for i, m := range batch {
		if err := validate(m); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) && indexed {
				return nil, &ValidationError{Field: fmt.Sprintf("[%d].%s", i, ve.Field), Message: ve.Message}
			}
			return nil, err
		}
	}
	c, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	p.campaign = batch[0].CampaignID
	for _, m := range batch {
		if m.CampaignID != p.campaign {
			p.campaign = ""
		}
		p.channels[m.Channel]++
	}
	p.rows = p.rows[:len(batch)]
	// Sealing is most of preparing (JSON, two AES-GCM seals, an id): a
	// large batch is sealed in parts on several cores.
	parts := 1
	if parallel && len(batch) >= parallelPrepareMin {
		parts = min(runtime.GOMAXPROCS(0), 4)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for part := 0; part < parts; part++ {
		lo, hi := part*len(batch)/parts, (part+1)*len(batch)/parts
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[part] = sealRows(c, tenantID, batch[lo:hi], p.rows[lo:hi])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// parallelPrepareMin is the smallest batch sealed in parts.
const parallelPrepareMin = 256

// sealRows fills rows with batch's messages, encoded and sealed.
func sealRows(c *tenants.Crypto, tenantID string, batch []NewMessage, rows []preparedRow) error {
	for i, m := range batch {
		body, err := encodeContent(m.Content)
		if err != nil {
			return fmt.Errorf("router: encode content: %w", err)
		}
		r := preparedRow{channel: m.Channel, idem: m.IdempotencyKey, campaign: m.CampaignID, contact: m.ContactID}
		if r.to, err = c.SealString("message.to", m.To); err != nil {
			return err
		}
		if r.content, err = c.Seal("message.content", body); err != nil {
			return err
		}
		uid, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("router: new id: %w", err)
		}
		r.id = uid.String()
		r.shard = ShardOf(tenantID, r.id)
		if !m.SendAt.IsZero() {
			r.due = store.Micros(m.SendAt)
		}
		rows[i] = r
	}
	return nil
}

// encodeContent is the JSON of a message's content without HTML escaping
// (json.Marshal writes "<" as "\u003c"): an HTML part has hundreds of
// those, which make the document larger and halve the speed of decoding
// it at every hand-off. The result is the JSON value encoding/json gives
// (Content's names, empty fields left out, headers by name), written
// field by field (printable ASCII copied as is, other text quoted by
// jsontext): 0.8-1.1 µs for a 1 kB text where encoding/json's reflection
// took 1.3-1.9, on the caller's path of every message accepted. Text that is not valid UTF-8 goes through encoding/json,
// which replaces it as before.
func encodeContent(c Content) ([]byte, error) {
	n := len(c.From) + len(c.ReplyTo) + len(c.Subject) + len(c.Text) + len(c.HTML) + 80
	for k, v := range c.Headers {
		n += len(k) + len(v) + 6
	}
	b := make([]byte, 0, n+n/16)
	b = append(b, '{')
	var err error
	field := func(name, v string) {
		if v == "" || err != nil {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, name...)
		b, err = appendQuoted(b, v)
	}
	field(`"from":`, c.From)
	field(`"reply_to":`, c.ReplyTo)
	field(`"subject":`, c.Subject)
	field(`"text":`, c.Text)
	field(`"html":`, c.HTML)
	if len(c.Headers) > 0 && err == nil {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, `"headers":{`...)
		for i, k := range slices.Sorted(maps.Keys(c.Headers)) {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendQuoted(b, k); err != nil {
				break
			}
			b = append(b, ':')
			if b, err = appendQuoted(b, c.Headers[k]); err != nil {
				break
			}
		}
		b = append(b, '}')
	}
	if err != nil {
		return encodeContentJSON(c)
	}
	return append(b, '}'), nil
}

// appendQuoted appends s as a JSON string: as it is between quotes when
// it is printable ASCII without a quote or backslash (most text), else
// by jsontext.AppendQuote (its error: invalid UTF-8).
func appendQuoted(b []byte, s string) ([]byte, error) {
	if !plainASCII(s) {
		return jsontext.AppendQuote(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// plainASCII reports whether s has only bytes 0x20 to 0x7f other than '"'
// and '\', eight bytes at a time (a word has a byte below 0x20, or equal
// to one of the two, when subtracting from it borrows into that byte's
// top bit).
func plainASCII(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if (w|(w-ones*0x20)|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// encodeContentJSON is encodeContent by encoding/json.
func encodeContentJSON(c Content) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(c.HTML) + len(c.Text) + len(c.Subject) + 256)
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// decodeContent decodes a stored content (encodeContent's JSON) into c.
// It decodes with go-json-experiment/json (the encoding/json/v2
// prototype), which takes less than half the time of encoding/json for a
// 4.5 kB email, a cost paid at every hand-off; names match without regard
// to case, as in encoding/json. A document it refuses (stricter on
// repeated names and invalid UTF-8, which encodeContent never writes) is
// decoded by encoding/json as before.
func decodeContent(raw []byte, c *Content) error {
	if err := jsonv2.Unmarshal(raw, c, jsonv2.MatchCaseInsensitiveNames(true)); err == nil {
		return nil
	}
	*c = Content{}
	return json.Unmarshal(raw, c)
}

// Enqueue validates, seals and stores messages, in transactions of up to
// MaxBatch messages: multi-row INSERTs that skip any message whose
// idempotency key the tenant already used, their contents, and one audit
// event per transaction. It returns how
// many messages it created; a message with a key seen before is silently
// skipped (re-running a campaign expansion creates no duplicates). A
// message's SendAt, even in the past, is its due time (zero: now).
func (s *Service) Enqueue(ctx context.Context, tenantID string, batch []NewMessage) (int, error) {
	type prepared struct {
		p   *Prepared
		err error
	}
	// Sealing the next transaction's messages (CPU) overlaps writing the
	// current one (the store).
	prepare := func(start int) chan prepared {
		ch := make(chan prepared, 1)
		go func() {
			p, err := s.Prepare(ctx, tenantID, batch[start:min(start+MaxBatch, len(batch))])
			var ve *ValidationError
			if errors.As(err, &ve) && start > 0 {
				// Report the index in the caller's batch.
				err = &ValidationError{Field: shiftIndex(ve.Field, start), Message: ve.Message}
			}
			ch <- prepared{p, err}
		}()
		return ch
	}
	created := 0
	var next chan prepared
	if len(batch) > 0 {
		next = prepare(0)
	}
	for start := 0; start < len(batch); start += MaxBatch {
		cur := <-next
		if start+MaxBatch < len(batch) {
			next = prepare(start + MaxBatch)
		}
		if cur.err != nil {
			return created, cur.err
		}
		var n int
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			var err error
			n, err = s.EnqueueTx(ctx, tx, cur.p)
			return err
		})
		if err != nil {
			return created, err
		}
		created += n
	}
	return created, nil
}

func shiftIndex(field string, by int) string {
	if !strings.HasPrefix(field, "[") {
		return field
	}
	end := strings.IndexByte(field, ']')
	i, err := strconv.Atoi(field[1:max(end, 1)])
	if end < 0 || err != nil {
		return field
	}
	return "[" + strconv.Itoa(i+by) + "]" + field[end+1:]
}

// EnqueueTx writes prepared messages in the caller's transaction (which
// must be the prepared batch's tenant's), so that a caller can record its
// own progress atomically with them. It returns how many were created
// (messages whose idempotency key was already used are skipped), and asks
// the engine to claim once the transaction commits.
func (s *Service) EnqueueTx(ctx context.Context, tx *store.Tx, p *Prepared) (int, error) {
	if p == nil || len(p.rows) == 0 {
		return 0, nil
	}
	if tx.TenantID() != p.tenant {
		return 0, errors.New("router: prepared batch of another tenant")
	}
	created, err := insertMessages(ctx, tx, p.rows, store.Micros(tx.Now().UTC()))
	if err != nil {
		return 0, err
	}
	if len(created) == 0 {
		return 0, nil
	}
	details := map[string]any{"count": len(created), "skipped_duplicates": len(p.rows) - len(created), "channels": p.channels}
	ev := audit.Event{Category: audit.CategoryChange, Action: "message.enqueue", ObjectType: "message", ObjectID: created[0], Details: details}
	if p.campaign != "" {
		ev.ObjectType, ev.ObjectID = "campaign", p.campaign
	}
	if _, err := audit.Append(ctx, tx, ev); err != nil {
		return 0, fmt.Errorf("router: enqueue audit: %w", err)
	}
	if s.Wake != nil {
		tx.AfterCommit(s.Wake)
	}
	return len(created), nil
}

// insertMessages writes rows with multi-row INSERTs that skip a row whose
// idempotency key the tenant already used (ON CONFLICT DO NOTHING), then
// the sealed content of each row created: on PostgreSQL in one statement
// whose values are arrays (insertMessagesPG), on SQLite in one multi-row
// INSERT after it. The 'accepted' event is the row's accepted_at (see
// WithAcceptedEvent): no event row is written. A zero due time is now.
// It returns the ids created.
//
// The backup change log gets one key list per statement for the messages
// created (migration 00035): on PostgreSQL from the statement-level
// trigger (a one-row statement: its key alone); on SQLite, which has only
// row triggers, from here for a batch of selfLogMin or more (see
// insertMessagesSQLite).
func insertMessages(ctx context.Context, tx *store.Tx, rows []preparedRow, now int64) ([]string, error) {
	if tx.Dialect() == store.Postgres {
		return insertMessagesPG(ctx, tx, rows, now)
	}
	return insertMessagesSQLite(ctx, tx, rows, now)
}

// insertMessagesSQLite is insertMessages on SQLite. The change log of the
// messages it inserts (from selfLogMin rows) is its own (migration 00035):
// while its statements run, the tenant's backup_self_logged row turns the
// row trigger off, and the ids created are then logged in key lists
// (logSelf), the row deleted last. After an error (in the inserts or in
// writing the lists) the row stays: its deferred guard keeps the
// transaction from committing, so that no message it inserted can be
// committed unlogged whatever the caller does next.
func insertMessagesSQLite(ctx context.Context, tx *store.Tx, rows []preparedRow, now int64) ([]string, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	if len(rows) < selfLogMin {
		// A few rows: the row trigger logs them, cheaper than the three
		// statements of logging them here.
		created, err := insertMessageRowsSQLite(ctx, tx, rows, now)
		if err == nil && len(created) > 0 {
			err = insertContentsSQLite(ctx, tx, rows, created)
		}
		if err != nil {
			return nil, err
		}
		return created, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO backup_self_logged (tenant_id) VALUES ($1)`); err != nil {
		return nil, fmt.Errorf("router: insert messages: %w", err)
	}
	created, err := insertMessageRowsSQLite(ctx, tx, rows, now)
	if err != nil {
		return nil, err
	}
	if err := logSelf(ctx, tx, created); err != nil {
		return nil, err
	}
	if len(created) > 0 {
		if err := insertContentsSQLite(ctx, tx, rows, created); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// selfLogMin is the fewest rows insertMessagesSQLite logs itself (one
// message accepted alone costs three statements less with the row
// trigger: ingestion one by one, bench/README.md).
const selfLogMin = 32

// keysPerList bounds the keys of one key list in the change log (as
// PostgreSQL's trigger does, migration 00035).
const keysPerList = 1000

// logSelf ends insertMessagesSQLite's own change logging: it logs the ids
// created in key lists ('[["id1"],["id2"]]'), except while the tenant is
// being restored (as the triggers), then deletes the tenant's
// backup_self_logged row. In that order: if a list cannot be written, the
// row stays and its guard refuses the commit.
func logSelf(ctx context.Context, tx *store.Tx, created []string) error {
	for start := 0; start < len(created); start += keysPerList {
		var b strings.Builder
		b.Grow(45*min(keysPerList, len(created)-start) + 2)
		b.WriteByte('[')
		for i, id := range created[start:min(start+keysPerList, len(created))] {
			if i > 0 {
				b.WriteByte(',')
			}
			key, err := json.Marshal([]string{id})
			if err != nil {
				return fmt.Errorf("router: change log: %w", err)
			}
			b.Write(key)
		}
		b.WriteByte(']')
		if _, err := tx.Exec(ctx, `INSERT INTO backup_changes (tenant_id, tbl, pk) SELECT $1, 'messages', $2
			WHERE $1 <> '' AND NOT EXISTS (SELECT 1 FROM backup_restoring r WHERE r.tenant_id = $1)`, b.String()); err != nil {
			return fmt.Errorf("router: change log: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM backup_self_logged WHERE tenant_id = $1`); err != nil {
		return fmt.Errorf("router: change log: %w", err)
	}
	return nil
}

// insertMessageRowsSQLite writes the messages rows, in statements of up
// to enqueueRowsPerStatement rows, and returns the ids created.
func insertMessageRowsSQLite(ctx context.Context, tx *store.Tx, rows []preparedRow, now int64) ([]string, error) {
	created := make([]string, 0, len(rows))
	for start := 0; start < len(rows); start += enqueueRowsPerStatement {
		chunk := rows[start:min(start+enqueueRowsPerStatement, len(rows))]
		m := newMarks(true, 1, len(chunk)*12+1)
		var q strings.Builder
		q.Grow(len(chunk)*70 + 600)
		q.WriteString(`INSERT INTO messages (tenant_id, id, shard, idem_key, campaign_id, contact_id, channel, recipient_enc,
			state, due_at, accepted_at, updated_at) VALUES `)
		for i, r := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			due := r.due
			if due == 0 {
				due = now
			}
			q.WriteString("($1, ")
			for j, v := range []any{r.id, r.shard, nullable(r.idem), nullable(r.campaign), nullable(r.contact), r.channel, r.to} {
				if j > 0 {
					q.WriteString(", ")
				}
				q.WriteString(m.mark(v))
			}
			// "?" is positional: one value per mark.
			q.WriteString(", 'queued', " + m.mark(due) + ", " + m.mark(now) + ", " + m.mark(now) + ")")
		}
		q.WriteString(` ON CONFLICT (tenant_id, idem_key) DO NOTHING`)
		res, err := tx.ExecBulk(ctx, q.String(), m.args...)
		if err != nil {
			return nil, fmt.Errorf("router: insert messages: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("router: insert messages: %w", err)
		}
		// Every row inserted (the usual case): no RETURNING to buffer and
		// scan. Else the rows skipped are those whose new id is not there.
		if int(n) == len(chunk) {
			for _, r := range chunk {
				created = append(created, r.id)
			}
			continue
		}
		if created, err = insertedIDs(ctx, tx, chunk, created); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// insertedIDs appends to created the ids of rows that are in messages:
// after an insert that skipped some rows (their key was used), those it
// inserted (a new message's id is new).
func insertedIDs(ctx context.Context, tx *store.Tx, rows []preparedRow, created []string) ([]string, error) {
	m := newMarks(true, 1, len(rows))
	list := make([]string, len(rows))
	for i, r := range rows {
		list[i] = m.mark(r.id)
	}
	rs, err := tx.QueryBulk(ctx, `SELECT id FROM messages WHERE tenant_id = $1 AND id IN (`+strings.Join(list, ", ")+`)`, m.args...)
	if err != nil {
		return nil, fmt.Errorf("router: insert messages: %w", err)
	}
	there := make(map[string]bool, len(rows))
	var ids []string
	if ids, err = scanIDs(rs, ids); err != nil {
		return nil, err
	}
	for _, id := range ids {
		there[id] = true
	}
	for _, r := range rows {
		if there[r.id] {
			created = append(created, r.id)
		}
	}
	return created, nil
}

// insertMessagesPGSQL writes the messages whose columns are the arrays $2
// to $10 (accepted at $11) and their contents, in one statement (data-modifying WITHs): one text whatever the number of rows,
// so that PostgreSQL parses and plans it once per connection (pgx keeps it
// prepared), and ten parameters instead of thirteen per row.
const insertMessagesPGSQL = `WITH v AS (
	SELECT * FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::bigint[], $10::bytea[])
		AS v(id, shard, idem_key, campaign_id, contact_id, channel, recipient_enc, due_at, content_enc)
), ins AS (
	INSERT INTO messages (tenant_id, id, shard, idem_key, campaign_id, contact_id, channel, recipient_enc, state, due_at, accepted_at, updated_at)
	SELECT $1, id, shard, idem_key, campaign_id, contact_id, channel, recipient_enc, 'queued', due_at, $11, $11 FROM v
	ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING id
), cont AS (
	INSERT INTO message_contents (tenant_id, message_id, content_enc) SELECT $1, v.id, v.content_enc FROM v JOIN ins ON ins.id = v.id
)
SELECT id FROM ins`

// insertMessagesPG is insertMessages on PostgreSQL: one statement per
// enqueueRowsPerStatement rows, their values bound as arrays.
func insertMessagesPG(ctx context.Context, tx *store.Tx, rows []preparedRow, now int64) ([]string, error) {
	created := make([]string, 0, len(rows))
	for start := 0; start < len(rows); start += enqueueRowsPerStatement {
		chunk := rows[start:min(start+enqueueRowsPerStatement, len(rows))]
		n := len(chunk)
		ids, channels := make([]string, n), make([]string, n)
		idem, campaign, contact := make([]*string, n), make([]*string, n), make([]*string, n)
		shards, due := make([]int32, n), make([]int64, n)
		to, content := make([][]byte, n), make([][]byte, n)
		for i := range chunk {
			r := &chunk[i]
			ids[i], channels[i], shards[i], to[i], content[i] = r.id, r.channel, int32(r.shard), r.to, r.content // #nosec G115 -- shard < Shards
			idem[i], campaign[i], contact[i] = nullableRef(&r.idem), nullableRef(&r.campaign), nullableRef(&r.contact)
			due[i] = r.due
			if due[i] == 0 {
				due[i] = now
			}
		}
		rs, err := tx.Query(ctx, insertMessagesPGSQL, ids, shards, idem, campaign, contact, channels, to, due, content, now)
		if err != nil {
			return nil, fmt.Errorf("router: insert messages: %w", err)
		}
		if created, err = scanIDs(rs, created); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// nullableRef is nil for an empty string (NULL), else s.
func nullableRef(s *string) *string {
	if *s == "" {
		return nil
	}
	return s
}

// scanIDs appends the ids rs returns to ids and closes rs.
func scanIDs(rs *sql.Rows, ids []string) ([]string, error) {
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			_ = rs.Close()
			return nil, fmt.Errorf("router: insert messages: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rs.Close(); err != nil {
		return nil, fmt.Errorf("router: insert messages: %w", err)
	}
	return ids, nil
}

// insertContentsSQLite writes the sealed content of the rows created, in
// multi-row statements.
func insertContentsSQLite(ctx context.Context, tx *store.Tx, rows []preparedRow, created []string) error {
	content := make(map[string][]byte, len(rows))
	for _, r := range rows {
		content[r.id] = r.content
	}
	for start := 0; start < len(created); start += enqueueRowsPerStatement {
		chunk := created[start:min(start+enqueueRowsPerStatement, len(created))]
		m := newMarks(true, 1, 2*len(chunk))
		var q strings.Builder
		q.Grow(len(chunk)*12 + 100)
		q.WriteString(`INSERT INTO message_contents (tenant_id, message_id, content_enc) VALUES `)
		for i, id := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("($1, " + m.mark(id) + ", " + m.mark(content[id]) + ")")
		}
		if _, err := tx.ExecBulk(ctx, q.String(), m.args...); err != nil {
			return fmt.Errorf("router: insert message contents: %w", err)
		}
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// MoveCampaignMessages moves up to limit of a campaign's messages from the
// states in from to the state to (queued -> held when the campaign pauses,
// queued or held -> suppressed when it is cancelled), with one event per
// message of the given kind and reason (kept as last_error unless the
// message is queued again). A message already claimed for hand-off
// ('sending') is not touched. It returns how many messages moved; call it
// again until it returns 0 (each call is one short transaction).
func (s *Service) MoveCampaignMessages(ctx context.Context, tenantID, campaignID string, from []string, to, kind, reason string, limit int) (int, error) {
	if len(from) == 0 || limit <= 0 {
		return 0, nil
	}
	var moved []string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := store.Micros(tx.Now().UTC())
		args := []any{to, now, campaignID, limit}
		var in []string
		for _, st := range from {
			args = append(args, st)
			in = append(in, "$"+strconv.Itoa(len(args)+1))
		}
		states := strings.Join(in, ", ")
		lastErr := ""
		if to != StateQueued {
			lastErr = reason
		}
		args = append(args, lastErr)
		rows, err := tx.Query(ctx, `UPDATE messages SET state = $2, updated_at = $3, last_error = $`+strconv.Itoa(len(args)+1)+`
			WHERE tenant_id = $1 AND campaign_id = $4 AND state IN (`+states+`) AND (tenant_id, id) IN (
				SELECT tenant_id, id FROM messages WHERE tenant_id = $1 AND campaign_id = $4 AND state IN (`+states+`) LIMIT $5)
			RETURNING id`, args...)
		if err != nil {
			return fmt.Errorf("router: move campaign messages: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				_ = rows.Close()
				return err
			}
			moved = append(moved, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(moved) == 0 {
			return nil
		}
		detail, _ := json.Marshal(map[string]string{"reason": reason})
		sqlite := tx.Dialect() == store.SQLite
		for start := 0; start < len(moved); start += 1000 {
			chunk := moved[start:min(start+1000, len(moved))]
			m := newMarks(sqlite, 1, 4*len(chunk))
			var q strings.Builder
			q.WriteString(`INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES `)
			for i, id := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("($1, " + m.mark(id) + ", " + m.mark(now) + ", " + m.mark(kind) + ", " + m.mark(string(detail)) + ")")
			}
			if _, err := tx.ExecBulk(ctx, q.String(), m.args...); err != nil {
				return fmt.Errorf("router: campaign message events: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if to == StateQueued && len(moved) > 0 && s.Wake != nil {
		s.Wake()
	}
	return len(moved), nil
}

// HeldMessage is a held campaign message: its id, contact and due time.
type HeldMessage struct {
	ID        string
	ContactID string
	Due       time.Time
}

// HeldMessages returns up to limit held messages of a campaign, earliest
// due first.
func (s *Service) HeldMessages(ctx context.Context, tenantID, campaignID string, limit int) ([]HeldMessage, error) {
	var out []HeldMessage
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, COALESCE(contact_id, ''), due_at FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND state = 'held'
			ORDER BY due_at, id LIMIT $3`, campaignID, limit)
		if err != nil {
			return fmt.Errorf("router: held messages: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var h HeldMessage
			var due int64
			if err := rows.Scan(&h.ID, &h.ContactID, &due); err != nil {
				return err
			}
			h.Due = store.FromMicros(due)
			out = append(out, h)
		}
		return rows.Err()
	})
	return out, err
}

// ReleaseHeld queues held messages of a campaign again, each due at its
// Due, with a 'released' event each, in one transaction. A message no
// longer held is left alone. It returns how many were released.
func (s *Service) ReleaseHeld(ctx context.Context, tenantID, campaignID string, list []HeldMessage) (int, error) {
	var released []string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		now := store.Micros(tx.Now().UTC())
		for _, h := range list {
			res, err := tx.Exec(ctx, `UPDATE messages SET state = 'queued', due_at = $2, updated_at = $3, last_error = ''
				WHERE tenant_id = $1 AND id = $4 AND campaign_id = $5 AND state = 'held'`, store.Micros(h.Due), now, h.ID, campaignID)
			if err != nil {
				return fmt.Errorf("router: release held message: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				released = append(released, h.ID)
			}
		}
		if len(released) == 0 {
			return nil
		}
		sqlite := tx.Dialect() == store.SQLite
		for start := 0; start < len(released); start += 1000 {
			chunk := released[start:min(start+1000, len(released))]
			m := newMarks(sqlite, 1, 2*len(chunk))
			var q strings.Builder
			q.WriteString(`INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES `)
			for i, id := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("($1, " + m.mark(id) + ", " + m.mark(now) + `, 'released', '{"reason":"campaign resumed"}')`)
			}
			if _, err := tx.ExecBulk(ctx, q.String(), m.args...); err != nil {
				return fmt.Errorf("router: release events: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(released) > 0 && s.Wake != nil {
		s.Wake()
	}
	return len(released), nil
}

// CampaignDueSeconds counts a campaign's queued messages by due second
// (Unix seconds), so that a resumed expansion or a resume keeps the
// campaign's throttle.
func (s *Service) CampaignDueSeconds(ctx context.Context, tenantID, campaignID string) (map[int64]int, error) {
	out := map[int64]int{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT due_at / 1000000, count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND state = 'queued'
			GROUP BY due_at / 1000000`, campaignID)
		if err != nil {
			return fmt.Errorf("router: campaign due times: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var sec int64
			var n int
			if err := rows.Scan(&sec, &n); err != nil {
				return err
			}
			out[sec] = n
		}
		return rows.Err()
	})
	return out, err
}

// shardList is "0, 1, ..., Shards-1": naming every shard lets a query on
// the state of messages use the queue's (shard, state, due_at) index.
func shardList() string {
	var b strings.Builder
	for i := 0; i < Shards; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// DueBacklog counts, up to limit, the queued messages (of every tenant)
// that are due now: the engine's work in hand. A campaign's expansion
// waits while it is large, so that the queue it feeds stays short (the
// engine's claim orders the due messages). The count reads the queue's
// (shard, state, due_at) index only, in platform scope like the engine.
func (s *Service) DueBacklog(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		now := store.Micros(p.Now().UTC())
		return p.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM messages WHERE shard IN (`+shardList()+`) AND state = 'queued'
			AND due_at <= $1 LIMIT $2) AS due`, now, limit).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("router: due backlog: %w", err)
	}
	return n, nil
}

// ContactChannel is a contact and a channel a message goes to.
type ContactChannel struct {
	ContactID, Channel string
	// CampaignID is empty for a transactional message.
	CampaignID string
}

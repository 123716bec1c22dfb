package contacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// The batched write path shared by Import and Seed: rows are validated and
// sealed by a pool of workers, then written in file order, one transaction
// per batch, with multi-row statements. A batch commits whole or not at all,
// with its per-line errors, the job's counts and last committed line, and
// audit events naming the contacts created and updated (one per 1000).

// outcome of one row.
const (
	outPending = iota
	outCreated
	outUpdated
	outSkipped
	outFailed
)

// prepRow is one row on its way to the store.
type prepRow struct {
	line     int64
	raw      []string // CSV fields, mapped by the worker
	err      *lineError
	v        validated
	consents []ConsentInput // per-row consents (columns, or seed)
	lists    []string       // per-row list memberships (seed)
	id       string         // the id a new contact gets
	sealed   sealedContact
	plain    string      // v.plain as JSON, encoded by the worker (plainJSON)
	cipher   fieldSealer // the contact's cipher, once the writer needed it
	outcome  int
	contact  string // the contact id written
	now      time.Time
}

// plainJSON returns the row's plain attributes as JSON: encoded once, by
// the worker that prepared the row when it did (off the writer's path).
func (r *prepRow) plainJSON() string {
	if r.plain == "" {
		r.plain = encodeAttrs(r.v.plain)
	}
	return r.plain
}

func (r *prepRow) fail(column, reason string) {
	r.err, r.outcome = &lineError{column: column, reason: reason}, outFailed
}

// batchStats are the counts of one batch.
type batchStats struct {
	processed, created, updated, skipped, failed int64
}

// lit is a constant SQL fragment in a values list (a named placeholder
// such as $1, or NULL); any other cell becomes a new placeholder.
type lit string

// cast is a placeholder wrapped in a CAST to a constant type.
type cast struct {
	v   any
	typ string
}

// values builds "(...), (...)" for a multi-row statement.
//
// Placeholders: on PostgreSQL $2, $3...; on SQLite plain "?". SQLite, and
// the driver's binding, look named parameters ("$N") up by linear search,
// so a statement with thousands of them costs O(n²) (measured: most of an
// import's time). A "?" takes the next number in textual order, after the
// named parameters seen before it, so a statement built here must name
// every "$k" it uses (the tenant $1, and any shared value) before its first
// "?"; values go as new placeholders, in order.
type values struct {
	b      strings.Builder
	args   []any
	sqlite bool
	rows   int
}

// newValues starts a values list for a statement whose named parameters
// are $1 (the tenant) and then shared, as $2, $3...
func newValues(d store.Dialect, shared ...any) *values {
	return &values{args: append([]any(nil), shared...), sqlite: d == store.SQLite}
}

// param records a value and returns its placeholder.
func (v *values) param(x any) string {
	v.args = append(v.args, x)
	if v.sqlite {
		return "?"
	}
	return "$" + strconv.Itoa(len(v.args)+1) // $1 is the tenant
}

// in returns the placeholders of an IN list of xs.
func (v *values) in(xs []any) string {
	var b strings.Builder
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v.param(x))
	}
	return b.String()
}

func (v *values) row(cells ...any) {
	if v.rows > 0 {
		v.b.WriteString(", ")
	}
	v.rows++
	v.b.WriteByte('(')
	for i, c := range cells {
		if i > 0 {
			v.b.WriteString(", ")
		}
		switch c := c.(type) {
		case lit:
			v.b.WriteString(string(c))
		case cast:
			v.b.WriteString("CAST(" + v.param(c.v) + " AS " + c.typ + ")")
		default:
			v.b.WriteString(v.param(c))
		}
	}
	v.b.WriteByte(')')
}

// maxRowsPerStatement keeps statements well under both drivers' limits on
// placeholders (SQLite 32766, PostgreSQL 65535).
const maxRowsPerStatement = 500

// sqliteRowsPerStatement bounds the rows of a statement that writes
// contacts on SQLite. A multi-row statement keeps a copy of every page it
// changes until it ends (its statement journal, to undo it alone if a row
// fails); contacts' blind-index pages are scattered, so 500 rows copy
// megabytes, which the SQLite driver's allocator maps and unmaps at every
// statement (measured: a tenth of a million-row import's CPU, in page
// faults). 100 rows keep the journal small and reused.
const sqliteRowsPerStatement = 100

// rowsPerStatement is the number of contacts written per statement.
func (w *writer) rowsPerStatement() int {
	if w.dialect == store.SQLite {
		return sqliteRowsPerStatement
	}
	return maxRowsPerStatement
}

// chunks calls f with successive parts of xs: parts of size rows, then of
// decreasing powers of two. A statement built per part thus has one of a
// few texts, which SQLite's statement cache keeps prepared (a multi-row
// statement of any length would be parsed at every batch).
func chunks[T any](xs []T, size int, f func([]T) error) error {
	for len(xs) > 0 {
		n := size
		if len(xs) < size {
			n = 1 << (bits.Len(uint(len(xs))) - 1)
		}
		if err := f(xs[:n]); err != nil {
			return err
		}
		xs = xs[n:]
	}
	return nil
}

// writer writes batches of prepared rows for one tenant.
type writer struct {
	s        *Service
	cr       *tenants.Crypto
	dialect  store.Dialect
	mode     ImportMode
	source   string // contacts.source of new contacts: import or seed
	jobID    string
	consents []ConsentInput // applied to every row
	lists    []string       // every row joins these lists
	action   string         // audit action of a batch
	fields   []audit.Change // personal and plain fields the rows may set

	written, nextAnalyze int64 // rows written; when to ANALYZE next (PostgreSQL)

	bulk *store.BulkSession // the batches' connection, when they run in a bulk session
	cols contactArrays      // PostgreSQL: the arrays of a contacts insert, reused

	// PostgreSQL: new contacts by plain INSERT (see writeBatch). plain is
	// set for the batch being written; fresh counts the batches to write
	// by upsert, all of whose contacts were new, before trying a plain
	// INSERT again, and backoff is what fresh restarts from after a try
	// met an existing contact.
	plain          bool
	fresh, backoff int

	// PostgreSQL imports: batches of new contacts go through a pipeline
	// (writeBatch). piped is set while one is being built.
	pipelined bool
	pipe      *store.Pipeline
	piped     bool
	inflight  []*pendingBatch
}

// BulkWALPages is the write-ahead log size (in 4 KiB pages, about 400 MiB)
// at which the commits of an import or seed checkpoint on SQLite, instead
// of the store's sqlite.wal_autocheckpoint (10000). Once the blind indexes
// outgrow the page cache, each 1000-contact batch changes about two
// thousand scattered index pages; a checkpoint every 10000 frames copies
// nearly every frame into the database file (a read, a write, and fsyncs),
// while one every 100000 frames writes each page once for several commits
// (measured at 300k contacts: -21% CPU per row, +30% rows/s). See
// bench/README.md.
const BulkWALPages = 100000

// defaultBatchSize is the number of contacts an import (by default) or a
// seed writes per transaction. On SQLite, 500: once the blind indexes
// outgrow the page cache, 1000 contacts change about 2,500 scattered pages,
// more than the cache holds, which then spills pages into the log in the
// middle of the transaction and writes them again at commit, re-reading
// the frames after the first one rewritten to checksum them (measured at
// 1M contacts: 500 per transaction took 13% less CPU per contact and 10 MB
// less peak memory than 1000).
func defaultBatchSize(d store.Dialect) int {
	if d == store.SQLite {
		return 500
	}
	return 1000
}

// inBulk runs fn with w writing its batches through one bulk session of
// the tenant (one pinned connection, with a larger checkpoint interval on
// SQLite).
func (w *writer) inBulk(ctx context.Context, tenantID string, fn func() error) error {
	return w.s.DB.Tenant(tenantID).Bulk(ctx, store.BulkOptions{WALAutocheckpoint: BulkWALPages}, func(b *store.BulkSession) error {
		w.bulk = b
		defer func() { w.bulk = nil }()
		if !w.pipelined || w.dialect != store.Postgres {
			return fn()
		}
		return b.Pipeline(ctx, func(p *store.Pipeline) error {
			w.pipe = p
			defer func() { w.pipe = nil }()
			err := fn()
			if derr := w.drain(ctx, tenantID); err == nil {
				err = derr
			}
			return err
		})
	})
}

// pendingBatch is a batch sent through the pipeline, until it commits.
type pendingBatch struct {
	rows  []*prepRow
	now   time.Time
	extra func(*store.Tx, batchStats) error
	after func(batchStats)
	st    batchStats
	done  bool
	err   error
}

// writeBatch writes rows in one transaction of the tenant, then extra in
// the same transaction (the job's counts, the error report), and calls
// after with the batch's counts once it has committed: at once, or, for a
// batch sent through the pipeline, when a later call (or the end of
// inBulk) sees it committed. Batches commit in the order of the calls.
//
// Through the pipeline (PostgreSQL, an import that is not a dry run) goes
// a batch the writer would write by plain INSERT whose statements need no
// result: every line with an email, no email twice. Its transaction is
// built and sent while the server still runs the one before (the server no
// longer waits for the client between batches), and the blocklist is
// applied by the INSERT itself. If it fails on an existing email, it and
// the batch sent after it (skipped by the server) are rolled back and
// written again, in order, without the pipeline (by upsert).
func (w *writer) writeBatch(ctx context.Context, tenantID string, rows []*prepRow, now time.Time, extra func(*store.Tx, batchStats) error, after func(batchStats)) error {
	if w.pipe != nil && w.mode != ModeBlocklist && w.fresh == 0 && pipelinable(rows) {
		pb := &pendingBatch{rows: rows, now: now, extra: extra, after: after}
		w.plain, w.piped = true, true
		err := w.pipe.Send(ctx, func(tx *store.Tx) error {
			st, err := w.write(ctx, tx, rows, now)
			if err != nil {
				return err
			}
			pb.st = st
			if extra != nil {
				return extra(tx, st)
			}
			return nil
		}, func(err error) { pb.done, pb.err = true, err })
		w.plain, w.piped = false, false
		if err != nil {
			return err
		}
		w.inflight = append(w.inflight, pb)
		return w.settle(ctx, tenantID)
	}
	if err := w.drain(ctx, tenantID); err != nil {
		return err
	}
	st, err := w.writeBatchNow(ctx, tenantID, rows, now, extra)
	if err != nil && !errors.Is(err, errDryRun) { // a dry run's batches are counted, rolled back
		return err
	}
	w.committed(ctx, len(rows), st, after)
	return nil
}

// committed is called in order for each batch committed.
func (w *writer) committed(ctx context.Context, n int, st batchStats, after func(batchStats)) {
	if after != nil {
		after(st)
	}
	w.analyze(ctx, n)
}

// pipelinable reports whether rows can be written by plain INSERT with no
// statement whose result is needed: each line with an email, no email
// twice (a repeated one is upserted, and its first line's outcome read).
func pipelinable(rows []*prepRow) bool {
	seen := make(map[string]struct{}, len(rows))
	for _, r := range rows {
		if r.err != nil {
			continue
		}
		if r.sealed.emailBidx == nil {
			return false
		}
		k := key(r.sealed.emailBidx)
		if _, ok := seen[k]; ok {
			return false
		}
		seen[k] = struct{}{}
	}
	return true
}

// settle handles the batches of the pipeline that have ended, oldest
// first: a committed one is counted; a failed one and those sent after it
// (all rolled back) are written again, in order, without the pipeline.
func (w *writer) settle(ctx context.Context, tenantID string) error {
	for len(w.inflight) > 0 && w.inflight[0].done {
		pb := w.inflight[0]
		if pb.err == nil {
			w.inflight = w.inflight[1:]
			w.committed(ctx, len(pb.rows), pb.st, pb.after)
			continue
		}
		if !isEmailConflict(pb.err) && !errors.Is(pb.err, store.ErrPipelineSkipped) {
			return pb.err
		}
		if isEmailConflict(pb.err) {
			w.metExisting()
		}
		redo := w.inflight
		w.inflight = nil
		for _, b := range redo {
			st, err := w.writeBatchNow(ctx, tenantID, b.rows, b.now, b.extra)
			if err != nil {
				return err
			}
			w.committed(ctx, len(b.rows), st, b.after)
		}
	}
	return nil
}

// drain waits for every batch sent through the pipeline to end, and
// settles them.
func (w *writer) drain(ctx context.Context, tenantID string) error {
	if w.pipe == nil || len(w.inflight) == 0 {
		return nil
	}
	if err := w.pipe.Wait(ctx); err != nil {
		return err
	}
	return w.settle(ctx, tenantID)
}

// writeBatchNow writes a batch in a transaction of its own.
func (w *writer) writeBatchNow(ctx context.Context, tenantID string, rows []*prepRow, now time.Time, extra func(*store.Tx, batchStats) error) (batchStats, error) {
	var st batchStats
	run := func(tx *store.Tx) error {
		var err error
		if st, err = w.write(ctx, tx, rows, now); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx, st)
		}
		return nil
	}
	tx := func() error {
		if w.bulk != nil {
			return w.bulk.Tx(ctx, run)
		}
		return w.s.tx(ctx, tenantID, run)
	}
	// On PostgreSQL, the contacts of a batch's first round (each email's
	// first line in the batch) are first written by a plain INSERT, with
	// no ON CONFLICT and no RETURNING, as long as the batches before were
	// all new contacts (an import's usual case: a new file). An upsert
	// checks each row's email in the unique index before inserting it,
	// besides the insertion's own check, and returns every row: measured,
	// about a seventh of the server's time per contact, and the decoding
	// of the returned rows on the client. If any email of the batch is
	// already stored (or being stored by a concurrent transaction), the
	// INSERT fails on the unique index, the transaction is rolled back and
	// the batch is written again by upsert, the only way before.
	w.plain = w.dialect == store.Postgres && w.mode != ModeBlocklist && w.fresh == 0
	err := tx()
	if w.plain && isEmailConflict(err) {
		w.plain = false
		w.metExisting()
		err = tx()
	}
	if err == nil && !w.plain && w.fresh > 0 {
		if st.updated == 0 && st.skipped == 0 {
			w.fresh-- // all new: one batch closer to trying again
		} else {
			w.fresh = w.backoff
		}
	}
	w.plain = false
	return st, err
}

// maxPlainBackoff bounds the number of batches written by upsert before a
// plain INSERT is tried again (writeBatch): a file of existing contacts
// wastes at most one batch's INSERT in this many, and a new file after a
// few existing contacts soon writes by plain INSERT again.
const maxPlainBackoff = 64

// metExisting is called when a plain INSERT met a stored email: the next
// plain try waits for twice as many all-new batches as the last wait (1
// at first, at most maxPlainBackoff).
func (w *writer) metExisting() {
	w.backoff = min(max(2*w.backoff, 1), maxPlainBackoff)
	w.fresh = w.backoff
}

// isEmailConflict reports an INSERT refused by the unique index of the
// contacts' email blind index (PostgreSQL).
func isEmailConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "contacts_email"
}

// analyze keeps PostgreSQL's statistics up with a bulk load: its planner
// otherwise plans the batches' IN lists on the statistics of a table that
// was empty (a few rows per tenant), and scans a whole tenant for each
// batch. It runs ANALYZE after the first 1000 rows, then each time the rows
// written have grown tenfold (5 times for a million rows, at most about
// 0.3 s each, on a 30,000-row sample). ANALYZE is
// maintenance, not data access: it goes through the platform scope, and a
// role that does not own the tables only gets a warning.
func (w *writer) analyze(ctx context.Context, n int) {
	if w.dialect != store.Postgres {
		return
	}
	w.written += int64(n)
	if w.written < w.nextAnalyze {
		return
	}
	w.nextAnalyze = max(1000, w.written*10)
	_ = w.s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `ANALYZE contacts, consents, list_members, blocklist`)
		return err // best effort: the import goes on without fresh statistics
	})
}

// write stores rows in tx and sets each row's outcome.
func (w *writer) write(ctx context.Context, tx *store.Tx, rows []*prepRow, now time.Time) (batchStats, error) {
	var st batchStats
	var live []*prepRow
	for _, r := range rows {
		st.processed++
		r.outcome, r.contact = outPending, ""
		if r.err != nil {
			r.outcome = outFailed
			continue
		}
		live = append(live, r)
	}
	if len(live) > 0 {
		var err error
		if w.mode == ModeBlocklist {
			err = w.blocklist(ctx, tx, live, now)
		} else {
			err = w.contacts(ctx, tx, live, now)
		}
		if err != nil {
			return st, err
		}
	}
	var created, updated []string
	for _, r := range rows {
		switch r.outcome {
		case outCreated:
			st.created++
			created = append(created, r.contact)
		case outUpdated:
			st.updated++
			updated = append(updated, r.contact)
		case outSkipped:
			st.skipped++
		case outFailed:
			st.failed++
		}
	}
	if w.mode != ModeBlocklist && (len(created) > 0 || len(updated) > 0) {
		if err := w.related(ctx, tx, rows, now); err != nil {
			return st, err
		}
	}
	// One event per 1000 contacts named, so an event stays well under the
	// audit log's 64 KiB of details whatever the batch size.
	const idsPerEvent = 1000
	first := true
	for len(created) > 0 || len(updated) > 0 || (first && st.skipped > 0) {
		details := map[string]any{}
		if first {
			details["created"], details["updated"], details["skipped"], details["failed"] = st.created, st.updated, st.skipped, st.failed
		}
		if w.jobID != "" {
			details["job_id"] = w.jobID
		}
		room := idsPerEvent
		if n := min(room, len(created)); n > 0 {
			details["created_ids"], created, room = created[:n], created[n:], room-n
		}
		if n := min(room, len(updated)); n > 0 {
			details["updated_ids"], updated = updated[:n], updated[n:]
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: w.action, ObjectType: "contact",
			Changes: w.fields, Details: details}); err != nil {
			return st, err
		}
		first = false
	}
	return st, nil
}

func key(b []byte) string { return string(b) }

// blockedSet returns the blind indexes of the rows' addresses that are on
// the blocklist, keyed "e"+bidx or "p"+bidx.
func (w *writer) blockedSet(ctx context.Context, tx *store.Tx, rows []*prepRow) (map[string]bool, error) {
	out := map[string]bool{}
	var emails, phones []any
	for _, r := range rows {
		if r.sealed.emailBidx != nil {
			emails = append(emails, r.sealed.emailBidx)
		}
		if r.sealed.phoneBidx != nil {
			phones = append(phones, r.sealed.phoneBidx)
		}
	}
	if len(emails)+len(phones) == 0 {
		return out, nil
	}
	// Most tenants' blocklists are empty, or small: one look-up says so.
	var listed int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM blocklist WHERE tenant_id = $1 LIMIT 1) b`).Scan(&listed); err != nil {
		return nil, fmt.Errorf("contacts: check the blocklist: %w", err)
	}
	if listed == 0 {
		return out, nil
	}
	for _, set := range []struct {
		kind string
		vals []any
	}{{"email", emails}, {"phone", phones}} {
		err := chunks(set.vals, maxRowsPerStatement, func(chunk []any) error {
			v := newValues(w.dialect, set.kind)
			rs, err := tx.Query(ctx, `SELECT value_bidx FROM blocklist WHERE tenant_id = $1 AND kind = $2 AND value_bidx IN (`+v.in(chunk)+`)`, v.args...)
			if err != nil {
				return err
			}
			defer func() { _ = rs.Close() }()
			for rs.Next() {
				var b []byte
				if err := rs.Scan(&b); err != nil {
					return err
				}
				out[set.kind[:1]+key(b)] = true
			}
			return rs.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("contacts: check the blocklist: %w", err)
		}
	}
	return out, nil
}

func (w *writer) statusOf(r *prepRow, blocked map[string]bool) string {
	if (r.sealed.emailBidx != nil && blocked["e"+key(r.sealed.emailBidx)]) || (r.sealed.phoneBidx != nil && blocked["p"+key(r.sealed.phoneBidx)]) {
		return string(StatusBlocklisted)
	}
	return string(StatusActive)
}

// existingPersonal reads and opens the personal attributes of existing
// contacts, by email blind index ("e"+bidx) or id ("i"+id).
func (w *writer) existingPersonal(ctx context.Context, tx *store.Tx, col string, vals []any) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for start := 0; start < len(vals); start += maxRowsPerStatement {
		chunk := vals[start:min(start+maxRowsPerStatement, len(vals))]
		v := newValues(w.dialect)
		q := `SELECT email_bidx, id, attributes_enc, key_enc FROM contacts WHERE tenant_id = $1 AND email_bidx IN (` + v.in(chunk) + `)`
		if col == "id" {
			q = `SELECT email_bidx, id, attributes_enc, key_enc FROM contacts WHERE tenant_id = $1 AND id IN (` + v.in(chunk) + `)`
		}
		rs, err := tx.Query(ctx, q, v.args...)
		if err != nil {
			return nil, fmt.Errorf("contacts: read personal attributes: %w", err)
		}
		for rs.Next() {
			var bidx, enc, keyEnc []byte
			var id string
			if err := rs.Scan(&bidx, &id, &enc, &keyEnc); err != nil {
				_ = rs.Close()
				return nil, fmt.Errorf("contacts: read personal attributes: %w", err)
			}
			cc, err := w.cr.ContactCipher(keyEnc)
			if err != nil {
				_ = rs.Close()
				return nil, err
			}
			m, err := openAttrs(cc, enc)
			if err != nil {
				_ = rs.Close()
				return nil, err
			}
			if col == "id" {
				out["i"+id] = m
			} else {
				out["e"+key(bidx)] = m
			}
		}
		err = rs.Err()
		_ = rs.Close()
		if err != nil {
			return nil, fmt.Errorf("contacts: read personal attributes: %w", err)
		}
	}
	return out, nil
}

// mergePersonal seals, for each row with personal attributes, the stored
// ones merged with the row's (rows in file order, so a later duplicate sees
// the earlier one's values).
func (w *writer) mergePersonal(rows []*prepRow, existing map[string]map[string]any, keyOf func(*prepRow) string) error {
	for _, r := range rows {
		if len(r.v.personal) == 0 {
			continue
		}
		k := keyOf(r)
		merged := mergeAttrs(existing[k], r.v.personal)
		existing[k] = merged
		cc, err := w.rowCipher(r)
		if err != nil {
			return err
		}
		enc, err := sealAttrs(cc, merged)
		if err != nil {
			return err
		}
		r.sealed.attrsEnc = enc
	}
	return nil
}

func (w *writer) insertSQL(vals *values, conflict string) string {
	return `INSERT INTO contacts (tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
		locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, key_enc) VALUES ` + vals.b.String() + conflict
}

// rowCipher is the cipher r's fields are sealed with: the key made for it,
// or the existing contact's that resealFor moved them to.
func (w *writer) rowCipher(r *prepRow) (fieldSealer, error) {
	if r.cipher != nil {
		return r.cipher, nil
	}
	if len(r.sealed.keyEnc) == 0 {
		return w.cr, nil
	}
	cc, err := w.cr.ContactCipher(r.sealed.keyEnc)
	if err != nil {
		return nil, err
	}
	r.cipher = cc
	return cc, nil
}

// resealFor moves r's sealed fields from the new key made for r to the key
// of the existing contact r updates (keyEnc, sealed), so that every field of
// a contact stays under its one key. A contact without a key adopts r's.
func (w *writer) resealFor(r *prepRow, keyEnc []byte) error {
	if len(keyEnc) == 0 || bytes.Equal(keyEnc, r.sealed.keyEnc) || len(r.sealed.keyEnc) == 0 {
		return nil
	}
	mine, err := w.rowCipher(r)
	if err != nil {
		return err
	}
	cc, err := w.cr.ContactCipher(keyEnc)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		ct    *[]byte
		field string
	}{{&r.sealed.emailEnc, fEmail}, {&r.sealed.phoneEnc, fPhone}, {&r.sealed.firstEnc, fFirstName},
		{&r.sealed.lastEnc, fLastName}, {&r.sealed.attrsEnc, fAttributes}} {
		if len(*f.ct) == 0 {
			continue
		}
		pt, err := mine.OpenString(f.field, *f.ct)
		if err != nil {
			return err
		}
		if *f.ct, err = cc.SealString(f.field, pt); err != nil {
			return err
		}
	}
	r.cipher, r.sealed.keyEnc = cc, nil
	return nil
}

// insertContacts returns the statement and arguments that insert rows into
// contacts, followed by conflict. On SQLite: a multi-row VALUES list. On
// PostgreSQL: INSERT ... SELECT FROM unnest of one array per column, so a
// statement of 500 contacts has 17 parameters instead of 8,500: pgx encodes
// each column in one binary array (measured: the encoding of the VALUES
// list's parameters, a growing buffer per statement and a boxed value per
// cell, was a quarter of an import's client CPU), and the server binds 17
// values. The arrays are the writer's, reused from statement to statement:
// the arguments are only valid until the next call.
func (w *writer) insertContacts(rows []*prepRow, blocked map[string]bool, now time.Time, conflict string) (string, []any) {
	if w.dialect != store.Postgres {
		vals := newValues(w.dialect)
		for _, r := range rows {
			r.now = now
			w.contactRow(vals, r, w.statusOf(r, blocked))
		}
		return w.insertSQL(vals, conflict), vals.args
	}
	c := &w.cols
	if w.piped {
		// A pipelined statement's arguments are encoded when its
		// transaction is sent, after the next statement is built.
		c = &contactArrays{}
	}
	c.reset()
	for _, r := range rows {
		r.now = now
		c.id = append(c.id, r.id)
		c.emailEnc = append(c.emailEnc, r.sealed.emailEnc)
		c.emailBidx = append(c.emailBidx, r.sealed.emailBidx)
		c.phoneEnc = append(c.phoneEnc, r.sealed.phoneEnc)
		c.phoneBidx = append(c.phoneBidx, r.sealed.phoneBidx)
		c.firstEnc = append(c.firstEnc, r.sealed.firstEnc)
		c.lastEnc = append(c.lastEnc, r.sealed.lastEnc)
		c.locale = append(c.locale, r.v.locale)
		c.tz = append(c.tz, r.v.tz)
		c.attrsEnc = append(c.attrsEnc, r.sealed.attrsEnc)
		c.attrs = append(c.attrs, r.plainJSON())
		c.status = append(c.status, w.statusOf(r, blocked))
		c.at = append(c.at, micros(now))
		c.keyEnc = append(c.keyEnc, r.sealed.keyEnc)
	}
	status := `u.status`
	if w.piped {
		// The blocklist is read by the statement (its transaction is sent
		// before the one before it has run): a contact whose email or phone
		// is listed is created blocklisted, as statusOf does. The first
		// test runs once per statement: most blocklists are empty.
		status = `CASE WHEN NOT (SELECT EXISTS (SELECT 1 FROM blocklist WHERE tenant_id = $1)) THEN u.status
		WHEN EXISTS (SELECT 1 FROM blocklist b WHERE b.tenant_id = $1 AND b.kind = 'email' AND b.value_bidx = u.email_bidx)
		OR EXISTS (SELECT 1 FROM blocklist b WHERE b.tenant_id = $1 AND b.kind = 'phone' AND b.value_bidx = u.phone_bidx)
		THEN 'blocklisted' ELSE u.status END`
	}
	q := `INSERT INTO contacts (tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc,
		locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, key_enc)
		SELECT $1, u.id, u.email_enc, u.email_bidx, u.phone_enc, u.phone_bidx, u.first_name_enc, u.last_name_enc, u.locale, u.timezone,
		u.attributes_enc, CAST(u.attributes AS JSONB), ` + status + `, $2, u.at, u.at, u.key_enc
		FROM unnest(CAST($3 AS TEXT[]), CAST($4 AS BYTEA[]), CAST($5 AS BYTEA[]), CAST($6 AS BYTEA[]), CAST($7 AS BYTEA[]), CAST($8 AS BYTEA[]),
		CAST($9 AS BYTEA[]), CAST($10 AS TEXT[]), CAST($11 AS TEXT[]), CAST($12 AS BYTEA[]), CAST($13 AS TEXT[]), CAST($14 AS TEXT[]),
		CAST($15 AS BIGINT[]), CAST($16 AS BYTEA[]))
		AS u (id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc, last_name_enc, locale, timezone, attributes_enc, attributes,
		status, at, key_enc)` + conflict
	return q, []any{w.source, c.id, c.emailEnc, c.emailBidx, c.phoneEnc, c.phoneBidx, c.firstEnc, c.lastEnc, c.locale, c.tz, c.attrsEnc,
		c.attrs, c.status, c.at, c.keyEnc}
}

// contactArrays are the per-column arrays of a PostgreSQL contacts insert
// (a nil []byte is a NULL element).
type contactArrays struct {
	id, locale, tz, attrs, status                                         []string
	emailEnc, emailBidx, phoneEnc, phoneBidx, firstEnc, lastEnc, attrsEnc pgtype.FlatArray[[]byte]
	keyEnc                                                                pgtype.FlatArray[[]byte]
	at                                                                    []int64
}

func (c *contactArrays) reset() {
	c.id, c.locale, c.tz, c.attrs, c.status = c.id[:0], c.locale[:0], c.tz[:0], c.attrs[:0], c.status[:0]
	c.emailEnc, c.emailBidx, c.phoneEnc, c.phoneBidx = c.emailEnc[:0], c.emailBidx[:0], c.phoneEnc[:0], c.phoneBidx[:0]
	c.firstEnc, c.lastEnc, c.attrsEnc, c.keyEnc, c.at = c.firstEnc[:0], c.lastEnc[:0], c.attrsEnc[:0], c.keyEnc[:0], c.at[:0]
}

func (w *writer) contactRow(vals *values, r *prepRow, status string) {
	var attrs any = r.plainJSON()
	if w.dialect == store.Postgres {
		attrs = cast{v: attrs, typ: "JSONB"}
	}
	vals.row(lit("$1"), r.id, blob(r.sealed.emailEnc), blob(r.sealed.emailBidx), blob(r.sealed.phoneEnc), blob(r.sealed.phoneBidx),
		blob(r.sealed.firstEnc), blob(r.sealed.lastEnc), r.v.locale, r.v.tz, blob(r.sealed.attrsEnc), attrs, status, w.source, micros(r.now), micros(r.now),
		blob(r.sealed.keyEnc))
}

// contacts writes rows in upsert or add mode.
func (w *writer) contacts(ctx context.Context, tx *store.Tx, rows []*prepRow, now time.Time) error {
	blocked := map[string]bool{}
	if !w.piped { // a pipelined INSERT reads the blocklist itself
		var err error
		if blocked, err = w.blockedSet(ctx, tx, rows); err != nil {
			return err
		}
	}
	var byEmail, byPhone []*prepRow
	for _, r := range rows {
		if r.sealed.emailBidx != nil {
			byEmail = append(byEmail, r)
		} else {
			byPhone = append(byPhone, r)
		}
	}
	if err := w.emailRows(ctx, tx, byEmail, blocked, now); err != nil {
		return err
	}
	return w.phoneRows(ctx, tx, byPhone, blocked, now)
}

// emailRows upserts (or adds) rows that have an email, matched on the
// email blind index, with multi-row INSERT ... ON CONFLICT statements that
// use the unique index directly (no look-up first: it measured no faster on
// SQLite, and on PostgreSQL an IN list over the fresh rows of a bulk load is
// planned on stale statistics). Rows with the same email go in successive
// statements, in file order.
func (w *writer) emailRows(ctx context.Context, tx *store.Tx, rows []*prepRow, blocked map[string]bool, now time.Time) error {
	if len(rows) == 0 {
		return nil
	}
	if w.mode == ModeUpsert {
		// Personal attributes are sealed as one value: merge each row's into
		// what is stored (or what an earlier line of the batch set). A plain
		// INSERT stores none of the emails it writes (or fails): nothing to
		// read.
		var need []any
		for _, r := range rows {
			if len(r.v.personal) > 0 {
				need = append(need, r.sealed.emailBidx)
			}
		}
		if len(need) > 0 {
			existing := map[string]map[string]any{}
			if !w.plain {
				var err error
				if existing, err = w.existingPersonal(ctx, tx, "email", need); err != nil {
					return err
				}
			}
			if err := w.mergePersonal(rows, existing, func(r *prepRow) string { return "e" + key(r.sealed.emailBidx) }); err != nil {
				return err
			}
		}
	}
	// Rounds: the n-th occurrence of an email in the batch goes in round n.
	var rounds [][]*prepRow
	seen := map[string]int{}
	for _, r := range rows {
		k := key(r.sealed.emailBidx)
		n := seen[k]
		seen[k] = n + 1
		if n == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[n] = append(rounds[n], r)
	}
	conflict := ` ON CONFLICT (tenant_id, email_bidx) DO NOTHING RETURNING id, email_bidx, key_enc`
	if w.mode == ModeUpsert {
		merge := `json_patch(contacts.attributes, excluded.attributes)`
		if w.dialect == store.Postgres {
			merge = `contacts.attributes || excluded.attributes`
		}
		conflict = ` ON CONFLICT (tenant_id, email_bidx) DO UPDATE SET email_enc = excluded.email_enc,
			phone_enc = COALESCE(excluded.phone_enc, contacts.phone_enc), phone_bidx = COALESCE(excluded.phone_bidx, contacts.phone_bidx),
			first_name_enc = COALESCE(excluded.first_name_enc, contacts.first_name_enc),
			last_name_enc = COALESCE(excluded.last_name_enc, contacts.last_name_enc),
			locale = CASE WHEN excluded.locale = '' THEN contacts.locale ELSE excluded.locale END,
			timezone = CASE WHEN excluded.timezone = '' THEN contacts.timezone ELSE excluded.timezone END,
			attributes_enc = COALESCE(excluded.attributes_enc, contacts.attributes_enc),
			attributes = ` + merge + `,
			status = CASE WHEN excluded.status = 'blocklisted' THEN 'blocklisted' ELSE contacts.status END,
			updated_at = excluded.updated_at, key_enc = COALESCE(contacts.key_enc, excluded.key_enc)
			WHERE contacts.erased_at IS NULL RETURNING id, email_bidx, key_enc`
	}
	for n, round := range rounds {
		// In index order: concurrent imports then lock rows in the same order
		// (no deadlock on PostgreSQL), and the B-tree is walked forwards.
		sort.Slice(round, func(i, j int) bool { return bytes.Compare(round[i].sealed.emailBidx, round[j].sealed.emailBidx) < 0 })
		if n == 0 && w.plain {
			// New contacts only (writeBatch): an existing email fails the
			// statement, and the batch is written again by upsert.
			err := chunks(round, w.rowsPerStatement(), func(chunk []*prepRow) error {
				q, args := w.insertContacts(chunk, blocked, now, "")
				if _, err := tx.ExecBulk(ctx, q, args...); err != nil {
					return fmt.Errorf("contacts: write contacts: %w", err)
				}
				for _, r := range chunk {
					r.outcome, r.contact = outCreated, r.id
				}
				return nil
			})
			if err != nil {
				return err
			}
			continue
		}
		err := chunks(round, w.rowsPerStatement(), func(chunk []*prepRow) error {
			q, args := w.insertContacts(chunk, blocked, now, conflict)
			got, err := w.returning(ctx, tx, q, args)
			if err != nil {
				return err
			}
			for _, r := range chunk {
				ret, ok := got[key(r.sealed.emailBidx)]
				id := ret.id
				switch {
				case !ok:
					r.outcome = outSkipped // add mode: it exists; upsert: an erased contact (tombstone)
				case id == r.id:
					r.outcome, r.contact = outCreated, id
				default:
					r.outcome, r.contact = outUpdated, id
					// The row kept its own key: re-seal what this line set.
					if len(ret.key) > 0 && !bytes.Equal(ret.key, r.sealed.keyEnc) {
						if err := w.resealFor(r, ret.key); err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, `UPDATE contacts SET email_enc = $3, phone_enc = COALESCE($4, phone_enc),
							first_name_enc = COALESCE($5, first_name_enc), last_name_enc = COALESCE($6, last_name_enc),
							attributes_enc = COALESCE($7, attributes_enc) WHERE tenant_id = $1 AND id = $2`,
							id, blob(r.sealed.emailEnc), blob(r.sealed.phoneEnc), blob(r.sealed.firstEnc), blob(r.sealed.lastEnc),
							blob(r.sealed.attrsEnc)); err != nil {
							return fmt.Errorf("contacts: update contact: %w", err)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// returned is a row an INSERT ... RETURNING gave back.
type returned struct {
	id  string
	key []byte // the contact's sealed key
}

// returning runs an INSERT ... RETURNING id, email_bidx, key_enc and maps
// the returned blind indexes to ids and keys.
func (w *writer) returning(ctx context.Context, tx *store.Tx, q string, args []any) (map[string]returned, error) {
	rs, err := tx.QueryBulk(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("contacts: write contacts: %w", err)
	}
	defer func() { _ = rs.Close() }()
	out := map[string]returned{}
	for rs.Next() {
		var r returned
		var bidx []byte
		if err := rs.Scan(&r.id, &bidx, &r.key); err != nil {
			return nil, fmt.Errorf("contacts: write contacts: %w", err)
		}
		out[key(bidx)] = r
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("contacts: write contacts: %w", err)
	}
	return out, nil
}

// phoneRows writes rows without an email, matched on the phone blind
// index: no match creates a contact, one match updates it, several are a
// per-line error (the email is needed to choose).
func (w *writer) phoneRows(ctx context.Context, tx *store.Tx, rows []*prepRow, blocked map[string]bool, now time.Time) error {
	if len(rows) == 0 {
		return nil
	}
	matches := map[string][]string{}
	keyOf := map[string][]byte{} // contact id -> its sealed key
	var phones []any
	for _, r := range rows {
		phones = append(phones, r.sealed.phoneBidx)
	}
	for start := 0; start < len(phones); start += maxRowsPerStatement {
		chunk := phones[start:min(start+maxRowsPerStatement, len(phones))]
		v := newValues(w.dialect)
		rs, err := tx.Query(ctx, `SELECT id, phone_bidx, key_enc FROM contacts WHERE tenant_id = $1 AND erased_at IS NULL AND phone_bidx IN (`+
			v.in(chunk)+`) ORDER BY id`, v.args...)
		if err != nil {
			return fmt.Errorf("contacts: match phone numbers: %w", err)
		}
		for rs.Next() {
			var id string
			var b, keyEnc []byte
			if err := rs.Scan(&id, &b, &keyEnc); err != nil {
				_ = rs.Close()
				return fmt.Errorf("contacts: match phone numbers: %w", err)
			}
			matches[key(b)] = append(matches[key(b)], id)
			keyOf[id] = keyEnc
		}
		err = rs.Err()
		_ = rs.Close()
		if err != nil {
			return fmt.Errorf("contacts: match phone numbers: %w", err)
		}
	}
	var inserts, updates []*prepRow
	for _, r := range rows {
		m := matches[key(r.sealed.phoneBidx)]
		switch {
		case len(m) == 0:
			inserts = append(inserts, r)
			matches[key(r.sealed.phoneBidx)] = []string{r.id}
			keyOf[r.id] = r.sealed.keyEnc
			r.outcome, r.contact = outCreated, r.id
		case len(m) > 1:
			r.fail("", fmt.Sprintf("the phone number matches %d contacts and the line has no email to choose one", len(m)))
		case w.mode == ModeAdd:
			r.outcome = outSkipped
		default:
			updates = append(updates, r)
			r.outcome, r.contact = outUpdated, m[0]
		}
	}
	err := chunks(inserts, w.rowsPerStatement(), func(chunk []*prepRow) error {
		q, args := w.insertContacts(chunk, blocked, now, "")
		if _, err := tx.ExecBulk(ctx, q, args...); err != nil {
			return fmt.Errorf("contacts: write contacts: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(updates) == 0 {
		return nil
	}
	var ids []any
	for _, r := range updates {
		if len(r.v.personal) > 0 {
			ids = append(ids, r.contact)
		}
	}
	if len(ids) > 0 {
		existing, err := w.existingPersonal(ctx, tx, "id", ids)
		if err != nil {
			return err
		}
		if err := w.mergePersonal(updates, existing, func(r *prepRow) string { return "i" + r.contact }); err != nil {
			return err
		}
	}
	q := `UPDATE contacts SET phone_enc = $3, first_name_enc = COALESCE($4, first_name_enc), last_name_enc = COALESCE($5, last_name_enc),
		locale = CASE WHEN $6 = '' THEN locale ELSE $6 END, timezone = CASE WHEN $7 = '' THEN timezone ELSE $7 END,
		attributes_enc = COALESCE($8, attributes_enc), attributes = json_patch(attributes, $9),
		status = CASE WHEN $10 = 'blocklisted' THEN 'blocklisted' ELSE status END, updated_at = $11, key_enc = COALESCE(key_enc, $12)
		WHERE tenant_id = $1 AND id = $2`
	if w.dialect == store.Postgres {
		q = `UPDATE contacts SET phone_enc = $3, first_name_enc = COALESCE($4, first_name_enc), last_name_enc = COALESCE($5, last_name_enc),
		locale = CASE WHEN CAST($6 AS TEXT) = '' THEN locale ELSE CAST($6 AS TEXT) END,
		timezone = CASE WHEN CAST($7 AS TEXT) = '' THEN timezone ELSE CAST($7 AS TEXT) END,
		attributes_enc = COALESCE($8, attributes_enc), attributes = attributes || CAST($9 AS JSONB),
		status = CASE WHEN CAST($10 AS TEXT) = 'blocklisted' THEN 'blocklisted' ELSE status END, updated_at = $11,
		key_enc = COALESCE(key_enc, $12) WHERE tenant_id = $1 AND id = $2`
	}
	for _, r := range updates {
		// Keep every field of the contact under its one key.
		if err := w.resealFor(r, keyOf[r.contact]); err != nil {
			return err
		}
		if len(keyOf[r.contact]) == 0 {
			keyOf[r.contact] = r.sealed.keyEnc // the contact adopts this line's key
		}
		if _, err := tx.Exec(ctx, q, r.contact, blob(r.sealed.phoneEnc), blob(r.sealed.firstEnc), blob(r.sealed.lastEnc), r.v.locale, r.v.tz,
			blob(r.sealed.attrsEnc), r.plainJSON(), w.statusOf(r, blocked), micros(now), blob(r.sealed.keyEnc)); err != nil {
			return fmt.Errorf("contacts: update contact: %w", err)
		}
	}
	return nil
}

// related writes the consents and list memberships of the rows written.
// An import never turns a withdrawn consent back to granted or pending
// (only the person can, through a form or a link), and records nothing when
// the status is unchanged, so that a re-run adds no events.
func (w *writer) related(ctx context.Context, tx *store.Tx, rows []*prepRow, now time.Time) error {
	type ckey struct{ contact, channel, purpose string }
	type citem struct {
		ci   ConsentInput
		subj []byte
	}
	items := map[ckey]citem{}
	var order []ckey
	members := map[[2]string]bool{}
	var memberOrder [][2]string
	var written []any // updated contacts, whose current consents are read
	for _, r := range rows {
		if r.outcome != outCreated && r.outcome != outUpdated {
			continue
		}
		if r.outcome == outUpdated {
			written = append(written, r.contact) // a contact created now has no consent yet
		}
		all := append(append([]ConsentInput(nil), w.consents...), r.consents...)
		for _, ci := range all {
			if (ci.Channel == ChannelEmail && r.sealed.emailBidx == nil && r.outcome == outCreated) ||
				(ci.Channel == ChannelSMS && r.sealed.phoneBidx == nil && r.outcome == outCreated) {
				continue // no address for the channel
			}
			k := ckey{r.contact, string(ci.Channel), ci.Purpose}
			if _, ok := items[k]; !ok {
				order = append(order, k)
			}
			subj := r.sealed.emailBidx
			if ci.Channel == ChannelSMS {
				subj = r.sealed.phoneBidx
			}
			items[k] = citem{ci: ci, subj: subj}
		}
		for _, l := range append(append([]string(nil), w.lists...), r.lists...) {
			m := [2]string{l, r.contact}
			if !members[m] {
				members[m] = true
				memberOrder = append(memberOrder, m)
			}
		}
	}
	if len(order) > 0 {
		current := map[ckey]string{}
		for start := 0; start < len(written); start += maxRowsPerStatement {
			chunk := written[start:min(start+maxRowsPerStatement, len(written))]
			v := newValues(w.dialect)
			rs, err := tx.Query(ctx, `SELECT contact_id, channel, purpose, status FROM consents WHERE tenant_id = $1 AND contact_id IN (`+
				v.in(chunk)+`)`, v.args...)
			if err != nil {
				return fmt.Errorf("contacts: read consents: %w", err)
			}
			for rs.Next() {
				var k ckey
				var st string
				if err := rs.Scan(&k.contact, &k.channel, &k.purpose, &st); err != nil {
					_ = rs.Close()
					return fmt.Errorf("contacts: read consents: %w", err)
				}
				current[k] = st
			}
			err = rs.Err()
			_ = rs.Close()
			if err != nil {
				return fmt.Errorf("contacts: read consents: %w", err)
			}
		}
		var todo []ckey
		for _, k := range order {
			cur, ok := current[k]
			st := string(items[k].ci.Status)
			if ok && (cur == st || (cur == string(ConsentWithdrawn) && w.source == string(SourceImport))) {
				continue
			}
			todo = append(todo, k)
		}
		// In key order, so that concurrent writers lock rows in the same order.
		sort.Slice(todo, func(i, j int) bool {
			a, b := todo[i], todo[j]
			return a.contact < b.contact || (a.contact == b.contact && (a.channel < b.channel || (a.channel == b.channel && a.purpose < b.purpose)))
		})
		err := chunks(todo, maxRowsPerStatement/2, func(chunk []ckey) error {
			cv := newValues(w.dialect)
			ev := newValues(w.dialect)
			for _, k := range chunk {
				it := items[k]
				id := newID()
				cv.row(lit("$1"), k.contact, k.channel, k.purpose, string(it.ci.Status), string(it.ci.Source), lit("NULL"),
					it.ci.WordingHash, it.ci.WordingVersion, w.jobID, lit("NULL"), id, micros(now), micros(now))
				ev.row(lit("$1"), id, k.contact, blob(it.subj), k.channel, k.purpose, string(it.ci.Status), string(it.ci.Source), lit("NULL"),
					it.ci.WordingHash, it.ci.WordingVersion, w.jobID, lit("NULL"), micros(now))
			}
			if _, err := tx.ExecBulk(ctx, `INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, source_ip_enc,
				wording_hash, wording_version, job_id, confirmed_at, last_event_id, created_at, updated_at) VALUES `+cv.b.String()+`
				ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, source = excluded.source,
				source_ip_enc = excluded.source_ip_enc, wording_hash = excluded.wording_hash, wording_version = excluded.wording_version,
				job_id = excluded.job_id, confirmed_at = excluded.confirmed_at, last_event_id = excluded.last_event_id,
				updated_at = excluded.updated_at`, cv.args...); err != nil {
				return fmt.Errorf("contacts: write consents: %w", err)
			}
			if _, err := tx.ExecBulk(ctx, `INSERT INTO consent_events (tenant_id, id, contact_id, subject_bidx, channel, purpose, status, source,
				source_ip_enc, wording_hash, wording_version, job_id, confirmed_at, at) VALUES `+ev.b.String(), ev.args...); err != nil {
				return fmt.Errorf("contacts: write consent proofs: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Slice(memberOrder, func(i, j int) bool {
		return memberOrder[i][0] < memberOrder[j][0] || (memberOrder[i][0] == memberOrder[j][0] && memberOrder[i][1] < memberOrder[j][1])
	})
	return chunks(memberOrder, maxRowsPerStatement, func(chunk [][2]string) error {
		mv := newValues(w.dialect)
		for _, m := range chunk {
			mv.row(lit("$1"), m[0], m[1], micros(now))
		}
		if _, err := tx.ExecBulk(ctx, `INSERT INTO list_members (tenant_id, list_id, contact_id, added_at) VALUES `+mv.b.String()+
			` ON CONFLICT (tenant_id, list_id, contact_id) DO NOTHING`, mv.args...); err != nil {
			return fmt.Errorf("contacts: add to lists: %w", err)
		}
		return nil
	})
}

// blocklist adds each row's email and phone to the blocklist and marks
// the matching contacts blocklisted. A row whose addresses were all on the
// list already is skipped.
func (w *writer) blocklist(ctx context.Context, tx *store.Tx, rows []*prepRow, now time.Time) error {
	type entry struct {
		kind string
		bidx []byte
	}
	var entries []entry
	seen := map[string]bool{}
	for _, r := range rows {
		for _, e := range []entry{{"email", r.sealed.emailBidx}, {"phone", r.sealed.phoneBidx}} {
			if e.bidx != nil && !seen[e.kind+key(e.bidx)] {
				seen[e.kind+key(e.bidx)] = true
				entries = append(entries, e)
			}
		}
	}
	added := map[string]bool{}
	for start := 0; start < len(entries); start += maxRowsPerStatement {
		chunk := entries[start:min(start+maxRowsPerStatement, len(entries))]
		vals := newValues(w.dialect)
		for _, e := range chunk {
			vals.row(lit("$1"), e.kind, e.bidx, lit("''"), "import "+w.jobID, micros(now))
		}
		rs, err := tx.Query(ctx, `INSERT INTO blocklist (tenant_id, kind, value_bidx, reason, source, created_at) VALUES `+vals.b.String()+
			` ON CONFLICT (tenant_id, kind, value_bidx) DO NOTHING RETURNING kind, value_bidx`, vals.args...)
		if err != nil {
			return fmt.Errorf("contacts: add to the blocklist: %w", err)
		}
		for rs.Next() {
			var k string
			var b []byte
			if err := rs.Scan(&k, &b); err != nil {
				_ = rs.Close()
				return fmt.Errorf("contacts: add to the blocklist: %w", err)
			}
			added[k+key(b)] = true
		}
		err = rs.Err()
		_ = rs.Close()
		if err != nil {
			return fmt.Errorf("contacts: add to the blocklist: %w", err)
		}
		var emails, phones []any
		for _, e := range chunk {
			if e.kind == "email" {
				emails = append(emails, e.bidx)
			} else {
				phones = append(phones, e.bidx)
			}
		}
		for _, set := range []struct {
			q    string
			vals []any
		}{
			{`UPDATE contacts SET status = 'blocklisted', updated_at = $2 WHERE tenant_id = $1 AND status <> 'blocklisted' AND email_bidx IN (`, emails},
			{`UPDATE contacts SET status = 'blocklisted', updated_at = $2 WHERE tenant_id = $1 AND status <> 'blocklisted' AND phone_bidx IN (`, phones},
		} {
			if len(set.vals) == 0 {
				continue
			}
			v := newValues(w.dialect, micros(now))
			if _, err := tx.Exec(ctx, set.q+v.in(set.vals)+`)`, v.args...); err != nil {
				return fmt.Errorf("contacts: blocklist contacts: %w", err)
			}
		}
	}
	for _, r := range rows {
		r.outcome = outSkipped
		if (r.sealed.emailBidx != nil && added["email"+key(r.sealed.emailBidx)]) || (r.sealed.phoneBidx != nil && added["phone"+key(r.sealed.phoneBidx)]) {
			r.outcome = outCreated
		}
	}
	return nil
}

// fieldChanges lists, for the audit event of a batch, the fields the rows
// may set: names only (values of many contacts do not belong in one event).
func fieldChanges(cols []column) []audit.Change {
	var ch []audit.Change
	seen := map[string]bool{}
	for _, c := range cols {
		var f string
		personal := false
		switch c.target {
		case ColEmail, ColPhone, ColFirstName, ColLastName:
			f, personal = c.target, true
		case ColLocale, ColTimeZone, ColConsentEmail, ColConsentSMS:
			f = c.target
		case "attr":
			f, personal = "attributes."+c.attr.Key, c.attr.Personal
		default:
			continue
		}
		if !seen[f] {
			seen[f] = true
			ch = append(ch, audit.Change{Field: f, Personal: personal})
		}
	}
	sort.Slice(ch, func(i, j int) bool { return ch[i].Field < ch[j].Field })
	return ch
}

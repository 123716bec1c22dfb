package audit

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/store"
)

// ExportFormat names the export format (the header's "format").
//
// An export is JSON Lines, in this order:
//
//	{"type":"header", "format", "tenant_id", "origin", "from", "to", "first_seq", "last_seq",
//	 "events", "tree_size", "left", "exported_at"}
//	{"type":"event", "seq", "at", "category", "action", ..., "details", "body_hash", "leaf_hash"}   (one per event)
//	{"type":"proof", "consistency"}
//	{"type":"checkpoint", "note"}
//
// The events are every event of the log from first_seq to last_seq (the
// contiguous range of those written between from and to). "left" holds the
// hashes of the perfect subtrees of the tree of the first_seq-1 events
// before them (base64), so that appending the events' leaves gives the root
// of the tree of last_seq events; "consistency" proves that tree a prefix of
// the signed checkpoint's tree of tree_size events (tlog.ProveTree). A
// purged event has no body fields but its body_hash and purged_at. The
// checkpoint comes last, so that a cut file does not verify.
const ExportFormat = "relais-audit-export/1"

// Line types of an export.
const (
	lineHeader     = "header"
	lineEvent      = "event"
	lineProof      = "proof"
	lineCheckpoint = "checkpoint"
)

// Bounds on what an export reader accepts.
const (
	maxExportLine = 1 << 20
	exportChunk   = 1000
)

// ActionExport is the action of the event every export writes.
const ActionExport = "audit.export"

// exportLine is any line of an export.
type exportLine struct {
	Type string `json:"type"`

	Format     string      `json:"format,omitempty"`
	TenantID   *string     `json:"tenant_id,omitempty"`
	Origin     string      `json:"origin,omitempty"`
	From       *time.Time  `json:"from,omitempty"`
	To         *time.Time  `json:"to,omitempty"`
	FirstSeq   int64       `json:"first_seq,omitempty"`
	LastSeq    int64       `json:"last_seq,omitempty"`
	Events     *int64      `json:"events,omitempty"`
	TreeSize   int64       `json:"tree_size,omitempty"`
	Left       []tlog.Hash `json:"left,omitempty"`
	ExportedAt *time.Time  `json:"exported_at,omitempty"`

	Seq        int64           `json:"seq,omitempty"`
	At         *time.Time      `json:"at,omitempty"`
	Category   string          `json:"category,omitempty"`
	Action     string          `json:"action,omitempty"`
	ActorType  string          `json:"actor_type,omitempty"`
	ActorID    string          `json:"actor_id,omitempty"`
	ObjectType string          `json:"object_type,omitempty"`
	ObjectID   string          `json:"object_id,omitempty"`
	IP         string          `json:"ip,omitempty"`
	UserAgent  string          `json:"user_agent,omitempty"`
	RequestID  string          `json:"request_id,omitempty"`
	Details    json.RawMessage `json:"details,omitempty"`
	BodyHash   []byte          `json:"body_hash,omitempty"`
	LeafHash   []byte          `json:"leaf_hash,omitempty"`
	PurgedAt   *time.Time      `json:"purged_at,omitempty"`

	Consistency []tlog.Hash `json:"consistency,omitempty"`
	Note        string      `json:"note,omitempty"`
}

// ExportRequest selects what to export: the events written in [From, To)
// (a zero time leaves that end open).
type ExportRequest struct {
	From, To time.Time
}

// ExportSummary describes a written export.
type ExportSummary struct {
	TenantID string `json:"tenant_id"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	Events   int64  `json:"events"`
	TreeSize int64  `json:"tree_size"`
	// ExportSeq is the seq of the export's own audit event.
	ExportSeq  int64  `json:"export_seq"`
	Checkpoint string `json:"checkpoint"`
}

// Export writes the log's events of the requested period to w in the
// ExportFormat, with what is needed to verify them offline with only the
// log's public key (VerifyExport). It first records the export in the log
// (category export) and signs a checkpoint that covers it; it then streams
// the events in short transactions, checking each against its leaf hash.
// A failure after the first byte leaves w without its final checkpoint
// line, which VerifyExport rejects.
func (s *Service) Export(ctx context.Context, tenantID string, req ExportRequest, w io.Writer) (ExportSummary, error) {
	sum := ExportSummary{TenantID: tenantID}
	if !req.From.IsZero() && !req.To.IsZero() && !req.To.After(req.From) {
		return sum, fmt.Errorf("%w: the end of the period (%s) must be after its start (%s)", ErrInvalid, req.To.Format(time.RFC3339), req.From.Format(time.RFC3339))
	}
	origin, err := Origin(tenantID)
	if err != nil {
		return sum, err
	}
	err = s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		if err := SequenceLog(ctx, tx); err != nil {
			return err
		}
		head, _, err := readHead(ctx, tx)
		if err != nil {
			return err
		}
		var first, last sql.NullInt64
		from, to := int64(-1<<63), int64(1<<63-1)
		if !req.From.IsZero() {
			from = store.Micros(req.From)
		}
		if !req.To.IsZero() {
			to = store.Micros(req.To)
		}
		if err := tx.QueryRow(ctx, `SELECT (SELECT MIN(seq) FROM audit_events WHERE tenant_id = $1 AND seq <= $2 AND at >= $3),
			(SELECT MAX(seq) FROM audit_events WHERE tenant_id = $1 AND seq <= $2 AND at < $4)`, head, from, to).Scan(&first, &last); err != nil {
			return fmt.Errorf("audit: select the period: %w", err)
		}
		sum.FirstSeq, sum.LastSeq = first.Int64, last.Int64
		if !first.Valid || !last.Valid || first.Int64 > last.Int64 {
			sum.FirstSeq, sum.LastSeq = head+1, head
		}
		sum.Events = sum.LastSeq - sum.FirstSeq + 1
		det := map[string]any{"first_seq": sum.FirstSeq, "last_seq": sum.LastSeq, "events": sum.Events, "format": ExportFormat}
		if !req.From.IsZero() {
			det["from"] = req.From.UTC().Format(time.RFC3339Nano)
		}
		if !req.To.IsZero() {
			det["to"] = req.To.UTC().Format(time.RFC3339Nano)
		}
		r, err := AppendSequenced(ctx, tx, Event{Category: CategoryExport, Action: ActionExport, ObjectType: "audit_log", ObjectID: tenantID, Details: det})
		sum.ExportSeq = r.Seq
		return err
	})
	if err != nil {
		return sum, err
	}
	cp, err := s.Checkpoint(ctx, tenantID, ReasonExport)
	if err != nil {
		return sum, err
	}
	sum.TreeSize, sum.Checkpoint = cp.Size, cp.Note
	hdr := exportLine{Type: lineHeader, Format: ExportFormat, TenantID: &tenantID, Origin: origin,
		FirstSeq: sum.FirstSeq, LastSeq: sum.LastSeq, Events: &sum.Events, TreeSize: cp.Size}
	if !req.From.IsZero() {
		f := req.From.UTC()
		hdr.From = &f
	}
	if !req.To.IsZero() {
		t := req.To.UTC()
		hdr.To = &t
	}
	var proof []tlog.Hash
	err = s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		now := tx.Now().UTC()
		hdr.ExportedAt = &now
		r := hashReader{ctx, tx}
		var err error
		if hdr.Left, err = r.ReadHashes(compactIndexes(sum.FirstSeq - 1)); err != nil {
			return err
		}
		if sum.LastSeq > 0 {
			if proof, err = tlog.ProveTree(cp.Size, sum.LastSeq, r); err != nil {
				return fmt.Errorf("audit: prove the export's consistency: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(hdr); err != nil {
		return sum, fmt.Errorf("audit: write the export: %w", err)
	}
	for next := sum.FirstSeq; next <= sum.LastSeq; {
		end := min(sum.LastSeq, next+exportChunk-1)
		var recs []Record
		err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
			rows, err := tx.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq`, next, end)
			if err != nil {
				return fmt.Errorf("audit: read the log: %w", err)
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				r, err := scanRecord(rows, tenantID)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return rows.Err()
		})
		if err != nil {
			return sum, err
		}
		for _, r := range recs {
			if r.Seq != next {
				return sum, tampered(tenantID, Problem{Seq: next, Reason: fmt.Sprintf("event %d is missing", next)})
			}
			if _, reason := checkLeaf(r); reason != "" {
				return sum, tampered(tenantID, Problem{Seq: r.Seq, Reason: reason})
			}
			if err := enc.Encode(eventLine(r)); err != nil {
				return sum, fmt.Errorf("audit: write the export: %w", err)
			}
			next++
		}
		if next <= end {
			return sum, tampered(tenantID, Problem{Seq: next, Reason: fmt.Sprintf("event %d is missing", next)})
		}
	}
	if err := enc.Encode(exportLine{Type: lineProof, Consistency: proof}); err != nil {
		return sum, fmt.Errorf("audit: write the export: %w", err)
	}
	if err := enc.Encode(exportLine{Type: lineCheckpoint, Note: cp.Note}); err != nil {
		return sum, fmt.Errorf("audit: write the export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return sum, fmt.Errorf("audit: write the export: %w", err)
	}
	return sum, nil
}

func eventLine(r Record) exportLine {
	at := r.At.UTC()
	l := exportLine{Type: lineEvent, Seq: r.Seq, At: &at, Category: r.Category, BodyHash: r.BodyHash, LeafHash: r.LeafHash, PurgedAt: r.PurgedAt}
	if r.PurgedAt == nil {
		l.Action, l.ActorType, l.ActorID, l.ObjectType, l.ObjectID = r.Action, r.ActorType, r.ActorID, r.ObjectType, r.ObjectID
		l.IP, l.UserAgent, l.RequestID, l.Details = r.IP, r.UserAgent, r.RequestID, r.Details
	}
	return l
}

// ExportReport describes an export that verified.
type ExportReport struct {
	TenantID string    `json:"tenant_id"`
	Origin   string    `json:"origin"`
	FirstSeq int64     `json:"first_seq"`
	LastSeq  int64     `json:"last_seq"`
	Events   int64     `json:"events"`
	Purged   int64     `json:"purged"`
	TreeSize int64     `json:"tree_size"`
	Root     tlog.Hash `json:"root_hash"`
}

// ExportError is the first problem VerifyExport found: the line (1-based)
// and, for an event, its seq.
type ExportError struct {
	Line   int
	Seq    int64
	Reason string
}

// Error says where and what.
func (e *ExportError) Error() string {
	if e.Line == 0 {
		return "audit: the export does not verify: " + e.Reason
	}
	return fmt.Sprintf("audit: the export does not verify: line %d: %s", e.Line, e.Reason)
}

// VerifyExport checks an export offline, with only the log's note verifier
// key (from `relais audit pubkey`): the checkpoint's signature, each
// event's leaf hash against its content, that the events are the
// consecutive range the header announces, and that their leaves, with the
// left subtree hashes, make a tree that the consistency proof shows to be a
// prefix of the signed tree. It reports the first problem as an
// *ExportError: a forged or altered event, a removed, inserted or
// reordered one, a cut file, or a checkpoint another key signed.
func VerifyExport(r io.Reader, vkey string) (ExportReport, error) {
	var rep ExportReport
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return rep, fmt.Errorf("audit: the public key is not a note verifier key (name+hash+base64, as `relais audit pubkey` prints): %w", err)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	lineNo := 0
	fail := func(seq int64, format string, args ...any) (ExportReport, error) {
		return rep, &ExportError{Line: lineNo, Seq: seq, Reason: fmt.Sprintf(format, args...)}
	}
	next := func() (exportLine, bool, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return exportLine{}, false, fmt.Errorf("a line is longer than %d bytes", maxExportLine)
				}
				return exportLine{}, false, err
			}
			return exportLine{}, false, nil
		}
		lineNo++
		var l exportLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return exportLine{}, false, fmt.Errorf("not a valid export line: %v", err)
		}
		if dec.More() {
			return exportLine{}, false, errors.New("more than one JSON value on the line")
		}
		return l, true, nil
	}

	h, ok, err := next()
	switch {
	case err != nil:
		return fail(0, "%v", err)
	case !ok:
		return fail(0, "the file is empty")
	case h.Type != lineHeader || h.Format != ExportFormat:
		return fail(0, "not a %s export (the first line must be its header)", ExportFormat)
	case h.TenantID == nil || h.Events == nil:
		return fail(0, "the header has no tenant_id or events")
	}
	rep.TenantID, rep.Origin, rep.FirstSeq, rep.LastSeq, rep.TreeSize = *h.TenantID, h.Origin, h.FirstSeq, h.LastSeq, h.TreeSize
	if want, err := Origin(*h.TenantID); err != nil || want != h.Origin {
		return fail(0, "the header's origin %q is not the log of tenant %q", h.Origin, *h.TenantID)
	}
	if h.Origin != v.Name() {
		return fail(0, "the export is of log %s, but the public key is for %s: wrong key", h.Origin, v.Name())
	}
	if h.FirstSeq < 1 || h.LastSeq < h.FirstSeq-1 || *h.Events != h.LastSeq-h.FirstSeq+1 || h.TreeSize < h.LastSeq || h.TreeSize < 1 {
		return fail(0, "the header's range (events %d to %d, %d events, tree of %d) is inconsistent", h.FirstSeq, h.LastSeq, *h.Events, h.TreeSize)
	}
	if len(h.Left) != subtrees(h.FirstSeq-1) {
		return fail(0, "the header has %d left subtree hashes, a range starting at event %d needs %d", len(h.Left), h.FirstSeq, subtrees(h.FirstSeq-1))
	}
	cr, err := newCompactRange(h.FirstSeq-1, h.Left)
	if err != nil {
		return fail(0, "%v", err)
	}

	want := h.FirstSeq
	var l exportLine
	for {
		l, ok, err = next()
		if err != nil {
			return fail(want, "%v", err)
		}
		if !ok {
			return fail(want, "the export is truncated: it ends after event %d, before the end of the range (event %d), its proof and checkpoint", want-1, h.LastSeq)
		}
		if l.Type != lineEvent {
			break
		}
		switch {
		case l.Seq > h.LastSeq || l.Seq < h.FirstSeq:
			return fail(l.Seq, "event %d is outside the range of the header (events %d to %d): an event was added", l.Seq, h.FirstSeq, h.LastSeq)
		case l.Seq > want:
			return fail(want, "event %d is missing (event %d follows event %d): events were removed or reordered", want, l.Seq, want-1)
		case l.Seq < want:
			return fail(l.Seq, "event %d comes after event %d: events were reordered or duplicated", l.Seq, want-1)
		case l.At == nil:
			return fail(l.Seq, "event %d has no time", l.Seq)
		}
		rec := Record{TenantID: *h.TenantID, Seq: l.Seq, At: l.At.UTC(), Category: l.Category, Action: l.Action, ActorType: l.ActorType,
			ActorID: l.ActorID, ObjectType: l.ObjectType, ObjectID: l.ObjectID, IP: l.IP, UserAgent: l.UserAgent, RequestID: l.RequestID,
			Details: l.Details, LeafHash: l.LeafHash, BodyHash: l.BodyHash, PurgedAt: l.PurgedAt}
		if rec.PurgedAt != nil {
			rep.Purged++
		}
		leaf, reason := checkLeaf(rec)
		if reason != "" {
			return fail(l.Seq, "%s", reason)
		}
		cr.push(leaf)
		rep.Events++
		want++
	}
	if want <= h.LastSeq {
		return fail(want, "the export is truncated: event %d to %d are missing before the %s line", want, h.LastSeq, l.Type)
	}
	if l.Type != lineProof {
		return fail(0, "expected the proof line after the events, found %q", l.Type)
	}
	proof := l.Consistency
	l, ok, err = next()
	switch {
	case err != nil:
		return fail(0, "%v", err)
	case !ok:
		return fail(0, "the export is truncated: it has no checkpoint")
	case l.Type != lineCheckpoint:
		return fail(0, "expected the checkpoint line after the proof, found %q", l.Type)
	}
	_, size, root, err := openCheckpoint([]byte(l.Note), v)
	if err != nil {
		return fail(0, "the checkpoint: %v", err)
	}
	if size != h.TreeSize {
		return fail(0, "the checkpoint signs a tree of %d events, the header says %d", size, h.TreeSize)
	}
	rep.Root = root
	if _, more, err := next(); err != nil || more {
		return fail(0, "unexpected content after the checkpoint")
	}
	if h.LastSeq > 0 {
		if err := tlog.CheckTree(proof, size, root, h.LastSeq, cr.root()); err != nil {
			return fail(0, "events %d to %d (with the left subtree hashes) are not in the signed tree of %d events: an event's content and leaf hash were both changed, the left hashes or the proof were altered, or events were removed", h.FirstSeq, h.LastSeq, size)
		}
	}
	return rep, nil
}

package contacts

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ExportFormat is the format of an export.
type ExportFormat string

// Export formats.
const (
	FormatCSV   ExportFormat = "csv"   // RFC 4180, UTF-8, "," separator, a header line
	FormatJSONL ExportFormat = "jsonl" // JSON Lines: one object per contact
)

// ExportOptions configure [Service.Export]. Filters combine with AND; none
// exports every contact.
type ExportOptions struct {
	Format    ExportFormat // FormatCSV when empty
	ListID    string
	SegmentID string
	Filter    string // an ad-hoc filter (package filter)
	Status    Status
	// Pseudonymise replaces the email and the phone by keyed tokens
	// (email_token, phone_token: the same address gives the same token
	// within the tenant, so files can still be joined), and leaves out the
	// names and the personal attributes (PRIV-2).
	Pseudonymise bool
}

// ExportResult says what an export wrote.
type ExportResult struct {
	Count         int64        `json:"count"`
	Format        ExportFormat `json:"format"`
	Pseudonymised bool         `json:"pseudonymised"`
}

const exportPage = 1000

// Export writes the selected contacts to w, oldest first, streaming: pages
// of 1000 contacts are read in short transactions and written out, so
// memory does not grow with the tenant. The CSV columns are those the import
// understands (id, email, phone, first_name, last_name, locale, timezone,
// status, source, created_at, updated_at, consent.email and consent.sms for
// the default purpose, then one column per declared attribute), so an export
// can be imported again. In CSV, text cells starting with = + - @ or a tab
// are prefixed with ' so that spreadsheets do not run them as formulas.
//
// An export event (category export) is recorded before the first line
// with the selection and format, and another with the count at the end.
func (s *Service) Export(ctx context.Context, tenantID string, w io.Writer, o ExportOptions) (ExportResult, error) {
	if o.Format == "" {
		o.Format = FormatCSV
	}
	if o.Format != FormatCSV && o.Format != FormatJSONL {
		return ExportResult{}, invalid("format", "must be csv or jsonl")
	}
	res := ExportResult{Format: o.Format, Pseudonymised: o.Pseudonymise}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return res, err
	}
	var ps *tenants.Pseudonymiser
	if o.Pseudonymise {
		ps = cr.Pseudonymiser()
	}
	sel := selection{status: o.Status, listID: o.ListID, segmentID: o.SegmentID, filter: o.Filter}
	details := map[string]any{"format": string(o.Format), "pseudonymised": o.Pseudonymise, "list_id": o.ListID, "segment_id": o.SegmentID,
		"filter": o.Filter, "status": string(o.Status)}
	var sc schema
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if sc, err = loadSchema(ctx, tx); err != nil {
			return err
		}
		if _, _, err := s.selection(ctx, tx, sc, sel, 2); err != nil { // fail before anything is written
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryExport, Action: "contact.export.start", ObjectType: "contact", Details: details})
		return err
	})
	if err != nil {
		return res, err
	}
	keys := make([]string, 0, len(sc))
	for k, d := range sc {
		if !(o.Pseudonymise && d.Personal) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)

	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	if o.Format == FormatCSV {
		cw = csv.NewWriter(bw)
		head := []string{"id", "email", "phone", "first_name", "last_name"}
		if o.Pseudonymise {
			head = []string{"id", "email_token", "phone_token"}
		}
		head = append(head, "locale", "timezone", "status", "source", "created_at", "updated_at", "consent.email", "consent.sms")
		head = append(head, keys...)
		if err := cw.Write(head); err != nil {
			return res, fmt.Errorf("contacts: write export: %w", err)
		}
	}
	after := ""
	for {
		page, err := s.exportPage(ctx, tenantID, cr, sc, sel, after)
		if err != nil {
			return res, err
		}
		for _, e := range page {
			if o.Format == FormatCSV {
				err = cw.Write(e.csvRecord(keys, ps))
			} else {
				err = e.writeJSON(bw, keys, ps)
			}
			if err != nil {
				return res, fmt.Errorf("contacts: write export: %w", err)
			}
			res.Count++
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return res, fmt.Errorf("contacts: write export: %w", err)
			}
		}
		if len(page) < exportPage {
			break
		}
		after = page[len(page)-1].c.ID
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("contacts: write export: %w", err)
	}
	details["count"] = res.Count
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryExport, Action: "contact.export.done", ObjectType: "contact", Details: details})
		return err
	})
	return res, err
}

// exported is one contact of an export, with its default-purpose consents.
type exported struct {
	c                      Contact
	consentEmail, consentS string
}

func (s *Service) exportPage(ctx context.Context, tenantID string, cr *tenants.Crypto, sc schema, sel selection, after string) ([]exported, error) {
	var out []exported
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		where, args, err := s.selection(ctx, tx, sc, sel, 4)
		if err != nil {
			return err
		}
		n := len(args) + 4
		all := append([]any{DefaultPurpose, after}, args...)
		all = append(all, exportPage)
		q := `SELECT ` + contactCols + `,
			COALESCE((SELECT s.status FROM consents s WHERE s.tenant_id = c.tenant_id AND s.contact_id = c.id AND s.channel = 'email' AND s.purpose = $2), ''),
			COALESCE((SELECT s.status FROM consents s WHERE s.tenant_id = c.tenant_id AND s.contact_id = c.id AND s.channel = 'sms' AND s.purpose = $2), '')
			FROM contacts c WHERE ` + where + ` AND c.id > $3 ORDER BY c.id LIMIT $` + strconv.Itoa(n)
		rows, err := tx.Query(ctx, q, all...)
		if err != nil {
			return fmt.Errorf("contacts: read contacts: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r row
			var e exported
			if err := rows.Scan(&r.id, &r.emailEnc, &r.phoneEnc, &r.firstEnc, &r.lastEnc, &r.locale, &r.tz, &r.attrsEnc, &r.attrs, &r.status,
				&r.source, &r.created, &r.updated, &r.emailBidx, &r.phoneBidx, &r.keyEnc, &e.consentEmail, &e.consentS); err != nil {
				return fmt.Errorf("contacts: read contacts: %w", err)
			}
			if e.c, err = open(cr, r, sc); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// safeCell defuses spreadsheet formulas in free text.
func safeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func attrText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return safeCell(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (e exported) csvRecord(keys []string, ps *tenants.Pseudonymiser) []string {
	c := e.c
	rec := []string{c.ID}
	if ps != nil {
		rec = append(rec, token(ps, fEmail, c.Email), token(ps, fPhone, c.Phone))
	} else {
		rec = append(rec, c.Email, c.Phone, safeCell(c.FirstName), safeCell(c.LastName))
	}
	rec = append(rec, c.Locale, c.TimeZone, string(c.Status), c.Source, c.CreatedAt.Format(time.RFC3339Nano), c.UpdatedAt.Format(time.RFC3339Nano),
		e.consentEmail, e.consentS)
	for _, k := range keys {
		rec = append(rec, attrText(c.Attributes[k]))
	}
	return rec
}

func token(ps *tenants.Pseudonymiser, field, v string) string {
	if v == "" {
		return ""
	}
	return ps.Token(field, v)
}

func (e exported) writeJSON(w io.Writer, keys []string, ps *tenants.Pseudonymiser) error {
	c := e.c
	attrs := map[string]any{}
	for _, k := range keys {
		if v, ok := c.Attributes[k]; ok {
			attrs[k] = v
		}
	}
	obj := map[string]any{"id": c.ID, "locale": c.Locale, "timezone": c.TimeZone, "status": c.Status, "source": c.Source,
		"created_at": c.CreatedAt, "updated_at": c.UpdatedAt, "attributes": attrs,
		"consents": map[string]string{"email": e.consentEmail, "sms": e.consentS}}
	if ps != nil {
		obj["email_token"], obj["phone_token"] = token(ps, fEmail, c.Email), token(ps, fPhone, c.Phone)
	} else {
		obj["email"], obj["phone"], obj["first_name"], obj["last_name"] = c.Email, c.Phone, c.FirstName, c.LastName
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

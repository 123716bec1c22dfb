package privacy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/brianvoe/gofakeit/v7"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// notCopied are left out of an anonymised copy besides what an export
// leaves out: connectors hold the source's credentials and routes send.
var notCopied = map[string]bool{"connectors": true, "routes": true}

// companion says which rows of another table (the owner) a table's rows
// belong to: the owner's key column ownerCol, held in the column col.
type companion struct{ owner, col, ownerCol string }

// copiedWith are the tables an anonymised copy writes together with their
// owner's rows, in the same transactions, instead of on their own. A
// message's content row must be inserted in the same transaction as its
// message: the backup change log records a content row's insert only under
// its message's key (migration 00034, backup.insertsLoggedWith), so a
// content committed apart from its message, with a backup point between
// the two, would be in that point's checksums and not in its incremental.
// A row whose owner is not in the source (an orphan) is not copied.
var copiedWith = map[string]companion{"message_contents": {owner: "messages", col: "message_id", ownerCol: "id"}}

// faker replaces personal values with fakes that are consistent within one
// copy (the same value of the same kind gives the same fake, so joins and
// duplicates behave as in the source) and irreversible: each fake is drawn
// from gofakeit seeded by HMAC-SHA256 under a random key that exists only
// in memory for the duration of the copy.
type faker struct{ key []byte }

func newFaker() *faker {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return &faker{key: k}
}

func (f *faker) mac(kind, v string) []byte {
	m := hmac.New(sha256.New, f.key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return m.Sum(nil)
}

func (f *faker) gen(kind, v string) (*gofakeit.Faker, []byte) {
	h := f.mac(kind, v)
	return gofakeit.New(binary.BigEndian.Uint64(h[:8])), h
}

var nonAlpha = regexp.MustCompile(`[^a-z]+`)

func (f *faker) email(v string) string {
	g, h := f.gen("email", strings.ToLower(strings.TrimSpace(v)))
	first := nonAlpha.ReplaceAllString(strings.ToLower(g.FirstName()), "")
	last := nonAlpha.ReplaceAllString(strings.ToLower(g.LastName()), "")
	domains := []string{"example.com", "example.org", "example.net"}
	return first + "." + last + "." + hex.EncodeToString(h[8:14]) + "@" + domains[int(h[14])%len(domains)]
}

func (f *faker) phone(v string) string {
	h := f.mac("phone", v)
	n := binary.BigEndian.Uint64(h[:8]) % 10_000_000
	return fmt.Sprintf("+1555%07d", n)
}

func (f *faker) ip(v string) string {
	h := f.mac("ip", v)
	return fmt.Sprintf("2001:db8:%x:%x:%x:%x:%x:%x", binary.BigEndian.Uint16(h[0:]), binary.BigEndian.Uint16(h[2:]), binary.BigEndian.Uint16(h[4:]),
		binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint16(h[8:]), binary.BigEndian.Uint16(h[10:]))
}

func (f *faker) firstName(v string) string { g, _ := f.gen("first", v); return g.FirstName() }
func (f *faker) lastName(v string) string  { g, _ := f.gen("last", v); return g.LastName() }
func (f *faker) fullName(v string) string {
	g, _ := f.gen("name", v)
	return g.FirstName() + " " + g.LastName()
}

func (f *faker) sentence(v string) string {
	if v == "" {
		return ""
	}
	g, _ := f.gen("text", v)
	return g.Sentence()
}

var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

func (f *faker) attr(key string, v any) any {
	switch x := v.(type) {
	case string:
		g, h := f.gen("attr:"+key, x)
		if dateRE.MatchString(x) {
			return g.DateRange(time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2005, 12, 31, 0, 0, 0, 0, time.UTC)).Format("2006-01-02")
		}
		return g.Word() + "-" + hex.EncodeToString(h[8:11])
	case float64:
		h := f.mac("attr:"+key, fmt.Sprint(x))
		return float64(binary.BigEndian.Uint32(h[:4]) % 1000)
	}
	return v
}

// byLabel fakes an address by its field label.
func (f *faker) byLabel(label, v string) string {
	switch {
	case strings.HasSuffix(label, ".email"):
		return f.email(v)
	case strings.HasSuffix(label, ".phone"):
		return f.phone(v)
	}
	return f.sentence(v)
}

var (
	emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	phoneRE = regexp.MustCompile(`\+[0-9][0-9 ().\-]{6,}[0-9]`)
	ipv4RE  = regexp.MustCompile(`\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b`)
)

// scrub replaces the emails, international phone numbers and IPv4
// addresses inside free text by their fakes.
func (f *faker) scrub(s string) string {
	s = emailRE.ReplaceAllStringFunc(s, func(m string) string { return f.email(strings.ToLower(m)) })
	s = phoneRE.ReplaceAllStringFunc(s, func(m string) string {
		return f.phone("+" + strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, m))
	})
	return ipv4RE.ReplaceAllStringFunc(s, f.ip)
}

func strVal(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// record anonymises one exported record of a table.
func (f *faker) record(table string, r record) (record, error) {
	for i, name := range r.names {
		s, isStr := strVal(r.vals[i])
		if !isStr {
			continue
		}
		var out string
		switch table + "." + name {
		case "contacts.email", "users.email":
			out = f.email(s)
		case "contacts.phone":
			out = f.phone(s)
		case "contacts.first_name":
			out = f.firstName(s)
		case "contacts.last_name":
			out = f.lastName(s)
		case "users.name":
			out = f.fullName(s)
		case "consents.source_ip", "consent_events.source_ip":
			out = f.ip(s)
		case "messages.recipient":
			if strings.Contains(s, "@") {
				out = f.email(s)
			} else {
				out = f.phone(s)
			}
		case "contacts.personal_attributes":
			m := map[string]any{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				return r, fmt.Errorf("privacy: personal attributes: %w", err)
			}
			for k, v := range m {
				m[k] = f.attr(k, v)
			}
			b, _ := json.Marshal(m)
			out = string(b)
		case "message_contents.content":
			var c map[string]any
			if err := json.Unmarshal([]byte(s), &c); err != nil {
				out = "{}"
				break
			}
			for k, v := range c {
				vs, _ := v.(string)
				switch k {
				case "subject", "text", "html":
					c[k] = f.sentence(vs)
				case "from", "reply_to":
					c[k] = f.scrub(vs)
				default:
					delete(c, k)
				}
			}
			b, _ := json.Marshal(c)
			out = string(b)
		case "messages.idem_key":
			out = "anon-" + base64.RawURLEncoding.EncodeToString(f.mac("idem", s)[:16])
		case "import_jobs.file_name":
			out = "import-" + hex.EncodeToString(f.mac("file", s)[:4]) + ".csv"
		default:
			switch {
			case strings.HasSuffix(name, "_bidx") && strings.HasPrefix(s, "addr:"):
				label, v, _ := strings.Cut(strings.TrimPrefix(s, "addr:"), ":")
				out = "addr:" + label + ":" + f.byLabel(label, v)
			case strings.HasSuffix(name, "_bidx") && strings.HasPrefix(s, "idx:"):
				// An index of an address not known in clear: a fresh,
				// unlinkable value (the source's index would be
				// matchable against the source store).
				out = "idx:" + base64.StdEncoding.EncodeToString(f.mac("idx", s))
			default:
				out = f.scrub(s)
			}
		}
		r.vals[i] = jsonValue(out)
	}
	// Nothing of the copy is sent or run: pending messages fail, live
	// campaigns are cancelled.
	switch table {
	case "messages":
		if st := r.str("state"); st == "queued" || st == "held" || st == "sending" {
			r.set("state", jsonValue("failed"))
			r.set("last_error", jsonValue("anonymised copy: not sent"))
		}
	case "campaigns":
		if st := r.str("state"); st == "scheduled" || st == "running" || st == "paused" {
			r.set("state", jsonValue("cancelled"))
		}
	}
	return r, nil
}

// AnonymizeResult summarises an anonymised copy.
type AnonymizeResult struct {
	Tenant tenants.Tenant   `json:"tenant"`
	Counts map[string]int64 `json:"counts"`
}

// Anonymize makes an anonymised copy of a tenant into a new tenant of the
// same store (TEST-2): every personal field replaced by a consistent fake
// (see faker), free text scrubbed, message bodies replaced, under the new
// tenant's own data key (no key is shared with the source), connectors and
// routes left out, nothing left to send. The copy cannot be reversed: the
// fakes' key is discarded. On failure the partial copy is removed.
func (s *Service) Anonymize(ctx context.Context, src tenants.Tenant, name, slug string) (AnonymizeResult, error) {
	return s.AnonymizeInto(ctx, src, name, slug, s)
}

// AnonymizeInto is Anonymize into a new tenant of another store (dst: a
// staging platform's store, with its own master key), which must be at the
// same schema version.
func (s *Service) AnonymizeInto(ctx context.Context, src tenants.Tenant, name, slug string, dst *Service) (AnonymizeResult, error) {
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return AnonymizeResult{}, err
	}
	if dst != s {
		if err := sameSchema(ctx, tabs, dst.DB); err != nil {
			return AnonymizeResult{}, err
		}
	}
	scr, err := s.crypto(ctx, src.ID)
	if err != nil {
		return AnonymizeResult{}, err
	}
	book, err := buildAddrBook(ctx, s.DB, scr, src.ID, tabs)
	if err != nil {
		return AnonymizeResult{}, err
	}
	if name == "" {
		name = src.Name + " (anonymised)"
	}
	copyT, err := dst.Tenants.Create(ctx, name, slug)
	if err != nil {
		return AnonymizeResult{}, err
	}
	res := AnonymizeResult{Tenant: copyT, Counts: map[string]int64{}}
	err = s.copyAnonymised(ctx, src, copyT, dst, tabs, scr, book, res.Counts)
	if err != nil {
		if derr := dst.dropTenant(ctx, copyT.ID); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove the partial copy %s: %w", copyT.Slug, derr))
		}
		return AnonymizeResult{}, err
	}
	return res, nil
}

// sameSchema checks that another store has the copied tables with the
// same columns.
func sameSchema(ctx context.Context, tabs []table, db *store.DB) error {
	other, err := schemaTables(ctx, db)
	if err != nil {
		return err
	}
	byName := map[string]table{}
	for _, t := range other {
		byName[t.Name] = t
	}
	for _, t := range tabs {
		if excludedTables[t.Name] || notCopied[t.Name] {
			continue // not copied: its shape does not matter
		}
		o, ok := byName[t.Name]
		if !ok || fmt.Sprint(o.Cols) != fmt.Sprint(t.Cols) {
			return fmt.Errorf("%w: the target store's table %s differs from the source's; migrate both to the same version", ErrInvalid, t.Name)
		}
	}
	return nil
}

func (s *Service) copyAnonymised(ctx context.Context, src, copyT tenants.Tenant, d *Service, tabs []table, scr *tenants.Crypto, book addrBook, counts map[string]int64) error {
	dcr, err := d.crypto(ctx, copyT.ID)
	if err != nil {
		return err
	}
	f := newFaker()
	defer clear(f.key)
	copied := func(t table) bool { return !excludedTables[t.Name] && !notCopied[t.Name] }
	err = d.DB.Tenant(copyT.ID).Tx(ctx, func(tx *store.Tx) error {
		for i := len(tabs) - 1; i >= 0; i-- {
			if copied(tabs[i]) {
				if _, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(tabs[i].Name)+` WHERE tenant_id = $1`); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	conv := func(t table, ocs []outCol, row []any, keyEnc []byte) ([]any, error) {
		fc, err := rowCipher(scr, t, keyEnc)
		if err != nil {
			return nil, err
		}
		rec, err := encodeRow(fc, book, t, ocs, row)
		if err != nil {
			return nil, err
		}
		if rec, err = f.record(t.Name, rec); err != nil {
			return nil, err
		}
		return decodeRecord(dcr, t, ocs, rec)
	}
	// The companions each copied table's rows take along (copiedWith).
	withOwner := map[string][]table{}
	for _, ct := range tabs {
		if c, ok := copiedWith[ct.Name]; ok && copied(ct) {
			withOwner[c.owner] = append(withOwner[c.owner], ct)
		}
	}
	for _, t := range tabs {
		if !copied(t) {
			continue
		}
		if c, ok := copiedWith[t.Name]; ok && slices.ContainsFunc(tabs, func(o table) bool { return o.Name == c.owner && copied(o) }) {
			continue // copied with its owner's rows
		}
		ocs := exportCols(t)
		comps := withOwner[t.Name]
		compOcs := make([][]outCol, len(comps))
		for i, ct := range comps {
			compOcs[i] = exportCols(ct)
		}
		keyAt := -1
		if len(comps) > 0 {
			keyAt = slices.IndexFunc(ocs, func(oc outCol) bool { return oc.src.Name == copiedWith[comps[0].Name].ownerCol })
			if keyAt < 0 {
				return fmt.Errorf("privacy: copy %s: no key column for its companion tables", t.Name)
			}
		}
		var batch [][]any
		var keys []any
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			// The owner rows' companions, read from the source by key.
			compRows := make([][][]any, len(comps))
			for i, ct := range comps {
				err := s.eachRowWith(ctx, src.ID, ct, copiedWith[ct.Name].col, keys, func(row []any, keyEnc []byte) error {
					vals, err := conv(ct, compOcs[i], row, keyEnc)
					if err != nil {
						return err
					}
					compRows[i] = append(compRows[i], vals)
					counts[ct.Name]++
					return nil
				})
				if err != nil {
					return fmt.Errorf("privacy: copy %s: %w", ct.Name, err)
				}
			}
			err := d.DB.Tenant(copyT.ID).Tx(ctx, func(tx *store.Tx) error {
				for i, ct := range comps {
					if err := insertRows(ctx, tx, ct, insertCols(ct, compOcs[i]), compRows[i]); err != nil {
						return err
					}
				}
				return insertRows(ctx, tx, t, insertCols(t, ocs), batch)
			})
			batch, keys = batch[:0], keys[:0]
			if err == nil && s.CopyProgress != nil {
				s.CopyProgress(ctx, copyT, t.Name, counts[t.Name])
			}
			return err
		}
		err := s.eachRow(ctx, src.ID, t, func(row []any, keyEnc []byte) error {
			vals, err := conv(t, ocs, row, keyEnc)
			if err != nil {
				return err
			}
			batch = append(batch, vals)
			if keyAt >= 0 {
				keys = append(keys, row[keyAt])
			}
			counts[t.Name]++
			if len(batch) >= exportPage {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("privacy: copy %s: %w", t.Name, err)
		}
	}
	err = d.DB.Tenant(copyT.ID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "tenant.anonymised_copy", ObjectType: "tenant", ObjectID: copyT.ID,
			Details: map[string]any{"counts": counts, "same_store": d == s}})
		return err
	})
	if err != nil {
		return err
	}
	// The source's trail records that an anonymised copy was made of it.
	return s.DB.Tenant(src.ID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryExport, Action: "tenant.anonymise", ObjectType: "tenant", ObjectID: src.ID,
			Details: map[string]any{"copy_tenant": copyT.ID, "copy_slug": copyT.Slug, "same_store": d == s, "counts": counts}})
		return err
	})
}

// dropTenant removes every row of a tenant and the tenant itself, without
// a certificate: for a partial copy that never held anyone's real data.
func (s *Service) dropTenant(ctx context.Context, tenantID string) error {
	tabs, err := schemaTables(ctx, s.DB)
	if err != nil {
		return err
	}
	return s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		tx := p.Tenant(tenantID)
		for i := len(tabs) - 1; i >= 0; i-- {
			if _, err := tx.Exec(ctx, `DELETE FROM `+quoteIdent(tabs[i].Name)+` WHERE tenant_id = $1`); err != nil {
				return err
			}
		}
		_, err := p.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, tenantID)
		return err
	})
}

package contacts

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts/filter"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// contactCols are the columns read for a contact; scan them with scanRow.
const contactCols = `c.id, c.email_enc, c.phone_enc, c.first_name_enc, c.last_name_enc, c.locale, c.timezone,
	c.attributes_enc, c.attributes, c.status, c.source, c.created_at, c.updated_at, c.email_bidx, c.phone_bidx, c.key_enc`

// row is a stored contact, still sealed.
type row struct {
	id                                    string
	emailEnc, phoneEnc, firstEnc, lastEnc []byte
	locale, tz                            string
	attrsEnc                              []byte
	attrs                                 string
	status, source                        string
	created, updated                      int64
	emailBidx, phoneBidx                  []byte
	keyEnc                                []byte // the contact's own key, sealed by the tenant's
}

func scanRow(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	err := sc.Scan(&r.id, &r.emailEnc, &r.phoneEnc, &r.firstEnc, &r.lastEnc, &r.locale, &r.tz,
		&r.attrsEnc, &r.attrs, &r.status, &r.source, &r.created, &r.updated, &r.emailBidx, &r.phoneBidx, &r.keyEnc)
	return r, err
}

// blob turns an absent value into SQL NULL in both drivers.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// fieldSealer seals and opens personal text fields: a contact's own cipher
// (its fields) or the tenant's (consent proofs).
type fieldSealer interface {
	SealString(field, plaintext string) ([]byte, error)
	OpenString(field string, ciphertext []byte) (string, error)
}

func sealOpt(cr fieldSealer, field, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	b, err := cr.SealString(field, v)
	if err != nil {
		return nil, fmt.Errorf("contacts: seal %s: %w", field, err)
	}
	return b, nil
}

func indexOpt(cr *tenants.Crypto, field, v string) []byte {
	if v == "" {
		return nil
	}
	return cr.Index(field, v)
}

func openOpt(cr fieldSealer, field string, ct []byte) (string, error) {
	if len(ct) == 0 {
		return "", nil
	}
	s, err := cr.OpenString(field, ct)
	if errors.Is(err, tenants.ErrShredded) {
		return "", nil // the contact's key was shredded: the value is gone
	}
	if err != nil {
		return "", fmt.Errorf("contacts: open %s: %w", field, err)
	}
	return s, nil
}

func sealAttrs(cr fieldSealer, personal map[string]any) ([]byte, error) {
	if len(personal) == 0 {
		return nil, nil
	}
	return sealOpt(cr, fAttributes, encodeAttrs(personal))
}

func openAttrs(cr fieldSealer, ct []byte) (map[string]any, error) {
	s, err := openOpt(cr, fAttributes, ct)
	if err != nil {
		return nil, err
	}
	return decodeAttrs([]byte(s))
}

// open decrypts a stored contact. Attributes no longer in the schema are
// left out.
func open(tcr *tenants.Crypto, r row, sc schema) (Contact, error) {
	c := Contact{ID: r.id, Locale: r.locale, TimeZone: r.tz, Status: Status(r.status), Source: r.source,
		CreatedAt: store.FromMicros(r.created), UpdatedAt: store.FromMicros(r.updated), Attributes: map[string]any{}}
	cr, err := tcr.ContactCipher(r.keyEnc)
	if err != nil {
		return Contact{}, fmt.Errorf("contacts: contact %s: %w", r.id, err)
	}
	if c.Email, err = openOpt(cr, fEmail, r.emailEnc); err != nil {
		return Contact{}, err
	}
	if c.Phone, err = openOpt(cr, fPhone, r.phoneEnc); err != nil {
		return Contact{}, err
	}
	if c.FirstName, err = openOpt(cr, fFirstName, r.firstEnc); err != nil {
		return Contact{}, err
	}
	if c.LastName, err = openOpt(cr, fLastName, r.lastEnc); err != nil {
		return Contact{}, err
	}
	plain, err := decodeAttrs([]byte(r.attrs))
	if err != nil {
		return Contact{}, err
	}
	personal, err := openAttrs(cr, r.attrsEnc)
	if err != nil {
		return Contact{}, err
	}
	for _, m := range []map[string]any{plain, personal} {
		for k, v := range m {
			if _, ok := sc[k]; ok {
				c.Attributes[k] = v
			}
		}
	}
	return c, nil
}

// validated is a contact's input once normalised and checked.
type validated struct {
	email, phone, first, last, locale, tz string
	plain, personal                       map[string]any
}

func validateNew(nc NewContact, sc schema, tz tzCache) (validated, error) {
	var v validated
	var err error
	if strings.TrimSpace(nc.Email) != "" {
		if v.email, err = NormaliseEmail(nc.Email); err != nil {
			return v, err
		}
	}
	if strings.TrimSpace(nc.Phone) != "" {
		if v.phone, err = NormalisePhone(nc.Phone, ""); err != nil {
			return v, err
		}
	}
	if v.email == "" && v.phone == "" {
		return v, invalid("email", "an email address or a phone number is required")
	}
	if v.first, err = validateName("first_name", nc.FirstName); err != nil {
		return v, err
	}
	if v.last, err = validateName("last_name", nc.LastName); err != nil {
		return v, err
	}
	if v.locale, err = normaliseLocale(nc.Locale); err != nil {
		return v, err
	}
	if v.tz, err = tz.validate(nc.TimeZone); err != nil {
		return v, err
	}
	if v.plain, v.personal, err = sc.splitAttributes(nc.Attributes, false); err != nil {
		return v, err
	}
	return v, nil
}

// blocked reports whether an email or phone blind index is on the
// blocklist.
func blocked(ctx context.Context, tx *store.Tx, emailBidx, phoneBidx []byte) (bool, error) {
	if emailBidx == nil && phoneBidx == nil {
		return false, nil
	}
	var n int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM blocklist WHERE tenant_id = $1
		AND ((kind = 'email' AND value_bidx = $2) OR (kind = 'phone' AND value_bidx = $3))`, blob(emailBidx), blob(phoneBidx)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("contacts: check the blocklist: %w", err)
	}
	return n > 0, nil
}

// Create validates and stores a new contact with its consents. Personal
// fields are sealed before they reach the store; a contact whose address is
// on the blocklist is created with status blocklisted. An email already used
// by a contact of the tenant gives ErrConflict. The change event names the
// personal fields set, not their values; the returned contact is the one
// given (no access event).
func (s *Service) Create(ctx context.Context, tenantID string, nc NewContact) (Contact, error) {
	source := nc.Source
	switch source {
	case "":
		source = string(SourceAPI)
	case string(SourceAPI), string(SourceAdmin), string(SourceForm):
	default:
		return Contact{}, invalid("source", "must be api, admin or form")
	}
	consents := make([]ConsentInput, len(nc.Consents))
	for i, ci := range nc.Consents {
		var err error
		if consents[i], err = checkConsentInput(ci, fmt.Sprintf("consents[%d]", i)); err != nil {
			return Contact{}, err
		}
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Contact{}, err
	}
	now := s.now()
	c := Contact{ID: newID(), Source: source, CreatedAt: now, UpdatedAt: now}
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		v, err := validateNew(nc, sc, tzCache{})
		if err != nil {
			return err
		}
		for i, ci := range consents {
			if err := hasAddress(v.email, v.phone, ci, fmt.Sprintf("consents[%d]", i)); err != nil {
				return err
			}
		}
		sealed, err := sealContact(cr, nil, v)
		if err != nil {
			return err
		}
		bl, err := blocked(ctx, tx, sealed.emailBidx, sealed.phoneBidx)
		if err != nil {
			return err
		}
		c.Status = StatusActive
		if bl {
			c.Status = StatusBlocklisted
		}
		_, err = tx.Exec(ctx, `INSERT INTO contacts (tenant_id, id, email_enc, email_bidx, phone_enc, phone_bidx, first_name_enc,
			last_name_enc, locale, timezone, attributes_enc, attributes, status, source, created_at, updated_at, key_enc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16)`,
			c.ID, blob(sealed.emailEnc), blob(sealed.emailBidx), blob(sealed.phoneEnc), blob(sealed.phoneBidx), blob(sealed.firstEnc),
			blob(sealed.lastEnc), v.locale, v.tz, blob(sealed.attrsEnc), encodeAttrs(v.plain), string(c.Status), source, micros(now), blob(sealed.keyEnc))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a contact with this email exists in the tenant", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: insert contact: %w", err)
		}
		c.Email, c.Phone, c.FirstName, c.LastName, c.Locale, c.TimeZone = v.email, v.phone, v.first, v.last, v.locale, v.tz
		c.Attributes = mergeAttrs(mergeAttrs(nil, v.plain), v.personal)
		changes := createChanges(v, c.Status)
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.create", ObjectType: "contact",
			ObjectID: c.ID, Changes: changes, Details: map[string]any{"source": source}}); err != nil {
			return err
		}
		for _, ci := range consents {
			got, err := s.recordConsent(ctx, tx, cr, consentTarget{contactID: c.ID, emailBidx: sealed.emailBidx, phoneBidx: sealed.phoneBidx}, ci, "", nil, now)
			if err != nil {
				return err
			}
			c.Consents = append(c.Consents, got)
		}
		return nil
	})
	if err != nil {
		return Contact{}, err
	}
	return c, nil
}

// sealedContact is a contact's personal fields once sealed.
type sealedContact struct {
	emailEnc, emailBidx, phoneEnc, phoneBidx, firstEnc, lastEnc, attrsEnc []byte
	// keyEnc is a new per-contact key, sealed by the tenant's cipher, when
	// sealContact made one (a new contact, or one without its own key). The
	// cipher itself is not kept: an import holds thousands of rows in flight,
	// and each cipher weighs about 3 KiB.
	keyEnc []byte
}

// sealContact seals a contact's personal fields under its own key: cc's, or
// a new one when cc is nil or has no key (then s.keyEnc must be stored).
// Blind indexes stay under the tenant key, so that lookups work across
// contacts.
func sealContact(tcr *tenants.Crypto, cc *tenants.ContactCipher, v validated) (sealedContact, error) {
	var s sealedContact
	var err error
	if cc == nil || !cc.HasKey() {
		if s.keyEnc, cc, err = tcr.NewContactKey(); err != nil {
			return s, fmt.Errorf("contacts: new contact key: %w", err)
		}
	}
	cr := cc
	if s.emailEnc, err = sealOpt(cr, fEmail, v.email); err != nil {
		return s, err
	}
	if s.phoneEnc, err = sealOpt(cr, fPhone, v.phone); err != nil {
		return s, err
	}
	if s.firstEnc, err = sealOpt(cr, fFirstName, v.first); err != nil {
		return s, err
	}
	if s.lastEnc, err = sealOpt(cr, fLastName, v.last); err != nil {
		return s, err
	}
	if s.attrsEnc, err = sealAttrs(cr, v.personal); err != nil {
		return s, err
	}
	s.emailBidx, s.phoneBidx = indexOpt(tcr, fEmail, v.email), indexOpt(tcr, fPhone, v.phone)
	return s, nil
}

func createChanges(v validated, status Status) []audit.Change {
	var ch []audit.Change
	for _, f := range []struct {
		name, val string
	}{{"email", v.email}, {"phone", v.phone}, {"first_name", v.first}, {"last_name", v.last}} {
		if f.val != "" {
			ch = append(ch, audit.Change{Field: f.name, Personal: true})
		}
	}
	if v.locale != "" {
		ch = append(ch, audit.Change{Field: "locale", After: v.locale})
	}
	if v.tz != "" {
		ch = append(ch, audit.Change{Field: "timezone", After: v.tz})
	}
	ch = append(ch, attrChanges(nil, v.plain, v.personal)...)
	return append(ch, audit.Change{Field: "status", After: string(status)})
}

// attrChanges lists changed attributes: values for plain ones, names only
// for personal ones. before holds the previous plain values.
func attrChanges(before map[string]any, plain, personal map[string]any) []audit.Change {
	var ch []audit.Change
	keys := make([]string, 0, len(plain))
	for k := range plain {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch = append(ch, audit.Change{Field: "attributes." + k, Before: before[k], After: plain[k]})
	}
	keys = keys[:0]
	for k := range personal {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch = append(ch, audit.Change{Field: "attributes." + k, Personal: true})
	}
	return ch
}

// accessEvent records a read of personal data (LOG-2): one event per
// call, naming the contacts read.
func accessEvent(ctx context.Context, tx *store.Tx, action string, ids []string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	details["count"] = len(ids)
	if len(ids) > 0 {
		details["contact_ids"] = ids
	}
	ev := audit.Event{Category: audit.CategoryAccess, Action: action, ObjectType: "contact", Details: details}
	if len(ids) == 1 {
		ev.ObjectID = ids[0]
	}
	if _, err := audit.Append(ctx, tx, ev); err != nil {
		return fmt.Errorf("contacts: access event: %w", err)
	}
	return nil
}

// Get returns a contact, decrypted, with its consents, and records the
// access (LOG-2).
func (s *Service) Get(ctx context.Context, tenantID, id string) (Contact, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Contact{}, err
	}
	var c Contact
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		r, err := scanRow(tx.QueryRow(ctx, `SELECT `+contactCols+` FROM contacts c WHERE c.tenant_id = $1 AND c.id = $2 AND c.erased_at IS NULL`, id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("contact %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("contacts: read contact: %w", err)
		}
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		if c, err = open(cr, r, sc); err != nil {
			return err
		}
		if c.Consents, err = s.consentsOf(ctx, tx, cr, id); err != nil {
			return err
		}
		return accessEvent(ctx, tx, "contact.read", []string{id}, nil)
	})
	if err != nil {
		return Contact{}, err
	}
	return c, nil
}

// FindByEmail finds a contact by the blind index of its normalised email,
// without decrypting any other row, and records the access.
func (s *Service) FindByEmail(ctx context.Context, tenantID, email string) (Contact, error) {
	e, err := NormaliseEmail(email)
	if err != nil {
		return Contact{}, err
	}
	cs, err := s.findBy(ctx, tenantID, "email", fEmail, e)
	if err != nil {
		return Contact{}, err
	}
	if len(cs) == 0 {
		return Contact{}, fmt.Errorf("contact %w", ErrNotFound)
	}
	return cs[0], nil
}

// FindByPhone finds the contacts whose phone number (E.164, or a format
// NormalisePhone accepts without a default country code) matches, by blind
// index, and records the access. Several contacts may share a number (at
// most 100 are returned, oldest first); none gives an empty slice and no
// error.
func (s *Service) FindByPhone(ctx context.Context, tenantID, phone string) ([]Contact, error) {
	p, err := NormalisePhone(phone, "")
	if err != nil {
		return nil, err
	}
	return s.findBy(ctx, tenantID, "phone", fPhone, p)
}

func (s *Service) findBy(ctx context.Context, tenantID, by, field, value string) ([]Contact, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	idx := cr.Index(field, value)
	// by is "email" or "phone": a constant chosen by the caller above.
	q := `SELECT ` + contactCols + ` FROM contacts c WHERE c.tenant_id = $1 AND c.email_bidx = $2 AND c.erased_at IS NULL ORDER BY c.id LIMIT 100`
	if by == "phone" {
		q = `SELECT ` + contactCols + ` FROM contacts c WHERE c.tenant_id = $1 AND c.phone_bidx = $2 AND c.erased_at IS NULL ORDER BY c.id LIMIT 100`
	}
	var out []Contact
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		out, err = queryContacts(ctx, tx, cr, sc, q, idx)
		if err != nil {
			return err
		}
		ids := make([]string, len(out))
		for i, c := range out {
			ids[i] = c.ID
		}
		return accessEvent(ctx, tx, "contact.find", ids, map[string]any{"by": by})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func queryContacts(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, sc schema, q string, args ...any) ([]Contact, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("contacts: query contacts: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Contact
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("contacts: read contact: %w", err)
		}
		c, err := open(cr, r, sc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("contacts: query contacts: %w", err)
	}
	return out, nil
}

// ListOptions filter and page [Service.List]. Filters combine with AND.
type ListOptions struct {
	Status    Status // only contacts with this status
	ListID    string // only members of this list
	SegmentID string // only contacts matching this segment
	// Filter is an ad-hoc filter in the segment language (package filter).
	Filter string
	// Cursor is NextCursor of the previous page; empty for the first.
	Cursor string
	// Limit is the page size: 50 when 0, at most 500.
	Limit int
}

// Page is one page of contacts, oldest first. NextCursor is empty on the
// last page.
type Page struct {
	Contacts   []Contact `json:"contacts"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// MaxPageSize bounds List pages.
const MaxPageSize = 500

// List returns one page of contacts, decrypted (without consents), and
// records one access event naming the contacts of the page.
func (s *Service) List(ctx context.Context, tenantID string, o ListOptions) (Page, error) {
	if o.Limit <= 0 {
		o.Limit = 50
	}
	if o.Limit > MaxPageSize {
		return Page{}, invalid("limit", "must be at most %d", MaxPageSize)
	}
	after := ""
	if o.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(o.Cursor)
		if err != nil || len(b) == 0 || len(b) > 64 {
			return Page{}, invalid("cursor", "is not a cursor returned by a previous page")
		}
		after = string(b)
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Page{}, err
	}
	var page Page
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		where, args, err := s.selection(ctx, tx, sc, selection{status: o.Status, listID: o.ListID, segmentID: o.SegmentID, filter: o.Filter}, 2)
		if err != nil {
			return err
		}
		n := len(args) + 2
		args = append(args, after, o.Limit+1)
		q := `SELECT ` + contactCols + ` FROM contacts c WHERE ` + where + ` AND c.id > $` + strconv.Itoa(n) +
			` ORDER BY c.id LIMIT $` + strconv.Itoa(n+1)
		cs, err := queryContacts(ctx, tx, cr, sc, q, args...)
		if err != nil {
			return err
		}
		if len(cs) > o.Limit {
			cs = cs[:o.Limit]
			page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(cs[len(cs)-1].ID))
		}
		page.Contacts = cs
		ids := make([]string, len(cs))
		for i, c := range cs {
			ids[i] = c.ID
		}
		return accessEvent(ctx, tx, "contact.list", ids, nil)
	})
	if err != nil {
		return Page{}, err
	}
	if page.Contacts == nil {
		page.Contacts = []Contact{}
	}
	return page, nil
}

// selection is a set of contacts: by status, list, segment or filter.
type selection struct {
	status    Status
	listID    string
	segmentID string
	filter    string
}

// selection compiles a set of contacts into a condition over contacts c
// (starting with the tenant clause) and its arguments, numbered from first.
// Every fragment is fixed text; values are placeholders.
func (s *Service) selection(ctx context.Context, tx *store.Tx, sc schema, sel selection, first int) (string, []any, error) {
	var b strings.Builder
	var args []any
	ph := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(first+len(args)-1)
	}
	b.WriteString("c.tenant_id = $1 AND c.erased_at IS NULL")
	if sel.status != "" {
		switch sel.status {
		case StatusActive, StatusUnsubscribed, StatusBounced, StatusBlocklisted:
		default:
			return "", nil, invalid("status", "must be active, unsubscribed, bounced or blocklisted")
		}
		b.WriteString(" AND c.status = " + ph(string(sel.status)))
	}
	if sel.listID != "" {
		if err := listExists(ctx, tx, sel.listID); err != nil {
			return "", nil, err
		}
		b.WriteString(" AND EXISTS (SELECT 1 FROM list_members m WHERE m.tenant_id = c.tenant_id AND m.contact_id = c.id AND m.list_id = " + ph(sel.listID) + ")")
	}
	for _, src := range []struct{ segment, text string }{{sel.segmentID, ""}, {"", sel.filter}} {
		text := src.text
		if src.segment != "" {
			seg, err := getSegment(ctx, tx, src.segment)
			if err != nil {
				return "", nil, err
			}
			text = seg.Filter
		}
		if text == "" {
			continue
		}
		comp, err := filter.ParseAndCompile(text, filter.Options{Dialect: tx.Dialect(), Attributes: sc.filterAttributes(), FirstParam: first + len(args)})
		if err != nil {
			if src.segment != "" {
				return "", nil, fmt.Errorf("contacts: segment %s no longer compiles against the attribute schema: %w", src.segment, err)
			}
			return "", nil, err
		}
		b.WriteString(" AND (" + comp.SQL + ")")
		args = append(args, comp.Args...)
	}
	return b.String(), args, nil
}

// Update applies a patch to a contact. Nothing is written if any field is
// invalid. Changing the email to one used by another contact gives
// ErrConflict. The status follows the blocklist: a contact with an address
// on it is blocklisted, and its status cannot be changed (ErrBlocklisted).
// The change event names the personal fields changed; the returned contact
// is the updated one (its change event stands as the access record).
func (s *Service) Update(ctx context.Context, tenantID, id string, p Patch) (Contact, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return Contact{}, err
	}
	now := s.now()
	var c Contact
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		q := `SELECT ` + contactCols + ` FROM contacts c WHERE c.tenant_id = $1 AND c.id = $2 AND c.erased_at IS NULL`
		if tx.Dialect() == store.Postgres {
			q += ` FOR UPDATE`
		}
		r, err := scanRow(tx.QueryRow(ctx, q, id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("contact %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("contacts: read contact: %w", err)
		}
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		cur, err := open(cr, r, sc)
		if err != nil {
			return err
		}
		next, changes, err := applyPatch(cur, p, sc)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			c = cur
			return nil
		}
		plainAll, err := decodeAttrs([]byte(r.attrs))
		if err != nil {
			return err
		}
		cc, err := cr.ContactCipher(r.keyEnc)
		if err != nil {
			return err
		}
		personalAll, err := openAttrs(cc, r.attrsEnc)
		if err != nil {
			return err
		}
		plainPatch, personalPatch, _ := sc.splitAttributes(p.Attributes, true) // validated by applyPatch
		plainAll, personalAll = mergeAttrs(plainAll, plainPatch), mergeAttrs(personalAll, personalPatch)
		sealed, err := sealContact(cr, cc, validated{email: next.Email, phone: next.Phone, first: next.FirstName, last: next.LastName, personal: personalAll})
		if err != nil {
			return err
		}
		bl, err := blocked(ctx, tx, sealed.emailBidx, sealed.phoneBidx)
		if err != nil {
			return err
		}
		switch {
		case bl && p.Status != nil && *p.Status != StatusBlocklisted:
			return fmt.Errorf("contacts: %w: the status of a contact whose address is on the blocklist cannot change", ErrBlocklisted)
		case bl:
			next.Status = StatusBlocklisted
		case next.Status == StatusBlocklisted:
			// No address of the contact is on the blocklist any more.
			next.Status = StatusActive
		}
		if next.Status != cur.Status && !hasField(changes, "status") {
			changes = append(changes, audit.Change{Field: "status", Before: string(cur.Status), After: string(next.Status)})
		}
		_, err = tx.Exec(ctx, `UPDATE contacts SET email_enc = $3, email_bidx = $4, phone_enc = $5, phone_bidx = $6,
			first_name_enc = $7, last_name_enc = $8, locale = $9, timezone = $10, attributes_enc = $11, attributes = $12,
			status = $13, updated_at = $14, key_enc = COALESCE($15, key_enc) WHERE tenant_id = $1 AND id = $2`,
			id, blob(sealed.emailEnc), blob(sealed.emailBidx), blob(sealed.phoneEnc), blob(sealed.phoneBidx), blob(sealed.firstEnc),
			blob(sealed.lastEnc), next.Locale, next.TimeZone, blob(sealed.attrsEnc), encodeAttrs(plainAll), string(next.Status), micros(now),
			blob(sealed.keyEnc))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a contact with this email exists in the tenant", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: update contact: %w", err)
		}
		next.UpdatedAt = now
		c = next
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact", ObjectID: id, Changes: changes})
		return err
	})
	if err != nil {
		return Contact{}, err
	}
	return c, nil
}

func hasField(ch []audit.Change, f string) bool {
	for _, c := range ch {
		if c.Field == f {
			return true
		}
	}
	return false
}

// applyPatch validates p against cur and returns the patched contact and
// the audit changes.
func applyPatch(cur Contact, p Patch, sc schema) (Contact, []audit.Change, error) {
	next := cur
	next.Attributes = mergeAttrs(mergeAttrs(nil, cur.Attributes), nil)
	var ch []audit.Change
	personal := func(name string, ptr *string, dst *string, norm func(string) (string, error)) error {
		if ptr == nil {
			return nil
		}
		v := ""
		if strings.TrimSpace(*ptr) != "" {
			var err error
			if v, err = norm(*ptr); err != nil {
				return err
			}
		}
		if v != *dst {
			*dst = v
			ch = append(ch, audit.Change{Field: name, Personal: true})
		}
		return nil
	}
	if err := personal("email", p.Email, &next.Email, NormaliseEmail); err != nil {
		return next, nil, err
	}
	if err := personal("phone", p.Phone, &next.Phone, func(s string) (string, error) { return NormalisePhone(s, "") }); err != nil {
		return next, nil, err
	}
	if next.Email == "" && next.Phone == "" {
		return next, nil, invalid("email", "a contact keeps an email address or a phone number")
	}
	if err := personal("first_name", p.FirstName, &next.FirstName, func(s string) (string, error) { return validateName("first_name", s) }); err != nil {
		return next, nil, err
	}
	if err := personal("last_name", p.LastName, &next.LastName, func(s string) (string, error) { return validateName("last_name", s) }); err != nil {
		return next, nil, err
	}
	if p.Locale != nil {
		l, err := normaliseLocale(*p.Locale)
		if err != nil {
			return next, nil, err
		}
		if l != cur.Locale {
			ch = append(ch, audit.Change{Field: "locale", Before: cur.Locale, After: l})
			next.Locale = l
		}
	}
	if p.TimeZone != nil {
		tz, err := tzCache{}.validate(*p.TimeZone)
		if err != nil {
			return next, nil, err
		}
		if tz != cur.TimeZone {
			ch = append(ch, audit.Change{Field: "timezone", Before: cur.TimeZone, After: tz})
			next.TimeZone = tz
		}
	}
	if len(p.Attributes) > 0 {
		plain, pers, err := sc.splitAttributes(p.Attributes, true)
		if err != nil {
			return next, nil, err
		}
		before := map[string]any{}
		for k := range plain {
			before[k] = cur.Attributes[k]
		}
		ch = append(ch, attrChanges(before, plain, pers)...)
		next.Attributes = mergeAttrs(mergeAttrs(next.Attributes, plain), pers)
	}
	if p.Status != nil && *p.Status != cur.Status {
		switch *p.Status {
		case StatusActive, StatusUnsubscribed, StatusBounced:
		case StatusBlocklisted:
			return next, nil, invalid("status", "is set to blocklisted through the blocklist")
		default:
			return next, nil, invalid("status", "must be active, unsubscribed or bounced")
		}
		if cur.Status == StatusBlocklisted {
			return next, nil, fmt.Errorf("contacts: %w: remove the address from the blocklist first", ErrBlocklisted)
		}
		ch = append(ch, audit.Change{Field: "status", Before: string(cur.Status), After: string(*p.Status)})
		next.Status = *p.Status
	}
	return next, ch, nil
}

// Delete removes a contact, its current consents and its list
// memberships. The consent events (the proof of what was consented to, and
// when) are kept: they hold no clear personal data, only the contact id, the
// blind index of the address and the sealed source IP; erasure (PRIV-4)
// decides their fate. A deleted contact can be created again.
func (s *Service) Delete(ctx context.Context, tenantID, id string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		// Consents and list memberships go with the row (ON DELETE CASCADE).
		res, err := tx.Exec(ctx, `DELETE FROM contacts WHERE tenant_id = $1 AND id = $2`, id)
		if err != nil {
			return fmt.Errorf("contacts: delete contact: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("contact %w", ErrNotFound)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.delete", ObjectType: "contact", ObjectID: id,
			Changes: []audit.Change{{Field: "email", Personal: true}, {Field: "phone", Personal: true}, {Field: "first_name", Personal: true},
				{Field: "last_name", Personal: true}, {Field: "attributes", Personal: true}}})
		return err
	})
}

// Count returns the number of contacts of the tenant (not erased).
func (s *Service) Count(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = $1 AND erased_at IS NULL`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("contacts: count: %w", err)
	}
	return n, nil
}

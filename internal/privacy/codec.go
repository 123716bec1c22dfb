package privacy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// sealedFields names the field label of every encrypted column the export
// decrypts (and the import seals again under the target tenant's key): the
// labels the owning packages bind into their ciphertexts. An "_enc" column
// missing here (added by a later issue) is exported as opaque base64 and
// listed in the manifest's opaque_columns.
var sealedFields = map[string]string{
	"contacts.email_enc":           "contact.email",
	"contacts.phone_enc":           "contact.phone",
	"contacts.first_name_enc":      "contact.first_name",
	"contacts.last_name_enc":       "contact.last_name",
	"contacts.attributes_enc":      "contact.attributes",
	"consents.source_ip_enc":       "consent.source_ip",
	"consent_events.source_ip_enc": "consent.source_ip",
	"users.email_enc":              "user.email",
	"users.name_enc":               "user.name",
	"messages.recipient_enc":       "message.to",
	"message_contents.content_enc": "message.content",
	"connectors.config_enc":        "connector.config",
}

// addressBook maps the blind indexes of a tenant's addresses (contacts'
// email and phone, users' email) to the field label and value they index.
var addressSources = []struct{ table, bidx, enc, label string }{
	{"contacts", "email_bidx", "email_enc", "contact.email"},
	{"contacts", "phone_bidx", "phone_enc", "contact.phone"},
	{"users", "email_bidx", "email_enc", "user.email"},
}

// excludedTables are not part of a tenant's data export: its keys (with
// their rotations and shredding records, which name the source's keys), its
// audit trail's internal tables (the trail is exported in its own verifiable
// format), and credentials and sessions, which are not restituted (a
// restored tenant enrols its users and issues API clients again).
var excludedTables = map[string]bool{
	"tenant_keys": true, "key_rotations": true, "shredding_records": true, "audit_heads": true, "audit_events": true, "audit_queue": true, "audit_trees": true,
	"audit_tree_hashes": true, "audit_signing_keys": true, "audit_checkpoints": true,
	"sessions": true, "user_tokens": true, "mfa_challenges": true, "recovery_codes": true,
	"password_history": true, "ip_failures": true, "api_clients": true, "client_roles": true,
	// The backup machinery's own state (change log, schedule, restore
	// marker): the platform's, not the tenant's data.
	"backup_changes": true, "backup_state": true, "backup_restoring": true, "backup_self_logged": true,
}

// excludedColumns are credentials, the store's own row numbers, and keys:
// a contact's own key (key_enc, see keyColumns) is never exported; the
// import gives each contact a new one.
var excludedColumns = map[string]bool{
	"users.password_hash": true, "users.password_changed_at": true, "users.totp_secret_enc": true,
	"users.totp_enabled": true, "users.totp_last_step": true, "users.token_version": true,
	"message_events.id": true, "contacts.key_enc": true,
	// Single sign-on secrets (sealed under the source tenant's key): the
	// restored tenant's administrator enters them again.
	"sso_providers.secret_enc": true, "sso_providers.sp_key_enc": true,
}

// keyColumns names, per table, the column holding the row's own key (sealed
// by the tenant key): the row's personal fields are sealed under that key
// (per-contact keys, PRIV-4 crypto-shredding), and opened through
// tenants.Crypto.ContactCipher. A row without one (written before
// per-contact keys) has its fields under the tenant key.
var keyColumns = map[string]string{"contacts": "key_enc"}

// fieldCipher seals and opens the personal fields of one row: the tenant's
// Crypto, or a contact's ContactCipher.
type fieldCipher interface {
	OpenString(field string, ciphertext []byte) (string, error)
	SealString(field, plaintext string) ([]byte, error)
}

// keyColumn returns t's own-key column, if it has one.
func keyColumn(t table) (column, bool) {
	name, ok := keyColumns[t.Name]
	if !ok {
		return column{}, false
	}
	return t.col(name)
}

// rowCipher returns the cipher of a row of t whose own key (if t has a key
// column) is keyEnc.
func rowCipher(cr *tenants.Crypto, t table, keyEnc []byte) (fieldCipher, error) {
	if _, ok := keyColumn(t); !ok || len(keyEnc) == 0 {
		return cr, nil
	}
	cc, err := cr.ContactCipher(keyEnc)
	if err != nil {
		return nil, fmt.Errorf("privacy: %s row key: %w", t.Name, err)
	}
	return cc, nil
}

// insertCols are the columns decodeRecord's values are for: ocs, and the
// row's own key column when t has one.
func insertCols(t table, ocs []outCol) []outCol {
	if kc, ok := keyColumn(t); ok {
		return append(ocs[:len(ocs):len(ocs)], outCol{src: kc, name: kc.Name})
	}
	return ocs
}

// outCol is one column of an exported table as it appears in the files.
type outCol struct {
	src   column // the stored column
	name  string // the exported name ("email" for email_enc)
	label string // field label when sealed
	bidx  bool   // a blind index: exported as "addr:<label>:<value>" or "idx:<base64>"
	opaq  bool   // an encrypted column of unknown label: base64 of the ciphertext
}

func exportCols(t table) []outCol {
	var out []outCol
	for _, c := range t.Cols {
		key := t.Name + "." + c.Name
		if c.Name == "tenant_id" || excludedColumns[key] {
			continue
		}
		oc := outCol{src: c, name: c.Name}
		switch {
		case sealedFields[key] != "":
			oc.label = sealedFields[key]
			oc.name = strings.TrimSuffix(c.Name, "_enc")
			if _, clash := t.col(oc.name); clash {
				oc.name = "personal_" + oc.name
			}
		case strings.HasSuffix(c.Name, "_bidx"):
			oc.bidx = true
		case strings.HasSuffix(c.Name, "_enc") && c.Kind == kindBlob:
			oc.opaq = true
		}
		out = append(out, oc)
	}
	return out
}

// keyDependentOrder reports whether a table's key includes a blind index,
// whose order depends on the tenant's key: such a table's rows are sorted
// by their exported form instead, so that an export does not depend on the
// key (and a re-import exports identically).
func keyDependentOrder(t table) bool {
	for _, k := range pkOrder(t) {
		if strings.HasSuffix(k, "_bidx") {
			return true
		}
	}
	return false
}

// record is one exported row: names and JSON values, in column order.
type record struct {
	names []string
	vals  []json.RawMessage
}

func (r record) get(name string) (json.RawMessage, bool) {
	for i, n := range r.names {
		if n == name {
			return r.vals[i], true
		}
	}
	return nil, false
}

func (r *record) set(name string, v json.RawMessage) {
	for i, n := range r.names {
		if n == name {
			r.vals[i] = v
			return
		}
	}
}

// str returns a string field ("" for null or absent).
func (r record) str(name string) string {
	raw, ok := r.get(name)
	if !ok {
		return ""
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// MarshalJSON writes the row as one JSON object, in column order.
func (r record) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, n := range r.names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		b.Write(k)
		b.WriteByte(':')
		b.Write(r.vals[i])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func parseRecord(line []byte) (record, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return record{}, errors.New("not a JSON object")
	}
	var r record
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return record{}, err
		}
		name, ok := k.(string)
		if !ok {
			return record{}, errors.New("bad key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return record{}, err
		}
		r.names = append(r.names, name)
		r.vals = append(r.vals, v)
	}
	return r, nil
}

// addrBook maps a blind index to "<label>:<value>".
type addrBook map[string]string

func buildAddrBook(ctx context.Context, db *store.DB, cr *tenants.Crypto, tenantID string, tabs []table) (addrBook, error) {
	book := addrBook{}
	have := map[string]table{}
	for _, t := range tabs {
		have[t.Name] = t
	}
	for _, src := range addressSources {
		t, ok := have[src.table]
		if !ok {
			continue
		}
		cols := []column{{Name: src.bidx, Kind: kindBlob}, {Name: src.enc, Kind: kindBlob}, {Name: src.bidx, Kind: kindBlob}}
		if kc, ok := keyColumn(t); ok {
			cols[2] = kc // the row's own key; else a placeholder
		}
		for _, k := range pkOrder(t) {
			c, _ := t.col(k)
			cols = append(cols, c)
		}
		var after []any
		for {
			var page [][]any
			err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
				var err error
				page, err = readPage(ctx, tx, t, cols, after, 2000)
				return err
			})
			if err != nil {
				return nil, err
			}
			for _, row := range page {
				idx, _ := row[0].([]byte)
				enc, _ := row[1].([]byte)
				if len(idx) == 0 || len(enc) == 0 {
					continue
				}
				var keyEnc []byte
				if _, ok := keyColumn(t); ok {
					keyEnc, _ = row[2].([]byte)
				}
				fc, err := rowCipher(cr, t, keyEnc)
				if err != nil {
					return nil, err
				}
				v, err := fc.OpenString(src.label, enc)
				if err != nil {
					return nil, fmt.Errorf("privacy: decrypt %s.%s: %w", src.table, src.enc, err)
				}
				book[string(idx)] = src.label + ":" + v
			}
			if len(page) < 2000 {
				break
			}
			after = page[len(page)-1][3:]
		}
	}
	return book, nil
}

// encodeRow turns a stored row (read with t's columns) into an export record;
// fc is the row's cipher (rowCipher).
func encodeRow(fc fieldCipher, book addrBook, t table, ocs []outCol, row []any) (record, error) {
	r := record{names: make([]string, len(ocs)), vals: make([]json.RawMessage, len(ocs))}
	for i, oc := range ocs {
		r.names[i] = oc.name
		v := row[i]
		switch {
		case v == nil:
			r.vals[i] = json.RawMessage("null")
		case oc.label != "":
			b, _ := v.([]byte)
			if len(b) == 0 {
				r.vals[i] = jsonValue("")
				continue
			}
			pt, err := fc.OpenString(oc.label, b)
			if err != nil {
				return record{}, fmt.Errorf("privacy: decrypt %s.%s: %w", t.Name, oc.src.Name, err)
			}
			r.vals[i] = jsonValue(pt)
		case oc.bidx:
			b, _ := v.([]byte)
			if a, ok := book[string(b)]; ok {
				r.vals[i] = jsonValue("addr:" + a)
			} else {
				r.vals[i] = jsonValue("idx:" + base64.StdEncoding.EncodeToString(b))
			}
		default:
			r.vals[i] = jsonValue(v)
		}
	}
	return r, nil
}

// decodeRecord turns an export record into values for insertCols(t, ocs),
// sealing and indexing under the target tenant's crypto. A row of a table
// with its own key column (contacts) that has personal fields gets a new
// key of its own, sealed by the target tenant's key, and its fields are
// sealed under it, so that the imported person can be crypto-shredded.
func decodeRecord(cr *tenants.Crypto, t table, ocs []outCol, r record) ([]any, error) {
	out := make([]any, len(ocs), len(ocs)+1)
	var fc fieldCipher = cr
	var keyEnc []byte
	_, ownKey := keyColumn(t)
	if ownKey && hasSealedValue(ocs, r) {
		k, cc, err := cr.NewContactKey()
		if err != nil {
			return nil, err
		}
		keyEnc, fc = k, cc
	}
	for i, oc := range ocs {
		raw, ok := r.get(oc.name)
		if !ok || string(raw) == "null" {
			out[i] = nil
			continue
		}
		switch {
		case oc.label != "":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name, oc.name, err)
			}
			ct, err := fc.SealString(oc.label, s)
			if err != nil {
				return nil, err
			}
			out[i] = ct
		case oc.bidx:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name, oc.name, err)
			}
			switch {
			case strings.HasPrefix(s, "addr:"):
				label, val, ok := strings.Cut(strings.TrimPrefix(s, "addr:"), ":")
				if !ok {
					return nil, fmt.Errorf("%s.%s: malformed address reference", t.Name, oc.name)
				}
				out[i] = cr.Index(label, val)
			case strings.HasPrefix(s, "idx:"):
				b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "idx:"))
				if err != nil {
					return nil, fmt.Errorf("%s.%s: %w", t.Name, oc.name, err)
				}
				out[i] = b
			default:
				return nil, fmt.Errorf("%s.%s: neither addr: nor idx:", t.Name, oc.name)
			}
		default:
			v, err := fromJSON(oc.src.Kind, raw)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name, oc.name, err)
			}
			out[i] = v
		}
	}
	if ownKey {
		out = append(out, keyEnc)
	}
	return out, nil
}

// hasSealedValue reports whether r has a non-null value for one of the
// sealed columns.
func hasSealedValue(ocs []outCol, r record) bool {
	for _, oc := range ocs {
		if raw, ok := r.get(oc.name); oc.label != "" && ok && string(raw) != "null" {
			return true
		}
	}
	return false
}

// insertRows inserts rows (values for ocs) into t for the transaction's tenant.
func insertRows(ctx context.Context, tx *store.Tx, t table, ocs []outCol, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	names := []string{"tenant_id"}
	for _, oc := range ocs {
		names = append(names, quoteIdent(oc.src.Name))
	}
	per := len(ocs)
	const maxParams = 900
	step := max(1, maxParams/max(per, 1))
	for start := 0; start < len(rows); start += step {
		chunk := rows[start:min(start+step, len(rows))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + quoteIdent(t.Name) + " (" + strings.Join(names, ", ") + ") VALUES ")
		args := make([]any, 0, len(chunk)*per)
		for i, row := range chunk {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("($1")
			for _, v := range row {
				args = append(args, v)
				fmt.Fprintf(&sb, ", $%d", len(args)+1)
			}
			sb.WriteString(")")
		}
		if _, err := tx.Exec(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("privacy: insert into %s: %w", t.Name, err)
		}
	}
	return nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

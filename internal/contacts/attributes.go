package contacts

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts/filter"
	"github.com/relais-dev/relais/internal/store"
)

// AttrType is the type of a custom attribute.
type AttrType string

// Attribute types.
const (
	AttrString AttrType = filter.TypeString // text, at most 1024 bytes
	AttrNumber AttrType = filter.TypeNumber // a finite number
	AttrBool   AttrType = filter.TypeBool   // true or false
	AttrDate   AttrType = filter.TypeDate   // a calendar date, "YYYY-MM-DD"
)

// Limits of the attribute schema and values.
const (
	MaxAttributes       = 100
	maxAttrStringLength = 1024
)

// AttributeDef declares one custom attribute of a tenant's contacts.
type AttributeDef struct {
	Key  string   `json:"key"` // lower-case letters, digits and _, starting with a letter
	Type AttrType `json:"type"`
	// Personal attributes (a birth date, a loyalty card number...) are
	// encrypted like the email, and cannot be used in segment filters.
	Personal    bool      `json:"personal"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

var attrKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// reservedKeys are column names of the import that cannot be attributes.
var reservedKeys = map[string]bool{"email": true, "phone": true, "first_name": true, "last_name": true, "locale": true,
	"timezone": true, "status": true, "id": true, "created_at": true, "updated_at": true, "source": true}

// schema is a tenant's attribute schema, by key.
type schema map[string]AttributeDef

func (sc schema) filterAttributes() map[string]filter.Attribute {
	out := make(map[string]filter.Attribute, len(sc))
	for k, d := range sc {
		out[k] = filter.Attribute{Type: string(d.Type), Personal: d.Personal}
	}
	return out
}

// DefineAttribute declares (or re-describes) a custom attribute. The type
// and the personal flag of an existing key cannot change: remove the key and
// declare it again.
func (s *Service) DefineAttribute(ctx context.Context, tenantID string, def AttributeDef) (AttributeDef, error) {
	def.Key = strings.TrimSpace(def.Key)
	if !attrKeyRE.MatchString(def.Key) || reservedKeys[def.Key] {
		return AttributeDef{}, invalid("key", "must be 1 to 63 lower-case letters, digits or _, starting with a letter, and not a contact field name")
	}
	switch def.Type {
	case AttrString, AttrNumber, AttrBool, AttrDate:
	default:
		return AttributeDef{}, invalid("type", "must be string, number, bool or date")
	}
	desc, err := validateName("description", def.Description)
	if err != nil {
		return AttributeDef{}, err
	}
	def.Description = desc
	now := s.now()
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		old, exists := sc[def.Key]
		if exists && (old.Type != def.Type || old.Personal != def.Personal) {
			return invalid("type", "attribute %q is already declared as %s (personal: %v); remove it first to change its type or personal flag", def.Key, old.Type, old.Personal)
		}
		if !exists && len(sc) >= MaxAttributes {
			return invalid("key", "a tenant may declare at most %d attributes", MaxAttributes)
		}
		action := "contact_attribute.create"
		if exists {
			action = "contact_attribute.update"
			def.CreatedAt = old.CreatedAt
			_, err = tx.Exec(ctx, `UPDATE attribute_schema SET description = $3, updated_at = $4 WHERE tenant_id = $1 AND key = $2`,
				def.Key, def.Description, micros(now))
		} else {
			def.CreatedAt = now
			_, err = tx.Exec(ctx, `INSERT INTO attribute_schema (tenant_id, key, type, personal, description, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $6)`, def.Key, string(def.Type), def.Personal, def.Description, micros(now))
		}
		if err != nil {
			return fmt.Errorf("contacts: save attribute: %w", err)
		}
		def.UpdatedAt = now
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: action, ObjectType: "contact_attribute", ObjectID: def.Key,
			Changes: []audit.Change{{Field: "type", After: def.Type}, {Field: "personal", After: def.Personal}, {Field: "description", After: def.Description}}})
		return err
	})
	if err != nil {
		return AttributeDef{}, err
	}
	return def, nil
}

// RemoveAttribute removes a key from the schema. Values already stored on
// contacts stay (they are no longer shown, filtered or exported) until the
// key is declared again with the same type.
func (s *Service) RemoveAttribute(ctx context.Context, tenantID, key string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM attribute_schema WHERE tenant_id = $1 AND key = $2`, key)
		if err != nil {
			return fmt.Errorf("contacts: remove attribute: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("attribute %w", ErrNotFound)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact_attribute.delete", ObjectType: "contact_attribute", ObjectID: key})
		return err
	})
}

// AttributeSchema returns the tenant's declared attributes, by key.
func (s *Service) AttributeSchema(ctx context.Context, tenantID string) ([]AttributeDef, error) {
	var sc schema
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		sc, err = loadSchema(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]AttributeDef, 0, len(sc))
	for _, d := range sc {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func loadSchema(ctx context.Context, tx *store.Tx) (schema, error) {
	rows, err := tx.Query(ctx, `SELECT key, type, personal, description, created_at, updated_at FROM attribute_schema WHERE tenant_id = $1`)
	if err != nil {
		return nil, fmt.Errorf("contacts: read attribute schema: %w", err)
	}
	defer func() { _ = rows.Close() }()
	sc := schema{}
	for rows.Next() {
		var d AttributeDef
		var typ string
		var created, updated int64
		if err := rows.Scan(&d.Key, &typ, &d.Personal, &d.Description, &created, &updated); err != nil {
			return nil, fmt.Errorf("contacts: read attribute schema: %w", err)
		}
		d.Type, d.CreatedAt, d.UpdatedAt = AttrType(typ), store.FromMicros(created), store.FromMicros(updated)
		sc[d.Key] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("contacts: read attribute schema: %w", err)
	}
	return sc, nil
}

// checkValue validates an attribute value from JSON (API) against its
// declaration and returns its stored form.
func (d AttributeDef) checkValue(v any) (any, error) {
	field := "attributes." + d.Key
	switch d.Type {
	case AttrString:
		s, ok := v.(string)
		if !ok {
			return nil, invalid(field, "must be a string")
		}
		if len(s) > maxAttrStringLength || !utf8.ValidString(s) {
			return nil, invalid(field, "must be valid UTF-8 of at most %d bytes", maxAttrStringLength)
		}
		return s, nil
	case AttrNumber:
		var f float64
		switch n := v.(type) {
		case float64:
			f = n
		case int:
			f = float64(n)
		case int64:
			f = float64(n)
		case json.Number:
			var err error
			if f, err = n.Float64(); err != nil {
				return nil, invalid(field, "must be a number")
			}
		default:
			return nil, invalid(field, "must be a number")
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, invalid(field, "must be a finite number")
		}
		return f, nil
	case AttrBool:
		b, ok := v.(bool)
		if !ok {
			return nil, invalid(field, "must be true or false")
		}
		return b, nil
	case AttrDate:
		s, ok := v.(string)
		if !ok {
			return nil, invalid(field, "must be a date as \"YYYY-MM-DD\"")
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return nil, invalid(field, "must be a date as \"YYYY-MM-DD\"")
		}
		return s, nil
	}
	return nil, invalid(field, "has an unknown type")
}

// parseText converts a CSV cell to a value of the attribute's type.
func (d AttributeDef) parseText(s string) (any, error) {
	field := "attributes." + d.Key
	switch d.Type {
	case AttrNumber:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, invalid(field, "must be a number")
		}
		return f, nil
	case AttrBool:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "yes", "y", "1":
			return true, nil
		case "false", "no", "n", "0":
			return false, nil
		}
		return nil, invalid(field, "must be true or false (or yes/no, 1/0)")
	}
	return d.checkValue(strings.TrimSpace(s))
}

// splitAttributes validates attributes against the schema and splits them
// into plain and personal sets. A nil value (removal) is kept as nil when
// allowNil.
func (sc schema) splitAttributes(in map[string]any, allowNil bool) (plain, personal map[string]any, err error) {
	plain, personal = map[string]any{}, map[string]any{}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the first bad key in order is reported
	for _, k := range keys {
		v := in[k]
		d, ok := sc[k]
		if !ok {
			return nil, nil, invalid("attributes."+k, "is not a declared attribute")
		}
		if v == nil {
			if !allowNil {
				return nil, nil, invalid("attributes."+k, "must not be null")
			}
		} else if v, err = d.checkValue(v); err != nil {
			return nil, nil, err
		}
		if d.Personal {
			personal[k] = v
		} else {
			plain[k] = v
		}
	}
	return plain, personal, nil
}

// mergeAttrs applies a patch (nil removes) to a set and returns it.
func mergeAttrs(dst, patch map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
	return dst
}

func decodeAttrs(b []byte) (map[string]any, error) {
	out := map[string]any{}
	if len(b) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("contacts: stored attributes: %w", err)
	}
	return out, nil
}

func encodeAttrs(m map[string]any) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m) // maps of strings, float64 and bool always marshal
	if err != nil {
		return "{}"
	}
	return string(b)
}

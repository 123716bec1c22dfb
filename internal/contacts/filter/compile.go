package filter

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/store"
)

// Attribute types, as declared in a tenant's attribute schema.
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
	TypeDate   = "date"
)

// Attribute is the declaration of one custom attribute.
type Attribute struct {
	Type     string // TypeString, TypeNumber, TypeBool or TypeDate
	Personal bool   // encrypted in the store: cannot be filtered
}

// Options configure [Compile].
type Options struct {
	// Dialect selects the JSON functions used for attributes.
	Dialect store.Dialect
	// Attributes is the tenant's attribute schema, by key.
	Attributes map[string]Attribute
	// FirstParam is the number of the first placeholder the condition may
	// use: 2 when only the tenant ($1) precedes it.
	FirstParam int
	// DefaultPurpose is the consent purpose of consent.email and
	// consent.sms; "marketing" when empty.
	DefaultPurpose string
}

// Compiled is a filter compiled to a SQL condition over the contacts table
// aliased "c", with its arguments for placeholders FirstParam onwards. Use it
// as
//
//	SELECT ... FROM contacts c WHERE c.tenant_id = $1 AND (<SQL>)
type Compiled struct {
	SQL  string
	Args []any
}

// Statuses, channels and consent statuses a filter may name.
var (
	statuses        = []string{"active", "unsubscribed", "bounced", "blocklisted"}
	channels        = []string{"email", "sms"}
	consentStatuses = []string{"granted", "withdrawn", "pending"}
	purposeRE       = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	attrKeyRE       = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// Fields lists the fields a filter may use, for error messages and help.
const Fields = "status, locale, timezone, created_at, updated_at, has_email, has_phone, list, consent.email, consent.sms, consent.<channel>.<purpose>, attr.<key>"

// Compile validates e against the options' attribute schema and compiles
// it. Field names come from a fixed whitelist and become fixed SQL text;
// every value, attribute key and purpose becomes a placeholder.
func Compile(e Expr, o Options) (Compiled, error) {
	if o.FirstParam < 2 {
		o.FirstParam = 2
	}
	if o.DefaultPurpose == "" {
		o.DefaultPurpose = "marketing"
	}
	c := &compiler{o: o}
	sql, err := c.expr(e)
	if err != nil {
		return Compiled{}, err
	}
	return Compiled{SQL: sql, Args: c.args}, nil
}

// ParseAndCompile is [Parse] then [Compile].
func ParseAndCompile(src string, o Options) (Compiled, error) {
	e, err := Parse(src)
	if err != nil {
		return Compiled{}, err
	}
	return Compile(e, o)
}

type compiler struct {
	o    Options
	args []any
}

// param records a value and returns its placeholder.
func (c *compiler) param(v any) string {
	c.args = append(c.args, v)
	return "$" + strconv.Itoa(c.o.FirstParam+len(c.args)-1)
}

func (c *compiler) expr(e Expr) (string, error) {
	switch e := e.(type) {
	case *And:
		return c.binary(e.Left, e.Right, " AND ")
	case *Or:
		return c.binary(e.Left, e.Right, " OR ")
	case *Not:
		x, err := c.expr(e.X)
		if err != nil {
			return "", err
		}
		return "(NOT " + x + ")", nil
	case *Compare:
		return c.compare(e)
	}
	return "", &Error{Msg: "unknown expression"}
}

func (c *compiler) binary(l, r Expr, op string) (string, error) {
	ls, err := c.expr(l)
	if err != nil {
		return "", err
	}
	rs, err := c.expr(r)
	if err != nil {
		return "", err
	}
	return "(" + ls + op + rs + ")", nil
}

func isEquality(op Op) bool { return op == OpEq || op == OpNe || op == OpIn || op == OpNotIn }
func negative(op Op) bool   { return op == OpNe || op == OpNotIn }

// total makes a condition never NULL, and applies the negation of != and
// NOT IN outside it, so that they match what = and IN do not.
func total(cond string, op Op) string {
	s := "COALESCE(" + cond + ", FALSE)"
	if negative(op) {
		return "(NOT " + s + ")"
	}
	return s
}

// sqlOp is the SQL text of an ordering or equality operator (a constant).
func sqlOp(op Op) string {
	switch op {
	case OpLt:
		return "<"
	case OpLe:
		return "<="
	case OpGt:
		return ">"
	case OpGe:
		return ">="
	}
	return "="
}

// set compiles "= v" (one value) or "IN (v, ...)" (several) for the
// positive form of an equality comparison; values are placeholders.
func (c *compiler) set(values []any) string {
	if len(values) == 1 {
		return " = " + c.param(values[0])
	}
	ph := make([]string, len(values))
	for i, v := range values {
		ph[i] = c.param(v)
	}
	return " IN (" + strings.Join(ph, ", ") + ")"
}

func (c *compiler) compare(e *Compare) (string, error) {
	f := e.Field
	switch {
	case f == "status":
		vals, err := enumValues(e, statuses)
		if err != nil {
			return "", err
		}
		return total("c.status"+c.set(vals), e.Op), nil
	case f == "locale" || f == "timezone":
		vals, err := stringValues(e)
		if err != nil {
			return "", err
		}
		col := map[string]string{"locale": "c.locale", "timezone": "c.timezone"}[f]
		return total(col+c.set(vals), e.Op), nil
	case f == "created_at" || f == "updated_at":
		col := map[string]string{"created_at": "c.created_at", "updated_at": "c.updated_at"}[f]
		return c.timeCompare(e, col)
	case f == "has_email" || f == "has_phone":
		col := map[string]string{"has_email": "c.email_bidx", "has_phone": "c.phone_bidx"}[f]
		if e.Op != OpEq && e.Op != OpNe {
			return "", errAt(e.Pos, "%s takes = or != with true or false", f)
		}
		if e.Values[0].Kind != KindBool {
			return "", errAt(e.Values[0].Pos, "%s is compared with true or false", f)
		}
		if e.Values[0].Bool == (e.Op == OpEq) {
			return "(" + col + " IS NOT NULL)", nil
		}
		return "(" + col + " IS NULL)", nil
	case f == "list":
		vals, err := stringValues(e)
		if err != nil {
			return "", err
		}
		cond := "EXISTS (SELECT 1 FROM list_members m WHERE m.tenant_id = c.tenant_id AND m.contact_id = c.id AND m.list_id" + c.set(vals) + ")"
		return total(cond, e.Op), nil
	case strings.HasPrefix(f, "consent."):
		return c.consent(e)
	case strings.HasPrefix(f, "attr."):
		return c.attribute(e)
	}
	return "", errAt(e.Pos, "unknown field %q; fields are %s", f, Fields)
}

func enumValues(e *Compare, allowed []string) ([]any, error) {
	if !isEquality(e.Op) {
		return nil, errAt(e.Pos, "%s takes =, !=, IN or NOT IN", e.Field)
	}
	out := make([]any, len(e.Values))
	for i, v := range e.Values {
		if v.Kind != KindString || !contains(allowed, v.Str) {
			return nil, errAt(v.Pos, "%s is one of %s", e.Field, quoteAll(allowed))
		}
		out[i] = v.Str
	}
	return out, nil
}

func stringValues(e *Compare) ([]any, error) {
	if !isEquality(e.Op) {
		return nil, errAt(e.Pos, "%s takes =, !=, IN or NOT IN", e.Field)
	}
	out := make([]any, len(e.Values))
	for i, v := range e.Values {
		if v.Kind != KindString {
			return nil, errAt(v.Pos, "%s is compared with a \"string\"", e.Field)
		}
		out[i] = v.Str
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// timeCompare compiles a comparison of a timestamp column (Unix
// microseconds) with dates (whole UTC days) or datetimes (instants).
func (c *compiler) timeCompare(e *Compare, col string) (string, error) {
	for _, v := range e.Values {
		if v.Kind != KindDate && v.Kind != KindDateTime {
			return "", errAt(v.Pos, "%s is compared with a date (2026-01-31) or a date and time (2026-01-31T09:30:00Z)", e.Field)
		}
	}
	// The positive condition for one value.
	one := func(v Value, op Op) string {
		start := v.Time.UnixMicro()
		if v.Kind == KindDateTime {
			return col + " " + sqlOp(op) + " " + c.param(start)
		}
		end := v.Time.Add(24 * time.Hour).UnixMicro()
		switch op {
		case OpLt:
			return col + " < " + c.param(start)
		case OpLe:
			return col + " < " + c.param(end)
		case OpGt:
			return col + " >= " + c.param(end)
		case OpGe:
			return col + " >= " + c.param(start)
		}
		return "(" + col + " >= " + c.param(start) + " AND " + col + " < " + c.param(end) + ")"
	}
	if !isEquality(e.Op) {
		return total(one(e.Values[0], e.Op), OpEq), nil
	}
	parts := make([]string, len(e.Values))
	for i, v := range e.Values {
		parts[i] = one(v, OpEq)
	}
	return total("("+strings.Join(parts, " OR ")+")", e.Op), nil
}

func (c *compiler) consent(e *Compare) (string, error) {
	parts := strings.Split(strings.TrimPrefix(e.Field, "consent."), ".")
	if len(parts) > 2 || !contains(channels, parts[0]) {
		return "", errAt(e.Pos, "consent fields are consent.email, consent.sms or consent.<channel>.<purpose>")
	}
	purpose := c.o.DefaultPurpose
	if len(parts) == 2 {
		if !purposeRE.MatchString(parts[1]) {
			return "", errAt(e.Pos, "a consent purpose is lower-case letters, digits and _")
		}
		purpose = parts[1]
	}
	vals, err := enumValues(e, consentStatuses)
	if err != nil {
		return "", err
	}
	cond := "EXISTS (SELECT 1 FROM consents s WHERE s.tenant_id = c.tenant_id AND s.contact_id = c.id AND s.channel = " +
		c.param(parts[0]) + " AND s.purpose = " + c.param(purpose) + " AND s.status" + c.set(vals) + ")"
	return total(cond, e.Op), nil
}

func (c *compiler) attribute(e *Compare) (string, error) {
	key := strings.TrimPrefix(e.Field, "attr.")
	if !attrKeyRE.MatchString(key) {
		return "", errAt(e.Pos, "%q is not an attribute key (lower-case letters, digits and _)", key)
	}
	def, ok := c.o.Attributes[key]
	if !ok {
		return "", errAt(e.Pos, "unknown attribute %q; declared attributes are %s", key, c.declared())
	}
	if def.Personal {
		return "", errAt(e.Pos, "attribute %q is personal data, stored encrypted: it cannot be used in a filter", key)
	}
	var want Kind
	switch def.Type {
	case TypeString:
		want = KindString
	case TypeNumber:
		want = KindNumber
	case TypeBool:
		want = KindBool
	case TypeDate:
		want = KindDate
	default:
		return "", errAt(e.Pos, "attribute %q has an unknown type", key)
	}
	for _, v := range e.Values {
		if v.Kind != want {
			return "", errAt(v.Pos, "attribute %q is a %s: compare it with a %s", key, def.Type, want)
		}
	}
	if def.Type == TypeBool && e.Op != OpEq && e.Op != OpNe {
		return "", errAt(e.Pos, "attribute %q is a bool: use = or !=", key)
	}
	value := func(v Value) any {
		switch v.Kind {
		case KindNumber:
			return v.Num
		case KindDate:
			return v.Str
		}
		return v.Str
	}

	if c.o.Dialect == store.Postgres {
		k := c.param(key)
		node := "(c.attributes -> CAST(" + k + " AS TEXT))"
		switch def.Type {
		case TypeBool:
			lit := "'false'"
			if e.Values[0].Bool {
				lit = "'true'"
			}
			return total(node+" = CAST("+lit+" AS JSONB)", e.Op), nil
		case TypeNumber:
			x := "(CASE WHEN jsonb_typeof(" + node + ") = 'number' THEN CAST(c.attributes ->> CAST(" + k + " AS TEXT) AS NUMERIC) END)"
			return c.attrCompare(e, x, "NUMERIC", value)
		default:
			x := "(CASE WHEN jsonb_typeof(" + node + ") = 'string' THEN c.attributes ->> CAST(" + k + " AS TEXT) END)"
			return c.attrCompare(e, x, "TEXT", value)
		}
	}
	k := c.param("$." + key)
	switch def.Type {
	case TypeBool:
		lit := "'false'"
		if e.Values[0].Bool {
			lit = "'true'"
		}
		return total("json_type(c.attributes, "+k+") = "+lit, e.Op), nil
	case TypeNumber:
		x := "(CASE WHEN json_type(c.attributes, " + k + ") IN ('integer', 'real') THEN json_extract(c.attributes, " + k + ") END)"
		return c.attrCompare(e, x, "", value)
	default:
		x := "(CASE WHEN json_type(c.attributes, " + k + ") = 'text' THEN json_extract(c.attributes, " + k + ") END)"
		return c.attrCompare(e, x, "", value)
	}
}

// attrCompare compiles x op value(s); cast (a constant) wraps each
// placeholder on PostgreSQL.
func (c *compiler) attrCompare(e *Compare, x, cast string, value func(Value) any) (string, error) {
	ph := func(v Value) string {
		p := c.param(value(v))
		if cast != "" {
			return "CAST(" + p + " AS " + cast + ")"
		}
		return p
	}
	if !isEquality(e.Op) {
		return total(x+" "+sqlOp(e.Op)+" "+ph(e.Values[0]), OpEq), nil
	}
	if len(e.Values) == 1 {
		return total(x+" = "+ph(e.Values[0]), e.Op), nil
	}
	parts := make([]string, len(e.Values))
	for i, v := range e.Values {
		parts[i] = ph(v)
	}
	return total(x+" IN ("+strings.Join(parts, ", ")+")", e.Op), nil
}

func (c *compiler) declared() string {
	if len(c.o.Attributes) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(c.o.Attributes))
	for k := range c.o.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 20 {
		keys = append(keys[:20], "...")
	}
	return strings.Join(keys, ", ")
}

// Package filter is the small, safe language in which segments of contacts
// are written (CORE-3), for example
//
//	status = "active" AND consent.email = "granted"
//	  AND attr.country IN ("FR", "BE") AND created_at > 2026-01-01
//
// A filter is parsed by a hand-written parser into an AST ([Parse]), then
// validated against the tenant's attribute schema and compiled to a SQL
// condition ([Compile]) in which every value is a placeholder and every field
// comes from a fixed whitelist: no text of the filter is ever concatenated
// into SQL. What cannot be expressed safely is refused with an [*Error] that
// says where and why.
//
// # Grammar
//
//	filter     = or
//	or         = and { "OR" and }
//	and        = unary { "AND" unary }
//	unary      = "NOT" unary | "(" or ")" | comparison
//	comparison = field op value
//	           | field [ "NOT" ] "IN" "(" value { "," value } ")"
//	op         = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//	value      = string | number | date | datetime | "true" | "false"
//	field      = "status" | "locale" | "timezone" | "created_at" | "updated_at"
//	           | "has_email" | "has_phone" | "list"
//	           | "consent." channel [ "." purpose ]
//	           | "attr." key
//	string     = '"' { any character but '"' and '\', or '\"' or '\\' } '"'
//	number     = [ "-" ] digits [ "." digits ]
//	date       = YYYY-MM-DD                   (a calendar day, UTC)
//	datetime   = RFC 3339, e.g. 2026-01-01T09:30:00Z
//
// Keywords (AND, OR, NOT, IN, true, false) are case-insensitive; field names
// are lower case. AND binds tighter than OR. Limits: 4096 bytes, 256 nodes,
// nesting 32 deep, 100 values in an IN list, strings of 1024 bytes.
//
// # Meaning
//
//   - status: one of active, unsubscribed, bounced, blocklisted; = != IN.
//   - locale, timezone: strings; = != IN.
//   - created_at, updated_at: a date is a whole UTC day (created_at > 2026-01-01
//     means from 2 January on; = means during that day); a datetime is an
//     instant. All six comparison operators.
//   - has_email, has_phone: true or false; = !=.
//   - list: a list id; = != IN (membership).
//   - consent.email, consent.sms (purpose "marketing"), or
//     consent.<channel>.<purpose>: granted, withdrawn or pending; = != IN.
//     "!=" matches contacts with no consent in that status, including none.
//   - attr.<key>: a custom attribute declared in the tenant's schema, compared
//     with a value of its type (string, number, bool, date as YYYY-MM-DD).
//     Personal attributes are encrypted in the store and cannot be filtered:
//     they are refused. Strings and dates compare as text.
//
// Every comparison is total: "!=" and "NOT IN" are the negation of "=" and
// "IN", so a contact without the attribute matches attr.x != "a"; ordering
// comparisons are false when the attribute is missing.
package filter

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on hostile or careless input.
const (
	MaxLength    = 4096
	MaxNodes     = 256
	MaxDepth     = 32
	MaxInValues  = 100
	MaxStringLen = 1024
)

// Error is a filter that cannot be parsed or compiled. Pos is the 1-based
// byte position in the filter text (0 when it concerns the whole filter).
type Error struct {
	Pos int
	Msg string
}

// Error says where the filter is wrong and why.
func (e *Error) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("filter: at position %d: %s", e.Pos, e.Msg)
	}
	return "filter: " + e.Msg
}

func errAt(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Expr is a node of the AST: *And, *Or, *Not or *Compare.
type Expr interface{ pos() int }

// And is true when both sides are.
type And struct{ Left, Right Expr }

// Or is true when either side is.
type Or struct{ Left, Right Expr }

// Not negates X.
type Not struct {
	X   Expr
	Pos int
}

// Op is a comparison operator.
type Op string

// Operators. "<>" is parsed as OpNe.
const (
	OpEq    Op = "="
	OpNe    Op = "!="
	OpLt    Op = "<"
	OpLe    Op = "<="
	OpGt    Op = ">"
	OpGe    Op = ">="
	OpIn    Op = "IN"
	OpNotIn Op = "NOT IN"
)

// Compare is one comparison of a field with one value (or several, for IN).
type Compare struct {
	Field  string // as written, e.g. "attr.country"
	Op     Op
	Values []Value
	Pos    int // position of the field
}

// Kind is the lexical kind of a value.
type Kind int

// Kinds of values.
const (
	KindString Kind = iota + 1
	KindNumber
	KindDate     // YYYY-MM-DD
	KindDateTime // RFC 3339
	KindBool
)

// String names the kind in error messages.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindNumber:
		return "number"
	case KindDate:
		return "date"
	case KindDateTime:
		return "datetime"
	case KindBool:
		return "true/false"
	}
	return "value"
}

// Value is a literal of the filter.
type Value struct {
	Kind Kind
	Str  string    // KindString; the text of a KindDate
	Num  float64   // KindNumber
	Time time.Time // KindDate (midnight UTC) and KindDateTime
	Bool bool      // KindBool
	Pos  int
}

func (e *And) pos() int     { return e.Left.pos() }
func (e *Or) pos() int      { return e.Left.pos() }
func (e *Not) pos() int     { return e.Pos }
func (e *Compare) pos() int { return e.Pos }

// token kinds
type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tLiteral // number, date or datetime, classified by the parser
	tOp
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	text string // identifier, operator, literal text or decoded string
	pos  int    // 1-based
}

type lexer struct {
	src string
	i   int
}

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentChar(c byte) bool  { return isIdentStart(c) || (c >= '0' && c <= '9') }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

func (l *lexer) next() (token, error) {
	for l.i < len(l.src) && (l.src[l.i] == ' ' || l.src[l.i] == '\t' || l.src[l.i] == '\n' || l.src[l.i] == '\r') {
		l.i++
	}
	start := l.i
	pos := start + 1
	if l.i >= len(l.src) {
		return token{kind: tEOF, pos: pos}, nil
	}
	c := l.src[l.i]
	switch {
	case c == '(':
		l.i++
		return token{kind: tLParen, text: "(", pos: pos}, nil
	case c == ')':
		l.i++
		return token{kind: tRParen, text: ")", pos: pos}, nil
	case c == ',':
		l.i++
		return token{kind: tComma, text: ",", pos: pos}, nil
	case c == '=':
		l.i++
		return token{kind: tOp, text: "=", pos: pos}, nil
	case c == '!':
		if l.i+1 < len(l.src) && l.src[l.i+1] == '=' {
			l.i += 2
			return token{kind: tOp, text: "!=", pos: pos}, nil
		}
		return token{}, errAt(pos, "unexpected %q (did you mean !=?)", "!")
	case c == '<' || c == '>':
		l.i++
		op := string(c)
		if l.i < len(l.src) && (l.src[l.i] == '=' || (c == '<' && l.src[l.i] == '>')) {
			op += string(l.src[l.i])
			l.i++
		}
		if op == "<>" {
			op = "!="
		}
		return token{kind: tOp, text: op, pos: pos}, nil
	case c == '"':
		return l.str(pos)
	case c == '\'':
		return token{}, errAt(pos, "strings are written in double quotes")
	case isDigit(c) || (c == '-' && l.i+1 < len(l.src) && isDigit(l.src[l.i+1])):
		l.i++
		for l.i < len(l.src) {
			d := l.src[l.i]
			if isDigit(d) || d == '.' || d == ':' || d == '-' || d == '+' || d == 'T' || d == 'Z' || d == 't' || d == 'z' {
				l.i++
				continue
			}
			break
		}
		return token{kind: tLiteral, text: l.src[start:l.i], pos: pos}, nil
	case isIdentStart(c):
		for l.i < len(l.src) {
			d := l.src[l.i]
			if isIdentChar(d) || (d == '.' && l.i+1 < len(l.src) && isIdentStart(l.src[l.i+1])) {
				l.i++
				continue
			}
			break
		}
		return token{kind: tIdent, text: l.src[start:l.i], pos: pos}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.i:])
	return token{}, errAt(pos, "unexpected character %q", r)
}

func (l *lexer) str(pos int) (token, error) {
	l.i++ // opening quote
	var b strings.Builder
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch {
		case c == '"':
			l.i++
			if b.Len() > MaxStringLen {
				return token{}, errAt(pos, "string longer than %d bytes", MaxStringLen)
			}
			return token{kind: tString, text: b.String(), pos: pos}, nil
		case c == '\\':
			if l.i+1 >= len(l.src) || (l.src[l.i+1] != '"' && l.src[l.i+1] != '\\') {
				return token{}, errAt(l.i+1, `only \" and \\ are escapes in a string`)
			}
			b.WriteByte(l.src[l.i+1])
			l.i += 2
		case c < 0x20 || c == 0x7f:
			return token{}, errAt(l.i+1, "control character in a string")
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return token{}, errAt(pos, "string not closed (missing \")")
}

// parser is a recursive-descent parser with one token of look-ahead.
type parser struct {
	lex   lexer
	tok   token
	nodes int
}

// Parse parses a filter into its AST. It checks the syntax and the limits
// only; [Compile] checks fields, operators and types.
func Parse(src string) (Expr, error) {
	if len(src) > MaxLength {
		return nil, &Error{Msg: fmt.Sprintf("longer than %d bytes", MaxLength)}
	}
	if !utf8.ValidString(src) {
		return nil, &Error{Msg: "not valid UTF-8"}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Msg: "empty filter"}
	}
	p := &parser{lex: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, errAt(p.tok.pos, "unexpected %s; expected AND, OR or the end", describe(p.tok))
	}
	return e, nil
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of filter"
	case tString:
		return "string"
	}
	return strconv.Quote(t.text)
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) keyword(kw string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) count(pos int) error {
	p.nodes++
	if p.nodes > MaxNodes {
		return errAt(pos, "more than %d terms", MaxNodes)
	}
	return nil
}

func (p *parser) or(depth int) (Expr, error) {
	left, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("OR") {
		if err := p.count(p.tok.pos); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		right, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		left = &Or{Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) and(depth int) (Expr, error) {
	left, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("AND") {
		if err := p.count(p.tok.pos); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		right, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		left = &And{Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) unary(depth int) (Expr, error) {
	if depth >= MaxDepth {
		return nil, errAt(p.tok.pos, "nested more than %d deep", MaxDepth)
	}
	if err := p.count(p.tok.pos); err != nil {
		return nil, err
	}
	switch {
	case p.keyword("NOT"):
		pos := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x, Pos: pos}, nil
	case p.tok.kind == tLParen:
		open := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, errAt(p.tok.pos, "expected ) to close the ( at position %d, found %s", open, describe(p.tok))
		}
		return e, p.advance()
	}
	return p.comparison()
}

func (p *parser) comparison() (Expr, error) {
	if p.tok.kind != tIdent || p.keyword("AND") || p.keyword("OR") || p.keyword("IN") || p.keyword("TRUE") || p.keyword("FALSE") {
		return nil, errAt(p.tok.pos, "expected a field name such as status or attr.country, found %s", describe(p.tok))
	}
	c := &Compare{Field: p.tok.text, Pos: p.tok.pos}
	if err := p.advance(); err != nil {
		return nil, err
	}
	switch {
	case p.tok.kind == tOp:
		c.Op = Op(p.tok.text)
		if err := p.advance(); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.Values = []Value{v}
		return c, nil
	case p.keyword("IN"), p.keyword("NOT"):
		c.Op = OpIn
		if p.keyword("NOT") {
			c.Op = OpNotIn
			if err := p.advance(); err != nil {
				return nil, err
			}
			if !p.keyword("IN") {
				return nil, errAt(p.tok.pos, "expected IN after NOT, found %s", describe(p.tok))
			}
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tLParen {
			return nil, errAt(p.tok.pos, "expected ( after IN, found %s", describe(p.tok))
		}
		for {
			if err := p.advance(); err != nil {
				return nil, err
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
			if len(c.Values) > MaxInValues {
				return nil, errAt(v.Pos, "more than %d values in IN", MaxInValues)
			}
			if p.tok.kind == tComma {
				continue
			}
			if p.tok.kind != tRParen {
				return nil, errAt(p.tok.pos, "expected , or ) in the IN list, found %s", describe(p.tok))
			}
			return c, p.advance()
		}
	}
	return nil, errAt(p.tok.pos, "expected an operator (=, !=, <, <=, >, >=, IN, NOT IN) after %s, found %s", c.Field, describe(p.tok))
}

func (p *parser) value() (Value, error) {
	t := p.tok
	v := Value{Pos: t.pos}
	switch {
	case t.kind == tString:
		v.Kind, v.Str = KindString, t.text
	case p.keyword("TRUE") || p.keyword("FALSE"):
		v.Kind, v.Bool = KindBool, p.keyword("TRUE")
	case t.kind == tLiteral:
		if err := literal(t, &v); err != nil {
			return Value{}, err
		}
	default:
		return Value{}, errAt(t.pos, "expected a value (a \"string\", a number, a date such as 2026-01-31, true or false), found %s", describe(t))
	}
	return v, p.advance()
}

// literal classifies an unquoted number, date or datetime.
func literal(t token, v *Value) error {
	s := t.text
	if len(s) == 10 && s[4] == '-' && s[7] == '-' {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return errAt(t.pos, "%q is not a valid date (YYYY-MM-DD)", s)
		}
		v.Kind, v.Time, v.Str = KindDate, d, s
		return nil
	}
	if len(s) > 10 && s[4] == '-' && (s[10] == 'T' || s[10] == 't') {
		d, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
		if err != nil {
			return errAt(t.pos, "%q is not a valid date and time (RFC 3339, e.g. 2026-01-31T09:30:00Z)", s)
		}
		v.Kind, v.Time, v.Str = KindDateTime, d.UTC(), s
		return nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "eEInN") || strings.Count(s, "-") > 1 || strings.Contains(s[1:], "-") {
		return errAt(t.pos, "%q is not a number, a date (YYYY-MM-DD) or a date and time", s)
	}
	v.Kind, v.Num = KindNumber, n
	return nil
}

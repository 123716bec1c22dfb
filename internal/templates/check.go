package templates

import (
	"errors"
	htemplate "html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/template/parse"
	"unicode/utf8"
)

// contactKeys are the fields of the contact namespace.
func contactKeys() [6]string {
	return [6]string{"email", "phone", "first_name", "last_name", "locale", "timezone"}
}

// linkKeys are the fields of the links namespace.
func linkKeys() [2]string { return [2]string{"unsubscribe", "preferences"} }

func isContactKey(k string) bool {
	switch k {
	case "email", "phone", "first_name", "last_name", "locale", "timezone":
		return true
	}
	return false
}

func isLinkKey(k string) bool { return k == "unsubscribe" || k == "preferences" }

// rules is what a part may refer to. attrs nil admits any attribute key:
// used when a stored template, validated at save time, is compiled again.
type rules struct {
	attrs map[string]bool
	data  bool
}

func strictRules(fs FieldSet) rules {
	r := rules{attrs: make(map[string]bool, len(fs.Attributes)), data: fs.Data}
	for _, a := range fs.Attributes {
		r.attrs[a] = true
	}
	return r
}

// refs is what a part refers to, collected while checking it.
type refs struct {
	attrs map[string]bool
	// data holds the data.* paths named from the root, with whether each
	// is ranged over (previews fill the missing ones with placeholders).
	data map[string]dataRef
}

type dataRef struct {
	path   []string
	ranged bool
}

func newRefs() *refs { return &refs{attrs: map[string]bool{}, data: map[string]dataRef{}} }

// kind is what a value in a template is known to be.
type kind uint8

const (
	kindRoot  kind = iota // the merge data itself
	kindData              // inside data.*: free-form, any field
	kindValue             // a value whose fields are unknown: none may be used
)

func join(a, b kind) kind {
	if a == b {
		return a
	}
	return kindValue
}

type variable struct {
	name string
	kind kind
}

// checker walks one part's parse tree and refuses what the template may
// not do. It stops at the first problem.
type checker struct {
	field string // "variants.fr.html"
	src   string
	rules rules
	funcs map[string]bool
	refs  *refs
	vars  []variable
}

// checkPart parses src as a template part named field and checks it
// against r, recording what it refers to in into. html parts are also run
// through html/template's escaper, whose context errors (an action that
// could end in two contexts, say) are save-time errors too.
func checkPart(field, src string, r rules, into *refs) error {
	tree := parse.New(field)
	tree.Mode = parse.SkipFuncCheck // unknown functions are reported below, with a position
	set := map[string]*parse.Tree{}
	if _, err := tree.Parse(src, "", "", set); err != nil {
		return parseError(field, err)
	}
	c := &checker{field: field, src: src, rules: r, funcs: allowedFuncs(), refs: into,
		vars: []variable{{name: "$", kind: kindRoot}}}
	if tree.Root != nil {
		if err := c.list(tree.Root, kindRoot); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(set))
	for name := range set {
		if name != field {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		var pos parse.Pos
		if t := set[name]; t.Root != nil {
			pos = t.Root.Pos
		}
		return c.errAt(pos, "define and block are not allowed ("+strconv.Quote(name)+"): a template part stands alone")
	}
	return nil
}

func allowedFuncs() map[string]bool {
	m := builtins()
	for name := range Funcs() {
		m[name] = true
	}
	return m
}

// parseError turns a text/template/parse error ("template: NAME:LINE: msg")
// into a ValidationError with the line.
func parseError(field string, err error) error {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: "+field+":")
	if !ok {
		return &ValidationError{Field: field, Message: "syntax error: " + msg}
	}
	line := 0
	if i := strings.Index(rest, ": "); i > 0 {
		if n, err := strconv.Atoi(rest[:i]); err == nil {
			line, rest = n, rest[i+2:]
		}
	}
	return &ValidationError{Field: field, Line: line, Message: "syntax error: " + rest}
}

// position returns the 1-based line and column (in characters) of a byte
// offset of src.
func position(src string, pos int) (line, col int) {
	if pos < 0 {
		pos = 0
	}
	if pos > len(src) {
		pos = len(src)
	}
	before := src[:pos]
	line = 1 + strings.Count(before, "\n")
	start := strings.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCountInString(before[start:])
}

func (c *checker) errAt(pos parse.Pos, msg string) error {
	line, col := position(c.src, int(pos))
	return &ValidationError{Field: c.field, Line: line, Column: col, Message: msg}
}

// errNode reports a problem with a field or variable reference at the
// reference's first character (the parser positions some of them at their
// last field).
func (c *checker) errNode(n parse.Node, msg string) error {
	pos, text := int(n.Position()), n.String()
	for i := min(pos, len(c.src)); i >= 0 && i >= pos-len(text); i-- {
		if strings.HasPrefix(c.src[i:], text) {
			return c.errAt(parse.Pos(i), msg)
		}
	}
	return c.errAt(n.Position(), msg)
}

func (c *checker) lookup(name string) kind {
	for i := len(c.vars) - 1; i >= 0; i-- {
		if c.vars[i].name == name {
			return c.vars[i].kind
		}
	}
	return kindValue
}

func (c *checker) assign(name string, k kind) {
	for i := len(c.vars) - 1; i >= 0; i-- {
		if c.vars[i].name == name {
			c.vars[i].kind = join(c.vars[i].kind, k)
			return
		}
	}
}

func (c *checker) list(l *parse.ListNode, dot kind) error {
	if l == nil {
		return nil
	}
	mark := len(c.vars)
	defer func() { c.vars = c.vars[:mark] }()
	for _, n := range l.Nodes {
		if err := c.node(n, dot); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) node(n parse.Node, dot kind) error {
	switch n := n.(type) {
	case *parse.TextNode, *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
		return nil
	case *parse.ActionNode:
		k, err := c.pipe(n.Pipe, dot)
		if err != nil {
			return err
		}
		c.declare(n.Pipe, k, k)
		return nil
	case *parse.IfNode:
		return c.branch(&n.BranchNode, dot, false)
	case *parse.WithNode:
		return c.branch(&n.BranchNode, dot, false)
	case *parse.RangeNode:
		return c.branch(&n.BranchNode, dot, true)
	case *parse.TemplateNode:
		pos := n.Pos
		if i := strings.LastIndex(c.src[:min(int(pos), len(c.src))], "{{"); i >= 0 {
			pos = parse.Pos(i)
		}
		return c.errAt(pos, "the template action is not allowed ("+strconv.Quote(n.Name)+"): a template part cannot include another")
	case *parse.ListNode:
		return c.list(n, dot)
	default:
		return c.errAt(n.Position(), "unexpected template construct")
	}
}

// declare records the variables of a pipeline: single declares the one
// variable of an action, if or with; for range, the second of two is the
// element and the first the index or key.
func (c *checker) declare(p *parse.PipeNode, single, elem kind) {
	if p == nil || len(p.Decl) == 0 {
		return
	}
	kinds := []kind{single}
	if len(p.Decl) == 2 {
		kinds = []kind{kindValue, elem}
	}
	for i, v := range p.Decl {
		if i >= len(kinds) {
			break
		}
		if p.IsAssign {
			c.assign(v.Ident[0], kinds[i])
		} else {
			c.vars = append(c.vars, variable{name: v.Ident[0], kind: kinds[i]})
		}
	}
}

func (c *checker) branch(b *parse.BranchNode, dot kind, isRange bool) error {
	mark := len(c.vars)
	defer func() { c.vars = c.vars[:mark] }()
	k, err := c.pipe(b.Pipe, dot)
	if err != nil {
		return err
	}
	inner := dot
	switch {
	case isRange:
		if lit := numberLiteral(b.Pipe); lit != nil {
			return c.errAt(lit.Position(), "range over a number is not allowed: range over a list of the message data")
		}
		elem := kindValue
		if k == kindData {
			elem = kindData
		}
		if p := rootDataPath(b.Pipe, dot, c); p != nil {
			key := strings.Join(p, ".")
			c.refs.data[key] = dataRef{path: p, ranged: true}
		}
		inner = elem
		if len(b.Pipe.Decl) == 1 {
			c.declare(b.Pipe, elem, elem)
		} else {
			c.declare(b.Pipe, kindValue, elem)
		}
	case b.NodeType == parse.NodeWith:
		inner = k
		c.declare(b.Pipe, k, k)
	default:
		c.declare(b.Pipe, k, k)
	}
	if err := c.list(b.List, inner); err != nil {
		return err
	}
	return c.list(b.ElseList, dot)
}

// numberLiteral returns the number a pipeline consists of, if any
// ("range 1000000000", "range (1000000000)").
func numberLiteral(p *parse.PipeNode) parse.Node {
	for p != nil && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
		switch a := p.Cmds[0].Args[0].(type) {
		case *parse.NumberNode:
			return a
		case *parse.PipeNode:
			p = a
			continue
		}
		return nil
	}
	return nil
}

// rootDataPath returns the data.* path a pipeline names from the root
// (".data.items", "$.data.items"), if it is only that.
func rootDataPath(p *parse.PipeNode, dot kind, c *checker) []string {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return nil
	}
	var idents []string
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		if dot != kindRoot {
			return nil
		}
		idents = a.Ident
	case *parse.VariableNode:
		if c.lookup(a.Ident[0]) != kindRoot {
			return nil
		}
		idents = a.Ident[1:]
	default:
		return nil
	}
	if len(idents) < 2 || idents[0] != "data" {
		return nil
	}
	return append([]string(nil), idents[1:]...)
}

// pipe checks a pipeline and returns the kind of its value: known only
// when it is a lone field or variable reference.
func (c *checker) pipe(p *parse.PipeNode, dot kind) (kind, error) {
	if p == nil {
		return kindValue, nil
	}
	last := kindValue
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			k, err := c.arg(arg, dot)
			if err != nil {
				return kindValue, err
			}
			last = k
		}
	}
	if len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
		return last, nil
	}
	return kindValue, nil
}

const wholeData = "the whole merge data cannot be used as a value: name a field such as .contact.first_name"

func (c *checker) arg(n parse.Node, dot kind) (kind, error) {
	switch n := n.(type) {
	case *parse.FieldNode:
		return c.path(n, dot, n.Ident, ".")
	case *parse.VariableNode:
		k := c.lookup(n.Ident[0])
		if len(n.Ident) == 1 {
			if k == kindRoot {
				return kindValue, c.errNode(n, wholeData)
			}
			return k, nil
		}
		return c.path(n, k, n.Ident[1:], n.Ident[0]+".")
	case *parse.DotNode:
		if dot == kindRoot {
			return kindValue, c.errAt(n.Pos, wholeData)
		}
		return dot, nil
	case *parse.ChainNode:
		k, err := c.arg(n.Node, dot)
		if err != nil {
			return kindValue, err
		}
		return c.path(n, k, n.Field, "(...).")
	case *parse.PipeNode:
		if len(n.Decl) > 0 {
			return kindValue, c.errAt(n.Pos, "declarations inside parentheses are not allowed")
		}
		return c.pipe(n, dot)
	case *parse.IdentifierNode:
		if n.Ident == "call" {
			return kindValue, c.errAt(n.Pos, "the call function is not allowed")
		}
		if !c.funcs[n.Ident] {
			return kindValue, c.errAt(n.Pos, "unknown function "+strconv.Quote(n.Ident)+
				" (helpers: default, upper, lower, trim, truncate, date; built-ins: and, or, not, eq, ne, lt, le, gt, ge, len, index, slice, print, printf, println, html, js, urlquery)")
		}
		return kindValue, nil
	case *parse.StringNode, *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
		return kindValue, nil
	default:
		return kindValue, c.errAt(n.Position(), "unexpected template construct")
	}
}

// path checks a field path from a value of kind base. prefix is how the
// path is written before its first field ("." or "$x."), for messages.
func (c *checker) path(n parse.Node, base kind, idents []string, prefix string) (kind, error) {
	switch base {
	case kindData:
		return kindData, nil
	case kindValue:
		return kindValue, c.errNode(n, "field "+prefix+strings.Join(idents, ".")+": this value has no fields")
	}
	name := strings.Join(idents, ".")
	ns, key := idents[0], ""
	if len(idents) > 1 {
		key = idents[1]
	}
	switch ns {
	case "contact":
		keys := contactKeys()
		switch {
		case len(idents) == 1:
			return kindValue, c.errNode(n, "contact is not a field: use one of contact."+strings.Join(keys[:], ", contact."))
		case !isContactKey(key):
			return kindValue, c.errNode(n, "unknown field "+name+" (contact fields: "+strings.Join(keys[:], ", ")+")")
		case len(idents) > 2:
			return kindValue, c.errNode(n, "field "+name+": contact."+key+" has no fields")
		}
		return kindValue, nil
	case "links":
		switch {
		case len(idents) == 1:
			return kindValue, c.errNode(n, "links is not a field: use links.unsubscribe or links.preferences")
		case !isLinkKey(key):
			return kindValue, c.errNode(n, "unknown field "+name+" (links: unsubscribe, preferences)")
		case len(idents) > 2:
			return kindValue, c.errNode(n, "field "+name+": links."+key+" has no fields")
		}
		return kindValue, nil
	case "attributes":
		switch {
		case len(idents) == 1:
			return kindValue, c.errNode(n, "attributes is not a field: use attributes.<key>, a key of the tenant's attribute schema")
		case c.rules.attrs != nil && !c.rules.attrs[key]:
			return kindValue, c.errNode(n, "unknown field "+name+": "+strconv.Quote(key)+" is not in the tenant's attribute schema")
		case len(idents) > 2:
			return kindValue, c.errNode(n, "field "+name+": attributes."+key+" has no fields")
		}
		c.refs.attrs[key] = true
		return kindValue, nil
	case "data":
		if !c.rules.data {
			return kindValue, c.errNode(n, "field "+name+": data.* fields are allowed only in transactional templates")
		}
		if len(idents) > 1 {
			p := append([]string(nil), idents[1:]...)
			k := strings.Join(p, ".")
			if _, seen := c.refs.data[k]; !seen {
				c.refs.data[k] = dataRef{path: p}
			}
		}
		return kindData, nil
	default:
		return kindValue, c.errNode(n, "unknown field "+name+" (fields: contact.*, attributes.*, data.*, links.*)")
	}
}

// failWriter fails the first write: executing into it runs html/template's
// escaper (which works before any output) and stops at the first byte.
type failWriter struct{}

var errStop = errors.New("stop")

// Write refuses everything.
func (failWriter) Write([]byte) (int, error) { return 0, errStop }

// escapeCheck reports html/template's context errors for an HTML part at
// save time rather than at the first send.
func escapeCheck(field, src string, t *htemplate.Template) error {
	err := t.Execute(io.Writer(failWriter{}), nil)
	var he *htemplate.Error
	if !errors.As(err, &he) {
		return nil
	}
	line, col := he.Line, 0
	if he.Node != nil {
		line, col = position(src, int(he.Node.Position()))
	}
	return &ValidationError{Field: field, Line: line, Column: col, Message: "HTML context: " + he.Description}
}

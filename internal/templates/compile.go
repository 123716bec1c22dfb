package templates

import (
	"context"
	"errors"
	"fmt"
	htemplate "html/template"
	"net/mail"
	"net/url"
	"regexp"
	"sort"
	"strings"
	ttemplate "text/template"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/router"
)

// draft is a validated Input, in canonical form.
type draft struct {
	name          string
	channel       Channel
	defaultLocale string
	locales       []string // sorted
	variants      map[string]Variant
	transactional bool
}

// Validate checks in as Create would (in.Channel is required), against the
// fields fs allows, without saving anything. The error is a
// *ValidationError.
func Validate(in Input, fs FieldSet) error {
	_, _, err := prepare(in, in.Channel, fs)
	return err
}

// prepare validates in for a template of the given channel and compiles
// it (the compiled form warms the render cache).
func prepare(in Input, channel Channel, fs FieldSet) (draft, *compiled, error) {
	d := draft{name: strings.TrimSpace(in.Name), channel: channel, transactional: fs.Data}
	if err := checkName(d.name); err != nil {
		return draft{}, nil, err
	}
	if channel != ChannelEmail && channel != ChannelSMS {
		return draft{}, nil, &ValidationError{Field: "channel", Message: "must be email or sms"}
	}
	if len(in.Variants) == 0 {
		return draft{}, nil, &ValidationError{Field: "variants", Message: "at least one locale variant is required"}
	}
	if len(in.Variants) > MaxVariants {
		return draft{}, nil, &ValidationError{Field: "variants", Message: fmt.Sprintf("at most %d locale variants", MaxVariants)}
	}
	d.variants = make(map[string]Variant, len(in.Variants))
	for raw, v := range in.Variants {
		loc, ok := canonicalLocale(raw)
		if !ok {
			return draft{}, nil, &ValidationError{Field: "variants", Message: fmt.Sprintf("%q is not a locale tag such as en, fr or en-GB", truncateBytes(raw, 40))}
		}
		if _, dup := d.variants[loc]; dup {
			return draft{}, nil, &ValidationError{Field: "variants", Message: fmt.Sprintf("locale %s is given twice", loc)}
		}
		d.variants[loc] = v
		d.locales = append(d.locales, loc)
	}
	sort.Strings(d.locales)
	switch {
	case in.DefaultLocale == "" && len(d.locales) == 1:
		d.defaultLocale = d.locales[0]
	case in.DefaultLocale == "":
		return draft{}, nil, &ValidationError{Field: "default_locale", Message: "is required when there are several variants"}
	default:
		loc, ok := canonicalLocale(in.DefaultLocale)
		if _, has := d.variants[loc]; !ok || !has {
			return draft{}, nil, &ValidationError{Field: "default_locale", Message: "must be one of the variants' locales: " + strings.Join(d.locales, ", ")}
		}
		d.defaultLocale = loc
	}
	r := strictRules(fs)
	c := &compiled{channel: channel, transactional: fs.Data, defaultLocale: d.defaultLocale, variants: map[string]*variantTmpl{}}
	for _, loc := range d.locales {
		v := d.variants[loc]
		v.From, v.ReplyTo = strings.TrimSpace(v.From), strings.TrimSpace(v.ReplyTo)
		d.variants[loc] = v
		vt, err := compileVariant(channel, loc, v, r)
		if err != nil {
			return draft{}, nil, err
		}
		c.variants[loc] = vt
	}
	c.index()
	return d, c, nil
}

func checkName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxNameLen {
		return &ValidationError{Field: "name", Message: fmt.Sprintf("must be 1 to %d characters", MaxNameLen)}
	}
	if !utf8.ValidString(name) {
		return &ValidationError{Field: "name", Message: "must be valid UTF-8"}
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return &ValidationError{Field: "name", Message: "must not contain control characters"}
		}
	}
	return nil
}

var localeRE = regexp.MustCompile(`^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$`)

// canonicalLocale returns a BCP 47-like tag in canonical case: language in
// lower case, a 2-letter region in upper case, a 4-letter script in title
// case, the rest in lower case; "_" becomes "-" ("en_gb" -> "en-GB").
func canonicalLocale(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) > maxLocaleLen || !localeRE.MatchString(s) {
		return "", false
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' })
	for i, p := range parts {
		switch {
		case i == 0:
			parts[i] = strings.ToLower(p)
		case len(p) == 2 && isAlpha(p):
			parts[i] = strings.ToUpper(p)
		case len(p) == 4 && isAlpha(p):
			parts[i] = strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
		default:
			parts[i] = strings.ToLower(p)
		}
	}
	return strings.Join(parts, "-"), true
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isASCIILetter(s[i]) {
			return false
		}
	}
	return true
}

func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// compiled is one version of a template, parsed and ready to execute.
// It is immutable once built, and shared by concurrent renders.
type compiled struct {
	channel       Channel
	transactional bool
	defaultLocale string
	variants      map[string]*variantTmpl
	byLower       map[string]*variantTmpl // lower-case locale -> variant
}

func (c *compiled) index() {
	c.byLower = make(map[string]*variantTmpl, len(c.variants))
	for loc, v := range c.variants {
		c.byLower[strings.ToLower(loc)] = v
	}
}

// variant picks the variant for a locale: the exact locale, then its
// language ("fr" for "fr-CA"), then the default.
func (c *compiled) variant(locale string) *variantTmpl {
	if locale != "" {
		l := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(locale), "_", "-"))
		if v, ok := c.byLower[l]; ok {
			return v
		}
		if i := strings.IndexByte(l, '-'); i > 0 {
			if v, ok := c.byLower[l[:i]]; ok {
				return v
			}
		}
	}
	return c.variants[c.defaultLocale]
}

// variantTmpl is one locale's parts, parsed.
type variantTmpl struct {
	locale  string
	subject *ttemplate.Template
	html    *htemplate.Template
	text    *ttemplate.Template // email text part, or the SMS text
	from    string
	replyTo string
	attrs   []string // the attribute keys the parts name
	refs    *refs
	htmlLen int
	textLen int
}

// compileVariant checks and parses one variant's parts.
func compileVariant(channel Channel, loc string, v Variant, r rules) (*variantTmpl, error) {
	f := func(part string) string { return "variants." + loc + "." + part }
	vt := &variantTmpl{locale: loc, refs: newRefs()}
	switch channel {
	case ChannelEmail:
		if strings.TrimSpace(v.Subject) == "" {
			return nil, &ValidationError{Field: f("subject"), Message: "an email template needs a subject"}
		}
		if strings.TrimSpace(v.HTML) == "" && strings.TrimSpace(v.Text) == "" {
			return nil, &ValidationError{Field: f("html"), Message: "an email template needs an html or a text part"}
		}
		if err := checkSize(f("subject"), v.Subject, MaxSubjectSrc); err != nil {
			return nil, err
		}
		if err := checkSize(f("html"), v.HTML, MaxBodySrc); err != nil {
			return nil, err
		}
		if err := checkSize(f("text"), v.Text, MaxBodySrc); err != nil {
			return nil, err
		}
		var err error
		if vt.from, err = checkAddress(f("from"), v.From); err != nil {
			return nil, err
		}
		if vt.replyTo, err = checkAddress(f("reply_to"), v.ReplyTo); err != nil {
			return nil, err
		}
		if vt.subject, err = textPart(f("subject"), v.Subject, r, vt.refs); err != nil {
			return nil, err
		}
		if strings.TrimSpace(v.HTML) != "" {
			if vt.html, err = htmlPart(f("html"), v.HTML, r, vt.refs); err != nil {
				return nil, err
			}
			vt.htmlLen = len(v.HTML)
		}
		if strings.TrimSpace(v.Text) != "" {
			if vt.text, err = textPart(f("text"), v.Text, r, vt.refs); err != nil {
				return nil, err
			}
			vt.textLen = len(v.Text)
		}
	case ChannelSMS:
		for _, p := range []struct{ name, val string }{{"subject", v.Subject}, {"html", v.HTML}, {"from", v.From}, {"reply_to", v.ReplyTo}} {
			if p.val != "" {
				return nil, &ValidationError{Field: f(p.name), Message: "an SMS template has a text only"}
			}
		}
		if strings.TrimSpace(v.Text) == "" {
			return nil, &ValidationError{Field: f("text"), Message: "an SMS template needs a text"}
		}
		if err := checkSize(f("text"), v.Text, MaxSMSSrc); err != nil {
			return nil, err
		}
		var err error
		if vt.text, err = textPart(f("text"), v.Text, r, vt.refs); err != nil {
			return nil, err
		}
		vt.textLen = len(v.Text)
	}
	for k := range vt.refs.attrs {
		vt.attrs = append(vt.attrs, k)
	}
	sort.Strings(vt.attrs)
	return vt, nil
}

func checkSize(field, src string, max int) error {
	if len(src) > max {
		return &ValidationError{Field: field, Message: fmt.Sprintf("is %d bytes; at most %d", len(src), max)}
	}
	if !utf8.ValidString(src) {
		return &ValidationError{Field: field, Message: "must be valid UTF-8"}
	}
	return nil
}

// checkAddress validates an optional From or Reply-To: one address, no
// line breaks (it goes into a header as is).
func checkAddress(field, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) > maxAddrLen || strings.ContainsAny(s, "\r\n") {
		return "", &ValidationError{Field: field, Message: "must be one email address on one line"}
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", &ValidationError{Field: field, Message: "must be an email address such as news@example.com or \"Acme\" <news@example.com>"}
	}
	if a.Name == "" {
		return a.Address, nil
	}
	return a.String(), nil
}

func textPart(field, src string, r rules, into *refs) (*ttemplate.Template, error) {
	if err := checkPart(field, src, r, into); err != nil {
		return nil, err
	}
	t, err := ttemplate.New(field).Option("missingkey=error").Funcs(Funcs()).Parse(src)
	if err != nil {
		return nil, parseError(field, err)
	}
	return t, nil
}

func htmlPart(field, src string, r rules, into *refs) (*htemplate.Template, error) {
	if err := checkPart(field, src, r, into); err != nil {
		return nil, err
	}
	t, err := htemplate.New(field).Option("missingkey=error").Funcs(Funcs()).Parse(src)
	if err != nil {
		return nil, parseError(field, err)
	}
	if err := escapeCheck(field, src, t); err != nil {
		return nil, err
	}
	return t, nil
}

// errTooLarge is the limitWriter's refusal.
var errTooLarge = errors.New("output too large")

// limitWriter collects a part's output within the budget shared by all
// the parts of one message, and stops a render whose context is done.
type limitWriter struct {
	ctx    context.Context
	b      strings.Builder
	budget *int
}

// Write keeps p if the budget and the context allow.
func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > *w.budget {
		return 0, errTooLarge
	}
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	*w.budget -= len(p)
	return w.b.Write(p)
}

// run executes one part.
func run(ctx context.Context, part string, exec func(*limitWriter) error, sizeHint int, budget *int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRender, err)
	}
	w := &limitWriter{ctx: ctx, budget: budget}
	w.b.Grow(min(sizeHint, *budget))
	if err := exec(w); err != nil {
		return "", renderError(part, err)
	}
	return w.b.String(), nil
}

// renderError wraps an execution error in ErrRender without repeating
// values: text/template names fields and types, except when it cannot
// range over a value, whose text it quotes.
func renderError(part string, err error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("%w: %s: the rendered message exceeds %d bytes", ErrRender, part, MaxRenderBytes)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", ErrRender, part, err)
	}
	msg := err.Error()
	if i := strings.Index(msg, "range can't iterate over "); i >= 0 {
		msg = msg[:i] + "range can't iterate over this value"
	}
	return fmt.Errorf("%w: %s", ErrRender, msg)
}

// render executes a variant over data (the merge root, see Render).
func (c *compiled) render(ctx context.Context, v *variantTmpl, data map[string]any) (router.Content, error) {
	root, err := c.root(v, data)
	if err != nil {
		return router.Content{}, err
	}
	budget := MaxRenderBytes
	var out router.Content
	if c.channel == ChannelSMS {
		out.Text, err = run(ctx, "text", func(w *limitWriter) error { return v.text.Execute(w, root) }, v.textLen+64, &budget)
		return out, err
	}
	out.From, out.ReplyTo = v.from, v.replyTo
	subject, err := run(ctx, "subject", func(w *limitWriter) error { return v.subject.Execute(w, root) }, 128, &budget)
	if err != nil {
		return router.Content{}, err
	}
	out.Subject = cleanSubject(subject)
	if v.html != nil {
		if out.HTML, err = run(ctx, "html", func(w *limitWriter) error { return v.html.Execute(w, root) }, v.htmlLen+512, &budget); err != nil {
			return router.Content{}, err
		}
	}
	if v.text != nil {
		if out.Text, err = run(ctx, "text", func(w *limitWriter) error { return v.text.Execute(w, root) }, v.textLen+256, &budget); err != nil {
			return router.Content{}, err
		}
	} else {
		out.Text = textFromHTML(out.HTML)
		if len(out.Text) > budget {
			return router.Content{}, renderError("text", errTooLarge)
		}
	}
	if u := linkValue(root, "unsubscribe"); u != "" && headerSafeURL(u) {
		out.Headers = map[string]string{
			"List-Unsubscribe":      "<" + u + ">",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		}
	}
	return out, nil
}

// cleanSubject makes a rendered subject one header-safe line: control
// characters (CR and LF above all) and Unicode line separators become
// spaces, runs of white space one space, and the result is cut to 998
// bytes on a character boundary.
func cleanSubject(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7F || c >= 0x80 {
			clean = false
			break
		}
	}
	if !clean || strings.Contains(s, "  ") || strings.TrimSpace(s) != s {
		s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
		}), " ")
	}
	if len(s) > maxSubjectOut {
		n := maxSubjectOut
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return s
}

func linkValue(root map[string]any, key string) string {
	switch l := root["links"].(type) {
	case map[string]any:
		s, _ := l[key].(string)
		return s
	case map[string]string:
		return l[key]
	}
	return ""
}

// headerSafeURL admits an absolute http(s) URL that can go between < and >
// in a List-Unsubscribe header.
func headerSafeURL(s string) bool {
	if len(s) > 2000 || strings.ContainsAny(s, "\r\n\t <>,\"") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// root builds the data a variant executes over from the caller's: every
// contact and link field present (empty when missing), the attributes the
// variant names present, data.* as given and only for transactional
// templates. Unknown top-level keys are dropped.
func (c *compiled) root(v *variantTmpl, data map[string]any) (map[string]any, error) {
	root := make(map[string]any, 4)
	var err error
	ck, lk := contactKeys(), linkKeys()
	if root["contact"], err = withKeys("contact", data["contact"], ck[:]); err != nil {
		return nil, err
	}
	if root["attributes"], err = withKeys("attributes", data["attributes"], v.attrs); err != nil {
		return nil, err
	}
	if root["links"], err = withKeys("links", data["links"], lk[:]); err != nil {
		return nil, err
	}
	if c.transactional {
		switch d := data["data"].(type) {
		case nil:
			root["data"] = map[string]any{}
		case map[string]any:
			root["data"] = d
		default:
			return nil, fmt.Errorf("%w: data must be an object", ErrRender)
		}
	}
	return root, nil
}

// withKeys returns m with every key present, copying it only when one is
// missing.
func withKeys(name string, m any, keys []string) (any, error) {
	switch x := m.(type) {
	case nil:
		out := make(map[string]any, len(keys))
		for _, k := range keys {
			out[k] = ""
		}
		return out, nil
	case map[string]any:
		for _, k := range keys {
			if _, ok := x[k]; !ok {
				out := make(map[string]any, len(x)+len(keys))
				for k, v := range x {
					out[k] = v
				}
				for _, k := range keys {
					if _, ok := out[k]; !ok {
						out[k] = ""
					}
				}
				return out, nil
			}
		}
		return x, nil
	case map[string]string:
		for _, k := range keys {
			if _, ok := x[k]; !ok {
				out := make(map[string]string, len(x)+len(keys))
				for k, v := range x {
					out[k] = v
				}
				for _, k := range keys {
					if _, ok := out[k]; !ok {
						out[k] = ""
					}
				}
				return out, nil
			}
		}
		return x, nil
	default:
		return nil, fmt.Errorf("%w: %s must be an object", ErrRender, name)
	}
}

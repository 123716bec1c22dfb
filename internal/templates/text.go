package templates

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// textFromHTML derives the plain-text part of an email from its rendered
// HTML, simply: tags are dropped, and with them the content of script,
// style, head, title, template and noscript elements and of comments; block
// elements become line breaks (paragraphs and headings a blank line), list
// items start with "- ", a link becomes "label (url)" when its URL is an
// http(s) or mailto one that differs from its label, an image its alt text;
// entities are decoded and white space collapsed. The result is plain text:
// nothing in it is interpreted by a mail client, so what html/template had
// escaped comes back as the literal characters the contact typed.
func textFromHTML(s string) string {
	o := textOut{}
	o.b.Grow(len(s))
	var href string
	linkStart, inLink := 0, false
	i := 0
	for i < len(s) {
		lt := strings.IndexByte(s[i:], '<')
		if lt < 0 {
			o.text(s[i:])
			break
		}
		o.text(s[i : i+lt])
		i += lt
		rest := s[i:]
		if strings.HasPrefix(rest, "<!--") {
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				break
			}
			i += 4 + end + 3
			continue
		}
		if len(rest) > 1 && (rest[1] == '!' || rest[1] == '?') {
			i += tagEnd(rest, 1)
			continue
		}
		j, closing := 1, false
		if j < len(rest) && rest[j] == '/' {
			closing = true
			j++
		}
		k := j
		for k < len(rest) && isTagNameByte(rest[k]) {
			k++
		}
		if k == j || (!closing && !isASCIILetter(rest[j])) {
			o.text("<")
			i++
			continue
		}
		name := strings.ToLower(rest[j:k])
		end := tagEnd(rest, k)
		attrs := rest[k:end]
		i += end
		switch name {
		case "script", "style", "head", "title", "template", "noscript":
			if !closing {
				if idx := indexFold(s[i:], "</"+name); idx >= 0 {
					i += idx
				} else {
					i = len(s)
				}
			}
		case "br":
			o.lineBreak()
		case "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "hr":
			o.block(2)
		case "div", "tr", "section", "article", "header", "footer", "main", "nav", "aside", "form",
			"fieldset", "address", "figure", "figcaption", "center", "dt", "dd", "tbody", "thead", "tfoot":
			o.block(1)
		case "li":
			o.block(1)
			if !closing {
				o.literal("- ")
			}
		case "td", "th":
			o.space = true
		case "img":
			if alt := attr(attrs, "alt"); alt != "" && !closing {
				o.text(alt)
			}
		case "a":
			if !closing {
				href, linkStart, inLink = attr(attrs, "href"), o.b.Len(), true
			} else if inLink {
				inLink = false
				label := strings.TrimSpace(o.b.String()[linkStart:])
				if usefulURL(href) && label != href && label != strings.TrimPrefix(href, "mailto:") {
					if label == "" {
						o.literal(href)
					} else {
						o.literal(" (" + href + ")")
					}
				}
			}
		}
	}
	return o.b.String()
}

// textOut writes collapsed text: a run of white space is one space, and
// line breaks are written only before the next text, so the result has no
// leading or trailing white space.
type textOut struct {
	b     strings.Builder
	space bool // a space is due before the next text
	nl    int  // line breaks due before the next text (at most 2)
}

func (o *textOut) text(raw string) {
	if raw == "" {
		return
	}
	if strings.IndexByte(raw, '&') >= 0 {
		raw = html.UnescapeString(raw)
	}
	// Write runs of words separated by single spaces whole.
	start := -1
	for i := 0; i < len(raw); {
		c := raw[i]
		if c > ' ' && c < utf8.RuneSelf { // the common case: a visible ASCII character
			if start < 0 {
				o.flush()
				start = i
			}
			i++
			continue
		}
		size, space := 1, false
		if c < utf8.RuneSelf {
			space = isSpaceByte(c) || c == '\v'
		} else {
			var r rune
			r, size = utf8.DecodeRuneInString(raw[i:])
			space = unicode.IsSpace(r)
		}
		switch {
		case space && start >= 0 && c == ' ' && i+1 < len(raw) && raw[i+1] != ' ' && !isSpaceByte(raw[i+1]):
			// One space between words: part of the run.
		case space && start >= 0:
			o.b.WriteString(raw[start:i])
			start = -1
			o.space = true
		case space:
			o.space = true
		case start < 0:
			o.flush()
			start = i
		}
		i += size
	}
	if start >= 0 {
		o.b.WriteString(raw[start:])
	}
}

// literal writes s as is (after what is due).
func (o *textOut) literal(s string) {
	o.flush()
	o.b.WriteString(s)
}

func (o *textOut) flush() {
	if n := o.b.Len(); n > 0 {
		switch last := o.b.String()[n-1]; {
		case o.nl > 0:
			for range o.nl {
				o.b.WriteByte('\n')
			}
		case o.space && last != ' ' && last != '\n':
			o.b.WriteByte(' ')
		}
	}
	o.nl, o.space = 0, false
}

func (o *textOut) lineBreak() {
	if o.nl < 2 {
		o.nl++
	}
	o.space = false
}

func (o *textOut) block(n int) {
	if o.nl < n {
		o.nl = n
	}
	o.space = false
}

// tagEnd returns the offset just past the '>' that closes the tag started
// in s, skipping quoted attribute values; len(s) when there is none.
func tagEnd(s string, from int) int {
	i := from
	for i < len(s) {
		j := strings.IndexAny(s[i:], "\"'>")
		if j < 0 {
			return len(s)
		}
		i += j
		if s[i] == '>' {
			return i + 1
		}
		q := strings.IndexByte(s[i+1:], s[i])
		if q < 0 {
			return len(s)
		}
		i += q + 2
	}
	return len(s)
}

// attr returns the decoded value of attribute name in a tag's attribute
// text, or "".
func attr(attrs, name string) string {
	i := 0
	for i < len(attrs) {
		for i < len(attrs) && (isSpaceByte(attrs[i]) || attrs[i] == '/') {
			i++
		}
		start := i
		if j := strings.IndexAny(attrs[i:], " \t\n\r\f=>/"); j < 0 {
			i = len(attrs)
		} else {
			i += j
		}
		key := attrs[start:i]
		for i < len(attrs) && isSpaceByte(attrs[i]) {
			i++
		}
		val := ""
		if i < len(attrs) && attrs[i] == '=' {
			i++
			for i < len(attrs) && isSpaceByte(attrs[i]) {
				i++
			}
			if i < len(attrs) && (attrs[i] == '"' || attrs[i] == '\'') {
				q := strings.IndexByte(attrs[i+1:], attrs[i])
				if q < 0 {
					val, i = attrs[i+1:], len(attrs)
				} else {
					val, i = attrs[i+1:i+1+q], i+q+2
				}
			} else {
				vs := i
				if j := strings.IndexAny(attrs[i:], " \t\n\r\f>"); j < 0 {
					i = len(attrs)
				} else {
					i += j
				}
				val = attrs[vs:i]
			}
		}
		if key == "" && i == start {
			i++ // a stray character: move on
			continue
		}
		if len(key) == len(name) && strings.EqualFold(key, name) {
			return strings.TrimSpace(html.UnescapeString(val))
		}
	}
	return ""
}

func usefulURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "mailto:")
}

// indexFold is strings.Index, ignoring ASCII case.
func indexFold(s, sub string) int {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if s[i] == '<' && strings.EqualFold(s[i:i+n], sub) {
			return i
		}
	}
	return -1
}

func isTagNameByte(c byte) bool {
	return isASCIILetter(c) || (c >= '0' && c <= '9') || c == '-'
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

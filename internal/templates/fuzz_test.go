package templates

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTextFromHTML: any input derives without panicking, and the result
// is never longer than the input plus the link URLs it repeats.
func FuzzTextFromHTML(f *testing.F) {
	for _, s := range []string{"<p>a</p>", `<a href="https://x.test">y</a>`, "<script>", "<!--", "<a href='", "&amp;<br>", "<li><li>", "<<>>", "<a href=x>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := textFromHTML(s)
		if len(out) > 3*len(s)+16 {
			t.Fatalf("output %d bytes from %d", len(out), len(s))
		}
	})
}

// FuzzCheckPart: the save-time checker never panics on any template
// source, and whatever it accepts parses with text/template and
// html/template.
func FuzzCheckPart(f *testing.F) {
	for _, s := range []string{
		"{{.contact.first_name}}", "{{range .data.items}}{{.x}}{{end}}", "{{with $x := .data}}{{$x.y}}{{end}}",
		"{{define \"a\"}}{{end}}", "{{template \"a\"}}", "{{(.data.a).b}}", "{{range $i, $v := .data.l}}{{$v.q}}{{else}}n{{end}}",
		"{{if and .contact.email (eq .attributes.country \"FR\")}}x{{end}}", "{{$}}", "{{.}}", "{{call .data.f}}", "{{break}}",
		"<a href=\"{{.links.unsubscribe}}\">", "{{/* c */}}", "{{- .contact.email -}}", "{{printf \"%s\" (index .data.m \"k\")}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if !utf8.ValidString(src) || len(src) > 4096 {
			return
		}
		r := rules{attrs: map[string]bool{"country": true}, data: true}
		err := checkPart("p", src, r, newRefs())
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error %T: %v", err, err)
			}
			return
		}
		if _, err := textPart("p", src, r, newRefs()); err != nil {
			t.Fatalf("accepted by the checker, refused as text: %v", err)
		}
		if _, err := htmlPart("p", src, r, newRefs()); err != nil && !strings.Contains(err.Error(), "HTML context") {
			t.Fatalf("accepted by the checker, refused as html: %v", err)
		}
	})
}

package templates

import (
	"strings"
	"testing"
)

// TestTextFromHTML: the derived text part keeps the words, links and list
// structure, drops markup, scripts, styles and comments, and decodes what
// html/template escaped.
func TestTextFromHTML(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"paragraphs":       {"<p>Hello <b>Bob</b></p>\n  <p>Second   line</p>", "Hello Bob\n\nSecond line"},
		"script and style": {"<style>p{color:red}</style><p>A</p><script>alert('<p>x</p>')</script><SCRIPT>x</SCRIPT>B", "A\n\nB"},
		"entities":         {"<p>&lt;script&gt; &amp; caf&eacute; &#39;q&#39;</p>", "<script> & café 'q'"},
		"link":             {`Click <a href="https://x.test/u?a=1&amp;b=2">Unsubscribe</a>.`, "Click Unsubscribe (https://x.test/u?a=1&b=2)."},
		"link as label":    {`<a href="https://x.test">https://x.test</a>`, "https://x.test"},
		"link no label":    {`<a href="https://x.test/p"><img src="logo.png"></a>`, "https://x.test/p"},
		"unsafe link":      {`<a href="#ZgotmplZ">x</a> <a href="javascript:alert(1)">y</a>`, "x y"},
		"list":             {"<ul><li>One</li><li>Two</li></ul><p>After</p>", "- One\n- Two\n\nAfter"},
		"breaks":           {"a<br>b<br/><br>c", "a\nb\n\nc"},
		"comment":          {"a<!-- <p>hidden</p> -->b", "ab"},
		"head":             {"<html><head><title>T</title><meta charset=utf-8></head><body><div>B</div></body></html>", "B"},
		"image alt":        {`<img alt="Acme logo" src="x.png"> text`, "Acme logo text"},
		"quoted gt":        {`<a title="a>b" href="https://x.test">go</a>`, "go (https://x.test)"},
		"table":            {"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
		"doctype":          {"<!DOCTYPE html><p>x</p>", "x"},
		"unclosed comment": {"a<!-- b", "a"},
		"lone lt":          {"1 < 2", "1 < 2"},
		"empty":            {"", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := textFromHTML(c.in); got != c.want {
				t.Errorf("textFromHTML(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

// BenchmarkTextFromHTML derives the text part of a 4.5 kB newsletter.
func BenchmarkTextFromHTML(b *testing.B) {
	var s strings.Builder
	s.WriteString(`<!DOCTYPE html><html><head><title>Acme</title><style>td{padding:8px}</style></head><body><table>`)
	for s.Len() < 4400 {
		s.WriteString(`<tr><td style="font-size:15px"><h2 style="margin:0">A new feature</h2><p>We rebuilt the dashboard from the ground up so that ` +
			`your team finds what matters in seconds, with filters that remember their settings.</p>` +
			`<p><a href="https://acme.test/news/feature?a=1&amp;b=2" style="color:#0a5">Read more</a></p></td></tr>`)
	}
	s.WriteString(`</table></body></html>`)
	in := s.String()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		textFromHTML(in)
	}
}

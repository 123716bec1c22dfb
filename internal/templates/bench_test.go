package templates_test

import (
	htemplate "html/template"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// benchHTML is a 4.5 kB newsletter with 5 merge fields (first name, email,
// country, unsubscribe and preferences links).
func benchHTML() string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Acme news</title>` +
		`<style>body{font-family:Helvetica,Arial,sans-serif;color:#222}td{padding:8px}</style></head>` +
		`<body><table width="600" align="center" cellpadding="0" cellspacing="0" style="border:1px solid #eee">` +
		`<tr><td style="background:#0a5;color:#fff;font-size:22px">Acme monthly</td></tr>` +
		`<tr><td><p>Hello {{.contact.first_name}},</p><p>Here is what is new for our customers in {{.attributes.country}} this month.</p></td></tr>`)
	para := `<tr><td style="font-size:15px;line-height:22px"><h2 style="font-size:18px;margin:0 0 8px">A new feature you asked for</h2>` +
		`<p>We rebuilt the dashboard from the ground up so that your team finds what matters in seconds, with filters that remember ` +
		`their settings, exports that keep their columns and a dark mode that is easy on the eyes.</p>` +
		`<p><a href="https://acme.test/news/feature" style="color:#0a5">Read more</a></p></td></tr>`
	for b.Len() < 4000 {
		b.WriteString(para)
	}
	b.WriteString(`<tr><td style="font-size:12px;color:#888">This message was sent to {{.contact.email}}. ` +
		`<a href="{{.links.preferences}}">Preferences</a> | <a href="{{.links.unsubscribe}}">Unsubscribe</a></td></tr>` +
		`</table></body></html>`)
	return b.String()
}

func benchVars() map[string]any {
	return templates.Vars{
		Contact:    templates.ContactFields{FirstName: "Ann", Email: "ann@example.test", Locale: "en"},
		Attributes: map[string]any{"country": "France"},
		Links:      templates.Links{Unsubscribe: "https://relais.test/u/0190a0b1c2?t=abc&s=1", Preferences: "https://relais.test/p/0190a0b1c2?t=abc"},
	}.Map()
}

// BenchmarkRenderEmail renders a cached email version: subject, the 4.5 kB
// HTML part with 5 merge fields, and the text part (given, or derived from
// the HTML).
func BenchmarkRenderEmail(b *testing.B) {
	html := benchHTML()
	if len(html) < 4400 || len(html) > 4700 {
		b.Fatalf("HTML is %d bytes", len(html))
	}
	db := storetest.OpenSQLite(b, storetest.Options{})
	e := setup(b, db)
	for _, c := range []struct{ name, text string }{
		{"with-text", "Hello {{.contact.first_name}},\n\nHere is what is new in {{.attributes.country}}: https://acme.test/news\n\nUnsubscribe: {{.links.unsubscribe}}"},
		{"derived-text", ""},
	} {
		in := templates.Input{Name: c.name, Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{
			"en": {Subject: "{{.contact.first_name}}, your Acme news", HTML: html, Text: c.text}}}
		tpl, err := e.svc.Create(bg, e.a, in, templates.FieldSet{Attributes: []string{"country"}})
		if err != nil {
			b.Fatal(err)
		}
		data := benchVars()
		if _, err := e.svc.Render(bg, e.a, tpl.ID, 1, "en", data); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(html)))
			for b.Loop() {
				if _, err := e.svc.Render(bg, e.a, tpl.ID, 1, "en", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHTMLTemplateRaw is the reference: html/template alone executing
// the same HTML over the same data into a fresh buffer.
func BenchmarkHTMLTemplateRaw(b *testing.B) {
	html := benchHTML()
	t := htemplate.Must(htemplate.New("raw").Option("missingkey=error").Parse(html))
	data := benchVars()
	var sink string
	b.ReportAllocs()
	b.SetBytes(int64(len(html)))
	for b.Loop() {
		var w strings.Builder
		w.Grow(len(html) + 512)
		if err := t.Execute(&w, data); err != nil {
			b.Fatal(err)
		}
		sink = w.String()
	}
	_ = sink
}

// BenchmarkSMSSegments measures the segment count of a 300-character text.
func BenchmarkSMSSegments(b *testing.B) {
	text := strings.Repeat("Votre code est 123456. ", 13) + "€"
	b.ReportAllocs()
	for b.Loop() {
		templates.SMSSegments(text)
	}
}

package templates_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/templates"
)

func email(subject, html, text string) templates.Input {
	return templates.Input{Name: "t", Channel: templates.ChannelEmail,
		Variants: map[string]templates.Variant{"en": {Subject: subject, HTML: html, Text: text}}}
}

func sms(text string) templates.Input {
	return templates.Input{Name: "t", Channel: templates.ChannelSMS,
		Variants: map[string]templates.Variant{"en": {Text: text}}}
}

// TestValidateAcceptsGoodTemplates: every allowed field, helper and
// construct passes, so the refusals below are about what they test.
func TestValidateAcceptsGoodTemplates(t *testing.T) {
	tx := templates.FieldSet{Attributes: []string{"country"}, Data: true}
	cases := map[string]struct {
		in templates.Input
		fs templates.FieldSet
	}{
		"contact fields": {email("Hi {{.contact.first_name}} {{.contact.last_name}}",
			"{{.contact.email}} {{.contact.phone}} {{.contact.locale}} {{.contact.timezone}}", ""), attrs},
		"attribute in schema": {email("x", "{{.attributes.country}}", ""), attrs},
		"links":               {email("x", `<a href="{{.links.unsubscribe}}">u</a> <a href="{{.links.preferences}}">p</a>`, ""), attrs},
		"helpers": {email(`{{.contact.first_name | default "there" | upper}}`,
			`{{lower .contact.email}} {{trim .contact.last_name}} {{truncate 3 .contact.first_name}} {{if eq .contact.locale "fr"}}fr{{else}}en{{end}}`, ""), attrs},
		"transactional data": {email("Order {{.data.order_id}}", `{{date "2006-01-02" .data.shipped_at}} {{.data.customer.tier}}`, ""), tx},
		"range over data with variables": {email("x",
			`{{range $i, $it := .data.items}}{{$i}} {{$it.sku}} {{$.contact.first_name}}{{end}}`, ""), tx},
		"range and with over data, dot relative": {email("x",
			`{{range .data.items}}{{.sku}} {{.qty}}{{end}}{{with .data.order}}{{.id}}{{end}}`, ""), tx},
		"with over a value":      {email("x", `{{with .contact.first_name}}Hi {{.}}{{else}}Hello{{end}}`, ""), attrs},
		"variable from a field":  {email("x", `{{$n := .contact.first_name}}{{$n}}{{$n = "x"}}{{$n}}`, ""), attrs},
		"text only email":        {email("x", "", "Hi {{.contact.first_name}}"), attrs},
		"comments":               {email("x", "{{/* a note */}}<p>hi</p>", ""), attrs},
		"sms":                    {sms("Hi {{.contact.first_name}}, code {{.data.code}}"), tx},
		"range with break":       {email("x", `{{range .data.items}}{{if .last}}{{break}}{{end}}{{.sku}}{{end}}`, ""), tx},
		"len of data":            {email("x", `{{len .data.items}} items`, ""), tx},
		"index into data":        {email("x", `{{index .data.items 0}}`, ""), tx},
		"html in script context": {email("x", `<script>var n = {{.contact.first_name}};</script>`, ""), attrs},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := templates.Validate(c.in, c.fs); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestValidateRefusals: each kind of bad template is refused at save time
// with the part, and for template errors the line and column.
func TestValidateRefusals(t *testing.T) {
	tx := templates.FieldSet{Attributes: []string{"country"}, Data: true}
	big := strings.Repeat("x", templates.MaxBodySrc+1)
	many := map[string]templates.Variant{}
	for i := 0; i < templates.MaxVariants+1; i++ {
		many[fmt.Sprintf("x%c%c", 'a'+i/26, 'a'+i%26)] = templates.Variant{Subject: "s", HTML: "h"}
	}
	cases := []struct {
		name      string
		in        templates.Input
		fs        templates.FieldSet
		field     string
		line, col int
		msg       string
	}{
		{"unknown contact field, with position", email("Hi", "<p>\n  {{.contact.nickname}}</p>", ""), attrs, "variants.en.html", 2, 5, "unknown field contact.nickname"},
		{"unknown field after unicode on the line", email("Hi", "é€ {{.contact.first_name}} {{.contakt.x}}", ""), attrs, "variants.en.html", 1, 30, "unknown field contakt.x"},
		{"attribute not in the schema", email("{{.attributes.shoe_size}}", "h", ""), attrs, "variants.en.subject", 1, 3, "not in the tenant's attribute schema"},
		{"data outside a transactional template", email("x", "{{.data.order_id}}", ""), attrs, "variants.en.html", 1, 3, "only in transactional templates"},
		{"unknown namespace", email("x", "x {{.user.name}}", ""), attrs, "variants.en.html", 1, 5, "unknown field user.name"},
		{"unknown link", email("x", `{{.links.login}}`, ""), attrs, "variants.en.html", 1, 3, "unknown field links.login"},
		{"whole contact", email("x", "{{.contact}}", ""), attrs, "variants.en.html", 1, 3, "contact is not a field"},
		{"whole attributes", email("x", "{{.attributes}}", ""), attrs, "variants.en.html", 1, 3, "attributes is not a field"},
		{"whole root by dot", email("x", "{{.}}", ""), attrs, "variants.en.html", 1, 3, "whole merge data"},
		{"whole root by $", email("x", `{{printf "%v" $}}`, ""), attrs, "variants.en.html", 1, 15, "whole merge data"},
		{"field of a string", email("x", "{{.contact.email.domain}}", ""), attrs, "variants.en.html", 1, 3, "has no fields"},
		{"field of a variable holding a string", email("x", "{{$n := .contact.first_name}}{{$n.x}}", ""), attrs, "variants.en.html", 1, 32, "has no fields"},
		{"unknown field inside a range", email("x", "{{range .data.items}}{{$.contact.bogus}}{{end}}", ""), tx, "variants.en.html", 1, 24, "unknown field contact.bogus"},
		{"bad syntax", email("x", "<p>\n\n{{.contact.first_name</p>", ""), attrs, "variants.en.html", 3, 0, "syntax error"},
		{"unclosed if", email("x", "{{if .contact.email}}x", ""), attrs, "variants.en.html", 1, 0, "syntax error"},
		{"template action", email("x", `{{template "other" .}}`, ""), attrs, "variants.en.html", 1, 1, "template action is not allowed"},
		{"define", email("x", `{{define "other"}}x{{end}}`, ""), attrs, "variants.en.html", 0, 0, "define and block are not allowed"},
		{"block", email("x", `{{block "other" .contact.email}}x{{end}}`, ""), attrs, "variants.en.html", 1, 1, "template action is not allowed"},
		{"call", email("x", `{{call .data.fn}}`, ""), tx, "variants.en.html", 1, 3, "call function is not allowed"},
		{"unknown function", email("x", "a\n {{exec \"rm\"}}", ""), attrs, "variants.en.html", 2, 4, `unknown function "exec"`},
		{"range over a number", email("x", "{{range 1000000000}}x{{end}}", ""), attrs, "variants.en.html", 1, 9, "range over a number"},
		{"range over a number into a variable", email("x", "{{range $i := (1000000000)}}x{{end}}", ""), attrs, "variants.en.html", 1, 16, "range over a number"},
		{"html context ambiguity", email("x", `<p {{if .contact.email}}title="{{end}}">x</p>`, ""), attrs, "variants.en.html", 1, 0, "HTML context"},
		{"email without subject", email(" ", "h", ""), attrs, "variants.en.subject", 0, 0, "needs a subject"},
		{"email without body", email("s", "", " "), attrs, "variants.en.html", 0, 0, "needs an html or a text part"},
		{"sms with a subject", templates.Input{Name: "t", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {Subject: "s", Text: "x"}}}, attrs, "variants.en.subject", 0, 0, "text only"},
		{"sms with html", templates.Input{Name: "t", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {HTML: "<p>x</p>", Text: "x"}}}, attrs, "variants.en.html", 0, 0, "text only"},
		{"sms with a sender address", templates.Input{Name: "t", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {From: "a@b.test", Text: "x"}}}, attrs, "variants.en.from", 0, 0, "text only"},
		{"sms without text", sms(""), attrs, "variants.en.text", 0, 0, "needs a text"},
		{"bad channel", templates.Input{Name: "t", Channel: "fax", Variants: map[string]templates.Variant{"en": {Text: "x"}}}, attrs, "channel", 0, 0, "email or sms"},
		{"oversized html", email("x", big, ""), attrs, "variants.en.html", 0, 0, "at most"},
		{"oversized subject", email(strings.Repeat("s", templates.MaxSubjectSrc+1), "h", ""), attrs, "variants.en.subject", 0, 0, "at most"},
		{"oversized sms", sms(strings.Repeat("s", templates.MaxSMSSrc+1)), attrs, "variants.en.text", 0, 0, "at most"},
		{"too many variants", templates.Input{Name: "t", Channel: templates.ChannelEmail, DefaultLocale: "xaa", Variants: many}, attrs, "variants", 0, 0, "at most"},
		{"name too long", templates.Input{Name: strings.Repeat("n", templates.MaxNameLen+1), Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {Text: "x"}}}, attrs, "name", 0, 0, "characters"},
		{"empty name", templates.Input{Name: "  ", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {Text: "x"}}}, attrs, "name", 0, 0, "characters"},
		{"bad locale", templates.Input{Name: "t", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"english!": {Text: "x"}}}, attrs, "variants", 0, 0, "not a locale"},
		{"same locale twice", templates.Input{Name: "t", Channel: templates.ChannelSMS, DefaultLocale: "en-GB", Variants: map[string]templates.Variant{"en-gb": {Text: "x"}, "en_GB": {Text: "y"}}}, attrs, "variants", 0, 0, "twice"},
		{"default locale missing", templates.Input{Name: "t", Channel: templates.ChannelSMS, DefaultLocale: "de", Variants: map[string]templates.Variant{"en": {Text: "x"}, "fr": {Text: "y"}}}, attrs, "default_locale", 0, 0, "one of"},
		{"no default among several", templates.Input{Name: "t", Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {Text: "x"}, "fr": {Text: "y"}}}, attrs, "default_locale", 0, 0, "required"},
		{"bad from", templates.Input{Name: "t", Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{"en": {Subject: "s", HTML: "h", From: "not an address"}}}, attrs, "variants.en.from", 0, 0, "email address"},
		{"from with a header", templates.Input{Name: "t", Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{"en": {Subject: "s", HTML: "h", ReplyTo: "a@b.test\r\nBcc: x@y.test"}}}, attrs, "variants.en.reply_to", 0, 0, "one line"},
		{"bad second variant", templates.Input{Name: "t", Channel: templates.ChannelEmail, DefaultLocale: "en", Variants: map[string]templates.Variant{
			"en": {Subject: "s", HTML: "{{.contact.first_name}}"}, "fr": {Subject: "s", HTML: "{{.contact.prenom}}"}}}, attrs, "variants.fr.html", 1, 3, "contact.prenom"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := templates.Validate(c.in, c.fs)
			ve := validation(t, err, c.field, 0, 0)
			if c.line > 0 && (ve.Line != c.line || (c.col > 0 && ve.Column != c.col)) {
				t.Errorf("position %d:%d, want %d:%d (%v)", ve.Line, ve.Column, c.line, c.col, ve)
			}
			if !strings.Contains(ve.Error(), c.msg) {
				t.Errorf("message %q lacks %q", ve.Error(), c.msg)
			}
		})
	}
}

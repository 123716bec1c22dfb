package templates_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
)

// TestCreateGetUpdateVersions: a template is created as version 1, each
// update adds a version and keeps the older ones readable and renderable
// as they were, lists show the latest, names are unique among active
// templates, and a stale base version is a conflict.
func TestCreateGetUpdateVersions(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := audit.WithMeta(bg, audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u1"}})
		v1 := must[templates.Template](t)(e.svc.Create(ctx, e.a, emailInput("Welcome"), attrs))
		if v1.Version != 1 || v1.LatestVersion != 1 || v1.ID == "" || v1.CreatedBy != "user:u1" || v1.DefaultLocale != "en" {
			t.Fatalf("created %+v", v1)
		}
		got := must[templates.Template](t)(e.svc.Get(bg, e.a, v1.ID, 0))
		if got.Name != "Welcome" || got.Channel != templates.ChannelEmail || got.Version != 1 || len(got.Variants) != 2 ||
			got.Variants["en"].Subject != "Hello {{.contact.first_name}}" || got.Variants["en"].From != "news@acme.test" ||
			got.Variants["fr"].Text != "Salut {{.contact.first_name}}" || !got.CreatedAt.Equal(v1.CreatedAt) {
			t.Fatalf("got %+v", got)
		}

		in := emailInput("")
		in.Variants["en"] = templates.Variant{Subject: "Welcome aboard {{.contact.first_name}}", HTML: "<p>v2</p>"}
		in.Variants["en-GB"] = templates.Variant{Subject: "Welcome, {{.contact.first_name}}", HTML: "<p>v2 gb</p>"}
		ctx2 := audit.WithMeta(bg, audit.Meta{Actor: audit.Actor{Type: audit.ActorAPI, ID: "c9"}})
		v2 := must[templates.Template](t)(e.svc.Update(ctx2, e.a, v1.ID, in, attrs))
		if v2.Version != 2 || v2.Name != "Welcome" || v2.UpdatedBy != "api:c9" || v2.CreatedBy != "user:u1" || len(v2.Variants) != 3 {
			t.Fatalf("updated %+v", v2)
		}
		old := must[templates.Template](t)(e.svc.Get(bg, e.a, v1.ID, 1))
		if old.Version != 1 || old.LatestVersion != 2 || old.Variants["en"].Subject != "Hello {{.contact.first_name}}" || len(old.Variants) != 2 {
			t.Fatalf("version 1 changed: %+v", old)
		}
		latest := must[templates.Template](t)(e.svc.Get(bg, e.a, v1.ID, 0))
		if latest.Version != 2 || latest.Variants["en-GB"].HTML != "<p>v2 gb</p>" {
			t.Fatalf("latest %+v", latest)
		}
		if _, err := e.svc.Get(bg, e.a, v1.ID, 3); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("version 3: %v", err)
		}

		// Pinned versions render as they were saved.
		data := map[string]any{"contact": map[string]any{"first_name": "Ann"}}
		r1 := must[router.Content](t)(e.svc.Render(bg, e.a, v1.ID, 1, "en", data))
		r2 := must[router.Content](t)(e.svc.Render(bg, e.a, v1.ID, 2, "en", data))
		r0 := must[router.Content](t)(e.svc.Render(bg, e.a, v1.ID, 0, "en", data))
		if r1.Subject != "Hello Ann" || r2.Subject != "Welcome aboard Ann" || r0.Subject != r2.Subject {
			t.Fatalf("renders: %q %q %q", r1.Subject, r2.Subject, r0.Subject)
		}

		hist := must[[]templates.VersionInfo](t)(e.svc.Versions(bg, e.a, v1.ID))
		if len(hist) != 2 || hist[0].Version != 2 || hist[1].Version != 1 || strings.Join(hist[0].Locales, ",") != "en,en-GB,fr" ||
			hist[0].CreatedBy != "api:c9" || hist[1].CreatedBy != "user:u1" {
			t.Fatalf("history %+v", hist)
		}

		// Optimistic concurrency: an edit based on version 1 is refused.
		stale := emailInput("")
		stale.BaseVersion = 1
		if _, err := e.svc.Update(bg, e.a, v1.ID, stale, attrs); !errors.Is(err, templates.ErrConflict) {
			t.Fatalf("stale update: %v", err)
		}
		stale.BaseVersion = 2
		v3 := must[templates.Template](t)(e.svc.Update(bg, e.a, v1.ID, stale, attrs))
		if v3.Version != 3 {
			t.Fatalf("v3 %+v", v3)
		}

		// Names are unique among active templates; the channel is fixed.
		if _, err := e.svc.Create(bg, e.a, emailInput("Welcome"), attrs); !errors.Is(err, templates.ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		other := must[templates.Template](t)(e.svc.Create(bg, e.a, smsIn("Code", "Your code: {{.data.code}}"), templates.FieldSet{Data: true}))
		if _, err := e.svc.Update(bg, e.a, other.ID, templates.Input{Name: "Welcome", Variants: map[string]templates.Variant{"en": {Text: "x"}}}, attrs); !errors.Is(err, templates.ErrConflict) {
			t.Fatalf("rename onto a taken name: %v", err)
		}
		in = emailInput("")
		in.Channel = templates.ChannelSMS
		validation(t, must2(e.svc.Update(bg, e.a, v1.ID, in, attrs)), "channel", 0, 0)

		list := must[[]templates.Summary](t)(e.svc.List(bg, e.a, templates.ListOptions{}))
		if len(list) != 2 || list[0].Name != "Code" || list[1].Name != "Welcome" || list[1].Version != 3 ||
			strings.Join(list[1].Locales, ",") != "en,fr" || !list[0].Transactional || list[1].Transactional {
			t.Fatalf("list %+v", list)
		}
		if l := must[[]templates.Summary](t)(e.svc.List(bg, e.a, templates.ListOptions{Channel: templates.ChannelSMS})); len(l) != 1 || l[0].ID != other.ID {
			t.Fatalf("sms list %+v", l)
		}

		// Delete archives: gone from lists, readable, pinned versions
		// still render, latest refused, no more updates, name free.
		must[struct{}](t)(struct{}{}, e.svc.Delete(ctx, e.a, v1.ID))
		if err := e.svc.Delete(ctx, e.a, v1.ID); !errors.Is(err, templates.ErrArchived) {
			t.Fatalf("second delete: %v", err)
		}
		if l := must[[]templates.Summary](t)(e.svc.List(bg, e.a, templates.ListOptions{})); len(l) != 1 || l[0].ID != other.ID {
			t.Fatalf("list after delete %+v", l)
		}
		if l := must[[]templates.Summary](t)(e.svc.List(bg, e.a, templates.ListOptions{Archived: true})); len(l) != 2 || l[1].ArchivedAt == nil {
			t.Fatalf("list with archived %+v", l)
		}
		arch := must[templates.Template](t)(e.svc.Get(bg, e.a, v1.ID, 0))
		if arch.ArchivedAt == nil || arch.Version != 3 {
			t.Fatalf("archived get %+v", arch)
		}
		if _, err := e.svc.Update(bg, e.a, v1.ID, emailInput(""), attrs); !errors.Is(err, templates.ErrArchived) {
			t.Fatalf("update archived: %v", err)
		}
		if _, err := e.svc.Render(bg, e.a, v1.ID, 0, "en", data); !errors.Is(err, templates.ErrArchived) {
			t.Fatalf("render latest of archived: %v", err)
		}
		fresh := &templates.Service{DB: e.db} // empty cache: read from the store
		if r, err := fresh.Render(bg, e.a, v1.ID, 2, "en", data); err != nil || r.Subject != "Welcome aboard Ann" {
			t.Fatalf("render pinned version of archived: %q %v", r.Subject, err)
		}
		again := must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("Welcome"), attrs))
		if again.ID == v1.ID {
			t.Fatal("same id")
		}
		if err := e.svc.Delete(bg, e.a, "no-such-id"); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("delete unknown: %v", err)
		}
	})
}

func must2(_ templates.Template, err error) error { return err }

func smsIn(name, text string) templates.Input {
	return templates.Input{Name: name, Channel: templates.ChannelSMS, Variants: map[string]templates.Variant{"en": {Text: text}}}
}

// TestInvalidTemplateWritesNothing: a refused save leaves no row and no
// audit event; a refused update leaves the template at its version.
func TestInvalidTemplateWritesNothing(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		before := len(e.events(t, e.a))
		bad := emailInput("Bad")
		bad.Variants["fr"] = templates.Variant{Subject: "x", HTML: "{{.contact.nom}}"}
		validation(t, must2(e.svc.Create(bg, e.a, bad, attrs)), "variants.fr.html", 1, 3)
		if l := must[[]templates.Summary](t)(e.svc.List(bg, e.a, templates.ListOptions{Archived: true})); len(l) != 0 {
			t.Fatalf("rows written: %+v", l)
		}
		good := must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("Good"), attrs))
		validation(t, must2(e.svc.Update(bg, e.a, good.ID, bad, attrs)), "variants.fr.html", 1, 3)
		// An attribute outside the caller's schema is refused on update too.
		noCountry := templates.FieldSet{Attributes: []string{"tier"}}
		validation(t, must2(e.svc.Update(bg, e.a, good.ID, emailInput(""), noCountry)), "variants.en.html", 1, 56)
		if g := must[templates.Template](t)(e.svc.Get(bg, e.a, good.ID, 0)); g.Version != 1 {
			t.Fatalf("version %d after refused updates", g.Version)
		}
		if n := len(e.events(t, e.a)) - before; n != 1 {
			t.Fatalf("%d audit events, want 1 (the good create)", n)
		}
	})
}

// TestTenantIsolation: tenant B can neither read, list, update, archive,
// preview nor render tenant A's template, even after A's render cached it,
// and A's template is unchanged.
func TestTenantIsolation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		a := must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("Secret"), attrs))
		if _, err := e.svc.Render(bg, e.a, a.ID, 1, "en", nil); err != nil { // cached for A
			t.Fatal(err)
		}
		if _, err := e.svc.Get(bg, e.b, a.ID, 0); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B get: %v", err)
		}
		if _, err := e.svc.Get(bg, e.b, a.ID, 1); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B get v1: %v", err)
		}
		if _, err := e.svc.Versions(bg, e.b, a.ID); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B versions: %v", err)
		}
		if l := must[[]templates.Summary](t)(e.svc.List(bg, e.b, templates.ListOptions{Archived: true})); len(l) != 0 {
			t.Fatalf("B lists %+v", l)
		}
		if _, err := e.svc.Update(bg, e.b, a.ID, emailInput("Mine"), attrs); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B update: %v", err)
		}
		for _, v := range []int{0, 1} {
			if _, err := e.svc.Render(bg, e.b, a.ID, v, "en", nil); !errors.Is(err, templates.ErrNotFound) {
				t.Fatalf("B render v%d: %v", v, err)
			}
		}
		if _, err := e.svc.Preview(bg, e.b, a.ID, "en", nil); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B preview: %v", err)
		}
		if err := e.svc.Delete(bg, e.b, a.ID); !errors.Is(err, templates.ErrNotFound) {
			t.Fatalf("B delete: %v", err)
		}
		// B may use the same name for its own template.
		must[templates.Template](t)(e.svc.Create(bg, e.b, emailInput("Secret"), attrs))
		g := must[templates.Template](t)(e.svc.Get(bg, e.a, a.ID, 0))
		if g.Version != 1 || g.Name != "Secret" || g.ArchivedAt != nil {
			t.Fatalf("A's template changed: %+v", g)
		}
		for _, rec := range e.events(t, e.b) {
			if rec.ObjectID == a.ID {
				t.Fatalf("B's log mentions A's template: %+v", rec)
			}
		}
	})
}

// TestAuditEvents: create, update and archive each append one event in the
// tenant's log, with the actor of the context and the changed parts named
// (not their content); the log verifies.
func TestAuditEvents(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ctx := audit.WithMeta(bg, audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "editor-1"}, IP: "192.0.2.7", RequestID: "req-1"})
		tpl := must[templates.Template](t)(e.svc.Create(ctx, e.a, emailInput("Audited"), attrs))
		in := emailInput("Audited 2")
		in.Variants["fr"] = templates.Variant{Subject: "Bonjour", HTML: "<p>Salut</p>"}
		delete(in.Variants, "en")
		in.DefaultLocale = "fr"
		must[templates.Template](t)(e.svc.Update(ctx, e.a, tpl.ID, in, attrs))
		if err := e.svc.Delete(ctx, e.a, tpl.ID); err != nil {
			t.Fatal(err)
		}
		var got []audit.Record
		for _, r := range e.events(t, e.a) {
			if r.ObjectType == "template" {
				got = append(got, r)
			}
		}
		want := []string{"template.create", "template.update", "template.archive"}
		if len(got) != len(want) {
			t.Fatalf("%d template events: %+v", len(got), got)
		}
		for i, r := range got {
			if r.Action != want[i] || r.ObjectID != tpl.ID || r.ActorType != "user" || r.ActorID != "editor-1" ||
				r.IP != "192.0.2.7" || r.RequestID != "req-1" || r.Category != audit.CategoryChange {
				t.Errorf("event %d: %+v", i, r)
			}
		}
		upd := string(got[1].Details)
		for _, s := range []string{`"name"`, `"Audited 2"`, `"variants.fr.subject"`, `"variants.fr.html"`, `"variants.en"`, `"removed"`, `"default_locale"`} {
			if !strings.Contains(upd, s) {
				t.Errorf("update event lacks %s: %s", s, upd)
			}
		}
		if strings.Contains(upd, "Salut") || strings.Contains(upd, "Bonjour") {
			t.Errorf("update event copies template content: %s", upd)
		}
		err := e.db.Tenant(e.a).Tx(bg, func(tx *store.Tx) error {
			rep, err := audit.Verify(bg, tx)
			if err != nil {
				return err
			}
			if !rep.OK {
				return fmt.Errorf("audit log does not verify: %+v", rep)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestRenderEscapesHostileContactData: in the HTML part, merge values are
// escaped for their context (element text, attribute, URL, script); the
// text part carries them as plain text; a javascript: link is neutralised.
func TestRenderEscapesHostileContactData(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		in := templates.Input{Name: "Hostile", Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{"en": {
			Subject: "Hi {{.contact.first_name}}",
			HTML: `<p>Hello {{.contact.first_name}}</p><p title="{{.contact.last_name}}">x</p>` +
				`<a href="{{.links.unsubscribe}}">Unsubscribe</a><script>var n = "{{.contact.first_name}}";</script>`,
		}}}
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, in, attrs))
		data := map[string]any{
			"contact": map[string]any{"first_name": `<script>alert("x")</script>`, "last_name": `"><img src=x onerror=alert(1)>`},
			"links":   map[string]any{"unsubscribe": "javascript:alert(document.cookie)"},
		}
		c := must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, "en", data))
		if strings.Contains(c.HTML, "<script>alert") || strings.Contains(c.HTML, "<img") || strings.Contains(c.HTML, "javascript:") {
			t.Fatalf("unescaped hostile data in HTML:\n%s", c.HTML)
		}
		for _, s := range []string{"Hello &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", `title="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"`, `href="#ZgotmplZ"`, `\u003cscript\u003e`} {
			if !strings.Contains(c.HTML, s) {
				t.Errorf("HTML lacks %s:\n%s", s, c.HTML)
			}
		}
		// The derived text part is plain text: the name as typed, no
		// script content, no unsafe link.
		if !strings.Contains(c.Text, `Hello <script>alert("x")</script>`) || strings.Contains(c.Text, "javascript") || strings.Contains(c.Text, "var n") {
			t.Errorf("text part:\n%s", c.Text)
		}
		if c.Headers != nil {
			t.Errorf("List-Unsubscribe from a javascript: URL: %v", c.Headers)
		}
	})
}

// TestSubjectHeaderInjectionNeutralised: CR/LF (and other control
// characters) from merge data cannot start a new header: the subject stays
// one line; the body keeps what the contact typed.
func TestSubjectHeaderInjectionNeutralised(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		in := templates.Input{Name: "Inject", Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{"en": {
			Subject: "Hello {{.contact.first_name}}!", Text: "Hi {{.contact.first_name}}"}}}
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, in, attrs))
		for _, name := range []string{"Bob\r\nBcc: victim@example.test", "Bob\nX-Evil: 1", "Bob\rX-Evil: 1", "Bob\u2028X\x00Y\x1b"} {
			c := must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, "en", map[string]any{"contact": map[string]string{"first_name": name}}))
			if strings.ContainsAny(c.Subject, "\r\n\x00\x1b\u2028") {
				t.Errorf("subject %q keeps a line break or control character", c.Subject)
			}
			if !strings.HasPrefix(c.Subject, "Hello Bob ") {
				t.Errorf("subject %q", c.Subject)
			}
			if c.Text != "Hi "+name {
				t.Errorf("text %q", c.Text)
			}
		}
		long := strings.Repeat("é", 1000)
		c := must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, "en", map[string]any{"contact": map[string]any{"first_name": long}}))
		if len(c.Subject) > 998 || !strings.HasSuffix(c.Subject, "é") {
			t.Errorf("long subject: %d bytes, ends %q", len(c.Subject), c.Subject[len(c.Subject)-4:])
		}
	})
}

// TestLocaleFallback: the exact locale (any case, - or _), then its
// language, then the default.
func TestLocaleFallback(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		in := templates.Input{Name: "Locales", Channel: templates.ChannelSMS, DefaultLocale: "en", Variants: map[string]templates.Variant{
			"en": {Text: "en"}, "fr": {Text: "fr"}, "en-gb": {Text: "en-GB"}, "pt_BR": {Text: "pt-BR"},
		}}
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, in, attrs))
		if _, ok := tpl.Variants["en-GB"]; !ok {
			t.Fatalf("locale not canonical: %v", tpl.Variants)
		}
		cases := map[string]string{
			"fr": "fr", "FR": "fr", "fr-CA": "fr", "fr_BE": "fr",
			"en-GB": "en-GB", "en-gb": "en-GB", "en_GB": "en-GB", "en-US": "en", "en": "en",
			"pt-BR": "pt-BR", "pt": "en", "pt-PT": "en",
			"de": "en", "": "en", "??": "en",
		}
		for loc, want := range cases {
			c := must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, loc, nil))
			if c.Text != want {
				t.Errorf("locale %q: variant %q, want %q", loc, c.Text, want)
			}
		}
		p := must[templates.Preview](t)(e.svc.Preview(bg, e.a, tpl.ID, "fr-CA", nil))
		if p.Locale != "fr" {
			t.Errorf("preview locale %q", p.Locale)
		}
	})
}

// TestRenderData: transactional data, helpers, missing fields (empty for
// contact, attributes and links; an error naming the field for data), the
// output bound, a done context, and List-Unsubscribe headers.
func TestRenderData(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		fs := templates.FieldSet{Attributes: []string{"country", "tier"}, Data: true}
		in := templates.Input{Name: "Order", Channel: templates.ChannelEmail, Variants: map[string]templates.Variant{"en": {
			Subject: "Order {{.data.order_id}} for {{.contact.first_name | default \"you\" | upper}}",
			HTML: `<p>{{lower .contact.email}} {{.attributes.country | default "?"}} [{{.attributes.tier}}] shipped {{date "2006-01-02" .data.shipped_at}}</p>` +
				`<ul>{{range .data.items}}<li>{{.sku}} x{{.qty}}</li>{{end}}</ul><a href="{{.links.unsubscribe}}">Stop</a>`,
			From: `"Acme Shop" <shop@acme.test>`, ReplyTo: "help@acme.test",
		}}}
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, in, fs))
		vars := templates.Vars{
			Contact:    templates.ContactFields{FirstName: "ann", Email: "Ann@Example.TEST"},
			Attributes: map[string]any{"country": "FR"},
			Data: map[string]any{"order_id": "A-17", "shipped_at": "2026-03-10T09:00:00Z",
				"items": []any{map[string]any{"sku": "S1", "qty": 2.0}, map[string]any{"sku": "S2", "qty": 1.0}}},
			Links: templates.Links{Unsubscribe: "https://relais.test/u/abc?t=1&x=2"},
		}
		c := must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, "en", vars.Map()))
		if c.Subject != "Order A-17 for ANN" || c.From != `"Acme Shop" <shop@acme.test>` || c.ReplyTo != "help@acme.test" {
			t.Errorf("content %+v", c)
		}
		for _, s := range []string{"ann@example.test FR [] shipped 2026-03-10", "<li>S1 x2</li><li>S2 x1</li>", `href="https://relais.test/u/abc?t=1&amp;x=2"`} {
			if !strings.Contains(c.HTML, s) {
				t.Errorf("HTML lacks %q:\n%s", s, c.HTML)
			}
		}
		if c.Text != "ann@example.test FR [] shipped 2026-03-10\n\n- S1 x2\n- S2 x1\n\nStop (https://relais.test/u/abc?t=1&x=2)" {
			t.Errorf("derived text %q", c.Text)
		}
		if c.Headers["List-Unsubscribe"] != "<https://relais.test/u/abc?t=1&x=2>" || c.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
			t.Errorf("headers %v", c.Headers)
		}

		// A contact without a first name: the field is there, empty, and
		// default applies; an attribute the contact lacks renders empty.
		anon := vars
		anon.Contact = templates.ContactFields{Email: "x@example.test"}
		anon.Attributes = nil
		c = must[router.Content](t)(e.svc.Render(bg, e.a, tpl.ID, 1, "en", anon.Map()))
		if c.Subject != "Order A-17 for YOU" || !strings.Contains(c.HTML, "x@example.test ? []") {
			t.Errorf("anonymous contact: %q / %s", c.Subject, c.HTML[:80])
		}

		// A missing data field is an error naming it, not an empty value.
		noOrder := vars
		noOrder.Data = map[string]any{"shipped_at": 1773133200.0, "items": []any{}}
		_, err := e.svc.Render(bg, e.a, tpl.ID, 1, "en", noOrder.Map())
		if !errors.Is(err, templates.ErrRender) || !strings.Contains(err.Error(), "order_id") {
			t.Errorf("missing data field: %v", err)
		}
		// A bad date is an error that does not repeat the value.
		bad := vars
		bad.Data = map[string]any{"order_id": "1", "shipped_at": "secret-value", "items": []any{}}
		_, err = e.svc.Render(bg, e.a, tpl.ID, 1, "en", bad.Map())
		if !errors.Is(err, templates.ErrRender) || strings.Contains(err.Error(), "secret-value") || !strings.Contains(err.Error(), "not a date") {
			t.Errorf("bad date: %v", err)
		}
		// Ranging over a value that is not a list does not quote it.
		notList := vars
		notList.Data = map[string]any{"order_id": "1", "shipped_at": 0.0, "items": "private text"}
		_, err = e.svc.Render(bg, e.a, tpl.ID, 1, "en", notList.Map())
		if !errors.Is(err, templates.ErrRender) || strings.Contains(err.Error(), "private text") {
			t.Errorf("range over text: %v", err)
		}
		// A namespace of the wrong type.
		if _, err := e.svc.Render(bg, e.a, tpl.ID, 1, "en", map[string]any{"contact": "x"}); !errors.Is(err, templates.ErrRender) {
			t.Errorf("contact as text: %v", err)
		}

		// Output is bounded: a list that would render past 1 MiB fails.
		huge := make([]any, 40000)
		for i := range huge {
			huge[i] = map[string]any{"sku": strings.Repeat("s", 30), "qty": 1.0}
		}
		big := vars
		big.Data = map[string]any{"order_id": "1", "shipped_at": 0.0, "items": huge}
		_, err = e.svc.Render(bg, e.a, tpl.ID, 1, "en", big.Map())
		if !errors.Is(err, templates.ErrRender) || !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("huge output: %v", err)
		}
		// A done context stops the render.
		done, cancel := context.WithCancel(bg)
		cancel()
		if _, err := e.svc.Render(done, e.a, tpl.ID, 1, "en", vars.Map()); !errors.Is(err, context.Canceled) || !errors.Is(err, templates.ErrRender) {
			t.Errorf("cancelled: %v", err)
		}
		expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
		defer cancel2()
		if _, err := e.svc.Render(expired, e.a, tpl.ID, 1, "en", vars.Map()); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deadline: %v", err)
		}

		// A campaign (non-transactional) template never sees data.*.
		camp := must[templates.Template](t)(e.svc.Create(bg, e.a, smsIn("Promo", "Hi {{.contact.first_name}} {{.attributes.tier}}"), attrs))
		c = must[router.Content](t)(e.svc.Render(bg, e.a, camp.ID, 1, "en", vars.Map()))
		if c.Text != "Hi ann " || c.Subject != "" || c.HTML != "" || c.Headers != nil {
			t.Errorf("sms %+v", c)
		}
	})
}

// TestPreview: previews render the latest version, show placeholders for
// fields the sample lacks, and give SMS encoding and segments.
func TestPreview(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		fs := templates.FieldSet{Attributes: []string{"country"}, Data: true}
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a,
			smsIn("OTP", "Hi {{.contact.first_name}}, your code is {{.data.code}} ({{.data.order.id}}) {{range .data.lines}}{{.}}{{end}}— {{.attributes.country}}"), fs))
		p := must[templates.Preview](t)(e.svc.Preview(bg, e.a, tpl.ID, "en", map[string]any{"data": map[string]any{"code": "123456"}}))
		want := "Hi [contact.first_name], your code is 123456 ([data.order.id]) — [attributes.country]"
		if p.Content.Text != want || p.Version != 1 || p.Locale != "en" {
			t.Fatalf("preview %+v", p)
		}
		if p.SMS == nil || p.SMS.Encoding != templates.EncodingUCS2 || p.SMS.Chars != len([]rune(want)) || p.SMS.Segments != 2 {
			t.Fatalf("sms info %+v", p.SMS)
		}
		must[templates.Template](t)(e.svc.Update(bg, e.a, tpl.ID, smsIn("", "Code {{.data.code}} €"), fs))
		p = must[templates.Preview](t)(e.svc.Preview(bg, e.a, tpl.ID, "", map[string]any{"data": map[string]any{"code": "42"}}))
		if p.Version != 2 || p.Content.Text != "Code 42 €" || *p.SMS != (templates.SMSInfo{Encoding: templates.EncodingGSM7, Chars: 10, Segments: 1}) {
			t.Fatalf("preview v2 %+v %+v", p, p.SMS)
		}
		em := must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("Mail"), attrs))
		p = must[templates.Preview](t)(e.svc.Preview(bg, e.a, em.ID, "fr", map[string]any{"contact": map[string]any{"first_name": "Zoé"}}))
		if p.SMS != nil || p.Content.Subject != "Bonjour Zoé" || p.Content.Text != "Salut Zoé" {
			t.Fatalf("email preview %+v", p)
		}
	})
}

// TestConcurrentSaves: concurrent updates of one template get consecutive
// versions (none lost, none duplicated); concurrent creates of one name
// make one template and conflicts.
func TestConcurrentSaves(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, smsIn("Busy", "v1"), attrs))
		const n = 8
		errs := make(chan error, n)
		versions := make(chan int, n)
		for i := range n {
			go func() {
				got, err := e.svc.Update(bg, e.a, tpl.ID, smsIn("", fmt.Sprintf("edit %d", i)), attrs)
				errs <- err
				versions <- got.Version
			}()
		}
		seen := map[int]bool{}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			seen[<-versions] = true
		}
		for v := 2; v <= n+1; v++ {
			if !seen[v] {
				t.Fatalf("versions %v: %d missing", seen, v)
			}
		}
		hist := must[[]templates.VersionInfo](t)(e.svc.Versions(bg, e.a, tpl.ID))
		if len(hist) != n+1 {
			t.Fatalf("%d versions stored", len(hist))
		}

		var ok, conflict int
		res := make(chan error, n)
		for range n {
			go func() {
				_, err := e.svc.Create(bg, e.a, smsIn("Same name", "x"), attrs)
				res <- err
			}()
		}
		for range n {
			switch err := <-res; {
			case err == nil:
				ok++
			case errors.Is(err, templates.ErrConflict):
				conflict++
			default:
				t.Fatal(err)
			}
		}
		if ok != 1 || conflict != n-1 {
			t.Fatalf("%d created, %d conflicts", ok, conflict)
		}
	})
}

// TestRowLevelSecurityOnTemplateTables: on PostgreSQL, a statement that
// forgets its tenant clause still sees none of another tenant's rows.
func TestRowLevelSecurityOnTemplateTables(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		if e.db.Dialect() != store.Postgres {
			t.Skip("row-level security is PostgreSQL's")
		}
		must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("A only"), attrs))
		for _, table := range []string{"templates", "template_versions", "template_variants"} {
			var n int
			err := e.db.Tenant(e.b).Tx(bg, func(tx *store.Tx) error {
				return tx.QueryRow(bg, `SELECT count(*) FROM `+table+` WHERE $1 <> ''`).Scan(&n)
			})
			if err != nil || n != 0 {
				t.Fatalf("%s: tenant B sees %d rows (%v)", table, n, err)
			}
		}
	})
}

// countdownCtx is a context whose Err reports a passed deadline after n
// calls: it shows that a render checks its context while it writes, not
// only before.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.DeadlineExceeded
	}
	return nil
}

// TestRenderStopsMidPart: a deadline that passes during a long part stops
// it at the next write.
func TestRenderStopsMidPart(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, smsIn("Loop", "{{range .data.items}}{{.}},{{end}}"), templates.FieldSet{Data: true}))
		items := make([]any, 100000)
		for i := range items {
			items[i] = "x"
		}
		data := map[string]any{"data": map[string]any{"items": items}}
		ctx := &countdownCtx{Context: bg}
		ctx.n.Store(50)
		_, err := e.svc.Render(ctx, e.a, tpl.ID, 1, "", data)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, templates.ErrRender) {
			t.Fatalf("err = %v", err)
		}
		if left := ctx.n.Load(); left != -1 {
			t.Fatalf("render went on after the deadline: %d checks left", left)
		}
	})
}

// TestConcurrentRenders: one cached version renders correctly from many
// goroutines at once, starting from a cold cache (run with -race).
func TestConcurrentRenders(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		tpl := must[templates.Template](t)(e.svc.Create(bg, e.a, emailInput("Shared"), attrs))
		cold := &templates.Service{DB: e.db}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				name := fmt.Sprintf("n%d<", i)
				c, err := cold.Render(bg, e.a, tpl.ID, 1, "en", map[string]any{"contact": map[string]any{"first_name": name}})
				if err == nil && (c.Subject != "Hello "+name || !strings.Contains(c.HTML, fmt.Sprintf("Hi n%d&lt;", i))) {
					err = fmt.Errorf("render %d: %+v", i, c)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

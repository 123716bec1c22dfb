package contacts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
)

func ptr[T any](v T) *T { return &v }

// TestContactLifecycle: create (normalised, attributes split, consents
// recorded), get (decrypted, with consents), update (patch), find by blind
// index, delete (consent proof kept).
func TestContactLifecycle(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID,
			contacts.AttributeDef{Key: "country", Type: contacts.AttrString},
			contacts.AttributeDef{Key: "points", Type: contacts.AttrNumber},
			contacts.AttributeDef{Key: "vip", Type: contacts.AttrBool},
			contacts.AttributeDef{Key: "birth_date", Type: contacts.AttrDate, Personal: true})
		c := e.create(t, e.a.ID, contacts.NewContact{
			Email: "  Alice.Martin@Example.COM ", Phone: "+33 6 12 34 56 78", FirstName: "Alice", LastName: "Martin",
			Locale: "fr_fr", TimeZone: "Europe/Paris",
			Attributes: map[string]any{"country": "FR", "points": 12.0, "vip": true, "birth_date": "1990-04-01"},
			Consents:   []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Source: contacts.SourceForm, SourceIP: "192.0.2.7", Wording: "Yes, email me", WordingVersion: "v3"}},
		})
		if c.Email != "alice.martin@example.com" || c.Phone != "+33612345678" || c.Locale != "fr-FR" || c.Status != contacts.StatusActive || len(c.Consents) != 1 {
			t.Fatalf("created %+v", c)
		}
		got := must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, c.ID))
		if got.Email != c.Email || got.FirstName != "Alice" || got.Attributes["birth_date"] != "1990-04-01" || got.Attributes["points"] != 12.0 ||
			got.Attributes["vip"] != true || len(got.Consents) != 1 || got.Consents[0].SourceIP != "192.0.2.7" || got.Consents[0].WordingVersion != "v3" {
			t.Fatalf("got %+v", got)
		}
		found := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "ALICE.martin@example.com"))
		if found.ID != c.ID {
			t.Fatalf("find by email: %+v", found)
		}
		byPhone := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.a.ID, "+33 (0)6 12 34 56 78"))
		if len(byPhone) != 1 || byPhone[0].ID != c.ID {
			t.Fatalf("find by phone: %+v", byPhone)
		}

		up, err := e.svc.Update(bg, e.a.ID, c.ID, contacts.Patch{LastName: ptr("Martin-Durand"), Phone: ptr(""),
			Attributes: map[string]any{"points": 40.0, "vip": nil, "birth_date": "1990-04-02"}, Status: ptr(contacts.StatusBounced)})
		if err != nil {
			t.Fatal(err)
		}
		if up.LastName != "Martin-Durand" || up.Phone != "" || up.Attributes["points"] != 40.0 || up.Attributes["vip"] != nil || up.Status != contacts.StatusBounced {
			t.Fatalf("updated %+v", up)
		}
		got = must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, c.ID))
		if got.LastName != "Martin-Durand" || got.Phone != "" || got.Attributes["birth_date"] != "1990-04-02" || got.Attributes["country"] != "FR" {
			t.Fatalf("after update %+v", got)
		}
		if n := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.a.ID, "+33612345678")); len(n) != 0 {
			t.Fatalf("old phone still found: %v", n)
		}
		// The update event names personal fields without values.
		evs := e.events(t, e.a.ID)
		var upd audit.Record
		for _, r := range evs {
			if r.Action == "contact.update" {
				upd = r
			}
		}
		if !contains(string(upd.Details), `"field":"last_name"`, `"personal":true`, `"field":"attributes.points"`, `"after":40`) ||
			strings.Contains(string(upd.Details), "Durand") || strings.Contains(string(upd.Details), "1990") {
			t.Fatalf("update event %s", upd.Details)
		}

		if err := e.svc.Delete(bg, e.a.ID, c.ID); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Get(bg, e.a.ID, c.ID)
		wantErr(t, err, contacts.ErrNotFound)
		wantErr(t, e.svc.Delete(bg, e.a.ID, c.ID), contacts.ErrNotFound)
		hist := must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, c.ID))
		if len(hist) != 1 || hist[0].SourceIP != "192.0.2.7" {
			t.Fatalf("consent proof after delete: %+v", hist)
		}
		// The address can be used again.
		e.create(t, e.a.ID, contacts.NewContact{Email: "alice.martin@example.com"})
	})
}

// TestBadInputWritesNothing: invalid emails, phones, names, attributes
// (unknown keys, wrong types) and consents are refused with an error naming
// the field, and nothing is written: no contact, no audit event.
func TestBadInputWritesNothing(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID,
			contacts.AttributeDef{Key: "points", Type: contacts.AttrNumber},
			contacts.AttributeDef{Key: "vip", Type: contacts.AttrBool},
			contacts.AttributeDef{Key: "since", Type: contacts.AttrDate})
		before := len(e.events(t, e.a.ID))
		cases := []struct {
			name  string
			nc    contacts.NewContact
			field string
		}{
			{"no address", contacts.NewContact{FirstName: "Bob"}, "email"},
			{"bad email", contacts.NewContact{Email: "bob@"}, "email"},
			{"email with name", contacts.NewContact{Email: "Bob <bob@example.com>"}, "email"},
			{"email without dot", contacts.NewContact{Email: "bob@localhost"}, "email"},
			{"national phone", contacts.NewContact{Phone: "06 12 34 56 78"}, "phone"},
			{"short phone", contacts.NewContact{Phone: "+331234"}, "phone"},
			{"letters in phone", contacts.NewContact{Phone: "+33 6 CALL ME"}, "phone"},
			{"long phone", contacts.NewContact{Phone: "+1234567890123456"}, "phone"},
			{"control char", contacts.NewContact{Email: "b@example.com", FirstName: "Bo\x07b"}, "first_name"},
			{"long name", contacts.NewContact{Email: "b@example.com", LastName: strings.Repeat("x", 201)}, "last_name"},
			{"bad locale", contacts.NewContact{Email: "b@example.com", Locale: "french please"}, "locale"},
			{"bad tz", contacts.NewContact{Email: "b@example.com", TimeZone: "Mars/Olympus"}, "timezone"},
			{"unknown attribute", contacts.NewContact{Email: "b@example.com", Attributes: map[string]any{"shoe_size": 42.0}}, "attributes.shoe_size"},
			{"string for number", contacts.NewContact{Email: "b@example.com", Attributes: map[string]any{"points": "12"}}, "attributes.points"},
			{"number for bool", contacts.NewContact{Email: "b@example.com", Attributes: map[string]any{"vip": 1.0}}, "attributes.vip"},
			{"bad date", contacts.NewContact{Email: "b@example.com", Attributes: map[string]any{"since": "31/12/2025"}}, "attributes.since"},
			{"bad consent channel", contacts.NewContact{Email: "b@example.com", Consents: []contacts.ConsentInput{{Channel: "fax", Status: contacts.ConsentGranted}}}, "consents[0].channel"},
			{"sms consent without phone", contacts.NewContact{Email: "b@example.com", Consents: []contacts.ConsentInput{{Channel: contacts.ChannelSMS, Status: contacts.ConsentGranted}}}, "consents[0].channel"},
			{"bad consent ip", contacts.NewContact{Email: "b@example.com", Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, SourceIP: "nope"}}}, "consents[0].source_ip"},
		}
		for _, c := range cases {
			_, err := e.svc.Create(bg, e.a.ID, c.nc)
			var ve *contacts.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Errorf("%s: got %v, want a validation error on %s", c.name, err, c.field)
			}
		}
		if n := e.count(t, e.a.ID); n != 0 {
			t.Fatalf("%d contacts written by bad input", n)
		}
		if n := len(e.events(t, e.a.ID)); n != before {
			t.Fatalf("%d audit events written by bad input", n-before)
		}
		// A bad patch leaves the contact as it was.
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "carol@example.com", FirstName: "Carol", Attributes: map[string]any{"points": 1.0}})
		for _, p := range []contacts.Patch{
			{FirstName: ptr("Caroline"), Email: ptr("not an email")},
			{FirstName: ptr("Caroline"), Attributes: map[string]any{"nope": "x"}},
			{FirstName: ptr("Caroline"), Attributes: map[string]any{"points": true}},
			{Email: ptr(""), Phone: ptr("")},
			{Status: ptr(contacts.StatusBlocklisted)},
		} {
			if _, err := e.svc.Update(bg, e.a.ID, c.ID, p); err == nil {
				t.Errorf("patch %+v accepted", p)
			}
		}
		got := must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, c.ID))
		if got.FirstName != "Carol" || got.Email != "carol@example.com" || got.Attributes["points"] != 1.0 {
			t.Fatalf("contact changed by refused patches: %+v", got)
		}
		// The same email twice is a conflict.
		_, err := e.svc.Create(bg, e.a.ID, contacts.NewContact{Email: "CAROL@example.com"})
		wantErr(t, err, contacts.ErrConflict)
		other := e.create(t, e.a.ID, contacts.NewContact{Email: "dave@example.com"})
		_, err = e.svc.Update(bg, e.a.ID, other.ID, contacts.Patch{Email: ptr("carol@example.com")})
		wantErr(t, err, contacts.ErrConflict)
	})
}

// TestPhoneNormalisation: the E.164 validator.
func TestPhoneNormalisation(t *testing.T) {
	ok := map[[2]string]string{
		{"+33 6 12 34 56 78", ""}:    "+33612345678",
		{"+33 (0)6 12 34 56 78", ""}: "+33612345678",
		{"+1 (212) 555-0100", ""}:    "+12125550100",
		{"0033612345678", ""}:        "+33612345678",
		{"06.12.34.56.78", "33"}:     "+33612345678",
		{"0612345678", "+33"}:        "+33612345678",
		{"+44 7911 123456", "33"}:    "+447911123456",
	}
	for in, want := range ok {
		got, err := contacts.NormalisePhone(in[0], in[1])
		if err != nil || got != want {
			t.Errorf("NormalisePhone(%q, %q) = %q, %v; want %q", in[0], in[1], got, err, want)
		}
	}
	for _, in := range [][2]string{{"0612345678", ""}, {"+0612345678", ""}, {"+33 6 12", ""}, {"+33612345678901234", ""},
		{"+33-6-12-34-56-78 ext 5", ""}, {"++33612345678", ""}, {"", ""}, {"06 12 34 56 78", "0"}, {"+33 6 12 34 56 78#", ""}} {
		if got, err := contacts.NormalisePhone(in[0], in[1]); err == nil {
			t.Errorf("NormalisePhone(%q, %q) = %q, want an error", in[0], in[1], got)
		} else if in[0] != "" && strings.Contains(err.Error(), in[0]) {
			t.Errorf("error repeats the number: %v", err)
		}
	}
}

// TestListsAndCounts: list CRUD, membership, counts, and List filtered by
// list and status with cursor pagination.
func TestListsAndCounts(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		l := must[contacts.List](t)(e.svc.CreateList(bg, e.a.ID, "Newsletter", "Monthly"))
		_, err := e.svc.CreateList(bg, e.a.ID, "Newsletter", "")
		wantErr(t, err, contacts.ErrConflict)
		var ids []string
		for i := 0; i < 7; i++ {
			c := e.create(t, e.a.ID, contacts.NewContact{Email: "m" + string(rune('a'+i)) + "@example.com"})
			ids = append(ids, c.ID)
		}
		if n := must[int](t)(e.svc.AddToList(bg, e.a.ID, l.ID, ids[:5]...)); n != 5 {
			t.Fatalf("added %d", n)
		}
		if n := must[int](t)(e.svc.AddToList(bg, e.a.ID, l.ID, ids[3:6]...)); n != 1 {
			t.Fatalf("added again %d", n)
		}
		_, err = e.svc.AddToList(bg, e.a.ID, l.ID, "no-such-contact")
		wantErr(t, err, contacts.ErrNotFound)
		if n := must[int64](t)(e.svc.CountList(bg, e.a.ID, l.ID)); n != 6 {
			t.Fatalf("count %d", n)
		}
		if n := must[int](t)(e.svc.RemoveFromList(bg, e.a.ID, l.ID, ids[0], ids[6])); n != 1 {
			t.Fatalf("removed %d", n)
		}
		// Pages of 2 over the 5 members.
		var seen []string
		cursor := ""
		for {
			p := must[contacts.Page](t)(e.svc.List(bg, e.a.ID, contacts.ListOptions{ListID: l.ID, Limit: 2, Cursor: cursor}))
			for _, c := range p.Contacts {
				seen = append(seen, c.ID)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if len(seen) != 5 || seen[0] != ids[1] || seen[4] != ids[5] {
			t.Fatalf("paged %v", seen)
		}
		_, err = e.svc.List(bg, e.a.ID, contacts.ListOptions{Cursor: "%%%"})
		wantField(t, err, "cursor")
		if _, err := e.svc.Update(bg, e.a.ID, ids[2], contacts.Patch{Status: ptr(contacts.StatusUnsubscribed)}); err != nil {
			t.Fatal(err)
		}
		p := must[contacts.Page](t)(e.svc.List(bg, e.a.ID, contacts.ListOptions{Status: contacts.StatusUnsubscribed}))
		if len(p.Contacts) != 1 || p.Contacts[0].ID != ids[2] {
			t.Fatalf("by status %+v", p)
		}
		up := must[contacts.List](t)(e.svc.UpdateList(bg, e.a.ID, l.ID, ptr("Weekly"), nil))
		if up.Name != "Weekly" || up.Description != "Monthly" {
			t.Fatalf("updated list %+v", up)
		}
		if err := e.svc.DeleteList(bg, e.a.ID, l.ID); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.CountList(bg, e.a.ID, l.ID)
		wantErr(t, err, contacts.ErrNotFound)
		if n := e.count(t, e.a.ID); n != 7 {
			t.Fatalf("deleting a list deleted contacts: %d", n)
		}
	})
}

package contacts_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
)

// TestTenantIsolation: a contact of tenant A cannot be read, updated,
// deleted, listed, counted, exported, found by blind index, consented,
// put in a list or unsubscribed through tenant B.
func TestTenantIsolation(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "secret@example.com", Phone: "+33655555555", FirstName: "Only-A",
			Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted}}})
		e.create(t, e.b.ID, contacts.NewContact{Email: "b-own@example.com"})
		lb := must[contacts.List](t)(e.svc.CreateList(bg, e.b.ID, "B list", ""))
		la := must[contacts.List](t)(e.svc.CreateList(bg, e.a.ID, "A list", ""))

		_, err := e.svc.Get(bg, e.b.ID, c.ID)
		wantErr(t, err, contacts.ErrNotFound)
		_, err = e.svc.Update(bg, e.b.ID, c.ID, contacts.Patch{FirstName: ptr("Hijacked")})
		wantErr(t, err, contacts.ErrNotFound)
		wantErr(t, e.svc.Delete(bg, e.b.ID, c.ID), contacts.ErrNotFound)
		_, err = e.svc.FindByEmail(bg, e.b.ID, "secret@example.com")
		wantErr(t, err, contacts.ErrNotFound)
		if got := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.b.ID, "+33655555555")); len(got) != 0 {
			t.Fatalf("found by phone from b: %v", got)
		}
		p := must[contacts.Page](t)(e.svc.List(bg, e.b.ID, contacts.ListOptions{}))
		if len(p.Contacts) != 1 || p.Contacts[0].Email != "b-own@example.com" {
			t.Fatalf("b lists %+v", p)
		}
		_, err = e.svc.List(bg, e.b.ID, contacts.ListOptions{ListID: la.ID})
		wantErr(t, err, contacts.ErrNotFound)
		var out bytes.Buffer
		res := must[contacts.ExportResult](t)(e.svc.Export(bg, e.b.ID, &out, contacts.ExportOptions{Format: contacts.FormatJSONL}))
		if res.Count != 1 || strings.Contains(out.String(), "secret") || strings.Contains(out.String(), c.ID) {
			t.Fatalf("b exports %s", out.String())
		}
		_, err = e.svc.Grant(bg, e.b.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail})
		wantErr(t, err, contacts.ErrNotFound)
		if ok, r := must2(t)(e.svc.CanSend(bg, e.b.ID, c.ID, contacts.ChannelEmail, "")); ok || r != contacts.ReasonNotFound {
			t.Fatalf("b can send to a's contact: %v %v", ok, r)
		}
		_, err = e.svc.AddToList(bg, e.b.ID, lb.ID, c.ID)
		wantErr(t, err, contacts.ErrNotFound)
		_, err = e.svc.AddToList(bg, e.b.ID, la.ID, c.ID)
		wantErr(t, err, contacts.ErrNotFound)
		if n := must[int64](t)(e.svc.CountFilter(bg, e.b.ID, `has_email = true`)); n != 1 {
			t.Fatalf("b counts %d", n)
		}
		if h := must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.b.ID, c.ID)); len(h) != 0 {
			t.Fatalf("b reads a's consent proofs: %+v", h)
		}
		// An upsert import into B of A's address creates B's own contact.
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.b.ID, []byte("email,first_name\nsecret@example.com,InB\n"), contacts.ImportOptions{}))
		if j.Created != 1 {
			t.Fatalf("import into b %+v", j)
		}
		_, err = e.svc.GetImportJob(bg, e.a.ID, j.ID)
		wantErr(t, err, contacts.ErrNotFound)
		// Blocklisting the address in B does not touch A.
		if err := e.svc.Block(bg, e.b.ID, contacts.BlockEmail, "secret@example.com", ""); err != nil {
			t.Fatal(err)
		}
		if ok, _ := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); !ok {
			t.Fatal("b's blocklist stopped a's contact")
		}
		// A's unsubscribe token, re-pointed at B, does not verify.
		tok := must[string](t)(e.svc.UnsubscribeToken(bg, e.a.ID, c.ID, contacts.ChannelEmail, ""))
		forged := strings.Replace(tok, strings.Split(tok, ".")[1], b64(strings.ReplaceAll(decodePayload(t, tok), e.a.ID, e.b.ID)), 1)
		if err := e.svc.Unsubscribe(bg, forged); !contains(errString(err), "invalid token") {
			t.Fatalf("forged cross-tenant token: %v", err)
		}
		got := must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, c.ID))
		if got.FirstName != "Only-A" || got.Status != contacts.StatusActive {
			t.Fatalf("a's contact changed: %+v", got)
		}
	})
}

// TestAccessAndChangeEvents: every read that returns personal data writes
// one access event per call (a page of 30 contacts is one event naming
// the 30), exports write export events, changes write change events, and
// no event holds a personal value.
func TestAccessAndChangeEvents(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		var ids []string
		for i := 0; i < 30; i++ {
			c := e.create(t, e.a.ID, contacts.NewContact{Email: "acc" + strings.Repeat("x", i) + "@example.com", Phone: "+3367777777" + string(rune('0'+i%10)), FirstName: "Visible"})
			ids = append(ids, c.ID)
		}
		access := func() int {
			return countWhere(e.events(t, e.a.ID), func(r audit.Record) bool { return r.Category == audit.CategoryAccess })
		}
		n0 := access()
		if n0 != 0 {
			t.Fatalf("%d access events after creates", n0)
		}
		steps := []struct {
			name string
			do   func() error
		}{
			{"get", func() error { _, err := e.svc.Get(bg, e.a.ID, ids[0]); return err }},
			{"find by email", func() error { _, err := e.svc.FindByEmail(bg, e.a.ID, "acc@example.com"); return err }},
			{"find by phone", func() error { _, err := e.svc.FindByPhone(bg, e.a.ID, "+33677777771"); return err }},
			{"list", func() error { _, err := e.svc.List(bg, e.a.ID, contacts.ListOptions{Limit: 100}); return err }},
			{"history", func() error { _, err := e.svc.ConsentHistory(bg, e.a.ID, ids[0]); return err }},
		}
		for i, s := range steps {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if n := access(); n != i+1 {
				t.Fatalf("after %s: %d access events, want %d", s.name, n, i+1)
			}
		}
		recs := e.events(t, e.a.ID)
		var list audit.Record
		for _, r := range recs {
			if r.Action == "contact.list" {
				list = r
			}
		}
		d := details(t, list)
		if d["count"] != 30.0 || len(d["contact_ids"].([]any)) != 30 {
			t.Fatalf("list access event %s", list.Details)
		}
		// CanSend and counts return nothing personal: no access event.
		must2(t)(e.svc.CanSend(bg, e.a.ID, ids[0], contacts.ChannelEmail, ""))
		must[int64](t)(e.svc.CountFilter(bg, e.a.ID, `has_phone = true`))
		if n := access(); n != len(steps) {
			t.Fatalf("%d access events after CanSend and counts", n)
		}
		must[contacts.ExportResult](t)(e.svc.Export(bg, e.a.ID, &bytes.Buffer{}, contacts.ExportOptions{Pseudonymise: true}))
		recs = e.events(t, e.a.ID)
		if n := countWhere(recs, func(r audit.Record) bool { return r.Category == audit.CategoryExport }); n != 2 {
			t.Fatalf("%d export events", n)
		}
		if n := countWhere(recs, func(r audit.Record) bool { return r.Action == "contact.create" }); n != 30 {
			t.Fatalf("%d create events", n)
		}
		for _, r := range recs {
			b, _ := json.Marshal(r)
			if contains(string(b), "acc") && strings.Contains(string(b), "@example.com") || strings.Contains(string(b), "Visible") || strings.Contains(string(b), "3367777777") {
				t.Fatalf("event %s holds a personal value: %s", r.Action, b)
			}
		}
	})
}

func b64(s string) string {
	return base64URL([]byte(s))
}

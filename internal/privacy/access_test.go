package privacy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
)

// TestAccessAndRestriction: the access report holds everything on the
// person and nothing of anyone else; restriction withdraws every consent
// and stops processing; rectification is tracked; the requests carry
// their deadlines.
func TestAccessAndRestriction(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		ids := populate(t, e, e.a.ID, ps)
		req, rep, err := e.svc.Access(bg, e.a.ID, privacy.Subject{Phone: ps[0].phone}, privacy.KindPortability, "dpo")
		if err != nil {
			t.Fatal(err)
		}
		if req.Status != privacy.StatusCompleted || req.Kind != privacy.KindPortability {
			t.Fatalf("request %+v", req)
		}
		if rep.Contact.Email != ps[0].email || len(rep.Contact.Consents) != 2 || len(rep.ConsentHistory) != 2 ||
			len(rep.Lists) != 1 || rep.Lists[0].Name != "Newsletter" || len(rep.Messages) != 1 || rep.Messages[0].To != ps[0].email {
			t.Fatalf("report %+v", rep)
		}
		if rep.ConsentHistory[0].SourceIP != ps[0].ip || !strings.Contains(string(rep.Messages[0].Content), ps[0].last) || len(rep.Messages[0].Events) == 0 {
			t.Fatalf("proofs or message content missing: %+v", rep)
		}
		// The 'accepted' event (no row since it is the message's
		// accepted_at) comes first, exactly once.
		if ev := rep.Messages[0].Events; ev[0].Kind != "accepted" || !ev[0].At.Equal(rep.Messages[0].AcceptedAt) || strings.Count(fmt.Sprint(ev), "accepted") != 1 {
			t.Fatalf("message events %+v", ev)
		}
		if len(rep.AccessEvents) == 0 {
			t.Fatal("no access events about the person")
		}
		b, _ := json.Marshal(rep)
		for _, other := range ps[1:] {
			if strings.Contains(string(b), other.email) || strings.Contains(string(b), other.last) {
				t.Fatal("the report holds another person's data")
			}
		}
		if _, _, err := e.svc.Access(bg, e.b.ID, privacy.Subject{ContactID: ids[0]}, "", ""); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("access from another tenant: %v", err)
		}
		if _, _, err := e.svc.Access(bg, e.a.ID, privacy.Subject{}, "", ""); !errors.Is(err, privacy.ErrInvalid) {
			t.Fatalf("nobody named: %v", err)
		}

		if _, err := e.svc.Restrict(bg, e.a.ID, privacy.Subject{ContactID: ids[1]}, privacy.KindObjection, "dpo"); err != nil {
			t.Fatal(err)
		}
		c, err := e.contacts.Get(bg, e.a.ID, ids[1])
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range c.Consents {
			if cs.Status != contacts.ConsentWithdrawn {
				t.Fatalf("consent %+v not withdrawn", cs)
			}
		}
		if ok, _, _ := e.contacts.CanSend(bg, e.a.ID, ids[1], contacts.ChannelSMS, ""); ok || c.Status != contacts.StatusUnsubscribed {
			t.Fatalf("processing not stopped: %s", c.Status)
		}

		name := "Quaxworth-Smith"
		if _, err := e.svc.Rectify(bg, e.a.ID, privacy.Subject{ContactID: ids[0]}, contacts.Patch{LastName: &name}, "dpo"); err != nil {
			t.Fatal(err)
		}
		bad := "not-an-email"
		r, err := e.svc.Rectify(bg, e.a.ID, privacy.Subject{ContactID: ids[0]}, contacts.Patch{Email: &bad}, "dpo")
		var ve *contacts.ValidationError
		if !errors.As(err, &ve) || r.Status != privacy.StatusRejected || strings.Contains(string(r.Result), bad) {
			t.Fatalf("bad rectification: %+v %v", r, err)
		}
		// Deferred request: open, then overdue once past its deadline.
		if _, err := e.svc.OpenRequest(bg, e.a.ID, privacy.KindErasure, privacy.Subject{Email: ps[2].email}, "post", "identity check pending"); err != nil {
			t.Fatal(err)
		}
		e.clk.Add(32 * 24 * 3600 * 1e9)
		open, err := e.svc.Requests(bg, e.a.ID, true)
		if err != nil || len(open) != 1 || !open[0].Overdue {
			t.Fatalf("open requests %+v %v", open, err)
		}
		all, _ := e.svc.Requests(bg, e.a.ID, false)
		if len(all) != 5 {
			t.Fatalf("%d requests", len(all))
		}
	})
}

package contacts_test

import (
	"fmt"
	"testing"

	"github.com/relais-dev/relais/internal/contacts"
)

// TestCanSendManyAgreesWithCanSend: CanSendMany answers as CanSend does for
// each contact (granted, withdrawn, no consent, blocklisted, no address,
// erased, unknown, another tenant's), over more than one chunk of 500 ids
// and with an id given twice, on both dialects (PostgreSQL reads the ids as
// an array joined to the key).
func TestCanSendManyAgreesWithCanSend(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		grant := func(id string) {
			t.Helper()
			if _, err := e.svc.Grant(bg, e.a.ID, id, contacts.ConsentInput{Channel: contacts.ChannelEmail, Source: contacts.SourceAdmin}); err != nil {
				t.Fatal(err)
			}
		}
		var ids []string
		for i := 0; i < 520; i++ {
			c := e.create(t, e.a.ID, contacts.NewContact{Email: fmt.Sprintf("many%03d@example.com", i)})
			ids = append(ids, c.ID)
			if i%7 != 3 {
				grant(c.ID)
			}
		}
		withdrawn := ids[10]
		if _, err := e.svc.Withdraw(bg, e.a.ID, withdrawn, contacts.ConsentInput{Channel: contacts.ChannelEmail, Source: contacts.SourceAdmin}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Block(bg, e.a.ID, contacts.BlockEmail, "many011@example.com", "test"); err != nil {
			t.Fatal(err)
		}
		phoneOnly := e.create(t, e.a.ID, contacts.NewContact{Phone: "+33612345678"})
		erased := ids[12]
		if err := e.svc.ShredContact(bg, e.a.ID, erased, "test"); err != nil {
			t.Fatal(err)
		}
		other := e.create(t, e.b.ID, contacts.NewContact{Email: "other@example.com"})
		ask := append(append([]string{}, ids...), phoneOnly.ID, "no-such-contact", other.ID, ids[0], "' OR 1=1 --")
		got, err := e.svc.CanSendMany(bg, e.a.ID, contacts.ChannelEmail, "", ask)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ask)-1 { // ids[0] twice
			t.Fatalf("%d answers for %d distinct ids", len(got), len(ask)-1)
		}
		reasons := map[contacts.Reason]int{}
		for _, id := range ask {
			ok, reason, err := e.svc.CanSend(bg, e.a.ID, id, contacts.ChannelEmail, "")
			if err != nil {
				t.Fatal(err)
			}
			if v := got[id]; v.OK != ok || v.Reason != reason {
				t.Errorf("contact %q: CanSendMany %+v, CanSend %v %q", id, v, ok, reason)
			}
			reasons[reason]++
		}
		for _, r := range []contacts.Reason{contacts.ReasonOK, contacts.ReasonNoConsent, contacts.ReasonConsentWithdrawn, contacts.ReasonBlocklisted,
			contacts.ReasonNoAddress, contacts.ReasonNotFound} {
			if reasons[r] == 0 {
				t.Errorf("no contact answered %q: %v", r, reasons)
			}
		}
		if v := got[other.ID]; v.OK || v.Reason != contacts.ReasonNotFound {
			t.Errorf("another tenant's contact: %+v", v)
		}
		if _, err := e.svc.CanSendMany(bg, e.a.ID, "fax", "", ids); err == nil {
			t.Error("channel fax accepted")
		}
		if got, err := e.svc.CanSendMany(bg, e.a.ID, contacts.ChannelEmail, "", nil); err != nil || len(got) != 0 {
			t.Errorf("no ids: %v %v", got, err)
		}
	})
}

package privacy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
)

// TestRetention: rules per purpose, a dry run that changes nothing, then a
// run that erases inactive and bounced contacts and clears old message
// contents, each audited.
func TestRetention(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		ids := populate(t, e, e.a.ID, ps)
		deliverAll(t, e, e.a.ID)
		// ps[1] withdraws every consent (no consent left); ps[0] bounces.
		for _, ch := range []contacts.Channel{contacts.ChannelEmail, contacts.ChannelSMS} {
			if _, err := e.contacts.Withdraw(bg, e.a.ID, ids[1], contacts.ConsentInput{Channel: ch, Status: contacts.ConsentWithdrawn}); err != nil {
				t.Fatal(err)
			}
		}
		st := contacts.StatusBounced
		if _, err := e.contacts.Update(bg, e.a.ID, ids[0], contacts.Patch{Status: &st}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SetRetentionRule(bg, e.a.ID, "forever", 3, true); !errors.Is(err, privacy.ErrInvalid) {
			t.Fatalf("bad rule: %v", err)
		}
		for _, r := range []struct {
			kind   string
			months int
		}{{privacy.RuleInactiveContacts, 36}, {privacy.RuleMessageContent, 13}, {privacy.RuleBouncedContacts, 6}} {
			if _, err := e.svc.SetRetentionRule(bg, e.a.ID, r.kind, r.months, true); err != nil {
				t.Fatal(err)
			}
		}
		// Now: nothing is old enough.
		rep, err := e.svc.ApplyRetention(bg, e.a.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Rules {
			if r.Matched != 0 {
				t.Fatalf("fresh data matched: %+v", r)
			}
		}
		e.clk.Add(37 * 31 * 24 * time.Hour)
		dry, err := e.svc.ApplyRetention(bg, e.a.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, r := range dry.Rules {
			got[r.Kind] = r.Matched
			if r.Applied != 0 {
				t.Fatalf("dry run applied %+v", r)
			}
		}
		// inactive: ps[1] (no consent left); bounced: ps[0]; message contents: 3.
		if got[privacy.RuleInactiveContacts] != 1 || got[privacy.RuleBouncedContacts] != 1 || got[privacy.RuleMessageContent] != 3 {
			t.Fatalf("dry run %v", got)
		}
		if n, _ := e.contacts.Count(bg, e.a.ID); n != 3 {
			t.Fatalf("dry run changed contacts: %d", n)
		}
		rep, err = e.svc.ApplyRetention(bg, e.a.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := e.contacts.Count(bg, e.a.ID); n != 1 {
			t.Fatalf("after retention %d contacts", n)
		}
		if left := traces(t, e, e.a.ID, append(needlesOf(ps[1]), needlesOf(ps[0])...), nil); len(left) > 0 {
			t.Fatalf("retention left %v", left)
		}
		// Old message contents are gone for everyone, even the kept contact.
		if left := traces(t, e, e.a.ID, []string{"Dear " + ps[2].first}, nil); len(left) > 0 {
			t.Fatalf("old content left %v", left)
		}
		res, err := e.audit.Search(bg, e.a.ID, audit.Filter{Action: "contact.erase"})
		if err != nil || len(res.Events) != 2 {
			t.Fatalf("erasure events %d %v", len(res.Events), err)
		}
	})
}

// TestPurge: dry run, then a signed report stored in the audit trail.
func TestPurge(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		if _, err := e.svc.Purge(bg, e.a.ID, "galaxy", "", true); !errors.Is(err, privacy.ErrInvalid) {
			t.Fatalf("bad scope: %v", err)
		}
		if _, err := e.svc.Purge(bg, e.a.ID, privacy.ScopeList, "no-such-list", true); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("unknown list: %v", err)
		}
		// Queued messages: a purge of all contacts is refused.
		if _, err := e.svc.Purge(bg, e.a.ID, privacy.ScopeContacts, "", false); !errors.Is(err, privacy.ErrBusy) {
			t.Fatalf("purge with queued messages: %v", err)
		}
		deliverAll(t, e, e.a.ID)
		dry, err := e.svc.Purge(bg, e.a.ID, privacy.ScopeAll, "", true)
		if err != nil || dry.Items["contacts"] != 3 || dry.SignedNote != "" {
			t.Fatalf("dry run %+v %v", dry, err)
		}
		if n, _ := e.contacts.Count(bg, e.a.ID); n != 3 {
			t.Fatal("dry run purged")
		}
		rep, err := e.svc.Purge(bg, e.a.ID, privacy.ScopeAll, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Items["contacts"] != 3 || rep.Items["messages"] != 3 || rep.Result != "purged" {
			t.Fatalf("report %+v", rep)
		}
		text, err := audit.OpenNote([]byte(rep.SignedNote), rep.VerifierKey)
		if err != nil || !strings.Contains(text, `"scope":"all"`) {
			t.Fatalf("signed report: %v", err)
		}
		pk, _ := e.audit.PublicKey(bg, e.a.ID)
		if pk != rep.VerifierKey {
			t.Fatal("the report is not signed with the tenant's audit key")
		}
		res, err := e.audit.Search(bg, e.a.ID, audit.Filter{Action: "privacy.purge.report"})
		if err != nil || len(res.Events) != 1 {
			t.Fatalf("report in the trail: %v", err)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[0]), nil); len(left) > 0 {
			t.Fatalf("purge left %v", left)
		}
	})
}

func deliverAll(t *testing.T, e *env, tenantID string) {
	t.Helper()
	if err := e.db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, `UPDATE messages SET state = 'delivered' WHERE tenant_id = $1`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

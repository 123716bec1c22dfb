package campaigns_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestCampaignOf10000ContactsThroughSMTP is the first "done when":
// a 10,000-contact campaign through a real SMTP server (STARTTLS with a
// private certificate), the SMTP connector opened through the registry and
// a router engine running: every consenting contact receives exactly one
// message (distinct Message-IDs = contacts with consent, one per address),
// nobody without consent or on the blocklist receives one, and the
// campaign report's counts equal what the server received.
func TestCampaignOf10000ContactsThroughSMTP(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		const n = 10_000
		e := newEnv(t, db, "acme")
		sink := e.withSink(smtpsink.Options{TLS: smtpsink.TLSStartTLS, Discard: true})
		ps := people(n)
		list := e.load(ps, "Everyone")
		want := map[string]bool{}
		for _, p := range ps {
			if p.eligible() {
				want[p.email] = true
			}
		}
		tid := e.template("News", newsHTML)
		c := e.campaign("March news", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		e.run()
		start := time.Now()
		if _, err := e.camp.Schedule(context.Background(), e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if err := sink.WaitFor(len(want), 120*time.Second); err != nil {
			t.Fatal(err)
		}
		done := e.waitState(c.ID, campaigns.StateDone, 60*time.Second)
		t.Logf("%d contacts, %d messages: schedule -> done in %s", n, len(want), time.Since(start).Round(time.Millisecond))

		if got := sink.DistinctMessageIDs(); got != len(want) || sink.Count() != len(want) || len(sink.Duplicates()) != 0 {
			t.Fatalf("sink: %d messages, %d distinct Message-IDs, duplicates %v; want %d", sink.Count(), got, sink.Duplicates(), len(want))
		}
		got := received(sink)
		for addr, k := range got {
			if !want[addr] || k != 1 {
				t.Fatalf("%s received %d messages (eligible: %v)", addr, k, want[addr])
			}
		}
		for _, p := range ps {
			if p.eligible() != (got[p.email] == 1) {
				t.Fatalf("%+v received %d", p, got[p.email])
			}
		}
		// Every message is a one-click unsubscribe away (RFC 8058).
		m := sink.Messages()[0]
		if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(m.Header.Get("List-Unsubscribe"), "<https://relais.example/u/") || !m.TLS {
			t.Fatalf("headers: %v (TLS %v)", m.Header, m.TLS)
		}

		r, err := e.camp.Report(context.Background(), e.tenant, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.HandedOff != int64(sink.Count()) || r.Counts[router.StateSent] != int64(sink.Count()) || r.Messages != int64(len(want)) {
			t.Fatalf("report %+v, sink %d", r, sink.Count())
		}
		if r.Deliverability == nil || *r.Deliverability != 0 || r.MeanAcceptedToSentSeconds == nil || *r.MeanAcceptedToSentSeconds <= 0 {
			t.Fatalf("report figures: %+v", r)
		}
		// The exclusions are counted by reason.
		var withdrawn, none, pending, blocked int64
		for _, p := range ps {
			switch {
			case p.blocked:
				blocked++
			case p.consent == "withdrawn":
				withdrawn++
			case p.consent == "":
				none++
			case p.consent == "pending":
				pending++
			}
		}
		ex := done.Progress.Excluded
		if done.Progress.Matched != n || done.Progress.Enqueued != int64(len(want)) || ex["blocklisted"] != blocked || ex["consent_withdrawn"] != withdrawn ||
			ex["no_consent"] != none || ex["consent_pending"] != pending {
			t.Fatalf("progress %+v; want blocked %d withdrawn %d none %d pending %d", done.Progress, blocked, withdrawn, none, pending)
		}
	})
}

// TestUnsubscribeAfterExpansionStopsTheMessage: a contact who unsubscribes
// (one-click, with the token of the message's List-Unsubscribe link), or
// whose address is blocklisted, after the campaign was expanded and before
// hand-off receives nothing: the router's check before hand-off marks the
// message suppressed with the reason; the others receive theirs.
func TestUnsubscribeAfterExpansionStopsTheMessage(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		sink := e.withSink(smtpsink.Options{})
		ps := people(40)
		list := e.load(ps, "Everyone")
		tid := e.template("News", newsHTML)
		c := e.campaign("News", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		// Expand without an engine: the messages wait in the queue.
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("work: %d %v", n, err)
		}
		var eligible []person
		for _, p := range ps {
			if p.eligible() {
				eligible = append(eligible, p)
			}
		}
		if got := len(e.messagesOf(c.ID)); got != len(eligible) {
			t.Fatalf("%d messages queued, want %d", got, len(eligible))
		}
		leaver, blocked := eligible[0], eligible[1]
		lc, err := e.contacts.FindByEmail(ctx, e.tenant, leaver.email)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := e.contacts.UnsubscribeToken(ctx, e.tenant, lc.ID, contacts.ChannelEmail, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.contacts.Unsubscribe(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := e.contacts.Block(ctx, e.tenant, contacts.BlockEmail, blocked.email, "complaint"); err != nil {
			t.Fatal(err)
		}
		e.run()
		if err := sink.WaitFor(len(eligible)-2, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		e.waitState(c.ID, campaigns.StateDone, 30*time.Second)
		got := received(sink)
		if got[leaver.email] != 0 || got[blocked.email] != 0 || sink.Count() != len(eligible)-2 {
			t.Fatalf("after unsubscribe/blocklist: leaver %d, blocked %d, total %d", got[leaver.email], got[blocked.email], sink.Count())
		}
		r, _ := e.camp.Report(ctx, e.tenant, c.ID)
		if r.Counts[router.StateSuppressed] != 2 || r.HandedOff != int64(sink.Count()) {
			t.Fatalf("report: %+v", r.Counts)
		}
		// The one-click link of a received message works as well.
		m := sink.Messages()[0]
		u, err := url.Parse(strings.Trim(m.Header.Get("List-Unsubscribe"), "<>"))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.contacts.Unsubscribe(ctx, strings.TrimPrefix(u.Path, "/u/")); err != nil {
			t.Fatalf("one-click unsubscribe with the message's link: %v", err)
		}
		rc, err := e.contacts.FindByEmail(ctx, e.tenant, m.To[0])
		if err != nil {
			t.Fatal(err)
		}
		if ok, why, _ := e.contacts.CanSend(ctx, e.tenant, rc.ID, contacts.ChannelEmail, ""); ok || why != contacts.ReasonConsentWithdrawn {
			t.Fatalf("after the link: %v %s", ok, why)
		}
	})
}

// TestExpansionResumesAfterACrashWithoutDuplicates: the node expanding a
// campaign "crashes" after half of the audience (its lease stays held);
// another node takes the campaign over once the lease expires and finishes
// the expansion from the last committed batch. Then the expansion is run
// again from the very start (cursor reset, as if progress had been lost):
// the idempotency keys make it create nothing. Each contact has exactly one
// message, and the SMTP server receives each exactly once.
func TestExpansionResumesAfterACrashWithoutDuplicates(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		sink := e.withSink(smtpsink.Options{Discard: true})
		ps := people(2000)
		list := e.load(ps, "Everyone")
		eligible := 0
		for _, p := range ps {
			if p.eligible() {
				eligible++
			}
		}
		tid := e.template("News", newsHTML)
		c := e.campaign("News", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		crash := &campaigns.Service{DB: db, Contacts: e.contacts, Templates: e.tmpl, Router: e.router, PublicBaseURL: "https://relais.example",
			Node: "node-a", BatchSize: 250, LeaseTTL: time.Hour}
		batches := 0
		crash.AfterBatch = func(string, int64) error {
			batches++
			if batches == 4 {
				return errCrash
			}
			return nil
		}
		if _, err := crash.Work(ctx); err == nil || !strings.Contains(err.Error(), errCrash.Error()) {
			t.Fatalf("the crash did not happen: %v", err)
		}
		half, _ := e.camp.Get(ctx, e.tenant, c.ID)
		if half.State != campaigns.StateRunning || half.Progress.Matched != 1000 || half.ExpandedAt != nil {
			t.Fatalf("after the crash: %+v", half)
		}
		// Node B cannot take it while node A's lease holds...
		later := time.Now()
		nodeB := &campaigns.Service{DB: db, Contacts: e.contacts, Templates: e.tmpl, Router: e.router, PublicBaseURL: "https://relais.example",
			Node: "node-b", BatchSize: 300, Now: func() time.Time { return later }}
		if n, err := nodeB.Work(ctx); err != nil || n != 0 {
			t.Fatalf("node B took a held lease: %d %v", n, err)
		}
		// ...and takes it over once it has expired.
		later = time.Now().Add(2 * time.Hour)
		if n, err := nodeB.Work(ctx); err != nil || n != 1 {
			t.Fatalf("node B: %d %v", n, err)
		}
		full, _ := e.camp.Get(ctx, e.tenant, c.ID)
		msgs := e.messagesOf(c.ID)
		if full.ExpandedAt == nil || full.Progress.Matched != 2000 || full.Progress.Enqueued != int64(eligible) || len(msgs) != eligible {
			t.Fatalf("after the take-over: %+v, %d contacts with messages, want %d", full.Progress, len(msgs), eligible)
		}
		for id, k := range msgs {
			if k != 1 {
				t.Fatalf("contact %s has %d messages", id, k)
			}
		}
		// Run the whole expansion again from the start.
		err := db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE campaigns SET expand_after = '', expanded_at = NULL, lease_until = 0 WHERE tenant_id = $1 AND id = $2`, c.ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("re-run: %d %v", n, err)
		}
		again, _ := e.camp.Get(ctx, e.tenant, c.ID)
		if got := e.messagesOf(c.ID); len(got) != eligible || again.Progress.Enqueued != int64(eligible) {
			t.Fatalf("the re-run created messages: %d contacts, enqueued %d", len(got), again.Progress.Enqueued)
		}
		e.run()
		if err := sink.WaitFor(eligible, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		e.waitState(c.ID, campaigns.StateDone, 30*time.Second)
		if sink.Count() != eligible || len(sink.Duplicates()) != 0 {
			t.Fatalf("sink: %d, duplicates %d", sink.Count(), len(sink.Duplicates()))
		}
	})
}

type crashError string

func (e crashError) Error() string { return string(e) }

const errCrash = crashError("simulated crash")

// TestCampaignOfAnotherPurpose: a campaign for the purpose "partners"
// reaches only contacts who consented to that purpose; consent to the
// default purpose is not enough; withdrawing the "partners" consent after
// expansion stops the message at hand-off, withdrawing the "marketing" one
// does not.
func TestCampaignOfAnotherPurpose(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		sink := e.withSink(smtpsink.Options{})
		ps := people(30) // consent to the default purpose for 70% of them
		list := e.load(ps, "Everyone")
		// Partners consent for every third person, whatever their marketing consent.
		var partners []string
		for i, p := range ps {
			if i%3 != 0 || p.blocked {
				continue
			}
			c, err := e.contacts.FindByEmail(ctx, e.tenant, p.email)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.contacts.Grant(ctx, e.tenant, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Purpose: "partners"}); err != nil {
				t.Fatal(err)
			}
			partners = append(partners, p.email)
		}
		tid := e.template("Offers", newsHTML)
		if _, err := e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "Bad", Channel: "email", TemplateID: tid,
			Audience: campaigns.Audience{ListIDs: []string{list}}, Purpose: "Partners!"}); err == nil {
			t.Fatal("a malformed purpose was accepted")
		}
		c, err := e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "Offers", Channel: "email", TemplateID: tid,
			Audience: campaigns.Audience{ListIDs: []string{list}}, Purpose: "partners", Schedule: campaigns.Schedule{Kind: campaigns.KindNow}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("work: %d %v", n, err)
		}
		if got := len(e.messagesOf(c.ID)); got != len(partners) {
			t.Fatalf("%d messages queued, want %d (partners consent only)", got, len(partners))
		}
		// After expansion: one withdraws the partners consent, another the
		// marketing one.
		leaver, other := partners[0], partners[1]
		for _, w := range []struct{ email, purpose string }{{leaver, "partners"}, {other, contacts.DefaultPurpose}} {
			cc, err := e.contacts.FindByEmail(ctx, e.tenant, w.email)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.contacts.Withdraw(ctx, e.tenant, cc.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Purpose: w.purpose}); err != nil {
				t.Fatal(err)
			}
		}
		e.run()
		if err := sink.WaitFor(len(partners)-1, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		e.waitState(c.ID, campaigns.StateDone, 30*time.Second)
		got := received(sink)
		if got[leaver] != 0 || got[other] != 1 || sink.Count() != len(partners)-1 {
			t.Fatalf("leaver %d, other %d, total %d (want 0, 1, %d)", got[leaver], got[other], sink.Count(), len(partners)-1)
		}
		r, _ := e.camp.Report(ctx, e.tenant, c.ID)
		if r.Counts[router.StateSuppressed] != 1 {
			t.Fatalf("report: %+v", r.Counts)
		}
	})
}

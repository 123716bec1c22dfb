package campaigns_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestAudienceOfListsAndSegments: an audience is the union of its lists
// and segments, each contact once; only the eligible are decrypted and
// get a message, the rest are counted by reason; reading it page by page
// records one personal-data access event per expansion, not per page.
func TestAudienceOfListsAndSegments(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		ps := people(300)
		listA := e.load(ps[:150], "A")
		// The rest is in another list, not in the audience.
		lb, err := e.contacts.CreateList(ctx, e.tenant, "B", "")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.WriteString("email,timezone,consent.email\n")
		for _, p := range ps[150:] {
			fmt.Fprintf(&b, "%s,%s,%s\n", p.email, p.tz, p.consent)
		}
		if _, err := e.contacts.Import(ctx, e.tenant, bytes.NewReader(b.Bytes()), contacts.ImportOptions{Lists: []string{lb.ID}}); err != nil {
			t.Fatal(err)
		}
		seg, err := e.contacts.CreateSegment(ctx, e.tenant, "Tokyo", "", `timezone = "Asia/Tokyo"`)
		if err != nil {
			t.Fatal(err)
		}
		matched, eligible := 0, 0
		for i, p := range ps {
			if i < 150 || p.tz == "Asia/Tokyo" {
				matched++
				if p.eligible() {
					eligible++
				}
			}
		}
		stats, err := e.contacts.CountAudience(ctx, e.tenant, contacts.AudienceSpec{ListIDs: []string{listA}, SegmentIDs: []string{seg.ID},
			Channel: contacts.ChannelEmail}, 0)
		if err != nil || stats.Matched != int64(matched) || stats.Eligible != int64(eligible) {
			t.Fatalf("count: %+v %v; want %d matched, %d eligible", stats, err, matched, eligible)
		}
		tid := e.template("News", newsHTML)
		c, err := e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "Union", Channel: "email", TemplateID: tid,
			Audience: campaigns.Audience{ListIDs: []string{listA}, SegmentIDs: []string{seg.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		e.camp.BatchSize = 40
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("work: %d %v", n, err)
		}
		got, _ := e.camp.Get(ctx, e.tenant, c.ID)
		msgs := e.messagesOf(c.ID)
		if got.Progress.Matched != int64(matched) || got.Progress.Enqueued != int64(eligible) || len(msgs) != eligible {
			t.Fatalf("progress %+v, %d messages; want %d matched, %d eligible", got.Progress, len(msgs), matched, eligible)
		}
		var events int
		err = db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
			if err := audit.SequenceLog(ctx, tx); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'contact.audience'`).Scan(&events)
		})
		if err != nil || events != 1 {
			t.Fatalf("%d access events for one expansion (%v)", events, err)
		}
		// The Recipient carries what a template needs, decrypted.
		var first contacts.Recipient
		_, err = e.contacts.Audience(ctx, e.tenant, contacts.AudienceSpec{ListIDs: []string{listA}, Channel: contacts.ChannelEmail}, 10,
			func(rs []contacts.Recipient) error {
				if first.ID == "" {
					first = rs[0]
				}
				return nil
			})
		if err != nil || first.Email == "" || first.FirstName == "" || first.Phone != "" {
			t.Fatalf("recipient %+v %v", first, err)
		}
	})
}

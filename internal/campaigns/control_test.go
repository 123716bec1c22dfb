package campaigns_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestPauseResumeCancel: a throttled campaign (100 messages/s) is paused
// while it sends: what was not yet claimed is held and nothing more
// arrives; resumed, the rest arrives, each contact once. A second campaign
// cancelled while it sends: the rest is suppressed ("campaign cancelled")
// and never arrives; cancelled is final.
func TestPauseResumeCancel(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		sink := e.withSink(smtpsink.Options{Discard: true})
		ps := people(500)
		list := e.load(ps, "Everyone")
		eligible := 0
		for _, p := range ps {
			if p.eligible() {
				eligible++
			}
		}
		tid := e.template("News", newsHTML)
		e.run()

		c := e.campaign("Paused", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 100)
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if err := sink.WaitFor(50, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		pc, held, err := e.camp.Pause(ctx, e.tenant, c.ID)
		if err != nil || pc.State != campaigns.StatePaused {
			t.Fatalf("pause: %+v %v", pc, err)
		}
		time.Sleep(300 * time.Millisecond) // the batch in flight, if any, lands
		atPause := sink.Count()
		time.Sleep(1500 * time.Millisecond)
		r, _ := e.camp.Report(ctx, e.tenant, c.ID)
		if sink.Count() != atPause || held == 0 || r.Counts[router.StateHeld] == 0 || r.Counts[router.StateQueued] != 0 {
			t.Fatalf("paused: sink %d then %d, held %d, counts %v", atPause, sink.Count(), held, r.Counts)
		}
		if atPause >= eligible {
			t.Fatalf("everything was sent before the pause (%d)", atPause)
		}
		if _, _, err := e.camp.Pause(ctx, e.tenant, c.ID); !errors.Is(err, campaigns.ErrState) {
			t.Fatalf("pause twice: %v", err)
		}
		rc, released, err := e.camp.Resume(ctx, e.tenant, c.ID)
		if err != nil || released == 0 || (rc.State != campaigns.StateRunning && rc.State != campaigns.StateDone) {
			t.Fatalf("resume: %+v %d %v", rc.State, released, err)
		}
		if err := sink.WaitFor(eligible, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		e.waitState(c.ID, campaigns.StateDone, 30*time.Second)
		if sink.Count() != eligible || len(sink.Duplicates()) != 0 {
			t.Fatalf("after resume: %d messages, want %d, duplicates %d", sink.Count(), eligible, len(sink.Duplicates()))
		}

		sink.Reset()
		c2 := e.campaign("Cancelled", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 100)
		if _, err := e.camp.Schedule(ctx, e.tenant, c2.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if err := sink.WaitFor(30, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		cc, cancelled, err := e.camp.Cancel(ctx, e.tenant, c2.ID)
		if err != nil || cc.State != campaigns.StateCancelled || cancelled == 0 {
			t.Fatalf("cancel: %+v %d %v", cc.State, cancelled, err)
		}
		time.Sleep(300 * time.Millisecond)
		atCancel := sink.Count()
		time.Sleep(1500 * time.Millisecond)
		r, _ = e.camp.Report(ctx, e.tenant, c2.ID)
		// A message the engine claimed at the very moment of the cancel
		// still goes (see Cancel): the queue's counts are the truth.
		if sink.Count() != atCancel || atCancel >= eligible || r.Counts[router.StateSuppressed] == 0 ||
			r.Counts[router.StateSuppressed]+r.HandedOff != int64(eligible) || r.Counts[router.StateQueued] != 0 || r.HandedOff != int64(atCancel) {
			t.Fatalf("cancelled: sink %d then %d, cancelled %d, counts %v", atCancel, sink.Count(), cancelled, r.Counts)
		}
		if _, _, err := e.camp.Resume(ctx, e.tenant, c2.ID); !errors.Is(err, campaigns.ErrState) {
			t.Fatalf("resume a cancelled campaign: %v", err)
		}
		if _, err := e.camp.Schedule(ctx, e.tenant, c2.ID, campaigns.ScheduleInput{}); !errors.Is(err, campaigns.ErrState) {
			t.Fatalf("schedule a cancelled campaign: %v", err)
		}
		if c, _ := e.camp.Get(ctx, e.tenant, c2.ID); c.State != campaigns.StateCancelled {
			t.Fatalf("state after cancel: %s", c.State)
		}
	})
}

// TestScheduleRefusesWhatCannotBeSent: clear errors, nothing scheduled,
// for a time in the past (instant or local), a template that names a field
// the campaign cannot fill (an attribute removed from the schema since the
// template was saved, or transactional data.*), a template of another
// channel, an audience without anyone who may receive it, and a state that
// does not allow the action.
func TestScheduleRefusesWhatCannotBeSent(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		list := e.load(people(20), "Everyone")
		tid := e.template("News", newsHTML)
		want := func(err error, field, text string) {
			t.Helper()
			var ve *campaigns.ValidationError
			if !errors.As(err, &ve) || ve.Field != field || !strings.Contains(ve.Message, text) {
				t.Fatalf("got %v, want a validation error on %s saying %q", err, field, text)
			}
		}
		past := time.Now().Add(-time.Hour)
		c := e.campaign("Past", tid, list, campaigns.Schedule{Kind: campaigns.KindAt, SendAt: &past}, 0)
		_, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{})
		want(err, "schedule.send_at", "in the past")
		_, err = e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{Schedule: &campaigns.Schedule{Kind: campaigns.KindLocal,
			LocalTime: time.Now().Add(-48 * time.Hour).Format(campaigns.LocalLayout), TimeZone: "Europe/Paris"}})
		want(err, "schedule.local_time", "already passed")
		if got, _ := e.camp.Get(ctx, e.tenant, c.ID); got.State != campaigns.StateDraft {
			t.Fatalf("state after refusals: %s", got.State)
		}

		// An attribute used by a template, then removed from the schema.
		if _, err := e.contacts.DefineAttribute(ctx, e.tenant, contacts.AttributeDef{Key: "tier", Type: contacts.AttrString}); err != nil {
			t.Fatal(err)
		}
		tier := e.template("Tiered", `<p>Hello {{.attributes.tier}}</p>`)
		if err := e.contacts.RemoveAttribute(ctx, e.tenant, "tier"); err != nil {
			t.Fatal(err)
		}
		c = e.campaign("Tiered", tier, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		_, err = e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{})
		want(err, "template_id", "tier")

		// A transactional template (data.*) cannot be sent by a campaign.
		tx, err := e.tmpl.Create(ctx, e.tenant, templates.Input{Name: "Receipt", Channel: templates.ChannelEmail,
			Variants: map[string]templates.Variant{"en": {Subject: "Order {{.data.order}}", Text: "Thanks"}}}, templates.FieldSet{Data: true})
		if err != nil {
			t.Fatal(err)
		}
		c = e.campaign("Receipt", tx.ID, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		_, err = e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{})
		want(err, "template_id", "data.order")

		// An SMS template for an email campaign, an unknown template, an
		// unknown list, a bad time zone.
		sms, err := e.tmpl.Create(ctx, e.tenant, templates.Input{Name: "Short", Channel: templates.ChannelSMS,
			Variants: map[string]templates.Variant{"en": {Text: "Hi"}}}, templates.FieldSet{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "X", Channel: "email", TemplateID: sms.ID, Audience: campaigns.Audience{ListIDs: []string{list}}})
		want(err, "template_id", "for sms")
		_, err = e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "X", Channel: "email", TemplateID: "nope", Audience: campaigns.Audience{ListIDs: []string{list}}})
		want(err, "template_id", "no such template")
		_, err = e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "X", Channel: "email", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{"nope"}}})
		want(err, "audience.list_ids", "no list")
		_, err = e.camp.Create(ctx, e.tenant, campaigns.Input{Name: "X", Channel: "email", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{list}},
			Schedule: campaigns.Schedule{Kind: campaigns.KindLocal, LocalTime: "2030-01-01T09:00", TimeZone: "Mars/Olympus"}})
		want(err, "schedule.timezone", "IANA")

		// An audience where nobody may receive email.
		empty, err := e.contacts.CreateList(ctx, e.tenant, "No consent", "")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := e.contacts.Create(ctx, e.tenant, contacts.NewContact{Email: "nobody@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.contacts.AddToList(ctx, e.tenant, empty.ID, nc.ID); err != nil {
			t.Fatal(err)
		}
		c = e.campaign("Nobody", tid, empty.ID, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		_, err = e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{})
		want(err, "audience", "no_consent 1")

		if _, _, err := e.camp.Pause(ctx, e.tenant, c.ID); !errors.Is(err, campaigns.ErrState) {
			t.Fatalf("pause a draft: %v", err)
		}
		if _, err := e.camp.Get(ctx, e.tenant, "unknown"); !errors.Is(err, campaigns.ErrNotFound) {
			t.Fatalf("get unknown: %v", err)
		}
	})
}

// TestQuietHoursAndLocalTime: with quiet hours 21:00-08:00, a campaign
// sent at 22:30 UTC is due at once for a contact in New York (17:30
// there), at 08:00 the next morning for one in Paris (23:30), at 08:00 the
// same morning for one in Tokyo (07:30), and at 08:00 in the campaign's
// zone for one without a zone. A local-time campaign for 10:00 is due at
// 10:00 in each contact's zone.
func TestQuietHoursAndLocalTime(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		now := time.Date(2031, 3, 10, 22, 30, 0, 0, time.UTC)
		e.camp.Now = func() time.Time { return now }
		if _, err := e.camp.SetSettings(ctx, e.tenant, campaigns.Settings{QuietStart: "21:00", QuietEnd: "08:00", TimeZone: "Europe/Berlin"}); err != nil {
			t.Fatal(err)
		}
		ps := []person{{email: "ny@example.com", tz: "America/New_York", consent: "granted"}, {email: "paris@example.com", tz: "Europe/Paris", consent: "granted"},
			{email: "tokyo@example.com", tz: "Asia/Tokyo", consent: "granted"}, {email: "none@example.com", consent: "granted"}}
		list := e.load(ps, "World")
		tid := e.template("News", newsHTML)
		due := func(campaignID string) map[string]time.Time {
			t.Helper()
			out := map[string]time.Time{}
			err := db.Tenant(e.tenant).Tx(ctx, func(tx *store.Tx) error {
				rows, err := tx.Query(ctx, `SELECT contact_id, due_at FROM messages WHERE tenant_id = $1 AND campaign_id = $2`, campaignID)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var id string
					var at int64
					if err := rows.Scan(&id, &at); err != nil {
						return err
					}
					out[id] = store.FromMicros(at)
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			byEmail := map[string]time.Time{}
			for _, p := range ps {
				c, err := e.contacts.FindByEmail(ctx, e.tenant, p.email)
				if err != nil {
					t.Fatal(err)
				}
				byEmail[p.email] = out[c.ID]
			}
			return byEmail
		}
		c := e.campaign("Evening", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("work: %d %v", n, err)
		}
		paris, _ := time.LoadLocation("Europe/Paris")
		tokyo, _ := time.LoadLocation("Asia/Tokyo")
		berlin, _ := time.LoadLocation("Europe/Berlin")
		wantDue := map[string]time.Time{
			"ny@example.com":    now,
			"paris@example.com": time.Date(2031, 3, 11, 8, 0, 0, 0, paris),
			"tokyo@example.com": time.Date(2031, 3, 11, 8, 0, 0, 0, tokyo),
			"none@example.com":  time.Date(2031, 3, 11, 8, 0, 0, 0, berlin),
		}
		for addr, at := range due(c.ID) {
			if !at.Equal(wantDue[addr]) {
				t.Errorf("%s due %s, want %s", addr, at, wantDue[addr].UTC())
			}
		}

		local := e.campaign("Morning", tid, list, campaigns.Schedule{Kind: campaigns.KindLocal, LocalTime: "2031-03-12T10:00"}, 0)
		sc, err := e.camp.Schedule(ctx, e.tenant, local.ID, campaigns.ScheduleInput{})
		if err != nil {
			t.Fatal(err)
		}
		// The expansion starts when 10:00 first happens somewhere (UTC+14),
		// minus the lead.
		if want := time.Date(2031, 3, 11, 20, 0, 0, 0, time.UTC).Add(-5 * time.Minute); !sc.StartAt.Equal(want) {
			t.Fatalf("start at %s, want %s", sc.StartAt, want)
		}
		if n, _ := e.camp.Work(ctx); n != 0 {
			t.Fatal("a local-time campaign expanded before its start")
		}
		now = *sc.StartAt
		if n, err := e.camp.Work(ctx); err != nil || n != 1 {
			t.Fatalf("work: %d %v", n, err)
		}
		ny, _ := time.LoadLocation("America/New_York")
		wantDue = map[string]time.Time{
			"ny@example.com":    time.Date(2031, 3, 12, 10, 0, 0, 0, ny),
			"paris@example.com": time.Date(2031, 3, 12, 10, 0, 0, 0, paris),
			"tokyo@example.com": time.Date(2031, 3, 12, 10, 0, 0, 0, tokyo),
			"none@example.com":  time.Date(2031, 3, 12, 10, 0, 0, 0, berlin),
		}
		for addr, at := range due(local.ID) {
			if !at.Equal(wantDue[addr]) {
				t.Errorf("local: %s due %s, want %s", addr, at.UTC(), wantDue[addr].UTC())
			}
		}
		if _, err := e.camp.SetSettings(ctx, e.tenant, campaigns.Settings{QuietStart: "25:00", QuietEnd: "08:00"}); err == nil {
			t.Fatal("quiet hours 25:00 accepted")
		}
	})
}

package campaigns_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// campaignEvents returns the tenant's audit events of one campaign, by
// action.
func (e *env) campaignEvents(id string) map[string][]audit.Record {
	e.t.Helper()
	out := map[string][]audit.Record{}
	err := e.db.Tenant(e.tenant).Tx(context.Background(), func(tx *store.Tx) error {
		recs, err := audit.List(context.Background(), tx, 0, 1000)
		for _, r := range recs {
			if r.ObjectType == "campaign" && r.ObjectID == id {
				out[r.Action] = append(out[r.Action], r)
			}
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestEditAndDeleteDrafts: a draft's fields can be changed (validated as
// at creation, the audit event naming each changed field before and
// after; an update that changes nothing writes no event) and a draft can
// be deleted; a scheduled campaign can be neither, a bad update changes
// nothing, and another tenant's campaign is not found.
func TestEditAndDeleteDrafts(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "acme")
		list := e.load(people(10), "Everyone")
		other := e.load(people(3), "Few")
		tid := e.template("News", newsHTML)
		c := e.campaign("Spring news", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)

		in := campaigns.Input{Name: "  Spring news (final) ", Channel: "email", TemplateID: tid,
			Audience: campaigns.Audience{ListIDs: []string{list, other}}, Schedule: campaigns.Schedule{Kind: campaigns.KindNow}, ThrottlePerSecond: 50}
		u, err := e.camp.Update(ctx, e.tenant, c.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "Spring news (final)" || u.ThrottlePerSecond != 50 || len(u.Audience.ListIDs) != 2 || u.State != campaigns.StateDraft || u.ID != c.ID {
			t.Fatalf("updated: %+v", u)
		}
		ev := e.campaignEvents(c.ID)["campaign.update"]
		if len(ev) != 1 {
			t.Fatalf("%d update events", len(ev))
		}
		var d struct {
			Changes []audit.Change `json:"changes"`
		}
		if err := json.Unmarshal(ev[0].Details, &d); err != nil {
			t.Fatal(err)
		}
		fields := map[string]audit.Change{}
		for _, ch := range d.Changes {
			fields[ch.Field] = ch
		}
		if len(fields) != 3 || fields["name"].Before != "Spring news" || fields["name"].After != "Spring news (final)" ||
			fields["throttle_per_second"].After != float64(50) || fields["audience"].After == nil {
			t.Fatalf("changes %s", ev[0].Details)
		}
		// The same input again: nothing changes, no event.
		if _, err := e.camp.Update(ctx, e.tenant, c.ID, in); err != nil {
			t.Fatal(err)
		}
		if n := len(e.campaignEvents(c.ID)["campaign.update"]); n != 1 {
			t.Fatalf("%d update events after a no-op update", n)
		}

		// Bad input is refused and changes nothing.
		for _, bad := range []struct {
			field string
			in    campaigns.Input
		}{
			{"name", campaigns.Input{Name: " ", Channel: "email", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{list}}}},
			{"template_id", campaigns.Input{Name: "X", Channel: "sms", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{list}}}},
			{"audience.list_ids", campaigns.Input{Name: "X", Channel: "email", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{"nope"}}}},
			{"throttle_per_second", campaigns.Input{Name: "X", Channel: "email", TemplateID: tid, Audience: campaigns.Audience{ListIDs: []string{list}}, ThrottlePerSecond: -1}},
		} {
			_, err := e.camp.Update(ctx, e.tenant, c.ID, bad.in)
			var ve *campaigns.ValidationError
			if !errors.As(err, &ve) || ve.Field != bad.field {
				t.Fatalf("%s: %v", bad.field, err)
			}
		}
		if got, _ := e.camp.Get(ctx, e.tenant, c.ID); got.Name != "Spring news (final)" || got.ThrottlePerSecond != 50 || !got.UpdatedAt.Equal(u.UpdatedAt) {
			t.Fatalf("after refused updates: %+v", got)
		}

		// Another tenant neither sees nor changes it.
		o := newEnv(t, db, "other")
		if _, err := o.camp.Update(ctx, o.tenant, c.ID, in); !errors.Is(err, campaigns.ErrNotFound) {
			t.Fatalf("other tenant update: %v", err)
		}
		if err := o.camp.Delete(ctx, o.tenant, c.ID); !errors.Is(err, campaigns.ErrNotFound) {
			t.Fatalf("other tenant delete: %v", err)
		}

		// Scheduled: neither edited nor deleted.
		e.withSink(smtpsink.Options{Discard: true})
		if _, err := e.camp.Schedule(ctx, e.tenant, c.ID, campaigns.ScheduleInput{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.camp.Update(ctx, e.tenant, c.ID, in); !errors.Is(err, campaigns.ErrState) || !strings.Contains(err.Error(), "only a draft") {
			t.Fatalf("update scheduled: %v", err)
		}
		if err := e.camp.Delete(ctx, e.tenant, c.ID); !errors.Is(err, campaigns.ErrState) {
			t.Fatalf("delete scheduled: %v", err)
		}
		if got, err := e.camp.Get(ctx, e.tenant, c.ID); err != nil || got.State != campaigns.StateScheduled {
			t.Fatalf("after refusals: %+v %v", got, err)
		}

		// A draft is deleted, with its event; then it is gone.
		d2 := e.campaign("Scratch", tid, list, campaigns.Schedule{Kind: campaigns.KindNow}, 0)
		if err := e.camp.Delete(ctx, e.tenant, d2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.camp.Get(ctx, e.tenant, d2.ID); !errors.Is(err, campaigns.ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if err := e.camp.Delete(ctx, e.tenant, d2.ID); !errors.Is(err, campaigns.ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if ev := e.campaignEvents(d2.ID)["campaign.delete"]; len(ev) != 1 || !strings.Contains(string(ev[0].Details), "Scratch") {
			t.Fatalf("delete events %v", ev)
		}
	})
}

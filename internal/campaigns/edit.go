package campaigns

import (
	"context"
	"fmt"
	"slices"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Update replaces the editable fields of a draft (name, channel, purpose,
// template, audience, schedule, throttle) with in, validated as Create
// validates a new campaign. A campaign that has left the draft state
// (scheduled, running, paused, finished, cancelled) is refused with
// ErrState and stays as it was: its messages are built from what was
// scheduled. The audit event lists the fields that changed, before and
// after; an update that changes nothing writes nothing.
func (s *Service) Update(ctx context.Context, tenantID, id string, in Input) (Campaign, error) {
	// An unknown campaign is not found, whatever the input says.
	if _, err := s.Get(ctx, tenantID, id); err != nil {
		return Campaign{}, err
	}
	aud, err := s.validate(ctx, tenantID, &in)
	if err != nil {
		return Campaign{}, err
	}
	now := s.now()
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		c, err := getTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if c.State != StateDraft {
			return fmt.Errorf("%w: the campaign is %s; only a draft can be edited", ErrState, c.State)
		}
		changes := draftChanges(c, in)
		if len(changes) == 0 {
			return nil
		}
		res, err := tx.Exec(ctx, `UPDATE campaigns SET name = $3, channel = $4, purpose = $5, template_id = $6, template_version = $7,
			audience = $8, schedule_kind = $9, send_at = $10, local_time = $11, timezone = $12, throttle = $13, updated_at = $14, updated_by = $15
			WHERE tenant_id = $1 AND id = $2 AND state = 'draft'`,
			id, in.Name, in.Channel, in.Purpose, in.TemplateID, in.TemplateVersion, string(aud), in.Schedule.Kind, nullTime(in.Schedule.SendAt),
			in.Schedule.LocalTime, in.Schedule.TimeZone, in.ThrottlePerSecond, store.Micros(now), actor(ctx))
		if err != nil {
			return fmt.Errorf("campaigns: update: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: the campaign changed state meanwhile", ErrState)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.update", ObjectType: "campaign", ObjectID: id,
			Changes: changes})
		return err
	})
	if err != nil {
		return Campaign{}, err
	}
	return s.Get(ctx, tenantID, id)
}

// draftChanges lists the fields in changes from c, before and after.
func draftChanges(c Campaign, in Input) []audit.Change {
	var out []audit.Change
	add := func(field string, before, after any, same bool) {
		if !same {
			out = append(out, audit.Change{Field: field, Before: before, After: after})
		}
	}
	add("name", c.Name, in.Name, c.Name == in.Name)
	add("channel", c.Channel, in.Channel, c.Channel == in.Channel)
	add("purpose", c.Purpose, in.Purpose, c.Purpose == in.Purpose)
	add("template_id", c.TemplateID, in.TemplateID, c.TemplateID == in.TemplateID)
	add("template_version", c.TemplateVersion, in.TemplateVersion, c.TemplateVersion == in.TemplateVersion)
	a := normAudience(in.Audience)
	add("audience", c.Audience, a, slices.Equal(c.Audience.ListIDs, a.ListIDs) && slices.Equal(c.Audience.SegmentIDs, a.SegmentIDs))
	add("schedule.kind", c.Schedule.Kind, in.Schedule.Kind, c.Schedule.Kind == in.Schedule.Kind)
	sameAt := (c.Schedule.SendAt == nil) == (in.Schedule.SendAt == nil) && (c.Schedule.SendAt == nil || c.Schedule.SendAt.Equal(*in.Schedule.SendAt))
	add("schedule.send_at", c.Schedule.SendAt, in.Schedule.SendAt, sameAt)
	add("schedule.local_time", c.Schedule.LocalTime, in.Schedule.LocalTime, c.Schedule.LocalTime == in.Schedule.LocalTime)
	add("schedule.timezone", c.Schedule.TimeZone, in.Schedule.TimeZone, c.Schedule.TimeZone == in.Schedule.TimeZone)
	add("throttle_per_second", c.ThrottlePerSecond, in.ThrottlePerSecond, c.ThrottlePerSecond == in.ThrottlePerSecond)
	return out
}

// Delete removes a draft, with its audit event (naming the draft's name).
// A campaign that has left the draft state is refused with ErrState: its
// messages and report stay (cancel it instead).
func (s *Service) Delete(ctx context.Context, tenantID, id string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		c, err := getTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if c.State != StateDraft {
			return fmt.Errorf("%w: the campaign is %s; only a draft can be deleted (cancel it instead)", ErrState, c.State)
		}
		res, err := tx.Exec(ctx, `DELETE FROM campaigns WHERE tenant_id = $1 AND id = $2 AND state = 'draft'`, id)
		if err != nil {
			return fmt.Errorf("campaigns: delete: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: the campaign changed state meanwhile", ErrState)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.delete", ObjectType: "campaign", ObjectID: id,
			Changes: []audit.Change{{Field: "name", Before: c.Name}, {Field: "state", Before: c.State}}})
		return err
	})
}

package campaigns

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
)

// ScheduleInput optionally replaces a campaign's schedule and throttle
// when it is scheduled.
type ScheduleInput struct {
	Schedule          *Schedule `json:"schedule,omitempty"`
	ThrottlePerSecond *int      `json:"throttle_per_second,omitempty"`
}

// Schedule checks a draft (or a scheduled campaign that has not started)
// and schedules it: the template (version pinned now) exists, is for the
// campaign's channel, uses only fields the campaign can fill (the tenant's
// current attributes, contact and link fields; no data.*) and renders; the
// audience has at least one eligible contact; the send time is not in the
// past. Each failure is a *ValidationError saying what to fix. The
// expansion starts at ExpandLead before the first message is due (at once
// for kind now).
func (s *Service) Schedule(ctx context.Context, tenantID, id string, in ScheduleInput) (Campaign, error) {
	c, err := s.Get(ctx, tenantID, id)
	if err != nil {
		return Campaign{}, err
	}
	if (c.State != StateDraft && c.State != StateScheduled) || c.StartedAt != nil {
		return Campaign{}, fmt.Errorf("%w: the campaign is %s; only a draft or a scheduled campaign that has not started can be scheduled", ErrState, c.State)
	}
	if in.Schedule != nil {
		c.Schedule = *in.Schedule
		if err := checkScheduleForm(&c.Schedule); err != nil {
			return Campaign{}, err
		}
	}
	if in.ThrottlePerSecond != nil {
		if *in.ThrottlePerSecond < 0 || *in.ThrottlePerSecond > MaxThrottle {
			return Campaign{}, invalid("throttle_per_second", "must be 0 (no limit) to %d", MaxThrottle)
		}
		c.ThrottlePerSecond = *in.ThrottlePerSecond
	}
	now := s.now()
	settings, err := s.GetSettings(ctx, tenantID)
	if err != nil {
		return Campaign{}, err
	}
	sendAt, startAt, err := s.when(c.Schedule, settings, now)
	if err != nil {
		return Campaign{}, err
	}
	version, err := s.checkTemplate(ctx, tenantID, c)
	if err != nil {
		return Campaign{}, err
	}
	st, err := s.Contacts.CountAudience(ctx, tenantID, s.spec(c), 1)
	if err != nil {
		var ve *contacts.ValidationError
		if errors.As(err, &ve) {
			return Campaign{}, invalid("audience", "%s", ve.Error())
		}
		if errors.Is(err, contacts.ErrNotFound) {
			return Campaign{}, invalid("audience", "%s", err.Error())
		}
		return Campaign{}, err
	}
	if st.Eligible == 0 {
		return Campaign{}, invalid("audience", "no contact of the audience can receive this campaign (%d matched: %s)", st.Matched, describeExcluded(st.Excluded))
	}
	by := actor(ctx)
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE campaigns SET state = 'scheduled', template_version = $3, schedule_kind = $4, send_at = $5, local_time = $6,
			timezone = $7, throttle = $8, start_at = $9, scheduled_at = $10, updated_at = $10, updated_by = $11
			WHERE tenant_id = $1 AND id = $2 AND state IN ('draft', 'scheduled') AND started_at IS NULL`,
			id, version, c.Schedule.Kind, nullTime(sendAt), c.Schedule.LocalTime, c.Schedule.TimeZone, c.ThrottlePerSecond,
			store.Micros(startAt), store.Micros(now), by)
		if err != nil {
			return fmt.Errorf("campaigns: schedule: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: the campaign changed state meanwhile", ErrState)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.schedule", ObjectType: "campaign", ObjectID: id,
			Changes: []audit.Change{{Field: "state", Before: c.State, After: StateScheduled}, {Field: "template_version", After: version},
				{Field: "schedule.kind", After: c.Schedule.Kind}, {Field: "start_at", After: startAt}, {Field: "throttle_per_second", After: c.ThrottlePerSecond}},
			Details: map[string]any{"eligible_at_least": st.Eligible}})
		return err
	})
	if err != nil {
		return Campaign{}, err
	}
	if !startAt.After(now) {
		s.Wake()
	}
	return s.Get(ctx, tenantID, id)
}

func describeExcluded(m map[contacts.Reason]int64) string {
	if len(m) == 0 {
		return "none excluded"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[contacts.Reason(k)])
	}
	return "excluded " + strings.Join(parts, ", ")
}

// when returns the schedule's instant (send_at: the schedule call for now,
// nil for local) and when the expansion starts; a time in the past is a
// *ValidationError.
func (s *Service) when(sc Schedule, settings Settings, now time.Time) (*time.Time, time.Time, error) {
	lead := durationOr(s.ExpandLead, 5*time.Minute)
	switch sc.Kind {
	case KindAt:
		if sc.SendAt.Before(now) {
			return nil, time.Time{}, invalid("schedule.send_at", "%s is in the past (now is %s)", sc.SendAt.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		start := sc.SendAt.Add(-lead)
		if start.Before(now) {
			start = now
		}
		return sc.SendAt, start, nil
	case KindLocal:
		zone := sc.TimeZone
		if zone == "" {
			zone = settings.TimeZone
		}
		loc, err := loadZone(zone)
		if err != nil {
			return nil, time.Time{}, invalid("schedule.timezone", "%s", err.Error())
		}
		t, err := time.ParseInLocation(LocalLayout, sc.LocalTime, loc)
		if err != nil {
			return nil, time.Time{}, invalid("schedule.local_time", "must be a local date and time such as 2026-03-10T09:00")
		}
		if t.Before(now) {
			return nil, time.Time{}, invalid("schedule.local_time", "%s has already passed in %s", sc.LocalTime, zone)
		}
		// The wall time comes first in the zone furthest ahead of UTC.
		wall, _ := time.Parse(LocalLayout, sc.LocalTime)
		start := wall.Add(-maxZoneAhead - lead)
		if start.Before(now) {
			start = now
		}
		return nil, start, nil
	default:
		return &now, now, nil
	}
}

// checkTemplate loads the version the campaign pins (the latest when 0),
// checks it against the fields a campaign can fill and renders it with a
// sample contact. It returns the version to pin.
func (s *Service) checkTemplate(ctx context.Context, tenantID string, c Campaign) (int, error) {
	t, err := s.Templates.Get(ctx, tenantID, c.TemplateID, c.TemplateVersion)
	switch {
	case errors.Is(err, templates.ErrNotFound):
		return 0, invalid("template_id", "no such template (or version) in this tenant")
	case err != nil:
		return 0, err
	case t.ArchivedAt != nil:
		return 0, invalid("template_id", "the template is archived")
	case string(t.Channel) != c.Channel:
		return 0, invalid("template_id", "the template is for %s, the campaign for %s", t.Channel, c.Channel)
	}
	fs, err := s.FieldSet(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	// A campaign fills contact, attribute and link fields, never data.*;
	// an attribute removed from the schema since the template was saved
	// is unknown now.
	err = templates.Validate(templates.Input{Name: t.Name, Channel: t.Channel, DefaultLocale: t.DefaultLocale, Variants: t.Variants}, fs)
	if err != nil {
		var ve *templates.ValidationError
		if errors.As(err, &ve) {
			return 0, invalid("template_id", "template %q version %d cannot be sent by a campaign: %s", t.Name, t.Version, ve.Error())
		}
		return 0, err
	}
	sample := templates.Vars{Contact: templates.ContactFields{Email: "sample@example.com", Phone: "+33612345678", FirstName: "Sample", LastName: "Contact",
		Locale: t.DefaultLocale, TimeZone: "UTC"}, Attributes: map[string]any{}, Links: templates.Links{Unsubscribe: s.unsubscribeURL("sample")}}
	if _, err := s.Templates.Render(ctx, tenantID, t.ID, t.Version, t.DefaultLocale, sample.Map()); err != nil {
		return 0, invalid("template_id", "template %q version %d does not render: %s", t.Name, t.Version, err.Error())
	}
	return t.Version, nil
}

// FieldSet is what a campaign template may refer to: the tenant's current
// attribute keys (and no data.*).
func (s *Service) FieldSet(ctx context.Context, tenantID string) (templates.FieldSet, error) {
	defs, err := s.Contacts.AttributeSchema(ctx, tenantID)
	if err != nil {
		return templates.FieldSet{}, err
	}
	fs := templates.FieldSet{}
	for _, d := range defs {
		fs.Attributes = append(fs.Attributes, d.Key)
	}
	return fs, nil
}

func (s *Service) unsubscribeURL(token string) string {
	return strings.TrimRight(s.PublicBaseURL, "/") + "/u/" + token
}

func (s *Service) spec(c Campaign) contacts.AudienceSpec {
	return contacts.AudienceSpec{ListIDs: c.Audience.ListIDs, SegmentIDs: c.Audience.SegmentIDs, Channel: contacts.Channel(c.Channel),
		Purpose: c.Purpose, Ref: "campaign:" + c.ID}
}

// holdChunk is how many messages one pause, resume or cancel transaction
// moves.
const holdChunk = 2000

// transition changes a campaign's state in one transaction with its audit
// event, from one of the given states.
func (s *Service) transition(ctx context.Context, tenantID, id, action string, from []string, set func(c Campaign) (string, []any)) (Campaign, error) {
	now := s.now()
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		c, err := getTx(ctx, tx, id)
		if err != nil {
			return err
		}
		ok := false
		for _, f := range from {
			ok = ok || c.State == f
		}
		if !ok {
			return fmt.Errorf("%w: the campaign is %s (this needs %s)", ErrState, c.State, strings.Join(from, " or "))
		}
		assign, args := set(c)
		all := append([]any{id, c.State, store.Micros(now), actor(ctx)}, args...)
		res, err := tx.Exec(ctx, `UPDATE campaigns SET `+assign+`, updated_at = $4, updated_by = $5 WHERE tenant_id = $1 AND id = $2 AND state = $3`, all...)
		if err != nil {
			return fmt.Errorf("campaigns: %s: %w", action, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: the campaign changed state meanwhile", ErrState)
		}
		after, err := getTx(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign." + action, ObjectType: "campaign", ObjectID: id,
			Changes: []audit.Change{{Field: "state", Before: c.State, After: after.State}}})
		return err
	})
	if err != nil {
		return Campaign{}, err
	}
	return s.Get(ctx, tenantID, id)
}

// Pause stops a scheduled or running campaign: its expansion stops after
// the batch in progress, and its messages not yet claimed for hand-off
// move to the router state held (an event 'held' each). Messages already
// claimed by the engine (at most one claimed batch per node) still go.
// It returns the campaign and how many messages were held.
func (s *Service) Pause(ctx context.Context, tenantID, id string) (Campaign, int, error) {
	c, err := s.transition(ctx, tenantID, id, "pause", []string{StateScheduled, StateRunning}, func(Campaign) (string, []any) {
		return `state = 'paused', paused_at = $4, lease_owner = '', lease_until = 0`, nil
	})
	if err != nil {
		return Campaign{}, 0, err
	}
	held := 0
	for {
		n, err := s.Router.MoveCampaignMessages(ctx, tenantID, id, []string{router.StateQueued}, router.StateHeld, "held", "campaign paused", holdChunk)
		if err != nil {
			return c, held, err
		}
		held += n
		if n == 0 {
			return c, held, nil
		}
	}
}

// Resume restarts a paused campaign: back to running (scheduled if its
// expansion had not started; the expansion continues where it stopped),
// and its held messages are queued again with their due times moved by the
// length of the pause (so a throttled campaign keeps its spacing), then out
// of the tenant's quiet hours and through the throttle. It returns the
// campaign and how many messages were released.
func (s *Service) Resume(ctx context.Context, tenantID, id string) (Campaign, int, error) {
	var pausedAt time.Time
	c, err := s.transition(ctx, tenantID, id, "resume", []string{StatePaused}, func(c Campaign) (string, []any) {
		if c.PausedAt != nil {
			pausedAt = *c.PausedAt
		}
		if c.StartedAt != nil {
			return `state = 'running', paused_at = NULL`, nil
		}
		return `state = 'scheduled', paused_at = NULL`, nil
	})
	if err != nil {
		return Campaign{}, 0, err
	}
	shift := time.Duration(0)
	if !pausedAt.IsZero() {
		shift = max(s.now().Sub(pausedAt), 0)
	}
	p, err := s.newPlanner(ctx, tenantID, c, s.now())
	if err != nil {
		return c, 0, err
	}
	released := 0
	for {
		held, err := s.Router.HeldMessages(ctx, tenantID, id, holdChunk)
		if err != nil {
			return c, released, err
		}
		if len(held) == 0 {
			break
		}
		ids := make([]string, 0, len(held))
		for _, h := range held {
			if h.ContactID != "" {
				ids = append(ids, h.ContactID)
			}
		}
		zones, err := s.Contacts.TimeZones(ctx, tenantID, ids)
		if err != nil {
			return c, released, err
		}
		for i := range held {
			held[i].Due = p.place(held[i].Due.Add(shift), p.location(zones[held[i].ContactID]))
		}
		n, err := s.Router.ReleaseHeld(ctx, tenantID, id, held)
		if err != nil {
			return c, released, err
		}
		released += n
	}
	s.Wake()
	return c, released, nil
}

// Cancel stops a campaign for good: its expansion stops, and its messages
// not yet claimed for hand-off (queued or held) become suppressed with the
// reason "campaign cancelled" (an event each). Messages already claimed
// (at most one batch per node) still go. It returns the campaign and how
// many messages were cancelled.
func (s *Service) Cancel(ctx context.Context, tenantID, id string) (Campaign, int, error) {
	c, err := s.transition(ctx, tenantID, id, "cancel", []string{StateDraft, StateScheduled, StateRunning, StatePaused}, func(Campaign) (string, []any) {
		return `state = 'cancelled', finished_at = $4, lease_owner = '', lease_until = 0`, nil
	})
	if err != nil {
		return Campaign{}, 0, err
	}
	cancelled := 0
	for {
		n, err := s.Router.MoveCampaignMessages(ctx, tenantID, id, []string{router.StateQueued, router.StateHeld}, router.StateSuppressed,
			"suppressed", "campaign cancelled", holdChunk)
		if err != nil {
			return c, cancelled, err
		}
		cancelled += n
		if n == 0 {
			return c, cancelled, nil
		}
	}
}

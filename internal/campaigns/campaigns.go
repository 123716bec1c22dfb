package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
)

// Campaign states.
const (
	StateDraft     = "draft"
	StateScheduled = "scheduled"
	StateRunning   = "running"
	StatePaused    = "paused"
	StateCancelled = "cancelled"
	StateDone      = "done"
)

// Schedule kinds.
const (
	// KindNow sends as soon as the campaign is scheduled.
	KindNow = "now"
	// KindAt sends at one instant (Schedule.SendAt).
	KindAt = "at"
	// KindLocal sends at a wall time in each contact's time zone
	// (Schedule.LocalTime).
	KindLocal = "local"
)

// Limits.
const (
	MaxNameLen  = 128
	MaxThrottle = 100_000
)

// Errors. Test them with errors.Is.
var (
	// ErrNotFound: no such campaign in this tenant.
	ErrNotFound = errors.New("campaign not found")
	// ErrState: the campaign's state does not allow the action (pausing a
	// draft, scheduling a cancelled campaign...). The error says which
	// state it is in.
	ErrState = errors.New("campaign state does not allow this")
)

// ValidationError names a bad input field and says what is expected.
type ValidationError struct{ Field, Message string }

// Error reads "field: message".
func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Audience is who a campaign is for: the members of the lists and the
// matches of the segments (a union), of whom only the eligible receive it.
type Audience struct {
	ListIDs    []string `json:"list_ids"`
	SegmentIDs []string `json:"segment_ids"`
}

// Schedule is when a campaign sends. Kind is now, at (SendAt, an instant)
// or local (LocalTime, "2006-01-02T15:04", in each contact's time zone;
// TimeZone for contacts without a valid one, the tenant's setting when
// empty).
type Schedule struct {
	Kind      string     `json:"kind"`
	SendAt    *time.Time `json:"send_at,omitempty"`
	LocalTime string     `json:"local_time,omitempty"`
	TimeZone  string     `json:"timezone,omitempty"`
}

// Input creates a campaign (a draft).
type Input struct {
	Name    string `json:"name"`
	Channel string `json:"channel"`
	// Purpose is the consent purpose (contacts.DefaultPurpose when empty).
	Purpose    string `json:"purpose"`
	TemplateID string `json:"template_id"`
	// TemplateVersion pins a version; 0 pins the latest when scheduled.
	TemplateVersion int      `json:"template_version"`
	Audience        Audience `json:"audience"`
	Schedule        Schedule `json:"schedule"`
	// ThrottlePerSecond limits the campaign's sending rate (0: none).
	ThrottlePerSecond int `json:"throttle_per_second"`
}

// Progress is what the expansion has done so far.
type Progress struct {
	// Matched: contacts of the audience seen; Enqueued: messages created;
	// Excluded: contacts not sent to, by reason (the contacts.CanSend
	// reasons, render_failed, invalid_address).
	Matched  int64            `json:"matched"`
	Enqueued int64            `json:"enqueued"`
	Excluded map[string]int64 `json:"excluded"`
}

// Campaign is a stored campaign.
type Campaign struct {
	ID                string     `json:"id"`
	Name              string     `json:"name"`
	Channel           string     `json:"channel"`
	Purpose           string     `json:"purpose"`
	TemplateID        string     `json:"template_id"`
	TemplateVersion   int        `json:"template_version"`
	Audience          Audience   `json:"audience"`
	Schedule          Schedule   `json:"schedule"`
	ThrottlePerSecond int        `json:"throttle_per_second"`
	State             string     `json:"state"`
	Progress          Progress   `json:"progress"`
	StartAt           *time.Time `json:"start_at,omitempty"`
	ScheduledAt       *time.Time `json:"scheduled_at,omitempty"`
	StartedAt         *time.Time `json:"started_at,omitempty"`
	ExpandedAt        *time.Time `json:"expanded_at,omitempty"`
	PausedAt          *time.Time `json:"paused_at,omitempty"`
	FinishedAt        *time.Time `json:"finished_at,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	CreatedBy         string     `json:"created_by"`
	UpdatedAt         time.Time  `json:"updated_at"`
	UpdatedBy         string     `json:"updated_by"`

	expandAfter string
	leaseOwner  string
	leaseUntil  int64
}

// Settings are a tenant's campaign settings: quiet hours ("21:00" to
// "08:00" in each contact's time zone; both empty for none) and the time
// zone of contacts without a valid one.
type Settings struct {
	QuietStart string    `json:"quiet_start"`
	QuietEnd   string    `json:"quiet_end"`
	TimeZone   string    `json:"timezone"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Service keeps campaigns, schedules them, expands their audiences into
// router messages (Run) and reports on them. DB, Contacts, Templates and
// Router are required; the other fields have defaults. Do not copy a
// Service after first use.
type Service struct {
	DB        *store.DB
	Contacts  *contacts.Service
	Templates *templates.Service
	Router    *router.Service
	// PublicBaseURL is the platform's public address ("https://relais.example"):
	// unsubscribe links are PublicBaseURL + "/u/" + token.
	PublicBaseURL string
	// Now is the clock (the store's when nil).
	Now func() time.Time
	// Node names this process in expansion leases (random when empty).
	Node string
	// LeaseTTL is how long an expansion lease lasts without a committed
	// batch (2 minutes).
	LeaseTTL time.Duration
	// Poll is the expansion job's idle wait (1 s); Wake cuts it.
	Poll time.Duration
	// BatchSize is the contacts per expansion batch (1000).
	BatchSize int
	// Workers render messages in parallel (GOMAXPROCS).
	Workers int
	// MaxBacklog is the expansion's flow control: it waits while the
	// queue holds this many messages due now, all tenants together (5000;
	// negative: never waits).
	MaxBacklog int
	// ExpandLead is how long before its first message is due a scheduled
	// campaign's audience is expanded (5 minutes).
	ExpandLead time.Duration
	Logger     *slog.Logger
	// AfterBatch, when set, is called after each committed expansion
	// batch; an error stops the expansion there, leaving its lease as a
	// crashed node would (tests).
	AfterBatch func(campaignID string, enqueued int64) error

	once sync.Once
	wake chan struct{}
	node string
}

func (s *Service) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		s.node = s.Node
		if s.node == "" {
			s.node = uuid.NewString()
		}
	})
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC().Truncate(time.Microsecond)
	}
	return s.DB.Now().UTC().Truncate(time.Microsecond)
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func intOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// Wake makes the expansion job look for work at once.
func (s *Service) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func actor(ctx context.Context) string {
	a := audit.MetaFrom(ctx).Actor
	if a.Type == "" {
		return audit.ActorSystem + ":relais"
	}
	return a.Type + ":" + a.ID
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkInput validates the fields of a campaign that do not need the
// store.
func checkInput(in *Input) error {
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > MaxNameLen || !printable(in.Name) {
		return invalid("name", "must be 1 to %d printable characters", MaxNameLen)
	}
	if in.Channel != string(contacts.ChannelEmail) && in.Channel != string(contacts.ChannelSMS) {
		return invalid("channel", "must be email or sms")
	}
	if in.Purpose == "" {
		in.Purpose = contacts.DefaultPurpose
	}
	if !contacts.ValidPurpose(in.Purpose) {
		return invalid("purpose", "must be 1 to 64 lower-case letters, digits or _, starting with a letter (a consent purpose)")
	}
	if in.TemplateID == "" || len(in.TemplateID) > 64 {
		return invalid("template_id", "is required")
	}
	if in.TemplateVersion < 0 {
		return invalid("template_version", "must be 0 (the latest when scheduled) or a version number")
	}
	n := len(in.Audience.ListIDs) + len(in.Audience.SegmentIDs)
	if n == 0 {
		return invalid("audience", "name at least one list or segment")
	}
	if n > contacts.MaxAudienceSources {
		return invalid("audience", "at most %d lists and segments", contacts.MaxAudienceSources)
	}
	if in.ThrottlePerSecond < 0 || in.ThrottlePerSecond > MaxThrottle {
		return invalid("throttle_per_second", "must be 0 (no limit) to %d", MaxThrottle)
	}
	return checkScheduleForm(&in.Schedule)
}

// checkScheduleForm validates a schedule's form (not whether it is past).
func checkScheduleForm(sc *Schedule) error {
	if sc.Kind == "" {
		sc.Kind = KindNow
	}
	switch sc.Kind {
	case KindNow:
		if sc.SendAt != nil || sc.LocalTime != "" {
			return invalid("schedule", "a schedule of kind now takes neither send_at nor local_time")
		}
	case KindAt:
		if sc.SendAt == nil || sc.SendAt.IsZero() {
			return invalid("schedule.send_at", "is required for kind at (an RFC 3339 time with its offset)")
		}
		if sc.LocalTime != "" {
			return invalid("schedule.local_time", "is only for kind local")
		}
		t := sc.SendAt.UTC().Truncate(time.Microsecond)
		sc.SendAt = &t
	case KindLocal:
		if sc.SendAt != nil {
			return invalid("schedule.send_at", "is only for kind at")
		}
		if _, err := time.Parse(LocalLayout, sc.LocalTime); err != nil {
			return invalid("schedule.local_time", "must be a local date and time such as 2026-03-10T09:00")
		}
	default:
		return invalid("schedule.kind", "must be now, at or local")
	}
	if sc.TimeZone != "" {
		if _, err := loadZone(sc.TimeZone); err != nil {
			return invalid("schedule.timezone", "%s", err.Error())
		}
	}
	return nil
}

func loadZone(name string) (*time.Location, error) {
	if name == "Local" || len(name) > 64 {
		return nil, fmt.Errorf("%q is not an IANA time zone such as Europe/Paris", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone such as Europe/Paris", name)
	}
	return l, nil
}

// checkReferences checks the template and the audience exist in the
// tenant.
func (s *Service) checkReferences(ctx context.Context, tenantID string, in Input) error {
	t, err := s.Templates.Get(ctx, tenantID, in.TemplateID, in.TemplateVersion)
	switch {
	case errors.Is(err, templates.ErrNotFound):
		return invalid("template_id", "no such template (or version) in this tenant")
	case err != nil:
		return err
	case t.ArchivedAt != nil:
		return invalid("template_id", "the template is archived")
	case string(t.Channel) != in.Channel:
		return invalid("template_id", "the template is for %s, the campaign for %s", t.Channel, in.Channel)
	}
	for _, id := range in.Audience.ListIDs {
		if _, err := s.Contacts.GetList(ctx, tenantID, id); err != nil {
			if errors.Is(err, contacts.ErrNotFound) {
				return invalid("audience.list_ids", "no list %q in this tenant", truncate(id, 64))
			}
			return err
		}
	}
	for _, id := range in.Audience.SegmentIDs {
		if _, err := s.Contacts.GetSegment(ctx, tenantID, id); err != nil {
			if errors.Is(err, contacts.ErrNotFound) {
				return invalid("audience.segment_ids", "no segment %q in this tenant", truncate(id, 64))
			}
			return err
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Create validates and stores a campaign as a draft, with its audit event.
func (s *Service) Create(ctx context.Context, tenantID string, in Input) (Campaign, error) {
	aud, err := s.validate(ctx, tenantID, &in)
	if err != nil {
		return Campaign{}, err
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return Campaign{}, fmt.Errorf("campaigns: new id: %w", err)
	}
	id := uid.String()
	now := s.now()
	by := actor(ctx)
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO campaigns (tenant_id, id, name, channel, purpose, template_id, template_version, audience,
			schedule_kind, send_at, local_time, timezone, throttle, state, created_at, created_by, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'draft', $14, $15, $14, $15)`,
			id, in.Name, in.Channel, in.Purpose, in.TemplateID, in.TemplateVersion, string(aud), in.Schedule.Kind, nullTime(in.Schedule.SendAt),
			in.Schedule.LocalTime, in.Schedule.TimeZone, in.ThrottlePerSecond, store.Micros(now), by)
		if err != nil {
			return fmt.Errorf("campaigns: insert: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.create", ObjectType: "campaign", ObjectID: id,
			Changes: []audit.Change{{Field: "name", After: in.Name}, {Field: "channel", After: in.Channel}, {Field: "template_id", After: in.TemplateID},
				{Field: "audience", After: json.RawMessage(aud)}, {Field: "schedule.kind", After: in.Schedule.Kind},
				{Field: "throttle_per_second", After: in.ThrottlePerSecond}}})
		return err
	})
	if err != nil {
		return Campaign{}, err
	}
	return s.Get(ctx, tenantID, id)
}

// validate checks a campaign's fields (normalising in) and that its
// template and audience exist in the tenant, and returns the audience as
// stored.
func (s *Service) validate(ctx context.Context, tenantID string, in *Input) ([]byte, error) {
	if err := checkInput(in); err != nil {
		return nil, err
	}
	if err := s.checkReferences(ctx, tenantID, *in); err != nil {
		return nil, err
	}
	aud, err := json.Marshal(normAudience(in.Audience))
	if err != nil {
		return nil, fmt.Errorf("campaigns: encode audience: %w", err)
	}
	return aud, nil
}

func normAudience(a Audience) Audience {
	if a.ListIDs == nil {
		a.ListIDs = []string{}
	}
	if a.SegmentIDs == nil {
		a.SegmentIDs = []string{}
	}
	return a
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return store.Micros(*t)
}

func timeOf(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := store.FromMicros(*v)
	return &t
}

const campaignCols = `id, name, channel, purpose, template_id, template_version, audience, schedule_kind, send_at, local_time, timezone,
	throttle, state, start_at, expand_after, audience_matched, enqueued, excluded, lease_owner, lease_until, scheduled_at, started_at,
	expanded_at, paused_at, finished_at, created_at, created_by, updated_at, updated_by`

func scanCampaign(sc interface{ Scan(...any) error }) (Campaign, error) {
	var c Campaign
	var aud, excluded string
	var sendAt, startAt, scheduled, started, expanded, paused, finished *int64
	var created, updated int64
	err := sc.Scan(&c.ID, &c.Name, &c.Channel, &c.Purpose, &c.TemplateID, &c.TemplateVersion, &aud, &c.Schedule.Kind, &sendAt,
		&c.Schedule.LocalTime, &c.Schedule.TimeZone, &c.ThrottlePerSecond, &c.State, &startAt, &c.expandAfter, &c.Progress.Matched,
		&c.Progress.Enqueued, &excluded, &c.leaseOwner, &c.leaseUntil, &scheduled, &started, &expanded, &paused, &finished,
		&created, &c.CreatedBy, &updated, &c.UpdatedBy)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(aud), &c.Audience); err != nil {
		return c, fmt.Errorf("campaigns: stored audience: %w", err)
	}
	c.Audience = normAudience(c.Audience)
	c.Progress.Excluded = map[string]int64{}
	if err := json.Unmarshal([]byte(excluded), &c.Progress.Excluded); err != nil {
		return c, fmt.Errorf("campaigns: stored counts: %w", err)
	}
	c.Schedule.SendAt = timeOf(sendAt)
	c.StartAt, c.ScheduledAt, c.StartedAt, c.ExpandedAt = timeOf(startAt), timeOf(scheduled), timeOf(started), timeOf(expanded)
	c.PausedAt, c.FinishedAt = timeOf(paused), timeOf(finished)
	c.CreatedAt, c.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	return c, nil
}

func getTx(ctx context.Context, tx *store.Tx, id string) (Campaign, error) {
	if id == "" || len(id) > 64 {
		return Campaign{}, ErrNotFound
	}
	c, err := scanCampaign(tx.QueryRow(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE tenant_id = $1 AND id = $2`, id))
	if errors.Is(err, store.ErrNotFound) {
		return Campaign{}, ErrNotFound
	}
	if err != nil {
		return Campaign{}, fmt.Errorf("campaigns: read: %w", err)
	}
	return c, nil
}

// Get returns a campaign.
func (s *Service) Get(ctx context.Context, tenantID, id string) (Campaign, error) {
	var c Campaign
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		c, err = getTx(ctx, tx, id)
		return err
	})
	return c, err
}

// List returns the tenant's campaigns, newest first (at most 500).
func (s *Service) List(ctx context.Context, tenantID string) ([]Campaign, error) {
	out := []Campaign{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 500`)
		if err != nil {
			return fmt.Errorf("campaigns: list: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			c, err := scanCampaign(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	return out, err
}

// GetSettings returns the tenant's campaign settings (no quiet hours and
// UTC until set).
func (s *Service) GetSettings(ctx context.Context, tenantID string) (Settings, error) {
	st := Settings{TimeZone: "UTC"}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var updated int64
		err := tx.QueryRow(ctx, `SELECT quiet_start, quiet_end, timezone, updated_at FROM campaign_settings WHERE tenant_id = $1`).
			Scan(&st.QuietStart, &st.QuietEnd, &st.TimeZone, &updated)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		st.UpdatedAt = store.FromMicros(updated)
		return err
	})
	if err != nil {
		return Settings{}, fmt.Errorf("campaigns: read settings: %w", err)
	}
	return st, nil
}

// SetSettings validates and stores the tenant's campaign settings, with
// their audit event. They apply to expansions that start afterwards (and to
// messages released by a resume).
func (s *Service) SetSettings(ctx context.Context, tenantID string, st Settings) (Settings, error) {
	if _, err := newQuietHours(st.QuietStart, st.QuietEnd); err != nil {
		return Settings{}, invalid("quiet_hours", "%s (give both quiet_start and quiet_end as HH:MM, or neither)", err.Error())
	}
	if st.TimeZone == "" {
		st.TimeZone = "UTC"
	}
	if _, err := loadZone(st.TimeZone); err != nil {
		return Settings{}, invalid("timezone", "%s", err.Error())
	}
	before, err := s.GetSettings(ctx, tenantID)
	if err != nil {
		return Settings{}, err
	}
	now := s.now()
	st.UpdatedAt = now
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO campaign_settings (tenant_id, quiet_start, quiet_end, timezone, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET quiet_start = $2, quiet_end = $3, timezone = $4,
			updated_at = $5, updated_by = $6`, st.QuietStart, st.QuietEnd, st.TimeZone, store.Micros(now), actor(ctx))
		if err != nil {
			return fmt.Errorf("campaigns: save settings: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "campaign.settings", ObjectType: "campaign_settings",
			Changes: []audit.Change{{Field: "quiet_start", Before: before.QuietStart, After: st.QuietStart},
				{Field: "quiet_end", Before: before.QuietEnd, After: st.QuietEnd}, {Field: "timezone", Before: before.TimeZone, After: st.TimeZone}}})
		return err
	})
	if err != nil {
		return Settings{}, err
	}
	return st, nil
}

package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
)

// errStopped: the campaign was paused or cancelled, or another node took
// its lease, while a batch was being expanded; the batch is rolled back.
var errStopped = errors.New("campaign expansion stopped")

// Run is the expansion job: until ctx ends it starts the expansion of
// campaigns whose time has come, resumes those whose lease expired (a node
// died), and marks running campaigns done once every message reached a
// final state. Every node may run it: a campaign is expanded by the one
// node that holds its lease.
func (s *Service) Run(ctx context.Context) error {
	s.init()
	for {
		n, err := s.Work(ctx)
		if err != nil && ctx.Err() == nil {
			s.log().Error("campaigns: expansion job", "error", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 {
			continue
		}
		t := time.NewTimer(durationOr(s.Poll, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

type ref struct{ tenant, id string }

// Work runs one pass of the job: expands what is due, then finishes what
// is complete. It returns how many campaigns it expanded.
func (s *Service) Work(ctx context.Context) (int, error) {
	s.init()
	now := store.Micros(s.now())
	var due, active []ref
	// The job looks across tenants (platform scope), like the router's
	// queue scan; everything it then does runs in the tenant's scope.
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT tenant_id, id FROM campaigns WHERE (state = 'scheduled' AND start_at <= $1)
			OR (state = 'running' AND expanded_at IS NULL AND lease_until < $1) ORDER BY start_at LIMIT 20`, now)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.tenant, &r.id); err != nil {
				_ = rows.Close()
				return err
			}
			due = append(due, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		rows, err = p.Query(ctx, `SELECT tenant_id, id FROM campaigns WHERE state = 'running' AND expanded_at IS NOT NULL LIMIT 200`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.tenant, &r.id); err != nil {
				return err
			}
			active = append(active, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("campaigns: find work: %w", err)
	}
	expanded := 0
	var errs []error
	for _, r := range due {
		ok, err := s.Expand(ctx, r.tenant, r.id)
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", r.id, err))
		} else if ok {
			expanded++
		}
	}
	for _, r := range active {
		if err := s.finish(ctx, r.tenant, r.id); err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", r.id, err))
		}
	}
	return expanded, errors.Join(errs...)
}

// finish marks a running, fully expanded campaign done when none of its
// messages is queued or being handed off any more.
func (s *Service) finish(ctx context.Context, tenantID, id string) error {
	now := s.now()
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var pending int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('queued', 'sending', 'held')`,
			id).Scan(&pending); err != nil {
			return err
		}
		if pending > 0 {
			return nil
		}
		res, err := tx.Exec(ctx, `UPDATE campaigns SET state = 'done', finished_at = $3, updated_at = $3
			WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND expanded_at IS NOT NULL`, id, store.Micros(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.done", ObjectType: "campaign", ObjectID: id,
			Actor: audit.Actor{Type: audit.ActorSystem, ID: "relais"}, Changes: []audit.Change{{Field: "state", Before: StateRunning, After: StateDone}}})
		return err
	})
}

// claim takes the campaign's expansion lease: a scheduled campaign whose
// start time has come becomes running; a running one whose lease expired
// (its node died) is taken over. It returns false when the campaign is not
// to be expanded by this node now.
func (s *Service) claim(ctx context.Context, tenantID, id string) (Campaign, bool, error) {
	now := s.now()
	until := now.Add(durationOr(s.LeaseTTL, 2*time.Minute))
	var c Campaign
	claimed := false
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE campaigns SET state = 'running', started_at = COALESCE(started_at, $3), lease_owner = $4, lease_until = $5,
			updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND expanded_at IS NULL AND lease_until < $3
			AND ((state = 'scheduled' AND start_at <= $3) OR state = 'running')`, id, store.Micros(now), s.node, store.Micros(until))
		if err != nil {
			return fmt.Errorf("campaigns: claim: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if c, err = getTx(ctx, tx, id); err != nil {
			return err
		}
		claimed = true
		if c.StartedAt != nil && c.StartedAt.Equal(now) {
			_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.start", ObjectType: "campaign", ObjectID: id,
				Actor: audit.Actor{Type: audit.ActorSystem, ID: "relais"}, Changes: []audit.Change{{Field: "state", Before: StateScheduled, After: StateRunning}},
				Details: map[string]any{"node": s.node}})
		}
		return err
	})
	return c, claimed, err
}

// newPlanner builds the due-time planner of a campaign from its schedule,
// the tenant's settings and, for a throttled campaign, the due times of
// the messages already queued (a resumed expansion keeps the rate).
func (s *Service) newPlanner(ctx context.Context, tenantID string, c Campaign, now time.Time) (*planner, error) {
	settings, err := s.GetSettings(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	quiet, err := newQuietHours(settings.QuietStart, settings.QuietEnd)
	if err != nil {
		return nil, fmt.Errorf("campaigns: stored quiet hours: %w", err)
	}
	zone := c.Schedule.TimeZone
	if zone == "" {
		zone = settings.TimeZone
	}
	fallback, err := loadZone(zone)
	if err != nil {
		fallback = time.UTC
	}
	p := &planner{kind: c.Schedule.Kind, local: c.Schedule.LocalTime, fallback: fallback, quiet: quiet, locations: map[string]*time.Location{}}
	switch {
	case c.Schedule.SendAt != nil:
		p.base = *c.Schedule.SendAt
	case c.ScheduledAt != nil:
		p.base = *c.ScheduledAt
	default:
		p.base = now
	}
	if c.ThrottlePerSecond > 0 {
		taken, err := s.Router.CampaignDueSeconds(ctx, tenantID, c.ID)
		if err != nil {
			return nil, err
		}
		p.throttle = newThrottle(c.ThrottlePerSecond, taken)
	}
	return p, nil
}

// Expand expands a campaign's audience into messages if this node can
// claim it (see Run); it returns whether it did. The audience is read in
// keyset pages; each page's messages are rendered (in parallel), sealed
// and written in one transaction with the campaign's cursor, counts and
// lease renewal, so a crash loses at most the page in progress, and a
// resumed expansion continues after the last committed page. Messages
// carry the idempotency key "campaign:<id>:<contact id>": even an
// expansion run again from the start creates no duplicate.
func (s *Service) Expand(ctx context.Context, tenantID, id string) (bool, error) {
	s.init()
	c, ok, err := s.claim(ctx, tenantID, id)
	if err != nil || !ok {
		return false, err
	}
	err = s.expand(ctx, tenantID, c)
	var he *hookError
	switch {
	case errors.Is(err, errStopped):
		// Paused, cancelled or taken over: give the lease back if it is
		// still this node's, so that a resume continues at once.
		s.release(tenantID, id)
		return true, nil
	case errors.As(err, &he):
		// AfterBatch stopped it: the lease stays, as after a crash.
		return true, he.err
	case err != nil:
		s.release(tenantID, id)
		return true, err
	}
	return true, nil
}

// release gives the lease back after a failed expansion, so that a node
// retries it at its next pass.
func (s *Service) release(tenantID, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE campaigns SET lease_owner = '', lease_until = 0 WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3`, id, s.node)
		return err
	})
}

// waitBacklog is the expansion's flow control: while the queue holds
// MaxBacklog messages due now (the engine's work in hand), it waits
// for the engine to take them, renewing the lease; a campaign paused or
// cancelled meanwhile stops it (errStopped). Without it an expansion that
// runs ahead of the connectors would pile up the whole audience as due
// messages, which the engine's claim orders at every step.
func (s *Service) waitBacklog(ctx context.Context, tenantID, id, after string) error {
	limit := s.MaxBacklog
	if limit == 0 {
		limit = 5000
	}
	if limit < 0 {
		return nil
	}
	lease := durationOr(s.LeaseTTL, 2*time.Minute)
	renewed := time.Now()
	for {
		n, err := s.Router.DueBacklog(ctx, limit)
		if err != nil || n < limit {
			return err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		// Once a second: renew the lease, and learn of a pause or cancel.
		if time.Since(renewed) < min(lease/4, time.Second) {
			continue
		}
		now := s.now()
		var held bool
		err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			res, err := tx.Exec(ctx, `UPDATE campaigns SET lease_until = $3 WHERE tenant_id = $1 AND id = $2 AND state = 'running'
				AND lease_owner = $4 AND expand_after = $5`, id, store.Micros(now.Add(lease)), s.node, after)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			held = n > 0
			return nil
		})
		if err != nil {
			return fmt.Errorf("campaigns: renew lease: %w", err)
		}
		if !held {
			return errStopped
		}
		renewed = time.Now()
	}
}

// hookError carries an error of AfterBatch.
type hookError struct{ err error }

func (e *hookError) Error() string { return e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// built is one page's rendered and sealed messages.
type built struct {
	prepared *router.Prepared
	excluded map[string]int64
}

func (s *Service) expand(ctx context.Context, tenantID string, c Campaign) error {
	p, err := s.newPlanner(ctx, tenantID, c, s.now())
	if err != nil {
		return err
	}
	spec := s.spec(c)
	spec.After = c.expandAfter
	after := c.expandAfter
	matched, enqueued := c.Progress.Matched, c.Progress.Enqueued
	excluded := c.Progress.Excluded
	lease := durationOr(s.LeaseTTL, 2*time.Minute)
	stats := queueStats{db: s.DB, next: 1000, log: s.log()}
	_, err = s.Contacts.AudiencePages(ctx, tenantID, spec, intOr(s.BatchSize, 1000), func(page contacts.AudiencePage) error {
		if err := s.waitBacklog(ctx, tenantID, c.ID, after); err != nil {
			return err
		}
		b, err := s.build(ctx, tenantID, c, p, page.Recipients)
		if err != nil {
			return err
		}
		matched += page.Stats.Matched
		for k, v := range page.Stats.Excluded {
			excluded[string(k)] += v
		}
		for k, v := range b.excluded {
			excluded[k] += v
		}
		exJSON, err := json.Marshal(excluded)
		if err != nil {
			return fmt.Errorf("campaigns: encode counts: %w", err)
		}
		now := s.now()
		var created int
		err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			// The cursor check fences the batch: a node that lost its
			// lease, or a campaign paused or cancelled meanwhile, updates
			// nothing and rolls its batch back.
			res, err := tx.Exec(ctx, `UPDATE campaigns SET expand_after = $3, audience_matched = $4, excluded = $5, lease_until = $6, updated_at = $7
				WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND lease_owner = $8 AND expand_after = $9`,
				c.ID, page.Last, matched, string(exJSON), store.Micros(now.Add(lease)), store.Micros(now), s.node, after)
			if err != nil {
				return fmt.Errorf("campaigns: record progress: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return errStopped
			}
			if created, err = s.Router.EnqueueTx(ctx, tx, b.prepared); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE campaigns SET enqueued = $3 WHERE tenant_id = $1 AND id = $2`, c.ID, enqueued+int64(created))
			return err
		})
		if err != nil {
			return err
		}
		after = page.Last
		enqueued += int64(created)
		stats.add(ctx, int64(created))
		if s.AfterBatch != nil {
			if err := s.AfterBatch(c.ID, enqueued); err != nil {
				return &hookError{err}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	now := s.now()
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE campaigns SET expanded_at = $3, lease_owner = '', lease_until = 0, updated_at = $3
			WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND lease_owner = $4 AND expand_after = $5`, c.ID, store.Micros(now), s.node, after)
		if err != nil {
			return fmt.Errorf("campaigns: finish expansion: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errStopped
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "campaign.expanded", ObjectType: "campaign", ObjectID: c.ID,
			Actor:   audit.Actor{Type: audit.ActorSystem, ID: "relais"},
			Details: map[string]any{"matched": matched, "enqueued": enqueued, "excluded": excluded, "node": s.node}})
		return err
	})
}

// build renders, addresses and seals the messages of one page, in
// parallel. A contact whose message does not render, or whose address the
// router refuses, is counted as excluded (render_failed, invalid_address).
func (s *Service) build(ctx context.Context, tenantID string, c Campaign, p *planner, list []contacts.Recipient) (built, error) {
	out := built{excluded: map[string]int64{}}
	prep, err := s.Router.Prepare(ctx, tenantID, nil)
	if err != nil {
		return out, err
	}
	out.prepared = prep
	if len(list) == 0 {
		return out, nil
	}
	// Due times first, in order: the throttle is stateful.
	dues := make([]time.Time, len(list))
	for i, r := range list {
		dues[i] = p.due(r.TimeZone)
	}
	workers := min(intOr(s.Workers, runtime.GOMAXPROCS(0)), len(list))
	per := (len(list) + workers - 1) / workers
	parts := make([]*router.Prepared, workers)
	fails := make([]map[string]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, len(list))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[w], fails[w], errs[w] = s.buildPart(ctx, tenantID, c, list[lo:hi], dues[lo:hi])
		}()
	}
	wg.Wait()
	for w := range parts {
		if errs[w] != nil {
			return out, errs[w]
		}
		if err := out.prepared.Append(parts[w]); err != nil {
			return out, err
		}
		for k, v := range fails[w] {
			out.excluded[k] += v
		}
	}
	return out, nil
}

func (s *Service) buildPart(ctx context.Context, tenantID string, c Campaign, list []contacts.Recipient, dues []time.Time) (*router.Prepared, map[string]int64, error) {
	fails := map[string]int64{}
	msgs := make([]router.NewMessage, 0, len(list))
	for i, r := range list {
		tok, err := s.Contacts.UnsubscribeToken(ctx, tenantID, r.ID, contacts.Channel(c.Channel), c.Purpose)
		if err != nil {
			return nil, nil, err
		}
		vars := templates.Vars{Contact: templates.ContactFields{Email: r.Email, Phone: r.Phone, FirstName: r.FirstName, LastName: r.LastName,
			Locale: r.Locale, TimeZone: r.TimeZone}, Attributes: r.Attributes, Links: templates.Links{Unsubscribe: s.unsubscribeURL(tok)}}
		content, err := s.Templates.Render(ctx, tenantID, c.TemplateID, c.TemplateVersion, r.Locale, vars.Map())
		if err != nil {
			if errors.Is(err, templates.ErrRender) {
				fails["render_failed"]++
				continue
			}
			return nil, nil, err
		}
		to := r.Email
		if c.Channel == string(contacts.ChannelSMS) {
			to = r.Phone
		}
		msgs = append(msgs, router.NewMessage{Channel: c.Channel, To: to, Content: content, IdempotencyKey: "campaign:" + c.ID + ":" + r.ID,
			CampaignID: c.ID, ContactID: r.ID, SendAt: dues[i]})
	}
	for {
		p, err := s.Router.Prepare(ctx, tenantID, msgs)
		if err == nil {
			return p, fails, nil
		}
		// A message the router refuses (an address it does not take)
		// is dropped and counted; the others go on.
		var ve *router.ValidationError
		var idx int
		if !errors.As(err, &ve) {
			return nil, nil, err
		}
		if _, scanErr := fmt.Sscanf(ve.Field, "[%d]", &idx); scanErr != nil || idx < 0 || idx >= len(msgs) {
			return nil, nil, err
		}
		if ve.Field == fmt.Sprintf("[%d].to", idx) {
			fails["invalid_address"]++
		} else {
			fails["render_failed"]++
		}
		msgs = append(msgs[:idx], msgs[idx+1:]...)
	}
}

// queueStats keeps PostgreSQL's statistics of the queue's tables up with
// a large expansion: the engine reads the messages being expanded (claim,
// contents, outcomes) while the tables grow, and a planner working from
// no statistics, or from those of a much smaller table, picks plans whose
// cost grows with the table (seen: reading 500 contents went from 10 to
// 650 ms during a 100k campaign). It runs ANALYZE after the first 1000
// messages of the expansion, then each time the count is ten times the
// last (1000, 10,000, 100,000...: a few runs of about 0.1-0.3 s, on a
// 30,000-row sample). Best effort: an expansion goes on without it. It
// never waits for a lock: ANALYZE (SKIP_LOCKED) skips a table that a
// VACUUM, an autovacuum or another ANALYZE holds (waiting would stall the
// expansion past its lease, and an autovacuum blocking an ANALYZE is
// cancelled by PostgreSQL), and the statement is bounded in time.
type queueStats struct {
	db      *store.DB
	log     *slog.Logger
	written int64 // messages enqueued by this expansion
	next    int64 // when to ANALYZE next
}

// add counts n more messages and runs ANALYZE when due (PostgreSQL).
func (q *queueStats) add(ctx context.Context, n int64) {
	if q.db.Dialect() != store.Postgres {
		return
	}
	q.written += n
	if q.written < q.next {
		return
	}
	q.next = q.written * 10
	err := q.db.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `SET LOCAL statement_timeout = '10s'`); err != nil {
			return err
		}
		_, err := p.Exec(ctx, `ANALYZE (SKIP_LOCKED) messages, message_contents, message_events`)
		return err
	})
	if err != nil {
		q.log.Warn("campaigns: ANALYZE of the queue's tables", "error", err)
	}
}

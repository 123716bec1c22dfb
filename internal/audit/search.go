package audit

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/store"
)

// Filter selects events for Search. Empty fields do not filter. Action
// ending in "*" matches a prefix ("user.*").
type Filter struct {
	From, To   time.Time // [From, To)
	ActorType  string
	ActorID    string
	Action     string
	ObjectType string
	ObjectID   string
	Category   string
	// Outcome matches details.outcome (authentication attempts).
	Outcome string
	IP      string
	// Cursor continues a previous page (its Next); empty starts at the newest.
	Cursor string
	// Limit is the page size: 1 to MaxPage (DefaultPage when 0).
	Limit int
}

// Page sizes of Search.
const (
	DefaultPage = 100
	MaxPage     = 1000
	maxFilter   = 256
)

// Page is one page of Search, newest first.
type Page struct {
	Events []Record `json:"events"`
	// Next is the cursor of the following (older) page; empty at the end.
	Next string `json:"next,omitempty"`
}

var outcomeRE = regexp.MustCompile(`^[a-z_]{1,32}$`)

// Used lists the names of the filters set (what a search records about
// itself: the names, never the values, which may be personal).
func (f Filter) Used() []string {
	var out []string
	for _, c := range []struct {
		name string
		set  bool
	}{{"from", !f.From.IsZero()}, {"to", !f.To.IsZero()}, {"actor_type", f.ActorType != ""}, {"actor_id", f.ActorID != ""},
		{"action", f.Action != ""}, {"object_type", f.ObjectType != ""}, {"object_id", f.ObjectID != ""}, {"category", f.Category != ""},
		{"outcome", f.Outcome != ""}, {"ip", f.IP != ""}, {"cursor", f.Cursor != ""}} {
		if c.set {
			out = append(out, c.name)
		}
	}
	return out
}

// Search returns a page of the log of tx's tenant that matches f, newest
// first. Bad filters are ErrInvalid.
func Search(ctx context.Context, tx *store.Tx, f Filter) (Page, error) {
	var page Page
	if err := SequenceLog(ctx, tx); err != nil {
		return page, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultPage
	}
	if f.Limit < 1 || f.Limit > MaxPage {
		return page, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalid, MaxPage)
	}
	var where strings.Builder
	args := []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&where, " AND "+cond, len(args)+1)
	}
	for _, s := range []struct {
		col, v string
	}{{"actor_type", f.ActorType}, {"actor_id", f.ActorID}, {"object_type", f.ObjectType}, {"object_id", f.ObjectID},
		{"category", f.Category}, {"ip", f.IP}} {
		if len(s.v) > maxFilter {
			return page, fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, s.col, maxFilter)
		}
		if s.v != "" {
			add(s.col+" = $%d", s.v)
		}
	}
	switch a := f.Action; {
	case len(a) > maxFilter:
		return page, fmt.Errorf("%w: action is longer than %d bytes", ErrInvalid, maxFilter)
	case strings.HasSuffix(a, "*"):
		esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.TrimSuffix(a, "*"))
		add(`action LIKE $%d ESCAPE '\'`, esc+"%")
	case a != "":
		add("action = $%d", a)
	}
	if f.Outcome != "" {
		if !outcomeRE.MatchString(f.Outcome) {
			return page, fmt.Errorf("%w: outcome must be a word such as success or failure", ErrInvalid)
		}
		if tx.Dialect() == store.Postgres {
			add(`(CASE WHEN details <> '' THEN details::jsonb ->> 'outcome' END) = $%d`, f.Outcome)
		} else {
			add(`(CASE WHEN json_valid(details) THEN json_extract(details, '$.outcome') END) = $%d`, f.Outcome)
		}
	}
	if !f.From.IsZero() {
		add("at >= $%d", store.Micros(f.From))
	}
	if !f.To.IsZero() {
		add("at < $%d", store.Micros(f.To))
	}
	if f.Cursor != "" {
		before, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || before < 1 {
			return page, fmt.Errorf("%w: the cursor is not one this API returned", ErrInvalid)
		}
		add("seq < $%d", before)
	}
	args = append(args, f.Limit+1)
	q := `SELECT ` + recordColumns + ` FROM audit_events WHERE tenant_id = $1` + where.String() +
		fmt.Sprintf(` ORDER BY seq DESC LIMIT $%d`, len(args)+1)
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return page, fmt.Errorf("audit: search: %w", err)
	}
	defer func() { _ = rows.Close() }()
	page.Events = []Record{}
	for rows.Next() {
		r, err := scanRecord(rows, tx.TenantID())
		if err != nil {
			return page, err
		}
		page.Events = append(page.Events, r)
	}
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("audit: search: %w", err)
	}
	if len(page.Events) > f.Limit {
		page.Events = page.Events[:f.Limit]
		page.Next = strconv.FormatInt(page.Events[f.Limit-1].Seq, 10)
	}
	return page, nil
}

// Search returns a page of a log (see Search) and records the read in the
// same log, in the same transaction (category access, action
// "audit.search", the names of the filters used, how many events
// returned): reading the audit trail is itself audited (LOG-2, LOG-7).
func (s *Service) Search(ctx context.Context, tenantID string, f Filter) (Page, error) {
	var page Page
	// Sequence in short transactions of its own first, so that the search's
	// transaction finds the queue empty and does not hold the log's head
	// (searches of one log would otherwise take turns on PostgreSQL).
	if _, err := Sequence(ctx, s.DB, tenantID); err != nil {
		return page, err
	}
	err := s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		if page, err = Search(ctx, tx, f); err != nil {
			return err
		}
		_, err = Append(ctx, tx, Event{Category: CategoryAccess, Action: "audit.search", ObjectType: "audit_log", ObjectID: tenantID,
			Details: map[string]any{"filters": f.Used(), "returned": len(page.Events)}})
		return err
	})
	return page, err
}

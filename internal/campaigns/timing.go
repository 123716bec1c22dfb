package campaigns

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LocalLayout is the form of a local schedule time: a wall-clock date and
// time without a zone, read in each contact's time zone.
const LocalLayout = "2006-01-02T15:04"

// maxZoneAhead is the largest offset ahead of UTC of any time zone
// (UTC+14, Line Islands): a local time happens there first.
const maxZoneAhead = 14 * time.Hour

// clock is a time of day in minutes since midnight.
type clock int

// parseClock reads "HH:MM" (24-hour).
func parseClock(s string) (clock, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not a time of day such as 21:00", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%q is not a time of day such as 21:00", s)
	}
	return clock(hh*60 + mm), nil
}

// quietHours is a daily window in a contact's local time during which no
// campaign message is due; start > end wraps midnight (21:00-08:00).
type quietHours struct {
	set        bool
	start, end clock
}

func newQuietHours(start, end string) (quietHours, error) {
	if start == "" && end == "" {
		return quietHours{}, nil
	}
	s, err := parseClock(start)
	if err != nil {
		return quietHours{}, err
	}
	e, err := parseClock(end)
	if err != nil {
		return quietHours{}, err
	}
	if s == e {
		return quietHours{}, fmt.Errorf("quiet hours start and end are equal (%s)", start)
	}
	return quietHours{set: true, start: s, end: e}, nil
}

// apply returns t, or the end of the quiet window t falls in, read in loc.
func (q quietHours) apply(t time.Time, loc *time.Location) time.Time {
	if !q.set {
		return t
	}
	l := t.In(loc)
	m := clock(l.Hour()*60 + l.Minute())
	endOn := func(day time.Time) time.Time {
		y, mo, d := day.Date()
		return time.Date(y, mo, d, int(q.end)/60, int(q.end)%60, 0, 0, loc)
	}
	if q.start < q.end {
		if m >= q.start && m < q.end {
			return endOn(l)
		}
		return t
	}
	// The window wraps midnight: [start, 24:00) and [00:00, end).
	switch {
	case m >= q.start:
		return endOn(l.AddDate(0, 0, 1))
	case m < q.end:
		return endOn(l)
	}
	return t
}

// throttle spreads due times at most rate messages per second: a message
// takes the first second at or after its due time that is not full, and
// within a second messages are spaced 1/rate apart. Seconds are counted
// from a map of what is already taken (rebuilt from the queue when an
// expansion resumes), with per-start hints so that many messages due at
// the same time do not rescan full seconds.
type throttle struct {
	rate  int
	taken map[int64]int
	hint  map[int64]int64
}

func newThrottle(rate int, taken map[int64]int) *throttle {
	if taken == nil {
		taken = map[int64]int{}
	}
	return &throttle{rate: rate, taken: taken, hint: map[int64]int64{}}
}

func (th *throttle) slot(t time.Time) time.Time {
	if th == nil || th.rate <= 0 {
		return t
	}
	base := t.Unix()
	s := base
	if h, ok := th.hint[base]; ok && h > s {
		s = h
	}
	for th.taken[s] >= th.rate {
		s++
	}
	th.hint[base] = s
	n := th.taken[s]
	th.taken[s] = n + 1
	at := time.Unix(s, 0).Add(time.Duration(n) * time.Second / time.Duration(th.rate))
	if s == base && at.Before(t) {
		// The first messages of the start second keep their exact time.
		return t
	}
	return at
}

// planner computes each message's due time: the schedule's time for the
// contact (one instant, or a wall time in the contact's zone), moved out
// of the tenant's quiet hours in the contact's zone, then spread by the
// throttle (and out of quiet hours again if the spreading pushed it in).
type planner struct {
	kind      string
	base      time.Time // now and at
	local     string    // local
	fallback  *time.Location
	quiet     quietHours
	throttle  *throttle
	locations map[string]*time.Location
}

func (p *planner) location(name string) *time.Location {
	if name == "" {
		return p.fallback
	}
	if l, ok := p.locations[name]; ok {
		return l
	}
	l, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		l = p.fallback
	}
	p.locations[name] = l
	return l
}

// due returns the due time of a message to a contact in time zone tz.
func (p *planner) due(tz string) time.Time {
	loc := p.location(tz)
	t := p.base
	if p.kind == KindLocal {
		// Validated when scheduled; a failure cannot happen here.
		if lt, err := time.ParseInLocation(LocalLayout, p.local, loc); err == nil {
			t = lt
		}
	}
	return p.place(t, loc)
}

// place moves t out of quiet hours and through the throttle.
func (p *planner) place(t time.Time, loc *time.Location) time.Time {
	t = p.quiet.apply(t, loc)
	for i := 0; i < 4; i++ {
		s := p.throttle.slot(t)
		q := p.quiet.apply(s, loc)
		if q.Equal(s) {
			return s
		}
		t = q
	}
	return t
}

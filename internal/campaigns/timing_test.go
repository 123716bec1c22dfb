package campaigns

import (
	"testing"
	"time"
)

func TestQuietHoursWindow(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	night, err := newQuietHours("21:00", "08:00")
	if err != nil {
		t.Fatal(err)
	}
	lunch, err := newQuietHours("12:00", "14:00")
	if err != nil {
		t.Fatal(err)
	}
	at := func(d, h, m int) time.Time { return time.Date(2031, 3, d, h, m, 0, 0, paris) }
	cases := []struct {
		q        quietHours
		in, want time.Time
	}{
		{night, at(10, 20, 59), at(10, 20, 59)},
		{night, at(10, 21, 0), at(11, 8, 0)},
		{night, at(10, 23, 30), at(11, 8, 0)},
		{night, at(11, 0, 10), at(11, 8, 0)},
		{night, at(11, 7, 59), at(11, 8, 0)},
		{night, at(11, 8, 0), at(11, 8, 0)},
		{lunch, at(11, 12, 30), at(11, 14, 0)},
		{lunch, at(11, 14, 0), at(11, 14, 0)},
		{quietHours{}, at(11, 23, 0), at(11, 23, 0)},
		// 2031-03-30 is the spring-forward night in Paris: 08:00 exists.
		{night, at(29, 22, 0), at(30, 8, 0)},
	}
	for _, c := range cases {
		if got := c.q.apply(c.in, paris); !got.Equal(c.want) {
			t.Errorf("%v %s -> %s, want %s", c.q, c.in, got, c.want)
		}
	}
	for _, bad := range [][2]string{{"21:00", ""}, {"24:00", "08:00"}, {"9:00", "10:00"}, {"10:00", "10:00"}} {
		if _, err := newQuietHours(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestThrottleSpreadsDueTimes(t *testing.T) {
	th := newThrottle(10, nil)
	start := time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC)
	perSecond := map[int64]int{}
	var last time.Time
	for i := 0; i < 95; i++ {
		d := th.slot(start)
		if d.Before(last) {
			t.Fatalf("due times go back: %s after %s", d, last)
		}
		last = d
		perSecond[d.Unix()]++
	}
	if len(perSecond) != 10 {
		t.Fatalf("95 messages at 10/s over %d seconds", len(perSecond))
	}
	for s, n := range perSecond {
		if n > 10 {
			t.Fatalf("second %d has %d messages", s, n)
		}
	}
	// A throttle rebuilt from what is queued continues after it.
	again := newThrottle(10, map[int64]int{start.Unix(): 10, start.Unix() + 1: 4})
	if d := again.slot(start); !d.Equal(start.Add(time.Second + 400*time.Millisecond)) {
		t.Fatalf("resumed throttle: %s", d)
	}
	// No throttle: unchanged.
	if d := (*throttle)(nil).slot(start); !d.Equal(start) {
		t.Fatal("nil throttle moved a due time")
	}
}

func TestPlannerKeepsThrottledMessagesOutOfQuietHours(t *testing.T) {
	q, _ := newQuietHours("21:00", "08:00")
	p := &planner{kind: KindNow, base: time.Date(2031, 1, 1, 20, 59, 59, 0, time.UTC), fallback: time.UTC, quiet: q,
		throttle: newThrottle(1, nil), locations: map[string]*time.Location{}}
	first, second := p.due(""), p.due("")
	if !first.Equal(p.base) {
		t.Fatalf("first: %s", first)
	}
	// The second message would be due at 21:00:00: moved to 08:00.
	if want := time.Date(2031, 1, 2, 8, 0, 0, 0, time.UTC); !second.Equal(want) {
		t.Fatalf("second: %s, want %s", second, want)
	}
}

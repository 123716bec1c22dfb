package contacts_test

import (
	"errors"
	"testing"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/contacts/filter"
)

// TestSegmentFilters: valid filters compile to SQL that counts the right
// contacts on both dialects; SQL injection attempts, unknown fields,
// personal attributes and type errors are refused with a positioned error
// or taken as plain values, and the tables are intact afterwards.
func TestSegmentFilters(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID,
			contacts.AttributeDef{Key: "country", Type: contacts.AttrString},
			contacts.AttributeDef{Key: "points", Type: contacts.AttrNumber},
			contacts.AttributeDef{Key: "vip", Type: contacts.AttrBool},
			contacts.AttributeDef{Key: "since", Type: contacts.AttrDate},
			contacts.AttributeDef{Key: "x", Type: contacts.AttrString},
			contacts.AttributeDef{Key: "birth_date", Type: contacts.AttrDate, Personal: true})
		l := must[contacts.List](t)(e.svc.CreateList(bg, e.a.ID, "L", ""))
		type spec struct {
			attrs   map[string]any
			consent contacts.ConsentStatus
			sms     bool
			status  contacts.Status
			inList  bool
			day     int // created on 2026-03-(10+day)
		}
		specs := []spec{
			{attrs: map[string]any{"country": "FR", "points": 10.0, "vip": true, "since": "2020-01-01"}, consent: contacts.ConsentGranted, inList: true},
			{attrs: map[string]any{"country": "BE", "points": 200.5}, consent: contacts.ConsentGranted, sms: true, day: 1},
			{attrs: map[string]any{"country": "DE", "points": 99.0, "vip": false}, consent: contacts.ConsentWithdrawn, day: 2, inList: true},
			{attrs: map[string]any{"country": "FR"}, status: contacts.StatusUnsubscribed, day: 3},
			{attrs: map[string]any{"x": "'; DROP TABLE contacts; --"}, day: 4},
			{attrs: map[string]any{}, consent: contacts.ConsentPending, day: 5},
		}
		base := e.clk.Now()
		for i, s := range specs {
			e.clk.Add(-e.clk.Now().Sub(base.AddDate(0, 0, s.day)))
			nc := contacts.NewContact{Email: "s" + string(rune('a'+i)) + "@example.com", Attributes: s.attrs}
			if s.sms {
				nc.Phone = "+3361111111" + string(rune('0'+i))
			}
			c := e.create(t, e.a.ID, nc)
			if s.consent != "" {
				var err error
				switch s.consent {
				case contacts.ConsentGranted:
					_, err = e.svc.Grant(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail})
				case contacts.ConsentWithdrawn:
					_, err = e.svc.Withdraw(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail})
				case contacts.ConsentPending:
					_, _, err = e.svc.SetPending(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if s.status != "" {
				if _, err := e.svc.Update(bg, e.a.ID, c.ID, contacts.Patch{Status: &s.status}); err != nil {
					t.Fatal(err)
				}
			}
			if s.inList {
				must[int](t)(e.svc.AddToList(bg, e.a.ID, l.ID, c.ID))
			}
		}
		e.clk.Add(-e.clk.Now().Sub(base))
		// A contact of the other tenant that would match everything.
		e.define(t, e.b.ID, contacts.AttributeDef{Key: "country", Type: contacts.AttrString})
		e.create(t, e.b.ID, contacts.NewContact{Email: "other@example.com", Attributes: map[string]any{"country": "FR"}})

		counts := map[string]int64{
			`status = "active"`:                                6 - 1,
			`status != "active"`:                               1,
			`status IN ("active", "unsubscribed")`:             6,
			`consent.email = "granted"`:                        2,
			`consent.email.marketing = "granted"`:              2,
			`consent.email != "granted"`:                       4,
			`consent.email IN ("withdrawn", "pending")`:        2,
			`consent.sms = "granted"`:                          0,
			`attr.country = "FR"`:                              2,
			`attr.country != "FR"`:                             4,
			`attr.country IN ("FR","BE")`:                      3,
			`attr.country NOT IN ("FR","BE")`:                  3,
			`attr.points > 50`:                                 2,
			`attr.points >= 10 AND attr.points < 100`:          2,
			`attr.points <= 200.5`:                             3,
			`attr.points = -1`:                                 0,
			`attr.vip = true`:                                  1,
			`attr.vip != true`:                                 5,
			`attr.vip = false`:                                 1,
			`attr.since < 2021-01-01`:                          1,
			`created_at > 2026-03-11`:                          4,
			`created_at >= 2026-03-11`:                         5,
			`created_at = 2026-03-12`:                          1,
			`created_at < 2026-03-12T00:00:00Z`:                2,
			`created_at IN (2026-03-10, 2026-03-15)`:           2,
			`has_phone = true`:                                 1,
			`has_email = false`:                                0,
			`list = "` + l.ID + `"`:                            2,
			`list != "` + l.ID + `"`:                           4,
			`NOT (attr.country = "FR" OR attr.country = "BE")`: 3,
			`status = "active" AND consent.email = "granted" AND attr.country IN ("FR","BE") AND created_at > 2026-01-01`: 2,
			`(status = "active" or status = "bounced") and not attr.vip = true`:                                           4,
			// Injection attempts inside values are plain values.
			`attr.x = "'; DROP TABLE contacts; --"`:   1,
			`attr.country = "FR' OR '1'='1"`:          0,
			`attr.country = "FR\" OR \"1\"=\"1"`:      0,
			`locale = "$1"`:                           0,
			`attr.country = "x\\"`:                    0,
			`list IN ("a", "b') OR 1=1 --", "$2::x")`: 0,
		}
		for f, want := range counts {
			got, err := e.svc.CountFilter(bg, e.a.ID, f)
			if err != nil || got != want {
				t.Errorf("%s: got %d, %v; want %d", f, got, err, want)
			}
		}
		refused := map[string]string{
			`status = "x" OR 1=1 --`:                    "expected a field name",
			`status = "x"`:                              "status is one of",
			`status = "active" OR 1=1 --`:               "expected a field name",
			`status = "active"; DROP TABLE lists`:       "unexpected character",
			`email = "a@example.com"`:                   "unknown field",
			`attr.birth_date < 2000-01-01`:              "personal data",
			`attr.shoe = "1"`:                           "unknown attribute",
			`attr.country = 1`:                          "is a string",
			`attr.points = "1"`:                         "is a number",
			`attr.vip > true`:                           "use = or !=",
			`attr.country = 'FR'`:                       "double quotes",
			`consent.fax = "granted"`:                   "consent fields",
			`consent.email = "yes"`:                     "is one of",
			`created_at > "yesterday"`:                  "date",
			`created_at > 2026-13-45`:                   "not a valid date",
			`status = "active" AND`:                     "expected a field name",
			`(status = "active"`:                        "expected )",
			`status`:                                    "expected an operator",
			``:                                          "empty",
			`attr.country IN ()`:                        "expected a value",
			`attr.x = "unterminated`:                    "not closed",
			`status = "active" /* comment */`:           "unexpected character",
			`status == "active"`:                        "expected a value",
			`attr.country = "FR" UNION SELECT 1`:        "unexpected",
			`c.tenant_id = "x"`:                         "unknown field",
			`attr.Country = "FR"`:                       "not an attribute key",
			`has_email = "true"`:                        "true or false",
			`list > "a"`:                                "takes =",
			"status = \"active\" OR status = \"x\x00\"": "control character",
		}
		for f, want := range refused {
			err := e.svc.ValidateFilter(bg, e.a.ID, f)
			var fe *filter.Error
			if !errors.As(err, &fe) || !contains(err.Error(), want) {
				t.Errorf("%q: got %v, want a filter error ~%q", f, err, want)
			}
			if f == "" {
				continue // counting with no filter counts everything
			}
			if _, err := e.svc.CountFilter(bg, e.a.ID, f); !errors.As(err, &fe) {
				t.Errorf("%q: count gave %v", f, err)
			}
		}
		// The tables are intact and the counts unchanged.
		if n := e.count(t, e.a.ID); n != 6 {
			t.Fatalf("%d contacts after the attempts", n)
		}
		if n := must[int64](t)(e.svc.CountList(bg, e.a.ID, l.ID)); n != 2 {
			t.Fatalf("list count %d", n)
		}

		// Saved segments: validated when saved, counted, listed.
		seg := must[contacts.Segment](t)(e.svc.CreateSegment(bg, e.a.ID, "French VIPs", "", `attr.country = "FR" AND attr.vip = true`))
		if n := must[int64](t)(e.svc.CountSegment(bg, e.a.ID, seg.ID)); n != 1 {
			t.Fatalf("segment count %d", n)
		}
		p := must[contacts.Page](t)(e.svc.List(bg, e.a.ID, contacts.ListOptions{SegmentID: seg.ID}))
		if len(p.Contacts) != 1 || p.Contacts[0].Email != "sa@example.com" {
			t.Fatalf("segment list %+v", p)
		}
		_, err := e.svc.CreateSegment(bg, e.a.ID, "Bad", "", `attr.birth_date > 2000-01-01`)
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Fatalf("personal attribute segment: %v", err)
		}
		_, err = e.svc.UpdateSegment(bg, e.a.ID, seg.ID, nil, nil, ptr(`status = "x" OR 1=1`))
		if !errors.As(err, &fe) {
			t.Fatalf("bad filter update: %v", err)
		}
		// A segment is another tenant's nothing.
		_, err = e.svc.CountSegment(bg, e.b.ID, seg.ID)
		wantErr(t, err, contacts.ErrNotFound)
		if n := must[int64](t)(e.svc.CountFilter(bg, e.b.ID, `attr.country = "FR"`)); n != 1 {
			t.Fatalf("tenant b count %d", n)
		}
	})
}

package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestRetentionPurgeKeepsTheLogVerifiable: access events expire after 183
// days, others after 365 (the policy defaults); a purge removes their
// bodies only, writes a report (what, how many, which range), and
// afterwards verification passes, a checkpoint signed before the purge is
// still consistent with the tree, and an export of purged events verifies
// offline. A body removed outside a purge, or a retention below the
// minimum, is refused.
func TestRetentionPurgeKeepsTheLogVerifiable(t *testing.T) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk.Set(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
		s := service(t, db)
		ret := audit.RetentionFrom(config.DefaultPolicy().Audit)
		newTenant(t, db, "acme")
		appendCat(t, db, "acme", audit.CategoryAccess, 3) // 1-3
		appendCat(t, db, "acme", audit.CategoryChange, 2) // 4-5
		appendCat(t, db, "acme", audit.CategoryAccess, 2) // 6-7
		old := checkpoint(t, s, "acme")                   // 8: the key event
		clk.Add(days(200))
		appendCat(t, db, "acme", audit.CategoryAccess, 1) // 9: recent

		dry, err := s.Purge(ctx, "acme", ret, true)
		if err != nil || dry.Total != 5 || len(dry.Categories) != 1 || dry.ReportSeq != 0 {
			t.Fatalf("dry run: %+v %v", dry, err)
		}
		if recs := admList(t, db, "acme"); len(recs) != 9 || recs[0].PurgedAt != nil {
			t.Fatalf("the dry run changed the log")
		}
		rep, err := s.Purge(ctx, "acme", ret, false)
		if err != nil {
			t.Fatal(err)
		}
		pc := rep.Categories
		if rep.Total != 5 || len(pc) != 1 || pc[0].Category != "access" || pc[0].Count != 5 || pc[0].FirstSeq != 1 || pc[0].LastSeq != 7 || pc[0].Ranges != 2 ||
			rep.ReportSeq != 10 || rep.Checkpoint != 10 || rep.UptoSeq != 9 {
			t.Fatalf("purge report: %+v", rep)
		}
		recs := admList(t, db, "acme")
		for _, r := range recs[:7] {
			purged := r.Category == audit.CategoryAccess
			if (r.PurgedAt != nil) != purged || purged && (r.ActorID != "" || r.IP != "" || r.Action != "" || len(r.Details) != 0 || r.LeafHash == nil) {
				t.Fatalf("event %d after the purge: %+v", r.Seq, r)
			}
		}
		if r := recs[9]; r.Action != audit.ActionPurge || !strings.Contains(string(r.Details), `"first_seq":1`) || !strings.Contains(string(r.Details), `"last_seq":7`) {
			t.Fatalf("report event: %+v %s", r, r.Details)
		}
		v := fullVerify(t, s, "acme")
		if !v.OK || v.Purged != 5 || v.Checkpoints != 3 { // 8 (old), 9 (before the purge), 10 (its report)
			t.Fatalf("verify after the purge: %+v", v)
		}
		inTx(t, db, "acme", func(tx *store.Tx) error {
			p, err := audit.ProveConsistency(ctx, tx, old.Size, 10)
			if err != nil {
				return err
			}
			if p.OldRoot != old.Root {
				t.Errorf("the old checkpoint's root changed")
			}
			if err := p.Check(); err != nil {
				t.Errorf("the old checkpoint is not consistent with the tree after the purge: %v", err)
			}
			return nil
		})
		// Later, the change events expire too; purge reports never do.
		clk.Add(days(200))
		rep, err = s.Purge(ctx, "acme", ret, false)
		if err != nil || rep.Total != 4 { // 4, 5, 8 (key) and 9 (access)
			t.Fatalf("second purge: %+v %v", rep, err)
		}
		if v := fullVerify(t, s, "acme"); !v.OK || v.Purged != 9 {
			t.Fatalf("verify after the second purge: %+v", v)
		}
		// An export of the purged range verifies offline.
		var buf bytes.Buffer
		vk, _ := s.PublicKey(ctx, "acme")
		if _, err := s.Export(ctx, "acme", audit.ExportRequest{}, &buf); err != nil {
			t.Fatal(err)
		}
		if er, err := audit.VerifyExport(&buf, vk); err != nil || er.Purged != 9 {
			t.Fatalf("export after purge: %+v %v", er, err)
		}

		// A body removed outside a purge is reported.
		appendCat(t, db, "acme", audit.CategoryChange, 1)
		last := int64(len(admList(t, db, "acme")))
		tamper(t, db, "acme", `UPDATE audit_events SET action = '', actor_id = '', ip = '', details = '', purged_at = 1 WHERE tenant_id = $1 AND seq = $2`, last)
		if v := fullVerify(t, s, "acme"); v.OK || v.Problem.Seq != last || !strings.Contains(v.Problem.Reason, "no later purge report covers it") {
			t.Fatalf("a body removed outside retention: %+v", v.Problem)
		}
		// A retention below the minimum is refused.
		if _, err := s.Purge(ctx, "acme", audit.Retention{Default: time.Hour}, true); err == nil || !strings.Contains(err.Error(), "below the minimum") {
			t.Fatalf("short retention: %v", err)
		}
	})
}

// exportFixture makes a log of 12 events over 12 days and an export of
// days 3 to 8, and returns the export, the log's key and another's.
func exportFixture(t *testing.T, db *store.DB, clk *clock) (*audit.Service, []byte, string, string) {
	t.Helper()
	ctx := context.Background()
	s := service(t, db)
	newTenant(t, db, "acme")
	newTenant(t, db, "beta")
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	clk.Set(start)
	vk, err := s.PublicKey(ctx, "acme") // event 1
	if err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= 11; d++ {
		clk.Set(start.Add(days(d)))
		appendN(t, db, "acme", 1) // event d+1 on day d
	}
	bk, err := s.PublicKey(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum, err := s.Export(ctx, "acme", audit.ExportRequest{From: start.Add(days(3)), To: start.Add(days(9))}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if sum.FirstSeq != 4 || sum.LastSeq != 9 || sum.Events != 6 || sum.ExportSeq != 13 || sum.TreeSize != 13 {
		t.Fatalf("export summary: %+v", sum)
	}
	return s, buf.Bytes(), vk, bk
}

// TestExportVerifiesOffline: an exported period verifies with only the
// public key; the export is itself an audit event, covered by the
// checkpoint; the whole log and an empty period export too.
func TestExportVerifiesOffline(t *testing.T) {
	clk := newClock()
	storetest.RunWith(t, storetest.Options{Now: clk.Now}, func(t *testing.T, db *store.DB) {
		s, exp, vk, _ := exportFixture(t, db, clk)
		rep, err := audit.VerifyExport(bytes.NewReader(exp), vk)
		if err != nil {
			t.Fatal(err)
		}
		if rep.FirstSeq != 4 || rep.LastSeq != 9 || rep.Events != 6 || rep.TreeSize != 13 || rep.TenantID != "acme" {
			t.Fatalf("report: %+v", rep)
		}
		lines := strings.Split(strings.TrimSpace(string(exp)), "\n")
		if len(lines) != 9 || !strings.Contains(lines[0], `"type":"header"`) || !strings.Contains(lines[8], `"type":"checkpoint"`) {
			t.Fatalf("export lines: %d\n%s", len(lines), exp)
		}
		recs := admList(t, db, "acme")
		if e := recs[12]; e.Category != audit.CategoryExport || e.Action != audit.ActionExport || !strings.Contains(string(e.Details), `"first_seq":4`) {
			t.Fatalf("export event: %+v", e)
		}
		ctx := context.Background()
		for _, req := range []audit.ExportRequest{{}, {From: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}} {
			var buf bytes.Buffer
			sum, err := s.Export(ctx, "acme", req, &buf)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := audit.VerifyExport(&buf, vk)
			if err != nil || rep.Events != sum.Events {
				t.Fatalf("export %+v: %+v %v", req, rep, err)
			}
		}
		if _, err := s.Export(ctx, "acme", audit.ExportRequest{From: time.Now(), To: time.Now().Add(-time.Hour)}, &bytes.Buffer{}); !errors.Is(err, audit.ErrInvalid) {
			t.Fatalf("to before from: %v", err)
		}
		if rep := fullVerify(t, s, "acme"); !rep.OK || rep.Checkpoints != 3 {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

// TestTamperedExportsFail: each alteration of an export, and a wrong key,
// is reported precisely.
func TestTamperedExportsFail(t *testing.T) {
	clk := newClock()
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	_, exp, vk, bk := exportFixture(t, db, clk)
	lines := strings.Split(strings.TrimSuffix(string(exp), "\n"), "\n")
	join := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	edit := func(i int, f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		out := append([]string(nil), lines...)
		out[i] = string(b)
		return join(out...)
	}
	// An event forged with a leaf hash that matches its forged content.
	forged := edit(3, func(m map[string]any) {
		at, _ := time.Parse(time.RFC3339Nano, m["at"].(string))
		r := audit.Record{TenantID: "acme", Seq: 6, At: at, Category: m["category"].(string), Action: "contact.delete",
			ActorType: m["actor_type"].(string), ActorID: m["actor_id"].(string), ObjectType: m["object_type"].(string), ObjectID: m["object_id"].(string),
			IP: m["ip"].(string), UserAgent: m["user_agent"].(string), RequestID: m["request_id"].(string)}
		d, _ := json.Marshal(m["details"])
		r.Details = d
		body, leaf := audit.LeafOf(r)
		m["action"], m["body_hash"], m["leaf_hash"] = "contact.delete", body, leaf
	})
	otherCheckpoint := func() string {
		// beta's signed checkpoint in place of acme's.
		var m map[string]any
		_ = json.Unmarshal([]byte(lines[8]), &m)
		note := m["note"].(string)
		i := strings.LastIndex(note, " ")
		m["note"] = note[:i+10] + "AAAA" + note[i+14:]
		b, _ := json.Marshal(m)
		return string(b)
	}()
	cases := []struct {
		name, file, key, want string
	}{
		{"a changed byte", strings.Replace(string(exp), `"192.0.2.7"`, `"192.0.2.8"`, 1), vk, "line 2: event 4 was altered"},
		{"a forged event with its own leaf", forged, vk, "are not in the signed tree"},
		{"an event removed", join(append(append([]string{}, lines[:3]...), lines[4:]...)...), vk, "line 4: event 6 is missing (event 7 follows event 5)"},
		{"two events reordered", join(append(append([]string{}, lines[:3]...), lines[4], lines[3], lines[5], lines[6], lines[7], lines[8])...), vk, "line 4: event 6 is missing (event 7 follows event 5): events were removed or reordered"},
		{"an event duplicated", join(append(append([]string{}, lines[:4]...), lines[3:]...)...), vk, "line 5: event 6 comes after event 6: events were reordered or duplicated"},
		{"an event added", edit(1, func(m map[string]any) { m["seq"] = 3 }), vk, "line 2: event 3 is outside the range"},
		{"truncated in the events", join(lines[:4]...), vk, "truncated: it ends after event 6"},
		{"truncated before the checkpoint", join(lines[:8]...), vk, "truncated: it has no checkpoint"},
		{"cut in the middle of a line", string(exp[:len(exp)-40]), vk, "not a valid export line"},
		{"a forged checkpoint signature", join(append(append([]string{}, lines[:8]...), otherCheckpoint)...), vk, "does not verify: the checkpoint was forged"},
		{"a header for another tenant", edit(0, func(m map[string]any) { m["tenant_id"], m["origin"] = "beta", "relais-audit/beta" }), vk, "wrong key"},
		{"the wrong key", string(exp), bk, "the public key is for relais-audit/beta: wrong key"},
		{"a key that is not one", string(exp), "not a key", "not a note verifier key"},
		{"altered left hashes", edit(0, func(m map[string]any) { m["left"].([]any)[0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }), vk, "are not in the signed tree"},
		{"extra content", string(exp) + "{}\n", vk, "after the checkpoint"},
		{"empty", "", vk, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.VerifyExport(strings.NewReader(tc.file), tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// The same key from another Relais (same name, other key) is wrong too.
	s2 := service(t, storetest.OpenSQLite(t, storetest.Options{}))
	newTenant(t, s2.DB, "acme")
	other, err := s2.PublicKey(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(exp), other); err == nil || !strings.Contains(err.Error(), "not signed by key relais-audit/acme+") {
		t.Fatalf("another installation's key: %v", err)
	}
}

// TestSearchFiltersPagesAndIsAudited: filters, newest-first cursor pages,
// bad filters refused, and each search recorded in the log (names of the
// filters, not their values).
func TestSearchFiltersPagesAndIsAudited(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "acme")
		appendCat(t, db, "acme", audit.CategoryAccess, 3)
		appendN(t, db, "acme", 4)
		ctx2 := audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u-2"}, IP: "198.51.100.1"})
		inTx(t, db, "acme", func(tx *store.Tx) error {
			_, err := audit.Append(ctx2, tx, audit.Event{Category: audit.CategoryAuth, Action: "auth.login", Details: map[string]any{"outcome": "failure"}})
			return err
		})
		check := func(f audit.Filter, want ...int64) audit.Page {
			t.Helper()
			p, err := s.Search(ctx, "acme", f)
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			var got []int64
			for _, r := range p.Events {
				got = append(got, r.Seq)
			}
			if len(got) != len(want) || (len(got) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1])) {
				t.Fatalf("%+v: got %v, want %v", f, got, want)
			}
			return p
		}
		check(audit.Filter{Category: audit.CategoryAccess, ActorID: "u-1"}, 3, 2, 1)
		check(audit.Filter{Action: "contact.*"}, 7, 6, 5, 4)
		check(audit.Filter{Outcome: "failure"}, 8)
		check(audit.Filter{Outcome: "success", Category: audit.CategoryAccess}, 3, 2, 1)
		check(audit.Filter{IP: "198.51.100.1"}, 8)
		check(audit.Filter{ObjectType: "contact", ObjectID: "3"}, 7)
		check(audit.Filter{From: time.Now().Add(time.Hour)})
		p := check(audit.Filter{Limit: 3, Category: audit.CategoryChange}, 7, 6, 5)
		p = check(audit.Filter{Limit: 3, Category: audit.CategoryChange, Cursor: p.Next}, 4)
		if p.Next != "" {
			t.Fatalf("last page has a cursor: %q", p.Next)
		}
		for _, f := range []audit.Filter{{Limit: 5000}, {Cursor: "abc"}, {Outcome: "x' OR 1=1"}, {IP: strings.Repeat("1", 300)}} {
			if _, err := s.Search(ctx, "acme", f); !errors.Is(err, audit.ErrInvalid) {
				t.Errorf("%+v: %v", f, err)
			}
		}
		var searches []audit.Record
		for _, r := range admList(t, db, "acme") {
			if r.Action == "audit.search" {
				searches = append(searches, r)
			}
		}
		if len(searches) != 9 || searches[0].Category != audit.CategoryAccess || !strings.Contains(string(searches[0].Details), `"filters":["actor_id","category"]`) ||
			strings.Contains(string(searches[4].Details), "198.51.100.1") {
			t.Fatalf("searches recorded: %d %s %s", len(searches), searches[0].Details, searches[4].Details)
		}
		if rep := fullVerify(t, s, "acme"); !rep.OK {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

package contacts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
)

// person is one synthetic line of a test file, with distinctive values
// that cannot appear by chance in the store.
type person struct{ email, phone, first, last string }

func people(n int, tag string) []person {
	out := make([]person, n)
	for i := range out {
		out[i] = person{
			email: fmt.Sprintf("zq%s.person%05d@plaintext-probe.example", tag, i),
			phone: fmt.Sprintf("+3361%07d", 1000000+i),
			first: fmt.Sprintf("Zephyrine%s%05d", tag, i),
			last:  fmt.Sprintf("Quillfeather%s%05d", tag, i),
		}
	}
	return out
}

func csvOf(ps []person, extra string) []byte {
	var b bytes.Buffer
	b.WriteString("email,phone,first_name,last_name" + extra + "\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "%s,%s,%s,%s\n", p.email, p.phone, p.first, p.last)
	}
	return b.Bytes()
}

func (e *env) importBytes(t *testing.T, tenant string, data []byte, o contacts.ImportOptions) (contacts.ImportJob, error) {
	t.Helper()
	return e.svc.Import(bg, tenant, bytes.NewReader(data), o)
}

func (e *env) errorsOf(t *testing.T, tenant, job string) map[int64]contacts.ImportError {
	t.Helper()
	out := map[int64]contacts.ImportError{}
	for _, ie := range must[[]contacts.ImportError](t)(e.svc.ImportErrors(bg, tenant, job, 0, 1000)) {
		out[ie.Line] = ie
	}
	return out
}

// rawValues reads every column of every table of the store as bytes, from
// the catalogue (sqlite_master or information_schema), as the platform
// (all tenants, RLS admitting everything).
func rawValues(t *testing.T, db *store.DB) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	// Queued audit events hold what their events will (audit_events.ip).
	if _, err := audit.SequenceAll(bg, db); err != nil {
		t.Fatal(err)
	}
	err := db.Platform(bg, func(p *store.PlatformTx) error {
		q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
		if p.Dialect() == store.Postgres {
			q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
		}
		rows, err := p.Query(bg, q)
		if err != nil {
			return err
		}
		var tables []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			tables = append(tables, n)
		}
		_ = rows.Close()
		if len(tables) < 20 {
			return fmt.Errorf("only %d tables found", len(tables))
		}
		for _, tbl := range tables {
			rs, err := p.Query(bg, `SELECT * FROM `+tbl)
			if err != nil {
				return fmt.Errorf("%s: %w", tbl, err)
			}
			cols, _ := rs.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rs.Next() {
				if err := rs.Scan(ptrs...); err != nil {
					_ = rs.Close()
					return err
				}
				for i, v := range vals {
					var b []byte
					switch x := v.(type) {
					case nil:
						continue
					case []byte:
						b = append([]byte(nil), x...)
					case string:
						b = []byte(x)
					default:
						b = []byte(fmt.Sprint(x))
					}
					key := tbl + "." + cols[i]
					out[key] = append(out[key], b)
				}
			}
			err = rs.Err()
			_ = rs.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoPersonalFieldReadableInRawStore: after an import (with a personal
// attribute and consent), an API create and a consent with an IP, no
// column of any table, read raw, holds an email, phone number, name,
// personal attribute or IP address in clear.
func TestNoPersonalFieldReadableInRawStore(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "card", Type: contacts.AttrString, Personal: true},
			contacts.AttributeDef{Key: "country", Type: contacts.AttrString})
		ps := people(60, "raw")
		var b bytes.Buffer
		b.WriteString("email;phone;first_name;last_name;card;country\r\n")
		for i, p := range ps {
			fmt.Fprintf(&b, "%s;%s;%s;%s;CARD-SECRET-%05d;FR\r\n", p.email, strings.ReplaceAll(p.phone, "+33", "+33 "), p.first, p.last, i)
		}
		b.WriteString("not-an-email-zqraw;+33;Zephyrinebad;Quillfeatherbad;x;FR\r\n") // a failed line: its reason is stored, not its values
		job, err := e.importBytes(t, e.a.ID, b.Bytes(), contacts.ImportOptions{BatchSize: 25,
			Consents: []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Wording: "Newsletter opt-in", WordingVersion: "w1"}}})
		if err != nil || job.Created != 60 || job.Failed != 1 {
			t.Fatalf("import: %+v %v", job, err)
		}
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "zqapi.person@plaintext-probe.example", FirstName: "Zephyrineapi", Phone: "+447911123456"})
		if _, err := e.svc.Grant(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelSMS, SourceIP: "203.0.113.99"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Export(bg, e.a.ID, &bytes.Buffer{}, contacts.ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		probes := []string{"zqapi.person", "Zephyrineapi", "447911123456", "7911123456", "203.0.113.99", "CARD-SECRET", "Zephyrinebad", "Quillfeatherbad", "not-an-email-zqraw"}
		for _, p := range ps {
			probes = append(probes, p.email, p.first, p.last, p.phone, strings.TrimPrefix(p.phone, "+"), p.phone[3:])
		}
		raw := rawValues(t, e.db)
		checked := 0
		for col, vals := range raw {
			for _, v := range vals {
				checked++
				lower := bytes.ToLower(v)
				for _, probe := range probes {
					if bytes.Contains(lower, bytes.ToLower([]byte(probe))) {
						t.Fatalf("%s holds %q in clear", col, probe)
					}
				}
			}
		}
		if checked < 1000 || len(raw["contacts.email_enc"]) != 61 {
			t.Fatalf("scanned only %d values (%d sealed emails)", checked, len(raw["contacts.email_enc"]))
		}
		// The values are there, sealed: the service reads them back.
		got := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, ps[7].email))
		if got.FirstName != ps[7].first || got.Attributes["card"] != "CARD-SECRET-00007" || got.Phone != ps[7].phone {
			t.Fatalf("round trip %+v", got)
		}
	})
}

// TestInterruptedImportResumes: an import cancelled after two batches, and
// one whose process dies (a panic) after two batches, are resumed by
// running the same file again: exactly one contact per line, and the job's
// counts add up.
func TestInterruptedImportResumes(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people(2300, "int")
		data := csvOf(ps, "")
		ctx, cancel := context.WithCancel(bg)
		batches := 0
		job, err := e.svc.Import(ctx, e.a.ID, bytes.NewReader(data), contacts.ImportOptions{BatchSize: 500, Progress: func(p contacts.ImportProgress) {
			batches++
			if batches == 2 {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) || job.Status != contacts.JobInterrupted || job.LastLine != 1001 || job.Processed != 1000 {
			t.Fatalf("cancelled import: %+v %v", job, err)
		}
		if n := e.count(t, e.a.ID); n != 1000 {
			t.Fatalf("%d contacts after 2 batches", n)
		}
		stored := must[contacts.ImportJob](t)(e.svc.GetImportJob(bg, e.a.ID, job.ID))
		if stored.Status != contacts.JobInterrupted || stored.Created != 1000 || stored.LastLine != 1001 {
			t.Fatalf("stored job %+v", stored)
		}
		var lines []int64
		again, err := e.importBytes(t, e.a.ID, data, contacts.ImportOptions{BatchSize: 500, Progress: func(p contacts.ImportProgress) {
			lines = append(lines, p.Line)
		}})
		if err != nil || again.ID != job.ID || again.Status != contacts.JobCompleted || again.Processed != 2300 || again.Created != 2300 ||
			again.Updated != 0 || again.LastLine != 2301 || len(lines) != 3 || lines[0] != 1501 {
			t.Fatalf("resumed: %+v %v, batches at lines %v", again, err, lines)
		}
		if n := e.count(t, e.a.ID); n != 2300 {
			t.Fatalf("%d contacts after resume", n)
		}
		// A completed job is not run again by its id; a new run of the
		// file is a new job that updates, and still one row per contact.
		same := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, data, contacts.ImportOptions{JobID: job.ID}))
		if same.Status != contacts.JobCompleted || same.Processed != 2300 {
			t.Fatalf("completed job re-run: %+v", same)
		}
		rerun := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, data, contacts.ImportOptions{}))
		if rerun.ID == job.ID || rerun.Updated != 2300 || rerun.Created != 0 || e.count(t, e.a.ID) != 2300 {
			t.Fatalf("re-run: %+v, %d contacts", rerun, e.count(t, e.a.ID))
		}
		// Another file's job cannot be resumed with this one.
		_, err = e.importBytes(t, e.a.ID, csvOf(ps[:10], ""), contacts.ImportOptions{JobID: job.ID})
		wantErr(t, err, contacts.ErrFileChanged)

		// A process that dies: the job stays "running"; a run within the
		// lease does not take it over, one after the lease resumes it.
		ps2 := people(1200, "die")
		data2 := csvOf(ps2, "")
		n := 0
		func() {
			defer func() { _ = recover() }()
			_, _ = e.importBytes(t, e.b.ID, data2, contacts.ImportOptions{BatchSize: 400, Progress: func(contacts.ImportProgress) {
				if n++; n == 2 {
					panic("killed")
				}
			}})
		}()
		jobs := must[[]contacts.ImportJob](t)(e.svc.ImportJobs(bg, e.b.ID))
		if len(jobs) != 1 || jobs[0].Status != contacts.JobRunning || jobs[0].LastLine != 801 || e.count(t, e.b.ID) != 800 {
			t.Fatalf("after the crash: %+v, %d contacts", jobs, e.count(t, e.b.ID))
		}
		_, err = e.importBytes(t, e.b.ID, data2, contacts.ImportOptions{JobID: jobs[0].ID})
		wantErr(t, err, contacts.ErrConflict)
		e.clk.Add(2 * time.Minute)
		resumed := must[contacts.ImportJob](t)(e.importBytes(t, e.b.ID, data2, contacts.ImportOptions{BatchSize: 400}))
		if resumed.ID != jobs[0].ID || resumed.Processed != 1200 || resumed.Created != 1200 || e.count(t, e.b.ID) != 1200 {
			t.Fatalf("resumed after crash: %+v, %d contacts", resumed, e.count(t, e.b.ID))
		}
	})
}

// TestImportCSVEdgeCases: BOM, ";" separators, CRLF, quoted fields with
// separators and line breaks, broken quoting, wrong field counts, invalid
// UTF-8, over-long lines, duplicate rows, blank lines: each bad line is
// reported (line, column, reason) and skipped, the good ones imported.
func TestImportCSVEdgeCases(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "points", Type: contacts.AttrNumber})
		long := strings.Repeat("x", contacts.MaxRecordBytes+10)
		data := "\xEF\xBB\xBFEmail;Mobile;First Name;Last Name;points\r\n" + // 1
			"a1@example.com;+33 6 00 00 00 01;Ann;\"Smith; Jr\";3\r\n" + // 2
			"\r\n" + // 3 blank
			"a2@example.com;;\"Multi\r\nLine\";Doe;\r\n" + // 4-5: a line break in a name
			"a3@example.com;;Bad\"Quote;Doe;1\r\n" + // 6: bare quote
			"a4@example.com;;\"Unclosed\"x;Doe;1\r\n" + // 7: text after a closing quote
			"a5@example.com;;Too;Many;1;fields\r\n" + // 8
			"a6@example.com;;Inv\xffalid;Doe;1\r\n" + // 9: invalid UTF-8
			"a7@example.com;;" + long + ";Doe;1\r\n" + // 10: too long
			"a8@example.com;;Eve;Doe;lots\r\n" + // 11: not a number
			"not-an-email;;Eve;Doe;1\r\n" + // 12
			"A1@Example.com;;Annie;;4\r\n" + // 13: duplicate of line 2 (upsert: update)
			"a9@example.com;0612345678;Nat;Ional;1\r\n" + // 14: national phone, no default code
			"a10@example.com;;Last;Line;2" // 15: no final newline
		job, err := e.importBytes(t, e.a.ID, []byte(data), contacts.ImportOptions{BatchSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		if job.Processed != 12 || job.Created != 2 || job.Updated != 1 || job.Failed != 9 || job.LastLine != 15 {
			t.Fatalf("job %+v", job)
		}
		errs := e.errorsOf(t, e.a.ID, job.ID)
		want := map[int64][2]string{
			4: {"First Name", "control"}, 6: {"", "unquoted"}, 7: {"", "quot"}, 8: {"", "6 fields"}, 9: {"First Name", "UTF-8"}, 10: {"", "longer than 64 KiB"},
			11: {"points", "number"}, 12: {"Email", "email"}, 14: {"Mobile", "international"},
		}
		for line, w := range want {
			got, ok := errs[line]
			if !ok || got.Column != w[0] || !strings.Contains(got.Reason, w[1]) {
				t.Errorf("line %d: got %+v, want column %q reason ~%q", line, got, w[0], w[1])
			}
		}
		if len(errs) != 9 {
			t.Errorf("errors %+v", errs)
		}
		a1 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "a1@example.com"))
		if a1.FirstName != "Annie" || a1.LastName != "Smith; Jr" || a1.Phone != "+33600000001" || a1.Attributes["points"] != 4.0 {
			t.Fatalf("a1 %+v", a1)
		}
		// A quoted field may hold separators, quotes and line breaks.
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "note", Type: contacts.AttrString})
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,note\r\na2@example.com,\"one, \"\"two\"\"\r\nthree\"\r\n"), contacts.ImportOptions{}))
		a2 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "a2@example.com"))
		if a2.Attributes["note"] != "one, \"two\"\nthree" {
			t.Fatalf("a2 %+v", a2)
		}
		must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "a10@example.com"))
		for _, bad := range []string{"a3@example.com", "a4@example.com", "a6@example.com", "a7@example.com", "a9@example.com"} {
			if _, err := e.svc.FindByEmail(bg, e.a.ID, bad); !errors.Is(err, contacts.ErrNotFound) {
				t.Errorf("%s written from a bad line: %v", bad, err)
			}
		}
		// The same line with a default calling code goes in.
		j2 := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone\na9@example.com,06 12 34 56 78\n"), contacts.ImportOptions{DefaultCallingCode: "33"}))
		if j2.Created != 1 {
			t.Fatalf("default calling code: %+v", j2)
		}

		// Whole-file errors write nothing.
		before := e.count(t, e.a.ID)
		for name, c := range map[string]struct {
			data string
			want error
		}{
			"0 bytes":        {"", contacts.ErrEmptyFile},
			"blank lines":    {"\n\r\n\n", contacts.ErrEmptyFile},
			"UTF-16":         {"\xFF\xFEe\x00m\x00", contacts.ErrBadFile},
			"no address col": {"first_name,last_name\nA,B\n", contacts.ErrBadFile},
			"unknown column": {"email,shoe_size\na@example.com,42\n", contacts.ErrBadFile},
			"duplicate col":  {"email,Email\na@example.com,b@example.com\n", contacts.ErrBadFile},
			"bad header":     {"email,\"pho\"ne\n", contacts.ErrBadFile},
			"latin-1 header": {"email,pr\xe9nom\nx@example.com,A\n", contacts.ErrBadFile},
		} {
			_, err := e.importBytes(t, e.a.ID, []byte(c.data), contacts.ImportOptions{})
			if !errors.Is(err, c.want) {
				t.Errorf("%s: got %v, want %v", name, err, c.want)
			}
		}
		if n := e.count(t, e.a.ID); n != before {
			t.Fatalf("whole-file errors wrote %d contacts", n-before)
		}
		// A header-only file is a completed job with nothing in it; an
		// unknown column can be ignored on request.
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone\r\n"), contacts.ImportOptions{}))
		if j.Status != contacts.JobCompleted || j.Processed != 0 {
			t.Fatalf("header only: %+v", j)
		}
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,shoe_size\nshoe@example.com,42\n"), contacts.ImportOptions{IgnoreUnknownColumns: true}))
		if j.Created != 1 {
			t.Fatalf("ignored column: %+v", j)
		}
		// An unclosed quote runs to the end of the file: one error.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,first_name\nq1@example.com,\"open\nq2@example.com,B\n"), contacts.ImportOptions{}))
		if j.Failed != 1 || j.Processed != 1 {
			t.Fatalf("unclosed quote: %+v", j)
		}
		// Dry run: counts and errors, nothing written.
		before = e.count(t, e.a.ID)
		dry := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email\nd1@example.com\nbad\nd2@example.com\n"), contacts.ImportOptions{DryRun: true}))
		if dry.Created != 2 || dry.Failed != 1 || len(dry.Errors) != 1 || dry.Errors[0].Line != 3 || e.count(t, e.a.ID) != before {
			t.Fatalf("dry run %+v", dry)
		}
	})
}

// TestImportModes: add mode skips existing contacts, phone-only lines
// match by phone, blocklist mode blocks addresses, an upsert import can
// neither un-blocklist a contact nor turn a withdrawn consent back into a
// granted one, and list memberships and consent proofs carry the job id.
func TestImportModes(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		l := must[contacts.List](t)(e.svc.CreateList(bg, e.a.ID, "Imported", ""))
		base := "email,phone,first_name\nm1@example.com,+33611111111,One\nm2@example.com,,Two\n,+33622222222,Three\n"
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte(base), contacts.ImportOptions{Lists: []string{l.ID},
			Consents: []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted, Wording: "w", WordingVersion: "1"}}}))
		if j.Created != 3 || must[int64](t)(e.svc.CountList(bg, e.a.ID, l.ID)) != 3 {
			t.Fatalf("first import %+v", j)
		}
		m1 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "m1@example.com"))
		if len(m1.Consents) != 0 { // FindByEmail does not load consents; Get does
			t.Fatal("consents on find")
		}
		m1 = must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, m1.ID))
		if len(m1.Consents) != 1 || m1.Consents[0].Source != contacts.SourceImport || m1.Consents[0].JobID != j.ID || m1.Consents[0].WordingHash != contacts.WordingHash("w") {
			t.Fatalf("import consent %+v", m1.Consents)
		}
		// Add mode: existing skipped, new created; phone-only line matched.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone,first_name\nm1@example.com,,Changed\nm4@example.com,,Four\n,+33622222222,Changed\n"),
			contacts.ImportOptions{Mode: contacts.ModeAdd}))
		if j.Created != 1 || j.Skipped != 2 {
			t.Fatalf("add mode %+v", j)
		}
		// Upsert: the phone-only line updates the one contact with that phone.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("phone,first_name\n+33622222222,Trois\n"), contacts.ImportOptions{}))
		three := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.a.ID, "+33622222222"))
		if j.Updated != 1 || len(three) != 1 || three[0].FirstName != "Trois" {
			t.Fatalf("phone upsert %+v %+v", j, three)
		}

		// Blocklist mode.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone\nm1@example.com,\n,+33699999999\n"), contacts.ImportOptions{Mode: contacts.ModeBlocklist}))
		if j.Created != 2 {
			t.Fatalf("blocklist import %+v", j)
		}
		if ok, reason := must2(t)(e.svc.CanSend(bg, e.a.ID, m1.ID, contacts.ChannelEmail, "")); ok || reason != contacts.ReasonBlocklisted {
			t.Fatalf("blocklisted by import: %v %v", ok, reason)
		}
		// An upsert import of a blocklisted address with consent granted
		// leaves it blocklisted.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,first_name,consent_email\nm1@example.com,Again,yes\n"), contacts.ImportOptions{}))
		m1 = must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, m1.ID))
		if j.Updated != 1 || m1.Status != contacts.StatusBlocklisted || m1.FirstName != "Again" {
			t.Fatalf("upsert over blocklist: %+v %+v", j, m1)
		}
		if ok, _ := must2(t)(e.svc.CanSend(bg, e.a.ID, m1.ID, contacts.ChannelEmail, "")); ok {
			t.Fatal("an import un-blocklisted a contact")
		}
		// A new contact with a blocklisted phone is created blocklisted.
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone\nm9@example.com,+33699999999\n"), contacts.ImportOptions{}))
		if c := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "m9@example.com")); c.Status != contacts.StatusBlocklisted {
			t.Fatalf("new contact with a blocklisted phone: %s", c.Status)
		}
		// A withdrawn consent stays withdrawn through an import.
		m2 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "m2@example.com"))
		if _, err := e.svc.Withdraw(bg, e.a.ID, m2.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail}); err != nil {
			t.Fatal(err)
		}
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,optin_email\nm2@example.com,granted\n"), contacts.ImportOptions{
			Consents: []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted}}}))
		if ok, reason := must2(t)(e.svc.CanSend(bg, e.a.ID, m2.ID, contacts.ChannelEmail, "")); ok || reason != contacts.ReasonConsentWithdrawn {
			t.Fatalf("import re-granted a withdrawn consent: %v %v", ok, reason)
		}
		// Re-running an identical import adds no consent events.
		hist := len(must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, three[0].ID)))
		data := []byte("phone,consent_sms\n+33622222222,yes\n")
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, data, contacts.ImportOptions{}))
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, data, contacts.ImportOptions{}))
		if n := len(must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, three[0].ID))); n != hist+1 {
			t.Fatalf("consent events %d -> %d", hist, n)
		}
	})
}

func must2(t *testing.T) func(bool, contacts.Reason, error) (bool, contacts.Reason) {
	return func(ok bool, r contacts.Reason, err error) (bool, contacts.Reason) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ok, r
	}
}

// TestConcurrentImportsAndCreates: two imports of overlapping files and
// API creates of the same addresses, at the same time: no deadlock, no
// failed line, and exactly one contact per address.
func TestConcurrentImportsAndCreates(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people(600, "cc")
		a, b := csvOf(ps[:400], ""), csvOf(ps[200:], "")
		var wg sync.WaitGroup
		jobs := make([]contacts.ImportJob, 2)
		errs := make([]error, 2)
		for i, data := range [][]byte{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				jobs[i], errs[i] = e.svc.Import(bg, e.a.ID, bytes.NewReader(data), contacts.ImportOptions{BatchSize: 50,
					Consents: []contacts.ImportConsent{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted}}})
			}()
		}
		createErrs := make(chan error, 50)
		for _, p := range ps[150:200] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.svc.Create(bg, e.a.ID, contacts.NewContact{Email: p.email, FirstName: p.first})
				if err != nil && !errors.Is(err, contacts.ErrConflict) {
					createErrs <- err
				}
			}()
		}
		wg.Wait()
		close(createErrs)
		for err := range createErrs {
			t.Errorf("create: %v", err)
		}
		for i := range jobs {
			if errs[i] != nil || jobs[i].Failed != 0 || jobs[i].Processed != 400 || jobs[i].Created+jobs[i].Updated != 400 {
				t.Errorf("import %d: %+v %v", i, jobs[i], errs[i])
			}
		}
		if n := e.count(t, e.a.ID); n != 600 {
			t.Fatalf("%d contacts for 600 addresses", n)
		}
		if n := must[int64](t)(e.svc.CountFilter(bg, e.a.ID, `consent.email = "granted"`)); n != 600 {
			t.Fatalf("%d consents", n)
		}
	})
}

// TestImportUpsertCellByCell: the upsert writes each column of a batch
// (on PostgreSQL, as one array per column): an empty cell stores NULL for a
// new contact (no phone, no blind index) and leaves the stored value of an
// existing one unchanged, a filled one replaces it; plain attributes merge,
// a personal one is sealed; a bad line among good ones writes nothing of
// its own.
func TestImportUpsertCellByCell(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "country", Type: contacts.AttrString},
			contacts.AttributeDef{Key: "vip", Type: contacts.AttrString, Personal: true})
		first := "email,phone,first_name,last_name,locale,country,vip\n" +
			"c1@example.com,+33611111111,Une,Dupont,fr-FR,FR,gold\n" +
			"c2@example.com,,Deux,,,,\n" +
			"c3@example,+33633333333,Bad,Line,,,\n"
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte(first), contacts.ImportOptions{}))
		if j.Created != 2 || j.Failed != 1 {
			t.Fatalf("first import %+v", j)
		}
		if got := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.a.ID, "+33633333333")); len(got) != 0 {
			t.Fatalf("the bad line was written: %+v", got)
		}
		c2 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "c2@example.com"))
		var nullPhone int
		err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT count(*) FROM contacts WHERE tenant_id = $1 AND id = $2 AND phone_bidx IS NULL AND phone_enc IS NULL
				AND last_name_enc IS NULL AND attributes_enc IS NULL`, c2.ID).Scan(&nullPhone)
		})
		if err != nil || nullPhone != 1 || c2.Phone != "" || c2.FirstName != "Deux" {
			t.Fatalf("empty cells of a new contact: %d %v %+v", nullPhone, err, c2)
		}
		second := "email,phone,first_name,last_name,locale,country,vip\n" +
			"c1@example.com,,,Durand,,BE,\n" +
			"c2@example.com,+33622222222,,Martin,de-DE,DE,silver\n"
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte(second), contacts.ImportOptions{}))
		if j.Updated != 2 || j.Failed != 0 {
			t.Fatalf("second import %+v", j)
		}
		c1 := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "c1@example.com"))
		if c1.Phone != "+33611111111" || c1.FirstName != "Une" || c1.LastName != "Durand" || c1.Locale != "fr-FR" ||
			c1.Attributes["country"] != "BE" || c1.Attributes["vip"] != "gold" {
			t.Fatalf("c1 after the upsert: %+v", c1)
		}
		c2 = must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, "c2@example.com"))
		if c2.Phone != "+33622222222" || c2.FirstName != "Deux" || c2.LastName != "Martin" || c2.Locale != "de-DE" ||
			c2.Attributes["country"] != "DE" || c2.Attributes["vip"] != "silver" {
			t.Fatalf("c2 after the upsert: %+v", c2)
		}
		if got := must[[]contacts.Contact](t)(e.svc.FindByPhone(bg, e.a.ID, "+33622222222")); len(got) != 1 || got[0].ID != c2.ID {
			t.Fatalf("find by the new phone: %+v", got)
		}
	})
}

// TestImportNewFileMeetsExistingContacts: on PostgreSQL a batch of new
// contacts is written by a plain INSERT; a batch that meets an existing
// contact (one stored before, one erased, one written concurrently) fails
// it on the unique index, is rolled back and written again by upsert,
// after which the import keeps to upserts for a while and then tries plain
// INSERTs again. Whatever the path (and on SQLite, which always upserts):
// the right counts, one contact per address, the existing contact updated
// under its own key, the same audit events, and a change-log entry for
// every contact written and none for the rolled-back attempt's rows.
func TestImportNewFileMeetsExistingContacts(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "vip", Type: contacts.AttrString, Personal: true})
		ps := people(120, "pf")
		// Stored before: ps[25] (in the third batch of 10) and ps[90].
		for _, i := range []int{25, 90} {
			e.create(t, e.a.ID, contacts.NewContact{Email: ps[i].email, FirstName: "Before", Attributes: map[string]any{"vip": "silver"}})
		}
		old := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, ps[25].email))
		var b bytes.Buffer
		b.WriteString("email,phone,first_name,last_name,vip\n")
		for i, p := range ps {
			fmt.Fprintf(&b, "%s,%s,%s,%s,gold%d\n", p.email, p.phone, p.first, p.last, i)
			if i == 45 { // a duplicate line in the fifth batch
				fmt.Fprintf(&b, "%s,,Again,,\n", ps[42].email)
			}
		}
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, b.Bytes(), contacts.ImportOptions{BatchSize: 10}))
		if j.Processed != 121 || j.Created != 118 || j.Updated != 3 || j.Failed != 0 || j.Skipped != 0 {
			t.Fatalf("job %+v", j)
		}
		if n := e.count(t, e.a.ID); n != 120 {
			t.Fatalf("%d contacts for 120 addresses", n)
		}
		got := must[contacts.Contact](t)(e.svc.Get(bg, e.a.ID, old.ID))
		if got.FirstName != ps[25].first || got.Attributes["vip"] != "gold25" {
			t.Fatalf("existing contact not updated: %+v", got)
		}
		if c := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, ps[42].email)); c.FirstName != "Again" || c.LastName != ps[42].last {
			t.Fatalf("duplicate line: %+v", c)
		}
		var created, updated int
		for _, r := range e.events(t, e.a.ID) {
			if r.Action == "contact.import" {
				d := details(t, r)
				if ids, ok := d["created_ids"].([]any); ok {
					created += len(ids)
				}
				if ids, ok := d["updated_ids"].([]any); ok {
					updated += len(ids)
				}
			}
		}
		if created != 118 || updated != 3 {
			t.Fatalf("audit: %d created, %d updated", created, updated)
		}
		// The change log names each contact, and no id of a rolled-back row.
		var logged, stray int64
		err := e.db.Platform(bg, func(p *store.PlatformTx) error {
			if err := p.QueryRow(bg, `SELECT COUNT(DISTINCT pk) FROM backup_changes WHERE tenant_id = $1 AND tbl = 'contacts'`, e.a.ID).Scan(&logged); err != nil {
				return err
			}
			return p.QueryRow(bg, `SELECT COUNT(*) FROM backup_changes b WHERE b.tenant_id = $1 AND b.tbl = 'contacts'
				AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = b.tenant_id AND b.pk = '["' || c.id || '"]')`, e.a.ID).Scan(&stray)
		})
		if err != nil {
			t.Fatal(err)
		}
		if logged != 120 || stray != 0 {
			t.Fatalf("change log: %d contacts logged, %d unknown ids", logged, stray)
		}

		// A file whose every line exists but one deleted contact (created
		// again) and one erased (a tombstone: skipped): the first batch's
		// plain INSERT fails, and the batches upsert.
		if err := e.svc.Delete(bg, e.a.ID, got.ID); err != nil {
			t.Fatal(err)
		}
		erased := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, ps[90].email))
		err = e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `UPDATE contacts SET erased_at = $3 WHERE tenant_id = $1 AND id = $2`, erased.ID, int64(1))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, csvOf(ps[20:100], ""), contacts.ImportOptions{BatchSize: 10}))
		if j.Processed != 80 || j.Created != 1 || j.Skipped != 1 || j.Updated != 78 || j.Failed != 0 || e.count(t, e.a.ID) != 119 {
			t.Fatalf("re-import %+v, %d contacts", j, e.count(t, e.a.ID))
		}
		// New contacts whose email or phone is on the blocklist are created
		// blocklisted (on PostgreSQL, by the pipelined INSERT itself).
		must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, []byte("email,phone\nzq.blocked@example.com,\n,+33688888888\n"),
			contacts.ImportOptions{Mode: contacts.ModeBlocklist}))
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID,
			[]byte("email,phone\nzq.blocked@example.com,\nzq.other@example.com,+33688888888\nzq.fine@example.com,+33677777777\n"), contacts.ImportOptions{}))
		if j.Created != 3 {
			t.Fatalf("blocklisted import %+v", j)
		}
		for email, want := range map[string]contacts.Status{"zq.blocked@example.com": contacts.StatusBlocklisted,
			"zq.other@example.com": contacts.StatusBlocklisted, "zq.fine@example.com": contacts.StatusActive} {
			if c := must[contacts.Contact](t)(e.svc.FindByEmail(bg, e.a.ID, email)); c.Status != want {
				t.Errorf("%s: %s, want %s", email, c.Status, want)
			}
		}
		// Add mode over existing contacts: skipped, nothing written.
		j = must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, csvOf(ps[:30], ""), contacts.ImportOptions{Mode: contacts.ModeAdd, BatchSize: 10}))
		if j.Created != 0 || j.Skipped != 30 || j.Updated != 0 {
			t.Fatalf("add mode %+v", j)
		}
	})
}

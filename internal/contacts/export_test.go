package contacts_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
)

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestExport: CSV and JSON Lines of everything, a list or a segment;
// pseudonymised output holds keyed tokens (stable within a tenant,
// different across tenants) and no email, phone or name; a CSV export
// imports back; formula-like cells are defused.
func TestExport(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.define(t, e.a.ID, contacts.AttributeDef{Key: "country", Type: contacts.AttrString}, contacts.AttributeDef{Key: "card", Type: contacts.AttrString, Personal: true})
		l := must[contacts.List](t)(e.svc.CreateList(bg, e.a.ID, "L", ""))
		var ids []string
		for i := 0; i < 2500; i += 500 { // more than one export page in total
			var b bytes.Buffer
			b.WriteString("email,phone,first_name,last_name,country,card\n")
			for j := i; j < i+500; j++ {
				country := "FR"
				if j%2 == 1 {
					country = "BE"
				}
				b.WriteString("ex" + itoa(j) + "@example.com,+3360" + pad(j) + ",Name" + itoa(j) + ",\"=HYPERLINK(\"\"x\"\")\",")
				b.WriteString(country + ",C" + itoa(j) + "\n")
			}
			must[contacts.ImportJob](t)(e.importBytes(t, e.a.ID, b.Bytes(), contacts.ImportOptions{}))
		}
		for _, c := range must[contacts.Page](t)(e.svc.List(bg, e.a.ID, contacts.ListOptions{Limit: 3})).Contacts {
			ids = append(ids, c.ID)
		}
		must[int](t)(e.svc.AddToList(bg, e.a.ID, l.ID, ids...))

		var csvOut bytes.Buffer
		res := must[contacts.ExportResult](t)(e.svc.Export(bg, e.a.ID, &csvOut, contacts.ExportOptions{}))
		recs, err := csv.NewReader(bytes.NewReader(csvOut.Bytes())).ReadAll()
		if err != nil || res.Count != 2500 || len(recs) != 2501 {
			t.Fatalf("csv export: %d lines, %v, %+v", len(recs), err, res)
		}
		head := strings.Join(recs[0], ",")
		if head != "id,email,phone,first_name,last_name,locale,timezone,status,source,created_at,updated_at,consent.email,consent.sms,card,country" {
			t.Fatalf("header %s", head)
		}
		if recs[1][1] != "ex0@example.com" || recs[1][4] != "'=HYPERLINK(\"x\")" || recs[1][13] != "C0" || recs[1][14] != "FR" {
			t.Fatalf("first line %v", recs[1])
		}
		// By list, as JSON Lines.
		var jl bytes.Buffer
		res = must[contacts.ExportResult](t)(e.svc.Export(bg, e.a.ID, &jl, contacts.ExportOptions{Format: contacts.FormatJSONL, ListID: l.ID}))
		lines := strings.Split(strings.TrimSpace(jl.String()), "\n")
		if res.Count != 3 || len(lines) != 3 {
			t.Fatalf("list export %d %q", res.Count, jl.String())
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &obj); err != nil || obj["email"] != "ex0@example.com" || obj["attributes"].(map[string]any)["card"] != "C0" {
			t.Fatalf("jsonl %v %v", obj, err)
		}
		// By filter.
		res = must[contacts.ExportResult](t)(e.svc.Export(bg, e.a.ID, &bytes.Buffer{}, contacts.ExportOptions{Filter: `attr.country = "BE"`}))
		if res.Count != 1250 {
			t.Fatalf("filtered export %d", res.Count)
		}
		// Pseudonymised.
		pseudo := func(tenant string) string {
			var b bytes.Buffer
			must[contacts.ExportResult](t)(e.svc.Export(bg, tenant, &b, contacts.ExportOptions{Pseudonymise: true, Format: contacts.FormatJSONL}))
			return b.String()
		}
		p1, p2 := pseudo(e.a.ID), pseudo(e.a.ID)
		if p1 == "" || strings.Contains(p1, "@example.com") || strings.Contains(p1, "+3360") || strings.Contains(p1, "Name1") || strings.Contains(p1, `"card"`) || strings.Contains(p1, "HYPERLINK") {
			t.Fatalf("pseudonymised export holds personal data: %.300s", p1)
		}
		first := firstJSON(t, p1)
		tokE, tokP := first["email_token"].(string), first["phone_token"].(string)
		if !strings.HasPrefix(tokE, "ps1_") || len(tokE) != 26 || tokE == tokP || !strings.Contains(p2, tokE) {
			t.Fatalf("tokens %q %q", tokE, tokP)
		}
		// The same address in tenant B gets another token.
		must[contacts.ImportJob](t)(e.importBytes(t, e.b.ID, []byte("email\nex0@example.com\n"), contacts.ImportOptions{}))
		if strings.Contains(pseudo(e.b.ID), tokE) {
			t.Fatal("pseudonyms are the same across tenants")
		}
		// A CSV export imports back (into tenant B: 2500 created, no errors).
		e.define(t, e.b.ID, contacts.AttributeDef{Key: "country", Type: contacts.AttrString}, contacts.AttributeDef{Key: "card", Type: contacts.AttrString, Personal: true})
		j := must[contacts.ImportJob](t)(e.importBytes(t, e.b.ID, csvOut.Bytes(), contacts.ImportOptions{Mapping: map[string]string{"id": "-", "status": "-", "source": "-", "created_at": "-", "updated_at": "-"}}))
		if j.Created != 2499 || j.Updated != 1 || j.Failed != 0 {
			t.Fatalf("re-import %+v", j)
		}
		_, err = e.svc.Export(bg, e.a.ID, &bytes.Buffer{}, contacts.ExportOptions{Format: "xml"})
		wantField(t, err, "format")
	})
}

func firstJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Scan()
	var m map[string]any
	if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }

func pad(i int) string { return fmt.Sprintf("%07d", i) }

// TestSeedIsReproducible: the same seed gives the same people in two
// tenants (same addresses, phones, names), valid E.164 numbers, consents
// and lists; progress is reported per batch.
func TestSeedIsReproducible(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		var steps []int
		ra := must[contacts.SeedResult](t)(e.svc.Seed(bg, e.a.ID, 1500, 42, func(done int) { steps = append(steps, done) }))
		rb := must[contacts.SeedResult](t)(e.svc.Seed(bg, e.b.ID, 1500, 42, nil))
		// Batches of 500 contacts on SQLite, 1000 on PostgreSQL.
		want := "[1000 1500]"
		if e.svc.DB.Dialect() == store.SQLite {
			want = "[500 1000 1500]"
		}
		if ra.Created != 1500 || rb.Created != 1500 || fmt.Sprint(steps) != want || len(ra.Lists) != 3 {
			t.Fatalf("seed %+v %+v %v", ra, rb, steps)
		}
		dump := func(tenant string) []string {
			var b bytes.Buffer
			must[contacts.ExportResult](t)(e.svc.Export(bg, tenant, &b, contacts.ExportOptions{}))
			recs, err := csv.NewReader(&b).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range recs[1:] {
				if r[2] != "" {
					if _, err := contacts.NormalisePhone(r[2], ""); err != nil {
						t.Fatalf("seeded phone: %v", err)
					}
				}
				out = append(out, strings.Join(append(r[1:7], r[11:]...), "|"))
			}
			return out
		}
		da, db := dump(e.a.ID), dump(e.b.ID)
		if strings.Join(da, "\n") != strings.Join(db, "\n") {
			t.Fatal("the same seed gave different people")
		}
		seen := map[string]bool{}
		for _, l := range da {
			email := strings.Split(l, "|")[0]
			if seen[email] || !strings.Contains(email, "example.") {
				t.Fatalf("email %q duplicate or not on an example domain", email)
			}
			seen[email] = true
		}
		granted := must[int64](t)(e.svc.CountFilter(bg, e.a.ID, `consent.email = "granted"`))
		sms := must[int64](t)(e.svc.CountFilter(bg, e.a.ID, `consent.sms = "granted"`))
		news := must[int64](t)(e.svc.CountList(bg, e.a.ID, ra.Lists[0].ID))
		if granted < 900 || granted > 1200 || sms < 300 || news < 600 || news > 900 {
			t.Fatalf("consents %d/%d, newsletter %d", granted, sms, news)
		}
		// Another seed, other people.
		must[contacts.SeedResult](t)(e.svc.Seed(bg, e.b.ID, 10, 7, nil))
		if n := e.count(t, e.b.ID); n != 1510 {
			t.Fatalf("second seed: %d", n)
		}
	})
}

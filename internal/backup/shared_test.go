package backup

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestSharedColumnsMask: a column is shared only when every row of the
// batch binds the same: an empty blob is not NULL, an integer is not a
// boolean or a text, a real compares by its bits.
func TestSharedColumnsMask(t *testing.T) {
	cols := []column{{"a", kindText}, {"b", kindBytes}, {"c", kindBytes}, {"d", kindInt}, {"e", kindText}, {"f", kindInt}, {"g", kindFloat}}
	w := newInserter(store.SQLite, &table{Name: "x", Columns: cols}, cols, false)
	rows := [][]any{
		{"", []byte{}, nil, int64(7), "x1", int64(1), 0.5},
		{"", []byte{}, nil, int64(7), "x2", true, 0.5},
		{"", []byte{}, []byte{}, int64(7), "x3", int64(1), 0.5},
	}
	for _, r := range rows {
		w.args = append(w.args, r...)
		w.n++
	}
	// a, b, d and g are shared; c (NULL, then an empty blob), e (texts
	// that differ) and f (an integer, then a boolean) are not.
	if got, want := w.sharedColumns(), uint64(1<<0|1<<1|1<<3|1<<6); got != want {
		t.Fatalf("mask %07b, want %07b", got, want)
	}
	if !sameValue(nil, nil) || sameValue(nil, []byte(nil)) || sameValue([]byte{}, []byte(nil)) || sameValue(int64(1), "1") ||
		!sameValue([]byte("ab"), []byte("ab")) || shareable(struct{}{}) {
		t.Fatal("sameValue/shareable")
	}
	// A restore prepares at most maxSharedVariants of one statement.
	r := &restorer{}
	for m := uint64(1); m <= maxSharedVariants; m++ {
		if r.sharedSQL("full", m, func() string { return "v" }) != "v" {
			t.Fatalf("variant %d refused", m)
		}
	}
	if r.sharedSQL("full", 1, func() string { return "new" }) != "v" || r.sharedSQL("full", 1<<40, func() string { return "v" }) != "" ||
		r.sharedSQL("other", 1<<40, func() string { return "o" }) != "o" {
		t.Fatal("variants past the limit")
	}
	// One row: nothing to share.
	w.args, w.n = w.args[:1+len(cols)], 1
	if m := w.sharedColumns(); m != 0 {
		t.Fatalf("one row: mask %b", m)
	}
}

// TestSharedColumnsStoreTheSame: full batches written with shared columns
// (constants of every kind, NULL, an empty blob, a column NULL in every
// row but one) store exactly what binding every value stores: each
// column's type and value, read back, equal those of the same rows
// inserted one by one.
func TestSharedColumnsStoreTheSame(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	tables, err := loadSchema(bg, db)
	if err != nil {
		t.Fatal(err)
	}
	var tb *table
	for _, x := range tables {
		if x.Name == "contacts" {
			tb = x
		}
	}
	if tb == nil {
		t.Fatal("no contacts table")
	}
	if err := db.Platform(bg, func(p *store.PlatformTx) error {
		for _, id := range []string{"t-shared", "t-plain"} {
			if _, err := p.Exec(bg, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $1, 'active', 1, 1)`, id, id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The rows: per column name, a value for row i.
	value := func(c string, i int) any {
		switch c {
		case "id":
			return fmt.Sprintf("c%05d", i)
		case "email_bidx", "email_enc", "key_enc":
			return []byte(fmt.Sprintf("%s-%d", c, i))
		case "first_name_enc":
			return []byte{} // an empty blob in every row
		case "last_name_enc", "erased_at", "attributes_enc", "phone_bidx":
			return nil // NULL in every row
		case "phone_enc":
			if i == 17 {
				return []byte{} // NULL in every row but one: not shared
			}
			return nil
		case "locale":
			return "" // the empty text in every row
		case "timezone":
			return fmt.Sprintf("tz%d", i%3)
		case "attributes":
			return "{}"
		case "status":
			return "active"
		case "source":
			return "import"
		case "created_at":
			return int64(1234)
		case "updated_at":
			return int64(1000 + i)
		}
		t.Fatalf("column %s not covered", c)
		return nil
	}
	per := newInserter(store.SQLite, tb, tb.Columns, false).perStmt
	n := 2*per + 5 // two full batches and a partial one
	r := &restorer{}
	err = db.PlatformPinned(bg, func(p *store.PlatformTx) error {
		tx := p.Tenant("t-shared")
		w := newInserter(store.SQLite, tb, tb.Columns, false)
		w.prepared, w.direct, w.sharedSQL = r.prepared, r.preparedDirect, r.sharedSQL
		for i := 0; i < n; i++ {
			vals := make([]any, len(tb.Columns))
			for j, c := range tb.Columns {
				vals[j] = value(c.Name, i)
			}
			if err := w.add(bg, tx, vals); err != nil {
				return err
			}
		}
		if err := w.flush(bg, tx); err != nil {
			return err
		}
		plain := p.Tenant("t-plain")
		for i := 0; i < n; i++ {
			names, marks, vals := []string{"tenant_id"}, []string{"$1"}, []any{}
			for j, c := range tb.Columns {
				names = append(names, quote(c.Name))
				marks = append(marks, fmt.Sprintf("$%d", j+2))
				vals = append(vals, value(c.Name, i))
			}
			if _, err := plain.Exec(bg, `INSERT INTO contacts (`+strings.Join(names, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`, vals...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Two variants: the first batch has row 17's empty phone blob (phone_enc
	// not shared), the second has phone_enc NULL in every row (shared).
	if len(r.shared) != 2 {
		t.Fatalf("%d statements with shared columns prepared, want 2", len(r.shared))
	}
	read := func(tenant string) []string {
		var exprs []string
		for _, c := range tb.Columns {
			exprs = append(exprs, "typeof("+quote(c.Name)+") || ':' || quote("+quote(c.Name)+")")
		}
		var out []string
		err := db.Tenant(tenant).Tx(bg, func(tx *store.Tx) error {
			rows, err := tx.Query(bg, `SELECT `+strings.Join(exprs, " || ' ' || ")+` FROM contacts WHERE tenant_id = $1 ORDER BY id`)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				out = append(out, s)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, want := read("t-shared"), read("t-plain")
	if len(got) != n || len(want) != n {
		t.Fatalf("%d and %d rows, want %d", len(got), len(want), n)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("row %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	if strings.Count(got[17], "blob:X''") != 2 { // first_name_enc and phone_enc
		t.Fatalf("row 17 lost its empty blob: %s", got[17])
	}
	// A full batch with shared columns that breaks a constraint (two rows
	// with one id) fails its statement, and the transaction leaves nothing.
	if err := db.Platform(bg, func(p *store.PlatformTx) error {
		_, err := p.Exec(bg, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ('t-dup', 't-dup', 'd', 'active', 1, 1)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r = &restorer{}
	err = db.PlatformPinned(bg, func(p *store.PlatformTx) error {
		tx := p.Tenant("t-dup")
		w := newInserter(store.SQLite, tb, tb.Columns, false)
		w.prepared, w.direct, w.sharedSQL = r.prepared, r.preparedDirect, r.sharedSQL
		for i := 0; i < per; i++ {
			vals := make([]any, len(tb.Columns))
			for j, c := range tb.Columns {
				vals[j] = value(c.Name, i)
				if c.Name == "id" && i == per-1 {
					vals[j] = value(c.Name, 3)
				}
				if c.Name == "email_bidx" && i == per-1 {
					vals[j] = []byte("another")
				}
			}
			if err := w.add(bg, tx, vals); err != nil {
				return err
			}
		}
		return errors.New("the duplicate was not refused")
	})
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") || len(r.shared) != 1 {
		t.Fatalf("a batch with a duplicate key: %v (%d shared statements)", err, len(r.shared))
	}
	if n := len(read("t-dup")); n != 0 {
		t.Fatalf("%d rows left after the failed batch", n)
	}
}

// TestInterleave: a full point's chunks keep their order within a table
// and come after every chunk of the tables their table references; tables
// independent of each other are interleaved in proportion.
func TestInterleave(t *testing.T) {
	mk := func(name string, n int, refs ...string) []restoreStep {
		tb := &table{Name: name, Refs: refs}
		var out []restoreStep
		for i := 0; i < n; i++ {
			out = append(out, restoreStep{t: tb, c: ChunkRef{ID: fmt.Sprintf("%s%d", name, i)}, op: "rows"})
		}
		return out
	}
	// Parents first, as loadSchema orders them: c (contacts) references
	// the tenants (not restored here); k (consents) and m (members)
	// reference c, m also l (lists); e (events) and l reference nothing;
	// s references itself.
	in := [][]restoreStep{mk("c", 6, "tenants"), mk("e", 3), mk("k", 2, "c"), mk("l", 1), mk("m", 2, "c", "l"), mk("s", 2, "s")}
	out := interleave(in)
	var got []string
	for _, st := range out {
		got = append(got, st.c.ID)
	}
	if len(got) != 16 {
		t.Fatalf("%d steps: %v", len(got), got)
	}
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	for _, ts := range in {
		for i := 1; i < len(ts); i++ {
			if pos[ts[i].c.ID] < pos[ts[i-1].c.ID] {
				t.Fatalf("table %s out of order: %v", ts[0].t.Name, got)
			}
		}
	}
	for _, child := range []string{"k0", "m0"} {
		if pos[child] < pos["c5"] {
			t.Fatalf("%s before the last chunk of its parent: %v", child, got)
		}
	}
	if pos["m0"] < pos["l0"] {
		t.Fatalf("m0 before l0: %v", got)
	}
	// The events are not left for after the contacts: interleaved.
	if pos["e0"] > pos["c1"] || pos["e2"] > pos["c5"] {
		t.Fatalf("the events are not interleaved with the contacts: %v", got)
	}
	if want := strings.Join(got, " "); want != "c0 e0 l0 s0 c1 c2 e1 c3 s1 c4 e2 c5 k0 m0 k1 m1" {
		t.Fatalf("order %s", want)
	}
}

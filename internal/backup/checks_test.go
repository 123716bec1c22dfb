package backup

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestCheckExprs: the CHECK constraints of a CREATE TABLE statement, with
// literals, quoted names, comments and nested parentheses that must not
// confuse the reader; statements it cannot read with certainty are
// reported (the restore then keeps SQLite's per-row checks).
func TestCheckExprs(t *testing.T) {
	for _, c := range []struct {
		ddl  string
		want []string
		ok   bool
	}{
		{`CREATE TABLE t (a TEXT)`, nil, true},
		{`CREATE TABLE t (s TEXT NOT NULL CHECK (s IN ('a', 'b', 'c')), n INTEGER check(n > 0))`, []string{`s IN ('a', 'b', 'c')`, `n > 0`}, true},
		{"CREATE TABLE t (s TEXT CHECK (s <> ')' AND s <> 'CHECK (x)'), \"check\" INT, [x)] INT, `y(` INT,\n" +
			"  -- CHECK (commented out)\n  /* CHECK (nor this) */ CONSTRAINT c CHECK ((\"check\" + 1) * 2 > length(s) -- a comment )\n))",
			[]string{`s <> ')' AND s <> 'CHECK (x)'`, "(\"check\" + 1) * 2 > length(s) -- a comment )"}, true},
		{`CREATE TABLE t (a INT, CHECK (a IN (1, 2, 3)), CHECK (a <> 'it''s'))`, []string{`a IN (1, 2, 3)`, `a <> 'it''s'`}, true},
		{`CREATE TABLE t (a INT CHECK a > 0)`, nil, false},
		{`CREATE TABLE t (a TEXT CHECK (a <> 'x))`, nil, false},
		{`CREATE TABLE t (a INT /* CHECK (a > 0))`, nil, false},
	} {
		got, ok := checkExprs(c.ddl)
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("checkExprs(%q) = %q, %v; want %q, %v", c.ddl, got, ok, c.want, c.ok)
		}
	}
}

// TestEveryTableChecksAreRead: every table of a migrated SQLite store is
// read with certainty, with as many CHECK constraints as its statement
// names; the IN lists of the contacts, consents and consent events are
// checked as rows are parsed, a table with another CHECK (retention rules:
// months > 0) is queried, and each query runs.
func TestEveryTableChecksAreRead(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	tables, err := loadSchema(bg, db)
	if err != nil {
		t.Fatal(err)
	}
	word := regexp.MustCompile(`(?i)\bcheck\s*\(`)
	if err := db.Platform(bg, func(p *store.PlatformTx) error {
		checks, ok, err := loadChecks(bg, p, tables)
		if err != nil || !ok {
			t.Fatalf("loadChecks: %v, %v", ok, err)
		}
		for _, tb := range tables {
			var ddl string
			if err := p.QueryRow(bg, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = $1`, tb.Name).Scan(&ddl); err != nil {
				return err
			}
			exprs, _ := checkExprs(ddl)
			if n := len(word.FindAllString(ddl, -1)); n != len(exprs) {
				t.Errorf("table %s: %d CHECK constraints read, its statement names %d", tb.Name, len(exprs), n)
			}
			_, listed := checks.lists[tb.Name]
			q, queried := checks.queries[tb.Name]
			if len(exprs) > 0 && listed == queried || len(exprs) == 0 && (listed || queried) {
				t.Errorf("table %s: %d checks, listed %v, queried %v", tb.Name, len(exprs), listed, queried)
			}
			if queried && !strings.Contains(q, exprs[0]) {
				t.Errorf("table %s: query %q", tb.Name, q)
			}
		}
		for name, n := range map[string]int{"contacts": 2, "consents": 3, "consent_events": 3} {
			if len(checks.lists[name]) != n {
				t.Errorf("table %s: %d IN lists checked as parsed, want %d", name, len(checks.lists[name]), n)
			}
		}
		if _, ok := checks.queries["retention_rules"]; !ok {
			t.Error("retention_rules is not queried")
		}
		// Every table queried, as a restore whose chunks lack a column does.
		for name := range checks.exprs {
			checks.scan(name)
		}
		return checks.verify(bg, p.Tenant("none"), tables)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestInListChecks: the IN lists read from CHECK expressions, and the
// parsed rows they refuse (NULL passes, as in SQLite).
func TestInListChecks(t *testing.T) {
	for _, c := range []struct {
		expr string
		col  string
		vals []string
	}{
		{`status IN ('active', 'unsubscribed', 'bounced')`, "status", []string{"active", "unsubscribed", "bounced"}},
		{"\"kind\" in('a','it''s' ,  'b, c')", "kind", []string{"a", "it's", "b, c"}},
	} {
		l, ok := parseInList(c.expr)
		if !ok || l.col != c.col || len(l.values) != len(c.vals) {
			t.Fatalf("parseInList(%q) = %+v, %v", c.expr, l, ok)
		}
		for _, v := range c.vals {
			if !l.values[v] {
				t.Fatalf("parseInList(%q): %q missing", c.expr, v)
			}
		}
	}
	for _, expr := range []string{`months > 0`, `status IN (1, 2, 3)`, `status IN ('a', b)`, `status NOT IN ('a', 'b', 'c')`,
		`lower(status) IN ('a', 'b', 'c')`, `status IN ('a', 'b', 'c') OR x = 1`, `status IN ('a' 'b')`, `status IN ('a',)`, `status IN ('a`} {
		if l, ok := parseInList(expr); ok {
			t.Errorf("parseInList(%q) = %+v: not a plain IN list", expr, l)
		}
	}
	d := &deferredChecks{lists: map[string][]inList{}, queries: map[string]string{}, exprs: map[string][]string{}}
	l, _ := parseInList(`status IN ('a', 'b', 'c')`)
	d.lists["t"] = []inList{l}
	d.exprs["t"] = []string{`status IN ('a', 'b', 'c')`}
	rc, ok := d.checker("t", []column{{"id", kindText}, {"status", kindText}})
	if !ok || rc == nil {
		t.Fatal("no checker")
	}
	for _, row := range [][]any{{"1", "a"}, {"2", nil}, {"3", "c"}} {
		if err := rc.check(row); err != nil {
			t.Fatalf("%v: %v", row, err)
		}
	}
	for _, row := range [][]any{{"1", "d"}, {"2", "A"}, {"3", ""}, {"4", int64(1)}} {
		if err := rc.check(row); !errors.Is(err, ErrCheckViolated) {
			t.Fatalf("%v: %v", row, err)
		}
	}
	if rc, ok := d.checker("t", []column{{"id", kindText}}); ok || rc != nil {
		t.Fatal("a chunk without the column is checked as parsed")
	}
	if rc, ok := d.checker("t", []column{{"status", kindInt}}); ok || rc != nil {
		t.Fatal("a chunk with the column of another kind is checked as parsed")
	}
	if rc, ok := d.checker("other", nil); !ok || rc != nil {
		t.Fatal("a table without lists")
	}
	d.scan("t")
	if _, listed := d.lists["t"]; listed || !strings.Contains(d.queries["t"], "NOT INDEXED") {
		t.Fatalf("scan: %+v", d)
	}
}

// TestRestoreRefusesRowBreakingACheck: a backup holding a contact whose
// status breaks the contacts' CHECK constraint (taken from a store where
// the row got in with the checks off) is refused by a restore into a new
// store, where the checks run once per table after the load, leaving no
// store behind; and by a restore into an existing store, where SQLite
// checks each row as it is inserted, leaving no tenant.
func TestRestoreRefusesRowBreakingACheck(t *testing.T) {
	// A status is an IN list checked as the rows are parsed; a retention
	// rule's months (> 0) is checked by a query after the load.
	t.Run("contacts", func(t *testing.T) {
		refusesRowBreakingACheck(t, "contacts", `UPDATE contacts SET status = 'forged'
			WHERE tenant_id = $1 AND id = (SELECT max(id) FROM contacts WHERE tenant_id = $1)`)
	})
	t.Run("retention_rules", func(t *testing.T) {
		refusesRowBreakingACheck(t, "retention_rules", `INSERT INTO retention_rules (tenant_id, kind, months, enabled, updated_at)
			VALUES ($1, 'message_content', 0, TRUE, 1)`)
	})
}

func refusesRowBreakingACheck(t *testing.T, table, forge string) {
	e, _, tgt := newStoreSource(t, 20)
	e.clk.Add(time.Hour)
	if err := e.db.Platform(bg, func(p *store.PlatformTx) error {
		if _, err := p.Exec(bg, `PRAGMA ignore_check_constraints = ON`); err != nil {
			return err
		}
		defer func() { _, _ = p.Exec(bg, `PRAGMA ignore_check_constraints = OFF`) }()
		res, err := p.Tenant(e.acme.ID).Exec(bg, forge)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%d contacts changed", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Run(bg, e.acme.ID, tgt, RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, dir, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme"})
	if !errors.Is(err, ErrCheckViolated) || !strings.Contains(err.Error(), table) {
		t.Fatalf("restore into a new store of a row breaking a CHECK: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a refused restore left %v", left)
	}
	dest := storetest.OpenSQLite(t, storetest.Options{})
	_, err = e.svc.Restore(bg, e.acme.ID, tgt, RestoreOptions{IntoSlug: "acme", Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "CHECK constraint failed") {
		t.Fatalf("restore into an existing store of a row breaking a CHECK: %v", err)
	}
	if n := len(dump(t, dest, e.acme.ID)); n != 0 {
		t.Fatalf("a refused restore left %d tables with rows", n)
	}
	// The good backup taken before still restores into a new store, whose
	// connections check every row again.
	points, err := e.svc.List(bg, e.acme.ID, tgt)
	if err != nil || len(points) != 2 || !points[0].Time().Before(points[1].Time()) {
		t.Fatalf("points: %v, %v", points, err)
	}
	dir = t.TempDir()
	if _, err := e.svc.RestoreNewStore(bg, e.acme.ID, tgt, dir, store.SQLiteTuning{}, RestoreOptions{IntoSlug: "acme", At: points[0].Time()}); err != nil {
		t.Fatal(err)
	}
	restored := openDir(t, dir)
	err = restored.Tenant(e.acme.ID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, forge)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "CHECK constraint failed") {
		t.Fatalf("the restored store accepted a row breaking a CHECK: %v", err)
	}
}

// TestOpenInto: decrypting into a reused buffer (a restore's chunks) gives
// the plaintext whatever the buffer's capacity, and refuses a truncated or
// altered ciphertext as open does.
func TestOpenInto(t *testing.T) {
	k, err := deriveSetKeys(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("aad")
	for _, size := range []int{0, 1, 1000, 3<<20 + 5} {
		plain := bytes.Repeat([]byte("relais"), size/6+1)[:size]
		ct, err := k.seal(plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		for _, capacity := range []int{0, 1, size, size + 1, 2*size + 10} {
			got, err := k.openInto(bytes.NewReader(ct), aad, make([]byte, 3, capacity+3)[3:])
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("size %d, buffer %d: %d bytes, %v", size, capacity, len(got), err)
			}
		}
		if len(ct) > 0 {
			if _, err := k.openInto(bytes.NewReader(ct[:len(ct)-1]), aad, make([]byte, 0, size+1)); !errors.Is(err, ErrAuth) {
				t.Fatalf("size %d: truncated ciphertext: %v", size, err)
			}
			bad := bytes.Clone(ct)
			bad[len(bad)/2] ^= 1
			if _, err := k.openInto(bytes.NewReader(bad), aad, make([]byte, 0, size+1)); !errors.Is(err, ErrAuth) {
				t.Fatalf("size %d: altered ciphertext: %v", size, err)
			}
		}
	}
}

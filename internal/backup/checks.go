package backup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/relais-dev/relais/internal/store"
)

// ErrCheckViolated: a restored row breaks a CHECK constraint of the
// store's table.
var ErrCheckViolated = errors.New("a restored row breaks a CHECK constraint of the store")

// SQLite codes a CHECK constraint of the form `x IN ('a', 'b', 'c')` (three
// values or more) by building a temporary b-tree of the values for every
// row it checks (the code of a CHECK cannot use the run-once code a query
// gets): for the contacts, consents and consent events, two such b-trees a
// row, a quarter to a third of a 1M restore's insert CPU. A restore into a new
// store (RestoreNewStore) therefore loads its rows with
// `PRAGMA ignore_check_constraints` on and then checks every CHECK
// constraint of every restored table itself (deferredChecks): the IN lists
// of text values as the rows are parsed, on the parsing goroutine; any
// other CHECK with one query per table after the load, which builds each
// IN list once. The same constraints, checked for every row all the same,
// before the restore can commit.

// deferredChecks are the CHECK constraints a restore with SQLite's
// per-row checks off verifies itself: by table, either the IN lists of
// text values it checks on the parsing goroutine as it parses each row
// (every CHECK of the table of the form `col IN ('a', 'b', ...)` on a text
// column, the table without COLLATE clauses: SQLite compares such values
// byte for byte, NULL passes), or the query that finds a row of the tenant
// breaking one of them, run after the load.
type deferredChecks struct {
	lists   map[string][]inList
	queries map[string]string
	// exprs are every table's CHECK expressions (a table whose IN lists
	// cannot be checked as parsed is queried instead, see scan).
	exprs map[string][]string
}

// inList is a CHECK `col IN ('a', 'b', ...)` on a text column.
type inList struct {
	col    string
	values map[string]bool
}

var inListExpr = regexp.MustCompile(`(?is)^"?([a-z_][a-z0-9_]*)"?\s+in\s*\((.*)\)$`)

// parseInList reads a CHECK expression of the form `col IN ('a', ...)`.
func parseInList(expr string) (inList, bool) {
	m := inListExpr.FindStringSubmatch(expr)
	if m == nil {
		return inList{}, false
	}
	l := inList{col: m[1], values: map[string]bool{}}
	rest := strings.TrimSpace(m[2])
	for {
		if !strings.HasPrefix(rest, "'") {
			return inList{}, false
		}
		end, ok := skipQuoted(rest, 0)
		if !ok {
			return inList{}, false
		}
		l.values[strings.ReplaceAll(rest[1:end-1], "''", "'")] = true
		rest = strings.TrimSpace(rest[end:])
		if rest == "" {
			return l, true
		}
		if !strings.HasPrefix(rest, ",") {
			return inList{}, false
		}
		rest = strings.TrimSpace(rest[1:])
	}
}

// loadChecks reads the CHECK constraints of tables from SQLite's schema.
// ok is false when a table's CREATE statement could not be read with
// certainty (the restore then keeps SQLite's per-row checks).
func loadChecks(ctx context.Context, ptx *store.PlatformTx, tables []*table) (*deferredChecks, bool, error) {
	out := &deferredChecks{lists: map[string][]inList{}, queries: map[string]string{}, exprs: map[string][]string{}}
	for _, t := range tables {
		var ddl string
		if err := ptx.QueryRow(ctx, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = $1`, t.Name).Scan(&ddl); err != nil {
			return nil, false, fmt.Errorf("backup: read the schema of %s: %w", t.Name, err)
		}
		exprs, ok := checkExprs(ddl)
		if !ok {
			return nil, false, nil
		}
		if len(exprs) == 0 {
			continue
		}
		out.exprs[t.Name] = exprs
		var lists []inList
		if !strings.Contains(strings.ToUpper(ddl), "COLLATE") {
			for _, e := range exprs {
				l, ok := parseInList(e)
				if !ok || t.kindOf(l.col) != kindText {
					lists = nil
					break
				}
				lists = append(lists, l)
			}
		}
		if lists != nil {
			out.lists[t.Name] = lists
		} else {
			out.scan(t.Name)
		}
	}
	return out, true, nil
}

// scan makes table's checks a query after the load.
func (d *deferredChecks) scan(table string) {
	delete(d.lists, table)
	// A row breaks a CHECK when its expression is false (NULL passes):
	// exactly when the conjunction of the table's checks is false. (Each
	// expression on lines of its own: one may end in a comment.) NOT
	// INDEXED: one pass over the table's pages in file order (a new store
	// holds only this tenant), where SQLite's planner would walk an index
	// on tenant_id (the contacts' e-mail blind index: random order) and
	// fetch each row from the table.
	d.queries[table] = "SELECT 1 FROM " + quote(table) + " NOT INDEXED WHERE tenant_id = $1 AND NOT ((\n" +
		strings.Join(d.exprs[table], "\n) AND (\n") + "\n)) LIMIT 1"
}

// rowChecker checks parsed rows of one chunk against its table's IN lists.
type rowChecker struct {
	table string
	idx   []int // index in the chunk's columns of each list's column
	lists []inList
}

// checker returns the row checker for a chunk of table with columns, nil
// when the table's checks are not checked as parsed; ok is false when
// they cannot be (a column the chunk does not hold, with another kind):
// the caller then has the table queried after the load (scan).
func (d *deferredChecks) checker(table string, columns []column) (rc *rowChecker, ok bool) {
	lists := d.lists[table]
	if len(lists) == 0 {
		return nil, true
	}
	rc = &rowChecker{table: table, lists: lists}
	for _, l := range lists {
		i := slices.IndexFunc(columns, func(c column) bool { return c.Name == l.col })
		if i < 0 || columns[i].Kind != kindText {
			return nil, false
		}
		rc.idx = append(rc.idx, i)
	}
	return rc, true
}

// check returns ErrCheckViolated when vals break one of the lists.
func (rc *rowChecker) check(vals []any) error {
	for k, l := range rc.lists {
		switch v := vals[rc.idx[k]].(type) {
		case nil:
		case string:
			if !l.values[v] {
				return fmt.Errorf("backup: %w: table %s, column %s", ErrCheckViolated, rc.table, l.col)
			}
		default:
			return fmt.Errorf("backup: %w: table %s, column %s holds a %T", ErrCheckViolated, rc.table, l.col, v)
		}
	}
	return nil
}

// verify runs the queries: an error naming the first table that holds a
// row of the tenant breaking one of its CHECK constraints.
func (d *deferredChecks) verify(ctx context.Context, tx *store.Tx, tables []*table) error {
	for _, t := range tables {
		q, ok := d.queries[t.Name]
		if !ok {
			continue
		}
		var one int
		err := tx.QueryRow(ctx, q).Scan(&one)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("backup: check the restored rows of %s: %w", t.Name, err)
		}
		return fmt.Errorf("backup: %w: table %s", ErrCheckViolated, t.Name)
	}
	return nil
}

// checkExprs returns the expressions of the CHECK constraints (column and
// table constraints) of an SQLite CREATE TABLE statement. ok is false when
// the statement cannot be read with certainty: a CHECK not followed by a
// parenthesised expression, an unterminated literal, comment or
// parenthesis.
func checkExprs(ddl string) (exprs []string, ok bool) {
	i := 0
	for i < len(ddl) {
		c := ddl[i]
		switch {
		case c == '\'' || c == '"' || c == '`' || c == '[':
			end, ok := skipQuoted(ddl, i)
			if !ok {
				return nil, false
			}
			i = end
		case c == '-' && strings.HasPrefix(ddl[i:], "--"), c == '/' && strings.HasPrefix(ddl[i:], "/*"):
			end, ok := skipComment(ddl, i)
			if !ok {
				return nil, false
			}
			i = end
		case isIdentByte(c):
			start := i
			for i < len(ddl) && isIdentByte(ddl[i]) {
				i++
			}
			if !strings.EqualFold(ddl[start:i], "CHECK") {
				continue
			}
			j, ok := skipSpace(ddl, i)
			if !ok || j >= len(ddl) || ddl[j] != '(' {
				return nil, false
			}
			end, ok := closeParen(ddl, j)
			if !ok {
				return nil, false
			}
			exprs = append(exprs, strings.TrimSpace(ddl[j+1:end]))
			i = end + 1
		default:
			i++
		}
	}
	return exprs, true
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// skipQuoted returns the index after the quoted token starting at s[i]
// ('...' and "..." and `...` with doubled quotes inside, [...]).
func skipQuoted(s string, i int) (int, bool) {
	q := s[i]
	if q == '[' {
		end := strings.IndexByte(s[i+1:], ']')
		if end < 0 {
			return 0, false
		}
		return i + 1 + end + 1, true
	}
	for j := i + 1; j < len(s); j++ {
		if s[j] == q {
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

// skipComment returns the index after the comment starting at s[i].
func skipComment(s string, i int) (int, bool) {
	if s[i] == '-' {
		end := strings.IndexByte(s[i:], '\n')
		if end < 0 {
			return len(s), true
		}
		return i + end + 1, true
	}
	end := strings.Index(s[i+2:], "*/")
	if end < 0 {
		return 0, false
	}
	return i + 2 + end + 2, true
}

// skipSpace returns the index of the first byte from s[i] that is neither
// white space nor in a comment.
func skipSpace(s string, i int) (int, bool) {
	for i < len(s) {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r':
			i++
		case strings.HasPrefix(s[i:], "--"), strings.HasPrefix(s[i:], "/*"):
			end, ok := skipComment(s, i)
			if !ok {
				return 0, false
			}
			i = end
		default:
			return i, true
		}
	}
	return i, true
}

// closeParen returns the index of the parenthesis closing the one at s[i].
func closeParen(s string, i int) (int, bool) {
	depth := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'' || c == '"' || c == '`' || c == '[':
			end, ok := skipQuoted(s, i)
			if !ok {
				return 0, false
			}
			i = end
			continue
		case c == '-' && strings.HasPrefix(s[i:], "--"), c == '/' && strings.HasPrefix(s[i:], "/*"):
			end, ok := skipComment(s, i)
			if !ok {
				return 0, false
			}
			i = end
			continue
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return 0, false
}

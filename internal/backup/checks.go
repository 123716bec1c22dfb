package backup

import (
	"context"
	"errors"
	"fmt"
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
// constraint of every restored table with one query per table
// (deferredChecks), which builds each IN list once: the same constraints,
// checked once per row all the same, before the restore can commit.

// deferredChecks holds, by table, the query that finds a row of the tenant
// that breaks one of the table's CHECK constraints.
type deferredChecks map[string]string

// loadChecks reads the CHECK constraints of tables from SQLite's schema.
// ok is false when a table's CREATE statement could not be read with
// certainty (the restore then keeps SQLite's per-row checks).
func loadChecks(ctx context.Context, ptx *store.PlatformTx, tables []*table) (deferredChecks, bool, error) {
	out := deferredChecks{}
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
		// A row breaks a CHECK when its expression is false (NULL passes):
		// exactly when the conjunction of the table's checks is false.
		// (Each expression on lines of its own: one may end in a comment.)
		// NOT INDEXED: one pass over the table's pages in file order (a
		// new store holds only this tenant), where SQLite's planner would
		// walk an index on tenant_id (the contacts' e-mail blind index:
		// random order) and fetch each row from the table.
		out[t.Name] = "SELECT 1 FROM " + quote(t.Name) + " NOT INDEXED WHERE tenant_id = $1 AND NOT ((\n" +
			strings.Join(exprs, "\n) AND (\n") + "\n)) LIMIT 1"
	}
	return out, true, nil
}

// verify runs every table's query: an error naming the first table that
// holds a row of the tenant breaking one of its CHECK constraints.
func (d deferredChecks) verify(ctx context.Context, tx *store.Tx, tables []*table) error {
	for _, t := range tables {
		q, ok := d[t.Name]
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

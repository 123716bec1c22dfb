package router

import "strconv"

// marks binds the values of a multi-row statement: mark appends a value
// to args and returns its placeholder, "?" on SQLite (which resolves "$N"
// names by a linear search, so thousands of them cost quadratic time) and
// "$N" on PostgreSQL, N counted after the first offset parameters (1 in a
// tenant transaction, whose $1 is the tenant; 0 in a platform one). On
// SQLite a "?" is positional: the text must use each mark once, in the
// order the values were appended.
type marks struct {
	sqlite bool
	offset int
	args   []any
}

func newMarks(sqlite bool, offset, capacity int) *marks {
	return &marks{sqlite: sqlite, offset: offset, args: make([]any, 0, capacity)}
}

// mark binds v.
func (m *marks) mark(v any) string { return m.cast(v, "") }

// cast binds v with a PostgreSQL type cast (ignored on SQLite), for the
// columns of a VALUES list whose types PostgreSQL cannot infer.
func (m *marks) cast(v any, typ string) string {
	m.args = append(m.args, v)
	if m.sqlite {
		return "?"
	}
	return "$" + strconv.Itoa(len(m.args)+m.offset) + typ
}

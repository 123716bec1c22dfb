package privacy

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/store"
)

// Column kinds, from the declared SQL types of either dialect.
const (
	kindInt  = "int"
	kindText = "text"
	kindBlob = "blob"
	kindBool = "bool"
	kindReal = "real"
)

type column struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// table is one table of the schema that holds tenant rows (it has a
// tenant_id column), as read from the database itself, so that tables added
// by later migrations are covered without a change here.
type table struct {
	Name string
	Cols []column
	PK   []string // primary key columns, tenant_id included when part of it
	Refs []string // tables it references by foreign key
}

func (t table) col(name string) (column, bool) {
	for _, c := range t.Cols {
		if c.Name == name {
			return c, true
		}
	}
	return column{}, false
}

// platformTables hold no tenant's rows although they carry tenant_id:
// tenant_destructions records a destroyed tenant and outlives it.
var platformTables = map[string]bool{"tenant_destructions": true}

func kindOf(declared string) string {
	d := strings.ToUpper(declared)
	switch {
	case strings.Contains(d, "INT"):
		return kindInt
	case strings.Contains(d, "BOOL"):
		return kindBool
	case strings.Contains(d, "BLOB"), strings.Contains(d, "BYTEA"):
		return kindBlob
	case strings.Contains(d, "REAL"), strings.Contains(d, "DOUBLE"), strings.Contains(d, "NUMERIC"), strings.Contains(d, "FLOAT"):
		return kindReal
	}
	return kindText
}

// schemaTables reads the tenant tables of the store, in an order in which
// inserting is safe (a table after the tables it references).
func schemaTables(ctx context.Context, db *store.DB) ([]table, error) {
	byName := map[string]*table{}
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		if db.Dialect() == store.SQLite {
			return sqliteTables(ctx, p, byName)
		}
		return postgresTables(ctx, p, byName)
	})
	if err != nil {
		return nil, fmt.Errorf("privacy: read the schema: %w", err)
	}
	names := make([]string, 0, len(byName))
	for n, t := range byName {
		if _, ok := t.col("tenant_id"); ok && !platformTables[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	// Topological order over foreign keys (ties by name).
	var out []table
	done := map[string]bool{}
	var visit func(n string, depth int) error
	visit = func(n string, depth int) error {
		if done[n] {
			return nil
		}
		if depth > 64 {
			return errors.New("privacy: foreign-key cycle in the schema")
		}
		t, ok := byName[n]
		if !ok {
			return nil
		}
		refs := append([]string(nil), t.Refs...)
		sort.Strings(refs)
		for _, r := range refs {
			if r != n {
				if err := visit(r, depth+1); err != nil {
					return err
				}
			}
		}
		done[n] = true
		if _, ok := t.col("tenant_id"); ok && !platformTables[n] {
			out = append(out, *t)
		}
		return nil
	}
	for _, n := range names {
		if err := visit(n, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func sqliteTables(ctx context.Context, p *store.PlatformTx, byName map[string]*table) error {
	rows, err := p.Query(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version'`)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			_ = rows.Close()
			return err
		}
		names = append(names, n)
	}
	_ = rows.Close()
	for _, n := range names {
		t := &table{Name: n}
		cr, err := p.Query(ctx, `SELECT name, type, pk FROM pragma_table_info(?)`, n)
		if err != nil {
			return err
		}
		type pkc struct {
			name string
			pos  int
		}
		var pks []pkc
		for cr.Next() {
			var name, typ string
			var pk int
			if err := cr.Scan(&name, &typ, &pk); err != nil {
				_ = cr.Close()
				return err
			}
			t.Cols = append(t.Cols, column{Name: name, Kind: kindOf(typ)})
			if pk > 0 {
				pks = append(pks, pkc{name, pk})
			}
		}
		_ = cr.Close()
		sort.Slice(pks, func(i, j int) bool { return pks[i].pos < pks[j].pos })
		for _, k := range pks {
			t.PK = append(t.PK, k.name)
		}
		fr, err := p.Query(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return err
		}
		for fr.Next() {
			var ref string
			if err := fr.Scan(&ref); err != nil {
				_ = fr.Close()
				return err
			}
			t.Refs = append(t.Refs, ref)
		}
		_ = fr.Close()
		byName[n] = t
	}
	return nil
}

func postgresTables(ctx context.Context, p *store.PlatformTx, byName map[string]*table) error {
	rows, err := p.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
		WHERE c.table_schema = current_schema() AND c.table_name <> 'goose_db_version' ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var tn, cn, typ string
		if err := rows.Scan(&tn, &cn, &typ); err != nil {
			_ = rows.Close()
			return err
		}
		t := byName[tn]
		if t == nil {
			t = &table{Name: tn}
			byName[tn] = t
		}
		t.Cols = append(t.Cols, column{Name: cn, Kind: kindOf(typ)})
	}
	_ = rows.Close()
	pr, err := p.Query(ctx, `SELECT cl.relname, a.attname FROM pg_index i
		JOIN pg_class cl ON cl.oid = i.indrelid JOIN pg_namespace ns ON ns.oid = cl.relnamespace
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indisprimary AND ns.nspname = current_schema()
		ORDER BY cl.relname, array_position(i.indkey::int2[], a.attnum)`)
	if err != nil {
		return err
	}
	for pr.Next() {
		var tn, cn string
		if err := pr.Scan(&tn, &cn); err != nil {
			_ = pr.Close()
			return err
		}
		if t := byName[tn]; t != nil {
			t.PK = append(t.PK, cn)
		}
	}
	_ = pr.Close()
	fr, err := p.Query(ctx, `SELECT DISTINCT cl.relname, rf.relname FROM pg_constraint co
		JOIN pg_class cl ON cl.oid = co.conrelid JOIN pg_class rf ON rf.oid = co.confrelid
		JOIN pg_namespace ns ON ns.oid = cl.relnamespace
		WHERE co.contype = 'f' AND ns.nspname = current_schema()`)
	if err != nil {
		return err
	}
	defer func() { _ = fr.Close() }()
	for fr.Next() {
		var tn, rn string
		if err := fr.Scan(&tn, &rn); err != nil {
			return err
		}
		if t := byName[tn]; t != nil {
			t.Refs = append(t.Refs, rn)
		}
	}
	return fr.Err()
}

// readPage reads up to limit rows of a tenant table after the key "after"
// (nil: from the start), in primary-key order, with the columns given.
// Values are normalised: int64, float64, string, []byte, bool or nil.
func readPage(ctx context.Context, tx *store.Tx, t table, cols []column, after []any, limit int) ([][]any, error) {
	qpk := quotedPK(t)
	var sb strings.Builder
	sb.WriteString(selectFrom(t, cols))
	args := []any{}
	if after != nil {
		marks := make([]string, len(after))
		for i, v := range after {
			args = append(args, v)
			marks[i] = "$" + strconv.Itoa(len(args)+1)
		}
		sb.WriteString(" AND (" + strings.Join(qpk, ", ") + ") > (" + strings.Join(marks, ", ") + ")")
	}
	sb.WriteString(" ORDER BY " + strings.Join(qpk, ", ") + " LIMIT " + strconv.Itoa(limit))
	return scanRows(ctx, tx, t, cols, sb.String(), args)
}

// readKeys reads the rows of a tenant table whose column key holds one of
// keys, in primary-key order, with the columns given (normalised as by
// readPage).
func readKeys(ctx context.Context, tx *store.Tx, t table, cols []column, key column, keys []any) ([][]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	marks := make([]string, len(keys))
	for i := range keys {
		marks[i] = "$" + strconv.Itoa(i+2)
	}
	q := selectFrom(t, cols) + " AND " + quoteIdent(key.Name) + " IN (" + strings.Join(marks, ", ") + ") ORDER BY " + strings.Join(quotedPK(t), ", ")
	return scanRows(ctx, tx, t, cols, q, keys)
}

// selectFrom is the start of a query of cols from a tenant table, up to
// its tenant condition.
func selectFrom(t table, cols []column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.Name)
	}
	return "SELECT " + strings.Join(names, ", ") + " FROM " + quoteIdent(t.Name) + " WHERE tenant_id = $1"
}

func quotedPK(t table) []string {
	pk := pkOrder(t)
	q := make([]string, len(pk))
	for i, c := range pk {
		q[i] = quoteIdent(c)
	}
	return q
}

// scanRows runs a query of cols and returns its rows, normalised.
func scanRows(ctx context.Context, tx *store.Tx, t table, cols []column, q string, args []any) ([][]any, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("privacy: read %s: %w", t.Name, err)
	}
	defer func() { _ = rows.Close() }()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("privacy: read %s: %w", t.Name, err)
		}
		for i, c := range cols {
			vals[i] = normalise(c.Kind, vals[i])
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// pkOrder is the ordering key of a table without tenant_id (bound anyway);
// a table without a primary key is ordered by all its columns.
func pkOrder(t table) []string {
	var out []string
	for _, c := range t.PK {
		if c != "tenant_id" {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		for _, c := range t.Cols {
			if c.Name != "tenant_id" {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func normalise(kind string, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case int32:
		v = int64(x)
	case int:
		v = int64(x)
	case []byte:
		if kind != kindBlob {
			v = string(x)
		} else {
			v = append([]byte(nil), x...)
		}
	}
	switch kind {
	case kindBool:
		switch x := v.(type) {
		case int64:
			return x != 0
		case string:
			return x == "1" || strings.EqualFold(x, "true") || x == "t"
		}
	case kindInt:
		if s, ok := v.(string); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
		}
	}
	return v
}

// keyOf extracts the ordering key of a row read with cols.
func keyOf(t table, cols []column, row []any) []any {
	pk := pkOrder(t)
	out := make([]any, len(pk))
	for i, k := range pk {
		for j, c := range cols {
			if c.Name == k {
				out[i] = row[j]
			}
		}
	}
	return out
}

// jsonValue encodes a normalised value: blobs as base64.
func jsonValue(v any) json.RawMessage {
	if b, ok := v.([]byte); ok {
		v = base64.StdEncoding.EncodeToString(b)
	}
	out, err := json.Marshal(v)
	if err != nil { // only for values normalise never yields
		return json.RawMessage(`null`)
	}
	return out
}

// fromJSON decodes a value of a column kind written by jsonValue.
func fromJSON(kind string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch kind {
	case kindInt:
		var n int64
		err := json.Unmarshal(raw, &n)
		return n, err
	case kindReal:
		var f float64
		err := json.Unmarshal(raw, &f)
		return f, err
	case kindBool:
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case kindBlob:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// scanAll is a small helper for the rare statement read whole.
func scanAll(rows *sql.Rows, dest func() []any) error {
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := rows.Scan(dest()...); err != nil {
			return err
		}
	}
	return rows.Err()
}

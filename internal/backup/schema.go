package backup

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/relais-dev/relais/internal/store"
)

// Column kinds of the dialect-neutral format.
const (
	kindText  = "text"
	kindBytes = "bytes"
	kindInt   = "int"
	kindBool  = "bool"
	kindFloat = "float"
)

// excluded tables hold no tenant data worth restoring, or must not come
// back: authentication state that a restore must never revive (sessions,
// pending second-factor challenges, one-time enrolment and reset links,
// per-address failure counters), and the backup machinery itself.
var excluded = map[string]bool{
	"sessions": true, "mfa_challenges": true, "user_tokens": true, "ip_failures": true,
	"backup_changes": true, "backup_state": true, "backup_restoring": true, "backup_self_logged": true,
	// Transient or platform state of later features: login flows and the
	// SAML replay cache (expire within minutes), audit forwarding cursors,
	// alert state, key rotation progress, shredding records (the live
	// store's are re-applied to every restore), destruction requests, and
	// the SFTP file index (its encrypted blobs live outside the store).
	"sso_flows": true, "sso_replay": true, "audit_forward_cursors": true, "monitor_alerts": true,
	"key_rotations": true, "shredding_records": true, "tenant_destructions": true, "sftp_files": true,
}

// copiedWhole are backed-up tables without change-log triggers, copied
// whole by every point: the audit queue (internal/audit), which holds only
// the events committed but not yet sequenced (drained every 200 ms) and is
// written by every audited transaction, where a trigger would double the
// cost. So a point holds every audit event committed before it, sequenced
// or still queued, and a restore sequences the queued ones.
var copiedWhole = map[string]bool{"audit_queue": true}

// column is one column of a backed-up table.
type column struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// table is a backed-up tenant table: its columns other than tenant_id
// (sorted by name, so both dialects agree), its primary key after
// tenant_id, the tables it references, and whether triggers log its changes.
type table struct {
	Name    string
	Columns []column
	PK      []string // primary-key columns other than tenant_id
	Refs    []string // tables referenced by foreign keys
	Serial  bool     // PK is a database-generated integer (message_events.id)
	// PKTenant: tenant_id is part of the primary key.
	PKTenant bool
	Tracked  bool // changes logged in backup_changes
}

// insertsLoggedWith returns the table under whose logged keys the inserts
// of table are logged ("" for a table that logs its own): a
// message_contents row is only ever inserted in the same transaction as
// its message (router.insertMessages: the same statement on PostgreSQL,
// the next one on SQLite), under the same key (message_id = id), and the
// message's insert is logged. Not logging it a second time is a fifth of
// the cost of accepting a batch of messages (bench/README.md, ingestion).
// An incremental point reads, for every key of messages logged as an
// insert (in a key list: every insert into messages is, since migration
// 00036; updates and deletes are plain keys), the message_contents row of
// that key too (changedKeys); the updates and deletes of message_contents
// are logged as any table's (migration 00034). The other writers of contents keep the rule: a tenant import
// (one transaction with the messages; contents without their message are
// dropped), a restore (the change log off), and an anonymised copy, which
// writes each page of messages with their contents in one transaction
// (privacy copiedWith; TestAnonymisedCopyRestoresAtEveryCommit takes a
// point after each of its transactions and restores each).
func insertsLoggedWith(table string) string {
	if table == "message_contents" {
		return "messages"
	}
	return ""
}

func (t *table) kindOf(name string) string {
	for _, c := range t.Columns {
		if c.Name == name {
			return c.Kind
		}
	}
	return kindText
}

func kindFromType(typ string) string {
	t := strings.ToUpper(typ)
	switch {
	case strings.Contains(t, "BOOL"):
		return kindBool
	case strings.Contains(t, "INT"), t == "BIGSERIAL", t == "SERIAL":
		return kindInt
	case strings.Contains(t, "BLOB"), strings.Contains(t, "BYTEA"):
		return kindBytes
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"), strings.Contains(t, "NUMERIC"):
		return kindFloat
	default:
		return kindText
	}
}

// loadSchema reads the backed-up tables of the store, in an order where
// every table comes after those it references (so rows insert parents
// first).
func loadSchema(ctx context.Context, db *store.DB) ([]*table, error) {
	byName := map[string]*table{}
	err := db.Platform(ctx, func(p *store.PlatformTx) error {
		if db.Dialect() == store.Postgres {
			return loadPostgres(ctx, p, byName)
		}
		return loadSQLite(ctx, p, byName)
	})
	if err != nil {
		return nil, fmt.Errorf("backup: read the schema: %w", err)
	}
	// A table whose inserts are logged with another's is tracked only if
	// that one is: otherwise its inserts would be logged nowhere.
	for n, t := range byName {
		if o := insertsLoggedWith(n); o != "" && (byName[o] == nil || !byName[o].Tracked) {
			t.Tracked = false
		}
	}
	var names []string
	for n, t := range byName {
		has := false
		for _, c := range t.Columns {
			if c.Name == "tenant_id" {
				has = true
			}
		}
		if !has || excluded[n] {
			delete(byName, n)
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	// Topological order by foreign keys, ties by name.
	var out []*table
	state := map[string]int{}
	var visit func(n string) error
	visit = func(n string) error {
		t, ok := byName[n]
		if !ok || state[n] == 2 {
			return nil
		}
		if state[n] == 1 {
			return fmt.Errorf("backup: foreign-key cycle through table %s", n)
		}
		state[n] = 1
		refs := append([]string(nil), t.Refs...)
		sort.Strings(refs)
		for _, r := range refs {
			if r != n {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		t.Columns = withoutTenant(t.Columns)
		sort.Slice(t.Columns, func(i, j int) bool { return t.Columns[i].Name < t.Columns[j].Name })
		out = append(out, t)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func withoutTenant(cs []column) []column {
	out := cs[:0:0]
	for _, c := range cs {
		if c.Name != "tenant_id" {
			out = append(out, c)
		}
	}
	return out
}

func loadSQLite(ctx context.Context, p *store.PlatformTx, byName map[string]*table) error {
	rows, err := p.Query(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version'`)
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
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		t := &table{Name: n}
		byName[n] = t
		cr, err := p.Query(ctx, `SELECT name, type, pk FROM pragma_table_info(?)`, n)
		if err != nil {
			return err
		}
		pk := map[int]string{}
		for cr.Next() {
			var name, typ string
			var pkPos int
			if err := cr.Scan(&name, &typ, &pkPos); err != nil {
				_ = cr.Close()
				return err
			}
			t.Columns = append(t.Columns, column{Name: name, Kind: kindFromType(typ)})
			if pkPos > 0 {
				pk[pkPos] = name
			}
		}
		_ = cr.Close()
		for i := 1; i <= len(pk); i++ {
			if pk[i] == "tenant_id" {
				t.PKTenant = true
			} else {
				t.PK = append(t.PK, pk[i])
			}
		}
		if len(pk) == 1 && pk[1] != "tenant_id" && t.kindOf(pk[1]) == kindInt {
			t.Serial = true
		}
		fr, err := p.Query(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return err
		}
		for fr.Next() {
			var r string
			if err := fr.Scan(&r); err != nil {
				_ = fr.Close()
				return err
			}
			t.Refs = append(t.Refs, r)
		}
		_ = fr.Close()
		var trig int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? AND name LIKE 'backup_change_%'`, n).Scan(&trig); err != nil {
			return err
		}
		// Insert, update and delete triggers; update and delete only for a
		// table whose inserts are logged with another's.
		t.Tracked = trig >= 3 || insertsLoggedWith(n) != "" && trig >= 2
	}
	return nil
}

func loadPostgres(ctx context.Context, p *store.PlatformTx, byName map[string]*table) error {
	rows, err := p.Query(ctx, `SELECT table_name, column_name, data_type, COALESCE(column_default, '')
		FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var tn, cn, typ, def string
		if err := rows.Scan(&tn, &cn, &typ, &def); err != nil {
			_ = rows.Close()
			return err
		}
		t := byName[tn]
		if t == nil {
			t = &table{Name: tn}
			byName[tn] = t
		}
		t.Columns = append(t.Columns, column{Name: cn, Kind: kindFromType(typ)})
		if strings.HasPrefix(def, "nextval(") {
			t.Serial = true
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	pr, err := p.Query(ctx, `SELECT c.relname, a.attname
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
		WHERE i.indisprimary AND n.nspname = current_schema() ORDER BY c.relname, k.ord`)
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
			if cn == "tenant_id" {
				t.PKTenant = true
			} else {
				t.PK = append(t.PK, cn)
			}
		}
	}
	_ = pr.Close()
	fr, err := p.Query(ctx, `SELECT DISTINCT c.relname, r.relname FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype = 'f' AND n.nspname = current_schema()`)
	if err != nil {
		return err
	}
	for fr.Next() {
		var tn, rn string
		if err := fr.Scan(&tn, &rn); err != nil {
			_ = fr.Close()
			return err
		}
		if t := byName[tn]; t != nil {
			t.Refs = append(t.Refs, rn)
		}
	}
	_ = fr.Close()
	// A tracked table has the trigger backup_change (row-level for every
	// change, or statement-level for inserts beside backup_change_update
	// and backup_change_delete); a table whose inserts are logged with
	// another's has only the update and delete ones.
	tr, err := p.Query(ctx, `SELECT c.relname, g.tgname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE g.tgname IN ('backup_change', 'backup_change_update', 'backup_change_delete')
		AND n.nspname = current_schema()`)
	if err != nil {
		return err
	}
	partial := map[string]int{}
	for tr.Next() {
		var tn, tg string
		if err := tr.Scan(&tn, &tg); err != nil {
			_ = tr.Close()
			return err
		}
		t := byName[tn]
		switch {
		case t == nil:
		case tg == "backup_change":
			t.Tracked = true
		case insertsLoggedWith(tn) != "":
			if partial[tn]++; partial[tn] == 2 {
				t.Tracked = true
			}
		}
	}
	_ = tr.Close()
	return tr.Err()
}

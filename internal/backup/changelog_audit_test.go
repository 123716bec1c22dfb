package backup

import (
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestAuditEventsChangeLogMatchesRowTrigger: on PostgreSQL audit_events
// logs its changes with statement-level triggers (00029). Multi-row
// inserts, as the sequencer writes, an update of bodies (as a retention
// purge), an update that changes seq, a delete, writes during a restore
// (nothing logged) and the operator's log (empty tenant id, never logged)
// must log the same keys as the row-level trigger they replaced: one tenant
// runs them with the new triggers, another after the old one is put back.
func TestAuditEventsChangeLogMatchesRowTrigger(t *testing.T) {
	db := storetest.OpenPostgres(t, storetest.Options{})
	ts := &tenants.Service{DB: db, Master: newMaster(t), Defaults: config.DefaultPolicy()}
	row := func(seq int) string {
		return fmt.Sprintf(`($1, %d, 1, 'change', 'x', 'user', 'u', 'contact', 'c', '', '', '', '{}', '\x00', '\x00')`, seq)
	}
	cols := `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id, object_type, object_id, ip, user_agent,
		request_id, details, leaf_hash, hash) VALUES `
	changed := func(name string) map[string][]string {
		tn, err := ts.Create(bg, name, name)
		if err != nil {
			t.Fatal(err)
		}
		stmts := []string{
			`DELETE FROM audit_events WHERE tenant_id = $1`,
			cols + row(101) + `, ` + row(102) + `, ` + row(103),
			`UPDATE audit_events SET details = '', purged_at = 2 WHERE tenant_id = $1 AND seq IN (101, 102)`,
			`UPDATE audit_events SET seq = 104 WHERE tenant_id = $1 AND seq = 103`,    // a key that changes: old and new logged
			`UPDATE audit_events SET details = '' WHERE tenant_id = $1 AND seq = 999`, // no row
			`DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 101`,
			`INSERT INTO backup_restoring (tenant_id) VALUES ($1)`,
			cols + row(201) + `, ` + row(202),
			`UPDATE audit_events SET details = '{}' WHERE tenant_id = $1 AND seq = 102`,
			`DELETE FROM backup_restoring WHERE tenant_id = $1`,
			`UPDATE audit_events SET seq = 203 WHERE tenant_id = $1 AND seq = 202`, // written during the restore: only the update logs
		}
		err = db.Tenant(tn.ID).Tx(bg, func(tx *store.Tx) error {
			for _, q := range stmts {
				if _, err := tx.Exec(bg, q); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			if _, err := tx.Exec(bg, `DELETE FROM backup_changes WHERE tenant_id = $1 AND tbl <> 'audit_events'`); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The operator's log: no tenant, never logged.
		err = db.Platform(bg, func(p *store.PlatformTx) error {
			_, err := p.Exec(bg, `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id, object_type, object_id,
				ip, user_agent, request_id, details, leaf_hash, hash) VALUES ('', 1000001, 1, 'admin', 'x', 'operator', 'o', '', '', '', '', '', '{}', '\x00', '\x00')`)
			if err == nil {
				_, err = p.Exec(bg, `UPDATE audit_events SET details = '' WHERE tenant_id = '' AND seq = 1000001`)
			}
			if err == nil {
				_, err = p.Exec(bg, `DELETE FROM audit_events WHERE tenant_id = '' AND seq = 1000001`)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return changedKeys(t, db, tn.ID)
	}
	got := changed("stmt")
	want := map[string][]string{"audit_events": {`[101]`, `[102]`, `[103]`, `[104]`, `[202]`, `[203]`}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("statement triggers logged %v, want %v", got, want)
	}
	if n := platformChanges(t, db); n != 0 {
		t.Fatalf("%d change-log rows for the operator's log", n)
	}
	backToRowTriggers(t, db, map[string]string{"audit_events": "'seq'"})
	if old := changed("rows"); !reflect.DeepEqual(got, old) {
		t.Fatalf("statement triggers logged %v, the row trigger %v", got, old)
	}
}

// TestSequencedEventsAreInTheChangeLog: events the sequencer writes (in
// statements of several rows) are each in the backup change log, on both
// dialects, so that an incremental backup copies them.
func TestSequencedEventsAreInTheChangeLog(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ts := &tenants.Service{DB: db, Master: newMaster(t), Defaults: config.DefaultPolicy()}
		tn, err := ts.Create(bg, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Sequence(bg, db, tn.ID); err != nil {
			t.Fatal(err)
		}
		err = db.Tenant(tn.ID).Tx(bg, func(tx *store.Tx) error {
			if _, err := tx.Exec(bg, `DELETE FROM backup_changes WHERE tenant_id = $1`); err != nil {
				return err
			}
			for i := 0; i < 23; i++ {
				if _, err := audit.Append(bg, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var head int64
		err = db.Tenant(tn.ID).Tx(bg, func(tx *store.Tx) error {
			if err := audit.SequenceLog(bg, tx); err != nil {
				return err
			}
			return tx.QueryRow(bg, `SELECT seq FROM audit_heads WHERE tenant_id = $1`).Scan(&head)
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for s := head - 22; s <= head; s++ {
			want = append(want, fmt.Sprintf("[%d]", s))
		}
		sort.Strings(want)
		if got := changedKeys(t, db, tn.ID)["audit_events"]; !reflect.DeepEqual(got, want) {
			t.Fatalf("change log of audit_events %v, want %v", got, want)
		}
	})
}

// changedKeys reads a tenant's change log as a backup reads it: the
// distinct keys of each table, sorted.
func changedKeys(t *testing.T, db *store.DB, tenant string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := db.Tenant(tenant).Tx(bg, func(tx *store.Tx) error {
		rows, err := tx.Query(bg, `SELECT DISTINCT tbl, pk FROM backup_changes WHERE tenant_id = $1`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var tbl, pk string
			if err := rows.Scan(&tbl, &pk); err != nil {
				return err
			}
			out[tbl] = append(out[tbl], pk)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func platformChanges(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	err := db.Platform(bg, func(p *store.PlatformTx) error {
		return p.QueryRow(bg, `SELECT count(*) FROM backup_changes WHERE tenant_id = ''`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

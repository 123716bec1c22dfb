package backup

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// rowTriggers are the row-level change-log triggers that migration 00024
// replaced on PostgreSQL by statement-level ones (relais_backup_change_rows).
var rowTriggers = map[string]string{"contacts": "'id'", "blocklist": "'kind', 'value_bidx'",
	"consents": "'contact_id', 'channel', 'purpose'", "list_members": "'list_id', 'contact_id'"}

// TestStatementChangeLogMatchesRowTriggers: on PostgreSQL the contacts
// tables log their changes with statement-level triggers (00024). The same
// multi-row statements (inserts, upserts that insert and update, an update
// that changes a key, a delete, and writes during a restore, which log
// nothing) must log the same keys as the row-level triggers they replaced:
// one tenant runs them with the new triggers, another after the old ones are
// put back, and the changed keys (as a backup reads them) must be the same.
func TestStatementChangeLogMatchesRowTriggers(t *testing.T) {
	db := storetest.OpenPostgres(t, storetest.Options{})
	ts := &tenants.Service{DB: db, Master: newMaster(t), Defaults: config.DefaultPolicy()}
	changed := func(name string) map[string][]string {
		tn, err := ts.Create(bg, name, name)
		if err != nil {
			t.Fatal(err)
		}
		stmts := []string{
			`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at) VALUES
				($1, 'c1', '\x01', 'active', 'import', 1, 1), ($1, 'c2', '\x02', 'active', 'import', 1, 1), ($1, 'c3', '\x03', 'active', 'import', 1, 1)`,
			// c2 and c3 are updated, c4 inserted, by one statement.
			`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at) VALUES
				($1, 'x2', '\x02', 'active', 'import', 2, 2), ($1, 'x3', '\x03', 'active', 'import', 2, 2), ($1, 'c4', '\x04', 'active', 'import', 2, 2)
				ON CONFLICT (tenant_id, email_bidx) DO UPDATE SET updated_at = excluded.updated_at`,
			`UPDATE contacts SET id = 'c5' WHERE tenant_id = $1 AND id = 'c4'`, // a key that changes: old and new logged
			`UPDATE contacts SET status = 'bounced' WHERE tenant_id = $1 AND id IN ('c1', 'c2')`,
			`UPDATE contacts SET status = 'bounced' WHERE tenant_id = $1 AND id = 'none'`, // no row
			// Keys of two and three columns: list members and consents,
			// inserted, upserted, one key changed, c3's removed with c3.
			`INSERT INTO lists (tenant_id, id, name, created_at, updated_at) VALUES ($1, 'l1', 'L1', 1, 1)`,
			`INSERT INTO list_members (tenant_id, list_id, contact_id, added_at) VALUES ($1, 'l1', 'c1', 1), ($1, 'l1', 'c3', 1)`,
			`INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, last_event_id, created_at, updated_at) VALUES
				($1, 'c1', 'email', 'marketing', 'granted', 'import', 'e1', 1, 1), ($1, 'c3', 'sms', 'marketing', 'granted', 'import', 'e2', 1, 1)`,
			`INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, last_event_id, created_at, updated_at) VALUES
				($1, 'c1', 'email', 'marketing', 'withdrawn', 'api', 'e3', 2, 2)
				ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, last_event_id = excluded.last_event_id`,
			`UPDATE consents SET purpose = 'news' WHERE tenant_id = $1 AND contact_id = 'c1'`,
			`DELETE FROM contacts WHERE tenant_id = $1 AND id IN ('c3', 'c5')`,
			`INSERT INTO blocklist (tenant_id, kind, value_bidx, reason, source, created_at) VALUES
				($1, 'email', '\x0a0b', '', 'import', 1), ($1, 'phone', '\x0c', '', 'import', 1)`,
			`INSERT INTO blocklist (tenant_id, kind, value_bidx, reason, source, created_at) VALUES
				($1, 'email', '\x0a0b', 'again', 'import', 2), ($1, 'email', '\x0d', '', 'import', 2)
				ON CONFLICT (tenant_id, kind, value_bidx) DO NOTHING`,
			`UPDATE blocklist SET value_bidx = '\x0e' WHERE tenant_id = $1 AND kind = 'phone'`,
			`DELETE FROM blocklist WHERE tenant_id = $1 AND value_bidx = '\x0d'`,
			// During a restore of the tenant nothing is logged.
			`INSERT INTO backup_restoring (tenant_id) VALUES ($1)`,
			`INSERT INTO contacts (tenant_id, id, email_bidx, status, source, created_at, updated_at) VALUES ($1, 'r1', '\x09', 'active', 'import', 3, 3),
				($1, 'r3', '\x19', 'active', 'import', 3, 3)`,
			`INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, source, last_event_id, created_at, updated_at) VALUES
				($1, 'r1', 'email', 'marketing', 'granted', 'import', 'e4', 3, 3)`,
			`INSERT INTO list_members (tenant_id, list_id, contact_id, added_at) VALUES ($1, 'l1', 'r1', 3)`,
			`UPDATE contacts SET status = 'active' WHERE tenant_id = $1`,
			`DELETE FROM blocklist WHERE tenant_id = $1`,
			`DELETE FROM backup_restoring WHERE tenant_id = $1`,
			// Keys changed by an update of rows written during the restore:
			// only the update can log their old keys.
			`INSERT INTO lists (tenant_id, id, name, created_at, updated_at) VALUES ($1, 'l2', 'L2', 4, 4)`,
			`UPDATE contacts SET id = 'r4' WHERE tenant_id = $1 AND id = 'r3'`,
			`UPDATE consents SET purpose = 'news' WHERE tenant_id = $1 AND contact_id = 'r1'`,
			`UPDATE list_members SET list_id = 'l2' WHERE tenant_id = $1 AND contact_id = 'r1'`,
		}
		err = db.Tenant(tn.ID).Tx(bg, func(tx *store.Tx) error {
			if _, err := tx.Exec(bg, `DELETE FROM backup_changes WHERE tenant_id = $1`); err != nil {
				return err
			}
			for _, q := range stmts {
				if _, err := tx.Exec(bg, q); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return changedKeys(t, db, tn.ID)
	}
	got := changed("stmt")
	want := map[string][]string{
		"contacts":     {`["c1"]`, `["c2"]`, `["c3"]`, `["c4"]`, `["c5"]`, `["r3"]`, `["r4"]`},
		"blocklist":    {`["email", "\\x0a0b"]`, `["email", "\\x0d"]`, `["phone", "\\x0c"]`, `["phone", "\\x0e"]`},
		"lists":        {`["l1"]`, `["l2"]`},
		"list_members": {`["l1", "c1"]`, `["l1", "c3"]`, `["l1", "r1"]`, `["l2", "r1"]`},
		"consents":     {`["c1", "email", "marketing"]`, `["c1", "email", "news"]`, `["c3", "sms", "marketing"]`, `["r1", "email", "marketing"]`, `["r1", "email", "news"]`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("statement triggers logged %v, want %v", got, want)
	}
	backToRowTriggers(t, db, rowTriggers)
	if old := changed("rows"); !reflect.DeepEqual(got, old) {
		t.Fatalf("statement triggers logged %v, the row triggers %v", got, old)
	}
}

// backToRowTriggers replaces the statement-level change-log triggers of
// each table (PostgreSQL) with the row-level trigger of 00009, called with
// the table's key columns as its arguments.
func backToRowTriggers(t *testing.T, db *store.DB, keyArgs map[string]string) {
	t.Helper()
	err := db.Platform(bg, func(p *store.PlatformTx) error {
		for tbl, args := range keyArgs {
			for _, q := range []string{`DROP TRIGGER backup_change ON ` + tbl, `DROP TRIGGER backup_change_update ON ` + tbl,
				`DROP TRIGGER backup_change_delete ON ` + tbl,
				`CREATE TRIGGER backup_change AFTER INSERT OR UPDATE OR DELETE ON ` + tbl + ` FOR EACH ROW EXECUTE FUNCTION relais_backup_change(` + args + `)`} {
				if _, err := p.Exec(bg, q); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

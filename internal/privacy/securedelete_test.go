package privacy_test

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
)

// TestSQLiteFileHoldsNoErasedCiphertext: on SQLite, after an erasure and a
// destruction (and a WAL checkpoint), the database file itself no longer
// holds the erased person's ciphertexts or address indexes, nor the
// destroyed tenant's wrapped key: secure_delete zeroed them, so a copy of
// the file taken afterwards does not contain them, even for someone with
// the tenant key.
func TestSQLiteFileHoldsNoErasedCiphertext(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	db, err := store.Open(bg, store.Options{DataDir: dir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(bg); err != nil {
		t.Fatal(err)
	}
	e := setup(t, db, clk)
	ps := people()
	ids := populate(t, e, e.a.ID, ps)
	populate(t, e, e.b.ID, ps[:1])
	var patterns [][]byte
	collect := func(tenantID, q string, args ...any) {
		if err := db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
			rows, err := tx.Query(bg, q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					return err
				}
				if len(b) >= 16 {
					patterns = append(patterns, b)
				}
			}
			return rows.Err()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, col := range []string{"email_enc", "phone_enc", "first_name_enc", "last_name_enc", "email_bidx", "phone_bidx", "attributes_enc"} {
		collect(e.a.ID, `SELECT `+col+` FROM contacts WHERE tenant_id = $1 AND id = $2`, ids[0])
	}
	collect(e.a.ID, `SELECT recipient_enc FROM messages WHERE tenant_id = $1 AND contact_id = $2`, ids[0])
	collect(e.a.ID, `SELECT c.content_enc FROM messages m JOIN message_contents c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
		WHERE m.tenant_id = $1 AND m.contact_id = $2`, ids[0])
	if len(patterns) != 9 {
		t.Fatalf("%d patterns", len(patterns))
	}
	if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{ContactID: ids[0]}, privacy.EraseOptions{}); err != nil {
		t.Fatal(err)
	}
	fileHas := func(pats [][]byte) int {
		raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "relais.db")+"?_pragma=busy_timeout(15000)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		_ = raw.Close()
		var all []byte
		for _, f := range []string{"relais.db", "relais.db-wal"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err == nil {
				all = append(all, b...)
			}
		}
		n := 0
		for _, p := range pats {
			if bytes.Contains(all, p) {
				n++
			}
		}
		return n
	}
	if n := fileHas(patterns); n > 0 {
		t.Fatalf("%d of the erased person's ciphertexts or indexes are still in the database file", n)
	}
	// Destruction: the wrapped data key leaves the file too.
	var wrapped []byte
	if err := db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
		return tx.QueryRow(bg, `SELECT wrapped FROM tenant_keys WHERE tenant_id = $1`).Scan(&wrapped)
	}); err != nil {
		t.Fatal(err)
	}
	deliverAll(t, e, e.a.ID)
	_, code, err := e.svc.RequestDestruction(bg, e.a, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.ConfirmDestruction(bg, e.a, code, true); err != nil {
		t.Fatal(err)
	}
	if n := fileHas([][]byte{wrapped}); n > 0 {
		t.Fatal("the destroyed tenant's wrapped key is still in the database file")
	}
}

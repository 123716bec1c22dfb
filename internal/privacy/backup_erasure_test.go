package privacy_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestErasureSurvivesARestoreOfAnOlderBackup is issue 9's first done-when
// item, backup half: a backup taken before an erasure, restored afterwards
// (into another store, as a restore next to the live tenant is refused),
// brings nothing of the erased person back: the restore re-applies the live
// store's shredding records, so the person's contact key is gone from the
// restored rows and no sealed field of theirs opens; the other contacts of
// the backup read as before.
func TestErasureSurvivesARestoreOfAnOlderBackup(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		ids := populate(t, e, e.a.ID, ps)
		target, err := backup.OpenTarget("dir://" + filepath.ToSlash(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		bk := &backup.Service{DB: e.db, Master: e.mk, Keyring: e.keyring,
			Shred: backup.StoreShredding{DB: e.db, EraseContact: e.svc.EraseRestored}}
		if _, err := bk.Run(bg, e.a.ID, target, backup.RunOptions{Full: true}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{ContactID: ids[0]}, privacy.EraseOptions{}); err != nil {
			t.Fatal(err)
		}

		// Restore the pre-erasure backup into a fresh store with the same
		// master key (a disaster recovery of the platform).
		dest := storetest.OpenSQLite(t, storetest.Options{})
		if _, err := bk.Restore(bg, e.a.ID, target, backup.RestoreOptions{IntoSlug: "acme-restored", Dest: dest}); err != nil {
			t.Fatal(err)
		}
		restored := &contacts.Service{DB: dest, Keyring: tenants.NewKeyring(dest, e.mk, 0)}
		if c, err := restored.Get(bg, e.a.ID, ids[0]); err == nil && (c.Email == ps[0].email || c.FirstName == ps[0].first || c.Phone == ps[0].phone) {
			t.Fatalf("the erased person came back from the backup: %+v", c)
		}
		for i := 1; i < len(ps); i++ {
			c, err := restored.Get(bg, e.a.ID, ids[i])
			if err != nil || c.Email != ps[i].email {
				t.Fatalf("contact %d after the restore: %+v %v", i, c, err)
			}
		}
		// No column of the restored contact row holds a key or a sealed
		// value any more, and the shredding record travelled with it.
		var keyEnc, emailEnc []byte
		var records int
		if err := dest.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			if err := tx.QueryRow(bg, `SELECT key_enc, email_enc FROM contacts WHERE tenant_id = $1 AND id = $2`, ids[0]).Scan(&keyEnc, &emailEnc); err != nil {
				return err
			}
			return tx.QueryRow(bg, `SELECT count(*) FROM shredding_records WHERE tenant_id = $1 AND kind = 'contact' AND subject_id = $2`, ids[0]).Scan(&records)
		}); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if len(keyEnc) != 0 || len(emailEnc) != 0 || records != 1 {
			t.Fatalf("restored row: key %d bytes, email %d bytes, %d shredding records", len(keyEnc), len(emailEnc), records)
		}
		// Nothing of the person anywhere in the restored tenant: every
		// column of every table, decrypted with every key it opens with.
		restoredEnv := *e
		restoredEnv.db = dest
		if found := traces(t, &restoredEnv, e.a.ID, needlesOf(ps[0]), nil); len(found) > 0 {
			t.Fatalf("the erased person is in the restored tenant: %v", found)
		}
		if found := traces(t, &restoredEnv, e.a.ID, needlesOf(ps[1]), nil); len(found) == 0 {
			t.Fatal("the scan finds nothing even of a person who was not erased: it proves nothing")
		}
	})
}

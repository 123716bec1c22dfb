package contacts_test

import (
	"errors"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

type storedContact struct {
	emailEnc, firstEnc, keyEnc, emailBidx []byte
}

func (e *env) stored(t *testing.T, tenant, id string) storedContact {
	t.Helper()
	var s storedContact
	err := e.db.Tenant(tenant).Tx(bg, func(tx *store.Tx) error {
		return tx.QueryRow(bg, `SELECT email_enc, first_name_enc, key_enc, email_bidx FROM contacts WHERE tenant_id = $1 AND id = $2`, id).
			Scan(&s.emailEnc, &s.firstEnc, &s.keyEnc, &s.emailBidx)
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPerContactKeys: each contact's fields are sealed under its own key (not
// the tenant's); shredding that key makes the person unreadable and
// unfindable, also in an older copy of the row once the restore re-applies
// the shredding record; the other contacts are untouched.
func TestPerContactKeys(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		jane := e.create(t, e.a.ID, contacts.NewContact{Email: "jane@example.com", FirstName: "Jane"})
		john := e.create(t, e.a.ID, contacts.NewContact{Email: "john@example.com", FirstName: "John"})
		before := e.stored(t, e.a.ID, jane.ID)
		if v, _ := keys.KeyVersionOf(before.emailEnc); v != tenants.ContactKeyVersion || len(before.keyEnc) == 0 {
			t.Fatalf("email sealed under version %d, key %d bytes: want the contact's own key", v, len(before.keyEnc))
		}
		cr, err := e.svc.Keyring.Crypto(bg, e.a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cr.Open("contact.email", before.emailEnc); err == nil {
			t.Fatal("the tenant key alone opens a contact's field")
		}
		// Another contact's key does not open it either.
		other, _ := cr.ContactCipher(e.stored(t, e.a.ID, john.ID).keyEnc)
		if _, err := other.OpenString("contact.email", before.emailEnc); err == nil {
			t.Fatal("john's key opens jane's email")
		}

		if err := e.svc.ShredContact(bg, e.a.ID, jane.ID, "erasure request 42"); err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Get(bg, e.a.ID, jane.ID)
		if err != nil || got.Email != "" || got.FirstName != "" {
			t.Fatalf("shredded contact reads %+v %v", got, err)
		}
		if _, err := e.svc.FindByEmail(bg, e.a.ID, "jane@example.com"); !errors.Is(err, contacts.ErrNotFound) {
			t.Fatalf("shredded contact still found by email: %v", err)
		}
		if c, err := e.svc.Get(bg, e.a.ID, john.ID); err != nil || c.Email != "john@example.com" {
			t.Fatalf("other contact: %+v %v", c, err)
		}
		if err := e.svc.ShredContact(bg, e.a.ID, "no-such-contact", ""); !errors.Is(err, contacts.ErrNotFound) {
			t.Fatalf("shred unknown: %v", err)
		}
		if n := countWhere(e.events(t, e.a.ID), func(r audit.Record) bool { return r.Action == "contact.shred" && r.ObjectID == jane.ID }); n != 1 {
			t.Fatalf("%d contact.shred events", n)
		}

		// An older backup of the row, restored: the shredding record is
		// re-applied, and the copy is unreadable again.
		ts := &tenants.Service{DB: e.db, Master: e.mk}
		records, err := ts.ShreddingRecords(bg)
		if err != nil || len(records) != 1 || records[0].Kind != "contact" || records[0].SubjectID != jane.ID {
			t.Fatalf("records %+v %v", records, err)
		}
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `UPDATE contacts SET email_enc = $3, first_name_enc = $4, key_enc = $5, email_bidx = $6 WHERE tenant_id = $1 AND id = $2`,
				jane.ID, before.emailEnc, before.firstEnc, before.keyEnc, before.emailBidx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := ts.ReapplyShredding(bg, records); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.svc.Get(bg, e.a.ID, jane.ID); got.Email != "" {
			t.Fatal("restored row readable after re-applying shredding")
		}
		// The old ciphertext itself, without its key, opens nowhere.
		cc, _ := cr.ContactCipher(nil)
		if _, err := cc.OpenString("contact.email", before.emailEnc); !errors.Is(err, keys.ErrShredded) {
			t.Fatalf("opening a shredded field: %v", err)
		}
	})
}

// TestLegacyContactWithoutKey: a contact sealed under the tenant key (written
// before per-contact keys) still reads, and gets its own key when updated.
func TestLegacyContactWithoutKey(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "old@example.com", FirstName: "Old"})
		cr, _ := e.svc.Keyring.Crypto(bg, e.a.ID)
		emailEnc, _ := cr.SealString("contact.email", "old@example.com")
		firstEnc, _ := cr.SealString("contact.first_name", "Old")
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `UPDATE contacts SET email_enc = $3, first_name_enc = $4, key_enc = NULL WHERE tenant_id = $1 AND id = $2`, c.ID, emailEnc, firstEnc)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got, err := e.svc.Get(bg, e.a.ID, c.ID); err != nil || got.Email != "old@example.com" || got.FirstName != "Old" {
			t.Fatalf("legacy read: %+v %v", got, err)
		}
		last := "Timer"
		if _, err := e.svc.Update(bg, e.a.ID, c.ID, contacts.Patch{LastName: &last}); err != nil {
			t.Fatal(err)
		}
		s := e.stored(t, e.a.ID, c.ID)
		if v, _ := keys.KeyVersionOf(s.emailEnc); len(s.keyEnc) == 0 || v != tenants.ContactKeyVersion {
			t.Fatal("updated legacy contact has no key of its own")
		}
		if got, err := e.svc.Get(bg, e.a.ID, c.ID); err != nil || got.Email != "old@example.com" || got.LastName != "Timer" {
			t.Fatalf("after update: %+v %v", got, err)
		}
	})
}

// TestImportUpsertKeepsOneKeyPerContact: re-importing known people (by
// email, by phone) re-seals what each line sets under the contact's existing
// key, so every field stays readable.
func TestImportUpsertKeepsOneKeyPerContact(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "ann@example.com", Phone: "+33612345678", FirstName: "Ann"})
		p := e.create(t, e.a.ID, contacts.NewContact{Phone: "+33699999999", FirstName: "Pat"})
		key := e.stored(t, e.a.ID, c.ID).keyEnc
		data := []byte("email,phone,first_name,last_name\nann@example.com,,,Lee\n,+33699999999,,Doe\nann@example.com,,,Lee2\n")
		job, err := e.importBytes(t, e.a.ID, data, contacts.ImportOptions{})
		if err != nil || job.Updated != 3 {
			t.Fatalf("import: %+v %v", job, err)
		}
		if got := e.stored(t, e.a.ID, c.ID).keyEnc; string(got) != string(key) {
			t.Fatal("the contact's key changed")
		}
		got, err := e.svc.Get(bg, e.a.ID, c.ID)
		if err != nil || got.FirstName != "Ann" || got.LastName != "Lee2" || got.Phone != "+33612345678" || got.Email != "ann@example.com" {
			t.Fatalf("after upsert: %+v %v", got, err)
		}
		got, err = e.svc.Get(bg, e.a.ID, p.ID)
		if err != nil || got.FirstName != "Pat" || got.LastName != "Doe" {
			t.Fatalf("after phone upsert: %+v %v", got, err)
		}
	})
}

package privacy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func count(t *testing.T, e *env, tenantID, q string) int64 {
	t.Helper()
	var n int64
	if err := e.db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error { return tx.QueryRow(bg, q).Scan(&n) }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAnonymize: the anonymised copy holds no personal value of the source
// anywhere (scan of every table, decrypting under the copy's key), no
// source key nor index, and preserves counts, joins and duplicates.
func TestAnonymize(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		// A duplicate: the same phone on a second contact.
		if _, err := e.contacts.Create(bg, e.a.ID, contacts.NewContact{Phone: ps[0].phone, FirstName: "Zebulonia", LastName: "Quaxworth"}); err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.Anonymize(bg, e.a, "", "staging-acme")
		if err != nil {
			t.Fatal(err)
		}
		cp := res.Tenant
		var needles []string
		var raw [][]byte
		scr, _ := e.keyring.Crypto(bg, e.a.ID)
		for _, p := range ps {
			needles = append(needles, needlesOf(p)...)
			needles = append(needles, p.first+"ito") // the personal attribute
			raw = append(raw, scr.Index("contact.email", p.email), scr.Index("contact.phone", p.phone))
		}
		raw = append(raw, scr.Index("contact.email", "stranger.unknown@example.com"))
		if left := traces(t, e, cp.ID, needles, raw); len(left) > 0 {
			t.Fatalf("source values in the copy: %v", left)
		}
		// The copy's key is its own: it cannot open the source's ciphertexts.
		dcr, err := tenants.NewKeyring(e.db, e.mk, 0).Crypto(bg, cp.ID)
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := scr.SealString("contact.email", "x")
		if _, err := dcr.Open("contact.email", ct); err == nil {
			t.Fatal("the copy shares the source's key")
		}
		// Counts preserved, table by table (connectors and routes left out).
		for _, q := range []string{"contacts", "consents", "consent_events", "lists", "list_members", "messages", "message_events", "blocklist", "attribute_schema"} {
			a := count(t, e, e.a.ID, `SELECT count(*) FROM `+q+` WHERE tenant_id = $1`)
			b := count(t, e, cp.ID, `SELECT count(*) FROM `+q+` WHERE tenant_id = $1`)
			if a != b || a == 0 {
				t.Errorf("%s: source %d, copy %d", q, a, b)
			}
		}
		// Per-contact keys: every copied person has a new key of its own.
		withKey := `SELECT count(DISTINCT key_enc) FROM contacts WHERE tenant_id = $1 AND key_enc IS NOT NULL`
		if a, b := count(t, e, e.a.ID, withKey), count(t, e, cp.ID, withKey); a == 0 || a != b {
			t.Fatalf("contacts with their own key: source %d, copy %d", a, b)
		}
		// Joins: every message still joins its contact, and its fake
		// recipient is that contact's fake email.
		joined := `SELECT count(*) FROM messages m JOIN contacts c ON c.tenant_id = m.tenant_id AND c.id = m.contact_id WHERE m.tenant_id = $1`
		if a, b := count(t, e, e.a.ID, joined), count(t, e, cp.ID, joined); a != b || a != 3 {
			t.Fatalf("joined messages: %d vs %d", a, b)
		}
		ids := contactIDs(t, e, cp.ID)
		fake, err := e.contacts.Get(bg, cp.ID, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if fake.Email == "" || !strings.HasSuffix(fake.Email, ".com") && !strings.HasSuffix(fake.Email, ".org") && !strings.HasSuffix(fake.Email, ".net") {
			t.Fatalf("fake email %q", fake.Email)
		}
		byEmail, err := e.contacts.FindByEmail(bg, cp.ID, fake.Email)
		if err != nil || byEmail.ID != fake.ID {
			t.Fatalf("the copy's blind index does not find the fake email: %v", err)
		}
		var to []byte
		if err := e.db.Tenant(cp.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT recipient_enc FROM messages WHERE tenant_id = $1 AND contact_id = $2`, fake.ID).Scan(&to)
		}); err != nil {
			t.Fatal(err)
		}
		if got, _ := dcr.OpenString("message.to", to); got != fake.Email {
			t.Fatalf("message recipient %q, contact email %q", got, fake.Email)
		}
		// Duplicates: the two contacts sharing a phone still share one.
		dup := `SELECT count(*) FROM contacts a JOIN contacts b ON a.tenant_id = b.tenant_id AND a.phone_bidx = b.phone_bidx AND a.id < b.id WHERE a.tenant_id = $1`
		if n := count(t, e, cp.ID, dup); n != 1 {
			t.Fatalf("duplicate phones in the copy: %d", n)
		}
		// The blocklisted address stays blocklisted under its fake.
		if n := count(t, e, cp.ID, `SELECT count(*) FROM contacts c JOIN blocklist b ON b.tenant_id = c.tenant_id AND b.value_bidx = c.email_bidx WHERE c.tenant_id = $1`); n != 1 {
			t.Fatalf("blocklist join in the copy: %d", n)
		}
		// Nothing left to send.
		if n := count(t, e, cp.ID, `SELECT count(*) FROM messages WHERE tenant_id = $1 AND state IN ('queued', 'sending', 'held')`); n != 0 {
			t.Fatalf("%d messages left to send in the copy", n)
		}
		// A slug in use is refused, and the source is untouched.
		fp, _ := privacy.Fingerprint(bg, e.db, e.b.ID)
		if _, err := e.svc.Anonymize(bg, e.a, "", "beta"); err == nil {
			t.Fatal("copy into a used slug")
		}
		fp2, _ := privacy.Fingerprint(bg, e.db, e.b.ID)
		if fmt.Sprint(fp) != fmt.Sprint(fp2) {
			t.Fatal("a failed copy touched another tenant")
		}
	})
}

// TestAnonymizeIntoAnotherStore: the copy goes to another store (a staging
// platform with its own master key): no source value, same counts.
func TestAnonymizeIntoAnotherStore(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		staging := setup(t, storetest.OpenSQLite(t, storetest.Options{Now: e.clk.Now}), e.clk)
		res, err := e.svc.AnonymizeInto(bg, e.a, "", "staging-acme", staging.svc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tenants.Get(bg, "staging-acme"); err == nil {
			t.Fatal("the copy landed in the source store")
		}
		var needles []string
		for _, p := range ps {
			needles = append(needles, needlesOf(p)...)
		}
		if left := traces(t, staging, res.Tenant.ID, needles, nil); len(left) > 0 {
			t.Fatalf("source values in the staging copy: %v", left)
		}
		for _, q := range []string{"contacts", "consent_events", "list_members", "messages"} {
			a := count(t, e, e.a.ID, `SELECT count(*) FROM `+q+` WHERE tenant_id = $1`)
			b := count(t, staging, res.Tenant.ID, `SELECT count(*) FROM `+q+` WHERE tenant_id = $1`)
			if a != b {
				t.Errorf("%s: source %d, copy %d", q, a, b)
			}
		}
	})
}

package privacy_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// labels are the field labels any sealed value of the store may be under.
var labels = []string{"contact.email", "contact.phone", "contact.first_name", "contact.last_name", "contact.attributes",
	"consent.source_ip", "user.email", "user.name", "message.to", "message.content", "connector.config"}

// traces scans every row of every table of the tenant, decrypting every
// blob it can with the tenant's key under every label (and a contact's
// fields with the contact's own key, contacts.key_enc, when the row still
// has one), and reports where any of the needles (case-insensitive) or raw
// byte patterns appear.
func traces(t *testing.T, e *env, tenantID string, needles []string, raw [][]byte) []string {
	t.Helper()
	keyring := tenants.NewKeyring(e.db, e.mk, 0)
	cr, err := keyring.Crypto(bg, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	check := func(where string, b []byte) {
		low := bytes.ToLower(b)
		for _, n := range needles {
			if bytes.Contains(low, bytes.ToLower([]byte(n))) {
				found = append(found, fmt.Sprintf("%s: %q", where, n))
			}
		}
	}
	err = privacy.ScanTenant(bg, e.db, tenantID, func(table string, row []any, cols []string) error {
		var cc *tenants.ContactCipher
		for i, c := range cols {
			if k, ok := row[i].([]byte); ok && table == "contacts" && c == "key_enc" && len(k) > 0 {
				if cc, err = cr.ContactCipher(k); err != nil {
					return err
				}
			}
		}
		for i, v := range row {
			where := table + "." + cols[i]
			switch x := v.(type) {
			case string:
				check(where, []byte(x))
			case []byte:
				check(where, x)
				for _, r := range raw {
					if len(r) > 0 && bytes.Contains(x, r) {
						found = append(found, where+": raw pattern")
					}
				}
				for _, l := range labels {
					if pt, err := cr.Open(l, x); err == nil {
						check(where+" (decrypted)", pt)
					}
					if cc == nil {
						continue
					}
					if pt, err := cc.OpenString(l, x); err == nil {
						check(where+" (decrypted with the contact's key)", []byte(pt))
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func needlesOf(p person) []string { return []string{p.email, p.phone, p.first, p.last, p.ip} }

// TestErasure: after erasure no trace of the person's email, phone or name
// (nor IP, nor address index) remains readable in any table; other people
// and other tenants are untouched; a queued message is stopped and the
// router's check refuses any later send; a later export holds nothing of
// the person.
func TestErasure(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		ids := populate(t, e, e.a.ID, ps)
		populate(t, e, e.b.ID, ps) // the same people are also Beta's contacts
		// A transactional message without a contact id to the person.
		if _, err := e.router.Accept(bg, e.a.ID, []router.NewMessage{{Channel: "sms", To: ps[0].phone, Content: router.Content{Text: "Code 1234 for " + ps[0].first}}}); err != nil {
			t.Fatal(err)
		}
		before := traces(t, e, e.a.ID, needlesOf(ps[0]), nil)
		if len(before) == 0 {
			t.Fatal("the scan finds nothing even before erasure: it is blind")
		}
		fpB, err := privacy.Fingerprint(bg, e.db, e.b.ID)
		if err != nil {
			t.Fatal(err)
		}
		cr, _ := e.keyring.Crypto(bg, e.a.ID)
		idx := [][]byte{cr.Index("contact.email", ps[0].email), cr.Index("contact.phone", ps[0].phone)}
		// What an older backup holds of the person: the contact row's sealed
		// fields and its own key (sealed by the tenant key).
		var oldKey, oldEmail, oldLast []byte
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT key_enc, email_enc, last_name_enc FROM contacts WHERE tenant_id = $1 AND id = $2`, ids[0]).Scan(&oldKey, &oldEmail, &oldLast)
		}); err != nil || len(oldKey) == 0 {
			t.Fatalf("the contact has no key of its own: %v", err)
		}
		if _, err := cr.Open("contact.email", oldEmail); err == nil {
			t.Fatal("the contact's email opens with the tenant key alone: it is not under the contact's key")
		}

		// Bad input: nobody by that address; Beta's contact id in Acme.
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{Email: "nobody@example.com"}, privacy.EraseOptions{}); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("unknown person: %v", err)
		}
		bIDs := contactIDs(t, e, e.b.ID)
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{ContactID: bIDs[0]}, privacy.EraseOptions{}); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("another tenant's contact: %v", err)
		}
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{Email: "not an email"}, privacy.EraseOptions{}); !errors.Is(err, privacy.ErrInvalid) {
			t.Fatalf("bad email: %v", err)
		}

		req, res, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{Email: strings.ToUpper(ps[0].email)}, privacy.EraseOptions{By: "dpo"})
		if err != nil {
			t.Fatal(err)
		}
		if req.Status != privacy.StatusCompleted || res.ContactID != ids[0] || res.MessagesCleared != 2 || res.MessagesStopped != 2 {
			t.Fatalf("request %+v result %+v", req, res)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[0]), idx); len(left) > 0 {
			t.Fatalf("traces left after erasure: %v", left)
		}
		// Crypto-shredding (PRIV-4): the contact's key is gone and a shredding
		// record names it; the person's fields as a backup holds them do not
		// open with the tenant key.
		if !strings.HasPrefix(res.ContactKeyShredded, "contact-key "+ids[0]) {
			t.Fatalf("contact key shredded: %q", res.ContactKeyShredded)
		}
		var keyNow []byte
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT key_enc FROM contacts WHERE tenant_id = $1 AND id = $2`, ids[0]).Scan(&keyNow)
		}); err != nil || keyNow != nil {
			t.Fatalf("the contact's key after erasure: %x %v", keyNow, err)
		}
		recs, err := e.tenants.ShreddingRecords(bg)
		if err != nil {
			t.Fatal(err)
		}
		var rec []tenants.ShreddingRecord
		for _, r := range recs {
			if r.TenantID == e.a.ID && r.Kind == "contact" && r.SubjectID == ids[0] {
				rec = append(rec, r)
			}
		}
		if len(rec) != 1 {
			t.Fatalf("shredding records of the person: %+v", recs)
		}
		noKey, _ := cr.ContactCipher(nil)
		for _, ct := range [][]byte{oldEmail, oldLast} {
			for _, l := range labels {
				if _, err := cr.Open(l, ct); err == nil {
					t.Fatal("a backed-up field of the person opens with the tenant key")
				}
			}
			if _, err := noKey.OpenString("contact.email", ct); !errors.Is(err, tenants.ErrShredded) {
				t.Fatalf("a backed-up field without the contact's key: %v", err)
			}
		}
		// A restore of the older backup brings the row back with its key;
		// re-applying the shredding record deletes the key again.
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `UPDATE contacts SET key_enc = $3, email_enc = $4, last_name_enc = $5 WHERE tenant_id = $1 AND id = $2`, ids[0], oldKey, oldEmail, oldLast)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if left := traces(t, e, e.a.ID, []string{ps[0].email}, nil); len(left) == 0 {
			t.Fatal("the restored row is invisible to the scan")
		}
		if err := e.tenants.ReapplyShredding(bg, rec); err != nil {
			t.Fatal(err)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[0]), idx); len(left) > 0 {
			t.Fatalf("traces left after the shredding is re-applied: %v", left)
		}
		// The others are intact.
		if left := traces(t, e, e.a.ID, needlesOf(ps[1]), nil); len(left) == 0 {
			t.Fatal("erasure removed another person's data")
		}
		fpB2, err := privacy.Fingerprint(bg, e.db, e.b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(fpB) != fmt.Sprint(fpB2) {
			t.Fatal("erasure in Acme changed Beta's rows")
		}
		// Erasure wins over a later send: the message was stopped, and the
		// router's check before hand-off refuses the contact.
		var state string
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			return tx.QueryRow(bg, `SELECT state FROM messages WHERE tenant_id = $1 AND contact_id = $2`, ids[0]).Scan(&state)
		}); err != nil || state != router.StateSuppressed {
			t.Fatalf("message state %q %v", state, err)
		}
		ok, reason, err := e.contacts.CanSend(bg, e.a.ID, ids[0], contacts.ChannelEmail, "")
		if err != nil || ok || reason != contacts.ReasonNotFound {
			t.Fatalf("can send after erasure: %v %v %v", ok, reason, err)
		}
		// The router's hook before hand-off (wired in serve) suppresses a
		// message to the erased contact claimed after the erasure.
		sup := &campaigns.Suppressor{Contacts: e.contacts}
		if stop, why, err := sup.Check(bg, e.a.ID, ids[0], "email", ""); err != nil || !stop || why != string(contacts.ReasonNotFound) {
			t.Fatalf("suppress hook after erasure: %v %q %v", stop, why, err)
		}
		if stop, _, err := sup.Check(bg, e.a.ID, ids[1], "email", ""); err != nil || stop {
			t.Fatalf("suppress hook for another person: %v %v", stop, err)
		}
		// A campaign expansion that read its audience before the erasure
		// enqueues the person's message after it: the router's check
		// refuses it (above), and the sweep removes what it holds.
		if _, err := e.router.Accept(bg, e.a.ID, []router.NewMessage{{Channel: "email", To: ps[0].email, ContactID: ids[0],
			Content: router.Content{Subject: "Late", Text: "Late " + ps[0].last}}}); err != nil {
			t.Fatal(err)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[0]), nil); len(left) == 0 {
			t.Fatal("the late message is invisible to the scan")
		}
		if n, err := e.svc.SweepErased(bg, e.a.ID); err != nil || n != 1 {
			t.Fatalf("sweep: %d %v", n, err)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[0]), idx); len(left) > 0 {
			t.Fatalf("traces left after the sweep: %v", left)
		}
		// A second erasure: the person is gone.
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{ContactID: ids[0]}, privacy.EraseOptions{}); !errors.Is(err, privacy.ErrNotFound) {
			t.Fatalf("second erasure: %v", err)
		}
		// A later export holds nothing of the person.
		blob, _ := exportAES(t, e, e.a, bytes.Repeat([]byte{1}, 32))
		plain := decryptAll(t, blob, bytes.Repeat([]byte{1}, 32))
		for _, n := range needlesOf(ps[0]) {
			if bytes.Contains(bytes.ToLower(plain), bytes.ToLower([]byte(n))) {
				t.Fatalf("the export after erasure holds %q", n)
			}
		}
		if !bytes.Contains(plain, []byte(ps[1].email)) {
			t.Fatal("the export lost another person")
		}
		reqs, err := e.svc.Requests(bg, e.a.ID, false)
		if err != nil || len(reqs) != 1 || reqs[0].Kind != privacy.KindErasure || reqs[0].DueAt.Sub(reqs[0].ReceivedAt).Hours() < 24*28 {
			t.Fatalf("requests %+v %v", reqs, err)
		}
	})
}

// TestErasureSuppression: with suppression, only the blind indexes stay,
// on the blocklist, and a new import of the address is blocked.
func TestErasureSuppression(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		if _, _, err := e.svc.Erase(bg, e.a.ID, privacy.Subject{Phone: ps[1].phone}, privacy.EraseOptions{Suppress: true}); err != nil {
			t.Fatal(err)
		}
		if left := traces(t, e, e.a.ID, needlesOf(ps[1]), nil); len(left) > 0 {
			t.Fatalf("traces left: %v", left)
		}
		blocked, err := e.contacts.IsBlocked(bg, e.a.ID, contacts.BlockEmail, ps[1].email)
		if err != nil || !blocked {
			t.Fatalf("suppression: %v %v", blocked, err)
		}
		c, err := e.contacts.Create(bg, e.a.ID, contacts.NewContact{Email: ps[1].email})
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != contacts.StatusBlocklisted {
			t.Fatalf("re-created person's status %s", c.Status)
		}
	})
}

func contactIDs(t *testing.T, e *env, tenantID string) []string {
	t.Helper()
	var ids []string
	if err := e.db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		rows, err := tx.Query(bg, `SELECT id FROM contacts WHERE tenant_id = $1 ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

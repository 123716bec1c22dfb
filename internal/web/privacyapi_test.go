package web

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// TestPrivacyAPI: subject requests through the API, in the caller's tenant
// only, with their permissions; retention rules and a dry-run purge.
func TestPrivacyAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newAdminEnv(t, db)
		ks, err := jwtauth.NewKeyStore(db, e.ts.Master, jwtauth.KeyStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kr := tenants.NewKeyring(db, e.ts.Master, 0)
		cs := &contacts.Service{DB: db, Keyring: kr}
		// The real shredders, as app.Open wires them (issue 7).
		ps := &privacy.Service{DB: db, Master: e.ts.Master, Keyring: kr, Tenants: e.ts, Contacts: cs, Audit: &audit.Service{DB: db, Master: e.ts.Master},
			ContactShredder: contacts.KeyShredder{}, KeyShredder: e.ts}
		e.srv = New(Options{DB: db, Tenants: e.ts, Identity: e.id, Access: e.acc, Contacts: cs, Privacy: ps, Keys: ks,
			Issuer: jwtauth.NewIssuer(ks, jwtauth.Config{}), Verifier: jwtauth.NewVerifier(ks, jwtauth.Config{}),
			MaxBodyBytes: ctMaxBody, ShutdownTimeout: time.Second, Version: "test"})
		mgr, _ := e.user(t, e.a.ID, "dpo@acme.example", "Dana DPO", access.RoleManager)
		dpo := e.session(t, e.a.ID, mgr.ID)
		ed, _ := e.user(t, e.a.ID, "ed@acme.example", "Ed Editor", access.RoleEditor)
		editor := e.session(t, e.a.ID, ed.ID)
		adm, _ := e.user(t, e.a.ID, "ada@acme.example", "Ada Admin", access.RoleAdmin)
		admin := e.session(t, e.a.ID, adm.ID)
		ca, err := cs.Create(ctx, e.a.ID, contacts.NewContact{Email: "zebulonia@example.org", LastName: "Quaxworth"})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := cs.Create(ctx, e.b.ID, contacts.NewContact{Email: "zebulonia@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		// Every allowed call of a mutating route leaves an audit event
		// naming its caller (the route walk's rule, LOG-1).
		events := func() int64 {
			var n int64
			if err := db.Tenant(e.a.ID).Tx(ctx, func(tx *store.Tx) error {
				if err := audit.SequenceLog(ctx, tx); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND actor_type = 'user'`).Scan(&n)
			}); err != nil {
				t.Fatal(err)
			}
			return n
		}
		audited := func(what string, before int64) {
			t.Helper()
			if events() <= before {
				t.Fatalf("%s left no audit event naming its caller", what)
			}
		}
		res, body := e.call(t, editor, "POST", "/api/v1/privacy/requests", `{"kind":"access","email":"zebulonia@example.org"}`)
		if res.StatusCode != 403 {
			t.Fatalf("editor: %d %s", res.StatusCode, body)
		}
		n := events()
		res, body = e.call(t, dpo, "POST", "/api/v1/privacy/requests", `{"kind":"access","email":"zebulonia@example.org"}`)
		if res.StatusCode != 200 || !strings.Contains(string(body), "Quaxworth") {
			t.Fatalf("access: %d %s", res.StatusCode, body)
		}
		audited("access", n)
		res, body = e.call(t, dpo, "POST", "/api/v1/privacy/requests", `{"kind":"erasure","contact_id":"`+cb.ID+`"}`)
		if res.StatusCode != 404 {
			t.Fatalf("another tenant's contact: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, dpo, "POST", "/api/v1/privacy/requests", `{"kind":"forget","email":"zebulonia@example.org"}`)
		if res.StatusCode != 422 || !strings.Contains(string(body), "kind") {
			t.Fatalf("bad kind: %d %s", res.StatusCode, body)
		}
		res, body = e.call(t, dpo, "POST", "/api/v1/privacy/requests", `{"kind":"erasure","email":"zebulonia@example.org","suppress":true}`)
		if res.StatusCode != 200 || !strings.Contains(string(body), ca.ID) {
			t.Fatalf("erasure: %d %s", res.StatusCode, body)
		}
		if _, err := cs.Get(ctx, e.b.ID, cb.ID); err != nil {
			t.Fatalf("Beta's contact: %v", err)
		}
		res, body = e.call(t, dpo, "GET", "/api/v1/privacy/requests", "")
		var list struct{ Requests []privacy.Request }
		if res.StatusCode != 200 || json.Unmarshal(body, &list) != nil || len(list.Requests) != 2 {
			t.Fatalf("requests: %d %s", res.StatusCode, body)
		}
		res, _ = e.call(t, dpo, "PUT", "/api/v1/privacy/retention/message_content", `{"months":13}`)
		if res.StatusCode != 403 {
			t.Fatalf("retention by a manager: %d", res.StatusCode)
		}
		n = events()
		res, body = e.call(t, admin, "PUT", "/api/v1/privacy/retention/message_content", `{"months":13}`)
		if res.StatusCode != 200 {
			t.Fatalf("retention: %d %s", res.StatusCode, body)
		}
		audited("retention rule", n)
		res, body = e.call(t, admin, "PUT", "/api/v1/privacy/retention/message_content", `{"months":0}`)
		if res.StatusCode != 422 {
			t.Fatalf("bad retention: %d %s", res.StatusCode, body)
		}
		n = events()
		res, body = e.call(t, admin, "POST", "/api/v1/privacy/retention/run?dry_run=true", "")
		if res.StatusCode != 200 || !strings.Contains(string(body), `"dry_run":true`) {
			t.Fatalf("retention run: %d %s", res.StatusCode, body)
		}
		audited("retention dry run", n)
		// The full export, encrypted to the caller's OpenPGP key.
		ent, pub := newPGPKey(t)
		keyJSON, _ := json.Marshal(map[string]string{"pgp_public_key": pub})
		res, _ = e.call(t, dpo, "POST", "/api/v1/privacy/export", string(keyJSON))
		if res.StatusCode != 403 {
			t.Fatalf("export by a manager: %d", res.StatusCode)
		}
		res, body = e.call(t, admin, "POST", "/api/v1/privacy/export", `{"pgp_public_key":"not a key"}`)
		if res.StatusCode != 422 {
			t.Fatalf("export to a bad key: %d %s", res.StatusCode, body)
		}
		n = events()
		res, body = e.call(t, admin, "POST", "/api/v1/privacy/export", string(keyJSON))
		audited("export", n)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pgp-encrypted" {
			t.Fatalf("export: %d %s", res.StatusCode, res.Header)
		}
		md, err := openpgp.ReadMessage(bytes.NewReader(body), openpgp.EntityList{ent}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := privacy.VerifyArchive(md.UnverifiedBody)
		if err != nil || m.TenantID != e.a.ID || m.Counts["users"] != 3 {
			t.Fatalf("archive: %+v %v", m.Counts, err)
		}
		n = events()
		res, body = e.call(t, admin, "POST", "/api/v1/privacy/purge", `{"scope":"contacts","dry_run":true}`)
		if res.StatusCode != 200 || !strings.Contains(string(body), `"dry run: nothing purged"`) {
			t.Fatalf("purge: %d %s", res.StatusCode, body)
		}
		audited("purge dry run", n)
	})
}

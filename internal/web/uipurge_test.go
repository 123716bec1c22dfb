package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
)

// TestUIPurge (REV-1): a DPO purges a list from the page: the dry run
// shows what would go and removes nothing; the purge without the typed
// identifier, or with another one, removes nothing; with it, the list
// goes, its contacts are erased, the signed report is offered and the
// purge is audited under the user. A viewer is refused.
func TestUIPurge(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	l, err := e.cs.CreateList(ctx, e.tenant.ID, "Trade fair 2024", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		c, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: m})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.cs.AddToList(ctx, e.tenant.ID, l.ID, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	keep, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "keep@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int64 {
		n, err := e.cs.Count(ctx, e.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	res, body := e.uiRequest(t, sec, "GET", "/privacy/purge", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "Trade fair 2024") || !strings.Contains(body, `href="/privacy/purge"`) || !strings.Contains(body, e.tenant.Slug) {
		t.Fatalf("purge page: %d\n%s", res.StatusCode, body)
	}
	assertSafePage(t, body, res)

	form := url.Values{"scope": {"list"}, "list": {l.ID}}
	dry := url.Values{"action": {"dry-run"}}
	for k, v := range form {
		dry[k] = v
	}
	res, body = e.post(t, sec, "/privacy/purge", dry)
	if res.StatusCode != 200 || !strings.Contains(body, `id="purge-items"`) || !strings.Contains(body, "Would remove") || !strings.Contains(body, "<td>contacts</td><td class=\"num\">3</td>") {
		t.Fatalf("dry run: %d\n%s", res.StatusCode, body)
	}
	if count() != 4 {
		t.Fatal("the dry run removed contacts")
	}
	for _, confirm := range []string{"", "someone-else", strings.ToUpper(e.tenant.Slug)} {
		v := url.Values{"action": {"purge"}, "confirm": {confirm}}
		for k, x := range form {
			v[k] = x
		}
		if res, body := e.post(t, sec, "/privacy/purge", v); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Nothing was purged") {
			t.Fatalf("purge confirmed with %q: %d", confirm, res.StatusCode)
		}
	}
	if count() != 4 || e.audited(t, "privacy.purge.report", admin.ID) {
		t.Fatal("an unconfirmed purge removed something")
	}
	for _, bad := range []url.Values{{"scope": {"everything"}, "action": {"dry-run"}}, {"scope": {"list"}, "list": {"nope"}, "action": {"dry-run"}}} {
		if res, _ := e.post(t, sec, "/privacy/purge", bad); res.StatusCode < 400 || res.StatusCode >= 500 {
			t.Errorf("bad purge %v: %d", bad, res.StatusCode)
		}
	}

	v := url.Values{"action": {"purge"}, "confirm": {e.tenant.Slug}}
	for k, x := range form {
		v[k] = x
	}
	res, body = e.post(t, sec, "/privacy/purge", v)
	if res.StatusCode != 200 || !strings.Contains(body, "Purge report") || !strings.Contains(body, `id="purge-download"`) || !strings.Contains(body, "data:application/json;base64,") {
		t.Fatalf("purge: %d\n%s", res.StatusCode, body)
	}
	assertSafePage(t, body, res)
	if _, err := e.cs.GetList(ctx, e.tenant.ID, l.ID); !errors.Is(err, contacts.ErrNotFound) {
		t.Errorf("the list is still there: %v", err)
	}
	if n := count(); n != 1 {
		t.Errorf("%d contacts after the purge, want 1", n)
	}
	if _, err := e.cs.Get(ctx, e.tenant.ID, keep.ID); err != nil {
		t.Errorf("a contact outside the list: %v", err)
	}
	if !e.audited(t, "privacy.purge.report", admin.ID) {
		t.Error("the purge is not audited under the user")
	}

	vs := e.session(t, e.user(t, "victor@acme.example", "Victor", "viewer"))
	refused(t, e, vs, "GET", "/privacy/purge")
	refused(t, e, vs, "POST", "/privacy/purge")
}

// TestUIExport (REV-2): the organisation's export from the page, encrypted
// to the OpenPGP key pasted in the form: it opens with the private key
// only, its checksums verify, no contact's address is readable in what
// the browser receives, and it is audited under the user. A text that is
// not a key is refused on the page; a viewer is refused.
func TestUIExport(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	if _, err := e.cs.Create(ctx, e.tenant.ID, contacts.NewContact{Email: "exported.person@example.com"}); err != nil {
		t.Fatal(err)
	}
	res, body := e.uiRequest(t, sec, "GET", "/privacy/export", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `name="pgp_public_key"`) || !strings.Contains(body, `href="/privacy/export"`) {
		t.Fatalf("export page: %d", res.StatusCode)
	}
	assertSafePage(t, body, res)
	for _, bad := range []string{"", "not a key", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----"} {
		if res, body := e.post(t, sec, "/privacy/export", url.Values{"pgp_public_key": {bad}}); res.StatusCode != http.StatusUnprocessableEntity ||
			!strings.Contains(body, "Paste an armored OpenPGP public key") || e.audited(t, "tenant.export", admin.ID) {
			t.Fatalf("export to %q: %d", bad, res.StatusCode)
		}
	}
	ent, pub := newPGPKey(t)
	res, body = e.post(t, sec, "/privacy/export", url.Values{"pgp_public_key": {pub}})
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pgp-encrypted" ||
		res.Header.Get("Content-Disposition") != `attachment; filename="`+e.tenant.Slug+`-export.tar.gpg"` {
		t.Fatalf("export: %d %v", res.StatusCode, res.Header)
	}
	if strings.Contains(body, "exported.person") {
		t.Fatal("a contact's address is readable in the download")
	}
	other, _ := newPGPKey(t)
	if _, err := openpgp.ReadMessage(strings.NewReader(body), openpgp.EntityList{other}, nil, nil); err == nil {
		t.Fatal("another key opens the export")
	}
	md, err := openpgp.ReadMessage(strings.NewReader(body), openpgp.EntityList{ent}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := privacy.VerifyArchive(md.UnverifiedBody)
	if err != nil || m.TenantID != e.tenant.ID || m.Counts["contacts"] != 1 {
		t.Fatalf("archive: %+v %v", m.Counts, err)
	}
	if !e.audited(t, "tenant.export", admin.ID) {
		t.Error("the export is not audited under the user")
	}
	vs := e.session(t, e.user(t, "victor@acme.example", "Victor", "viewer"))
	refused(t, e, vs, "GET", "/privacy/export")
	refused(t, e, vs, "POST", "/privacy/export")
}

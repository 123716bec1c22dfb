package contacts_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
)

// TestConsentProof: a consent records when, how, from which IP (given, or
// the request's) and with which wording and version; the wording is kept
// once and found by its hash; every change appends a proof.
func TestConsentProof(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "p@example.com", Phone: "+33612345678"})
		wording := "I want the weekly newsletter."
		got, err := e.svc.Grant(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Purpose: "newsletter",
			Source: contacts.SourceForm, SourceIP: "2001:db8::7", Wording: wording, WordingVersion: "2026-03"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != contacts.ConsentGranted || got.WordingHash != contacts.WordingHash(wording) || got.SourceIP != "2001:db8::7" {
			t.Fatalf("grant %+v", got)
		}
		e.clk.Add(time.Hour)
		ctx := audit.WithMeta(bg, audit.Meta{IP: "198.51.100.4", Actor: audit.Actor{Type: audit.ActorUser, ID: "u1"}})
		if _, err := e.svc.Withdraw(ctx, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Purpose: "newsletter", Source: contacts.SourceAdmin}); err != nil {
			t.Fatal(err)
		}
		hist := must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, c.ID))
		if len(hist) != 2 {
			t.Fatalf("history %+v", hist)
		}
		h0, h1 := hist[0], hist[1]
		if h0.Status != contacts.ConsentGranted || h0.Source != contacts.SourceForm || h0.SourceIP != "2001:db8::7" || h0.WordingVersion != "2026-03" ||
			h0.WordingHash != contacts.WordingHash(wording) || !h0.At.Equal(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)) {
			t.Fatalf("first proof %+v", h0)
		}
		if h1.Status != contacts.ConsentWithdrawn || h1.Source != contacts.SourceAdmin || h1.SourceIP != "198.51.100.4" || !h1.At.Equal(h0.At.Add(time.Hour)) {
			t.Fatalf("second proof %+v", h1)
		}
		text, version := must2s(t)(e.svc.ConsentWording(bg, e.a.ID, h0.WordingHash))
		if text != wording || version != "2026-03" {
			t.Fatalf("wording %q %q", text, version)
		}
		// The consent events hold no IP in clear (see also the raw scan).
		for col, vals := range rawValues(t, e.db) {
			for _, v := range vals {
				if strings.Contains(string(v), "2001:db8::7") || strings.Contains(string(v), "198.51.100.4") && !strings.HasPrefix(col, "audit_events.ip") {
					t.Fatalf("%s holds a source IP in clear", col)
				}
			}
		}
		// A wording hash that does not match its text is refused.
		_, err = e.svc.Grant(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Wording: "a", WordingHash: contacts.WordingHash("b")})
		wantField(t, err, "wording_hash")
		// The consent source cannot be forged as import or link.
		_, err = e.svc.Grant(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Source: contacts.SourceLink})
		wantField(t, err, "source")
	})
}

func must2s(t *testing.T) func(string, string, error) (string, string) {
	return func(a, b string, err error) (string, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// tamper changes one character of a token's payload.
func tamper(tok string) string {
	i := strings.Index(tok, ".") + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// TestDoubleOptIn: a pending consent does not allow sending; its signed
// token confirms it once, records the confirmation time, and is refused
// when expired, altered, re-signed for another tenant, superseded or used.
func TestDoubleOptIn(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "doi@example.com"})
		_, tok, err := e.svc.SetPending(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Source: contacts.SourceForm,
			SourceIP: "192.0.2.1", Wording: "Confirm please", WordingVersion: "d1"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tok, "doi@") {
			t.Fatal("token carries the email")
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); ok || r != contacts.ReasonConsentPending {
			t.Fatalf("pending: %v %v", ok, r)
		}
		for name, bad := range map[string]string{
			"altered":    tamper(tok),
			"truncated":  tok[:len(tok)-3],
			"empty":      "",
			"other kind": "ru1." + strings.TrimPrefix(tok, "rc1."),
			"no mac":     strings.Split(tok, ".")[0] + "." + strings.Split(tok, ".")[1],
			"garbage":    "rc1.!!!.???",
			"huge":       "rc1." + strings.Repeat("A", 5000),
			"other tenant": "rc1." + base64.RawURLEncoding.EncodeToString([]byte(strings.ReplaceAll(decodePayload(t, tok), e.a.ID, e.b.ID))) +
				"." + strings.Split(tok, ".")[2],
		} {
			if _, err := e.svc.Confirm(bg, bad); !contains(errString(err), contacts.ErrInvalidToken.Error()) {
				t.Errorf("%s token: %v", name, err)
			}
		}
		// Asking again supersedes the first link.
		e.clk.Add(time.Minute)
		_, tok2, err := e.svc.SetPending(bg, e.a.ID, c.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail, Source: contacts.SourceForm, Wording: "Confirm please", WordingVersion: "d1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Confirm(bg, tok)
		wantErr(t, err, contacts.ErrInvalidToken)
		e.clk.Add(24 * time.Hour)
		ctx := audit.WithMeta(bg, audit.Meta{IP: "203.0.113.5"})
		got, err := e.svc.Confirm(ctx, tok2)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != contacts.ConsentGranted || got.ConfirmedAt == nil || !got.ConfirmedAt.Equal(e.clk.Now()) || got.WordingVersion != "d1" || got.SourceIP != "203.0.113.5" {
			t.Fatalf("confirmed %+v", got)
		}
		if ok, _ := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); !ok {
			t.Fatal("confirmed consent does not allow sending")
		}
		_, err = e.svc.Confirm(bg, tok2)
		wantErr(t, err, contacts.ErrInvalidToken)
		hist := must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, c.ID))
		last := hist[len(hist)-1]
		if len(hist) != 3 || last.ConfirmedAt == nil || last.Source != contacts.SourceLink || hist[1].SourceIP != "" || hist[0].SourceIP != "192.0.2.1" {
			t.Fatalf("history %+v", hist)
		}
		// Expiry: 7 days by default.
		c2 := e.create(t, e.a.ID, contacts.NewContact{Email: "late@example.com"})
		_, tok3, err := e.svc.SetPending(bg, e.a.ID, c2.ID, contacts.ConsentInput{Channel: contacts.ChannelEmail})
		if err != nil {
			t.Fatal(err)
		}
		e.clk.Add(7*24*time.Hour + time.Second)
		_, err = e.svc.Confirm(bg, tok3)
		wantErr(t, err, contacts.ErrTokenExpired)
		if ok, _ := must2(t)(e.svc.CanSend(bg, e.a.ID, c2.ID, contacts.ChannelEmail, "")); ok {
			t.Fatal("expired confirmation allowed sending")
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func decodePayload(t *testing.T, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUnsubscribeAndBlocklistTakeEffectAtOnce: a one-click unsubscribe and
// a blocklist entry make the next CanSend false; the unsubscribe is
// idempotent; a blocklisted contact's status cannot be changed back, and
// removing the entry restores it.
func TestUnsubscribeAndBlocklistTakeEffectAtOnce(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		c := e.create(t, e.a.ID, contacts.NewContact{Email: "u@example.com", Phone: "+33611223344",
			Consents: []contacts.ConsentInput{{Channel: contacts.ChannelEmail, Status: contacts.ConsentGranted}, {Channel: contacts.ChannelSMS, Status: contacts.ConsentGranted}}})
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); !ok || r != contacts.ReasonOK {
			t.Fatalf("before: %v %v", ok, r)
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "alerts")); ok || r != contacts.ReasonNoConsent {
			t.Fatalf("other purpose: %v %v", ok, r)
		}
		tok := must[string](t)(e.svc.UnsubscribeToken(bg, e.a.ID, c.ID, contacts.ChannelEmail, ""))
		if err := e.svc.Unsubscribe(bg, tamper(tok)); !contains(errString(err), "invalid token") {
			t.Fatalf("tampered unsubscribe: %v", err)
		}
		if err := e.svc.Unsubscribe(bg, tok); err != nil {
			t.Fatal(err)
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); ok || r != contacts.ReasonConsentWithdrawn {
			t.Fatalf("after unsubscribe: %v %v", ok, r)
		}
		if ok, _ := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelSMS, "")); !ok {
			t.Fatal("email unsubscribe stopped SMS")
		}
		before := len(must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, c.ID)))
		if err := e.svc.Unsubscribe(bg, tok); err != nil {
			t.Fatal(err)
		}
		if n := len(must[[]contacts.ConsentEvent](t)(e.svc.ConsentHistory(bg, e.a.ID, c.ID))); n != before {
			t.Fatal("second unsubscribe recorded again")
		}
		// Blocklisting the phone stops every channel of the contact.
		if err := e.svc.Block(bg, e.a.ID, contacts.BlockPhone, "+33 6 11 22 33 44", "complaint"); err != nil {
			t.Fatal(err)
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelSMS, "")); ok || r != contacts.ReasonBlocklisted {
			t.Fatalf("after block: %v %v", ok, r)
		}
		if b := must[bool](t)(e.svc.IsBlocked(bg, e.a.ID, contacts.BlockPhone, "+33611223344")); !b {
			t.Fatal("not blocked")
		}
		_, err := e.svc.Update(bg, e.a.ID, c.ID, contacts.Patch{Status: ptr(contacts.StatusActive)})
		wantErr(t, err, contacts.ErrBlocklisted)
		// A new contact with the number is blocklisted from the start.
		c2 := e.create(t, e.a.ID, contacts.NewContact{Phone: "+33611223344", Consents: []contacts.ConsentInput{{Channel: contacts.ChannelSMS, Status: contacts.ConsentGranted}}})
		if c2.Status != contacts.StatusBlocklisted {
			t.Fatalf("new contact %s", c2.Status)
		}
		// Removing the phone from the contact lifts its blocklisting.
		up := must[contacts.Contact](t)(e.svc.Update(bg, e.a.ID, c.ID, contacts.Patch{Phone: ptr("")}))
		if up.Status != contacts.StatusActive {
			t.Fatalf("after removing the number: %s", up.Status)
		}
		if err := e.svc.Unblock(bg, e.a.ID, contacts.BlockPhone, "+33611223344"); err != nil {
			t.Fatal(err)
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c2.ID, contacts.ChannelSMS, "")); !ok {
			t.Fatalf("after unblock: %v %v", ok, r)
		}
		wantErr(t, e.svc.Unblock(bg, e.a.ID, contacts.BlockPhone, "+33611223344"), contacts.ErrNotFound)
		// A deleted contact's unsubscribe link still answers success.
		if err := e.svc.Delete(bg, e.a.ID, c.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Unsubscribe(bg, tok); err != nil {
			t.Fatalf("unsubscribe of a deleted contact: %v", err)
		}
		if ok, r := must2(t)(e.svc.CanSend(bg, e.a.ID, c.ID, contacts.ChannelEmail, "")); ok || r != contacts.ReasonNotFound {
			t.Fatalf("deleted: %v %v", ok, r)
		}
	})
}

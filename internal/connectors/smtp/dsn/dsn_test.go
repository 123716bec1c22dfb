package dsn_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/connectors/smtp/dsn"
)

// report builds a notification the way Postfix writes one: a human part,
// the delivery-status part and the returned headers.
func report(status, returned string) string {
	return "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n" +
		"To: bounces@acme.test\r\n" +
		"Subject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B0UND\"\r\n" +
		"\r\n" +
		"This is a MIME-encapsulated message.\r\n" +
		"\r\n--B0UND\r\n" +
		"Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"I'm sorry to have to inform you that your message could not be delivered.\r\n" +
		"\r\n--B0UND\r\n" +
		"Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n" +
		status +
		"\r\n--B0UND\r\n" +
		"Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n" +
		returned +
		"\r\n--B0UND--\r\n"
}

const failed = "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\n" +
	"Final-Recipient: rfc822; Jane@Example.test\r\nOriginal-Recipient: rfc822;jane@example.test\r\n" +
	"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.test\r\n" +
	"Diagnostic-Code: smtp; 550 5.1.1 <jane@example.test>: Recipient address rejected: User unknown\r\n"

const headers = "Return-Path: <bounces@acme.test>\r\nFrom: News <news@acme.test>\r\nTo: jane@example.test\r\n" +
	"Subject: News\r\nMessage-ID: <0193a1b2-msg@acme.test>\r\n"

func TestParsePermanentFailure(t *testing.T) {
	rep, err := dsn.Parse(strings.NewReader(report(failed, headers)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.MessageID != "0193a1b2-msg@acme.test" || len(rep.Recipients) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	r := rep.Recipients[0]
	if r.FinalRecipient != "jane@example.test" || r.Action != "failed" || r.Status != "5.1.1" || !r.Permanent() ||
		!strings.Contains(r.Diagnostic, "User unknown") {
		t.Fatalf("recipient: %+v", r)
	}
}

func TestParseSeveralRecipientsAndDelays(t *testing.T) {
	st := "Reporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; a@example.test\r\nAction: delayed\r\nStatus: 4.4.7 (delivery time expired)\r\n\r\n" +
		"Final-Recipient: utf-8; b@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
	rep, err := dsn.Parse(strings.NewReader(strings.Replace(report(st, headers), "message/delivery-status", "message/global-delivery-status", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 2 || rep.Recipients[0].Status != "4.4.7" || rep.Recipients[0].Permanent() ||
		rep.Recipients[1].Action != "delivered" {
		t.Fatalf("report: %+v", rep)
	}
}

// Anything that is not a well-formed RFC 3464 report is refused: nothing is
// guessed from free text.
func TestParseRefusesWhatIsNotADSN(t *testing.T) {
	cases := map[string]string{
		"plain mail":      "From: a@b\r\nSubject: out of office\r\n\r\nI am away, your message to jane@example.test failed 550.\r\n",
		"other report":    strings.Replace(report(failed, headers), "delivery-status;", "disposition-notification;", 1),
		"no status part":  strings.Replace(report(failed, headers), "message/delivery-status", "text/plain", 1),
		"not mail":        "\x00\x01garbage",
		"bad action":      report(strings.Replace(failed, "Action: failed", "Action: exploded", 1), headers),
		"bad status":      report(strings.Replace(failed, "Status: 5.1.1", "Status: 550", 1), headers),
		"no recipient":    report("Reporting-MTA: dns; mx.example.net\r\n", headers),
		"bad final":       report(strings.Replace(failed, "rfc822; Jane@Example.test", "x400; c=FR", 1), headers),
		"final not addr":  report(strings.Replace(failed, "Jane@Example.test", "Jane", 1), headers),
		"two status":      strings.Replace(report(failed, headers), "text/rfc822-headers", "message/delivery-status", 1),
		"huge":            report(failed, headers) + strings.Repeat("x", dsn.MaxSize),
		"too many blocks": report("Reporting-MTA: dns; m\r\n"+strings.Repeat("\r\nFinal-Recipient: rfc822; a@b.c\r\nAction: failed\r\nStatus: 5.0.0\r\n", dsn.MaxRecipients+1), headers),
	}
	for name, in := range cases {
		if rep, err := dsn.Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted: %+v", name, rep)
		}
	}
	if _, err := dsn.Parse(strings.NewReader(cases["plain mail"])); !errors.Is(err, dsn.ErrNotDSN) {
		t.Errorf("plain mail: %v, want ErrNotDSN", err)
	}
}

// A report whose returned part has no Message-ID still parses; the caller
// cannot match it to a message and ignores it.
func TestParseWithoutReturnedMessage(t *testing.T) {
	rep, err := dsn.Parse(strings.NewReader(report(failed, "Subject: x\r\n")))
	if err != nil || rep.MessageID != "" || len(rep.Recipients) != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(report(failed, headers))
	f.Add("From: a@b\r\n\r\nx")
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := dsn.Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(rep.Recipients) == 0 || len(rep.Recipients) > dsn.MaxRecipients {
			t.Fatalf("accepted a report with %d recipients", len(rep.Recipients))
		}
		for _, r := range rep.Recipients {
			if !strings.Contains(r.FinalRecipient, "@") || r.Status == "" {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

package smtpsink_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

const msg = "From: a@example.test\r\nTo: b@example.test\r\nMessage-ID: <1@example.test>\r\nSubject: hi\r\n\r\nbody\r\n"

// TestSinkWithAnotherClient drives the sink with go-smtp's client: STARTTLS
// and AUTH are required, messages are recorded with their Message-ID and
// queue id, and each knob does what it says.
func TestSinkWithAnotherClient(t *testing.T) {
	s := smtpsink.Start(t, smtpsink.Options{Username: "u", Password: "p"})
	plain, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Mail("a@example.test", nil); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("MAIL before STARTTLS: %v", err)
	}
	plain.Close()

	c, err := smtp.DialStartTLS(s.Addr(), &tls.Config{RootCAs: s.CertPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.test", nil); err == nil {
		t.Error("MAIL without AUTH accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); err == nil {
		t.Error("wrong password accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(1, time.Second); err != nil {
		t.Fatal(err)
	}
	m := s.Messages()[0]
	if m.MessageID != "<1@example.test>" || !m.TLS || m.User != "u" || m.QueueID == "" || m.Header.Get("Subject") != "hi" {
		t.Errorf("recorded %+v", m)
	}

	s.FailRecipient("b@example.test", 550, 1)
	var se *smtp.SMTPError
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg)); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("550 fault: %v", err)
	}
	_ = c.Reset()
	s.FailData(451, 1)
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg)); !errors.As(err, &se) || se.Code != 451 {
		t.Errorf("451 data fault: %v", err)
	}
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg)); err != nil {
		t.Errorf("after the faults: %v", err)
	}
	if got := s.MessageIDCounts()["<1@example.test>"]; got != 2 || len(s.Duplicates()) != 1 {
		t.Errorf("Message-ID count %d, duplicates %v", got, s.Duplicates())
	}
	s.DropDuringData(1)
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg+strings.Repeat("x", 4096)+"\r\n")); err == nil {
		t.Error("dropped connection not reported")
	}
	if s.Count() != 2 {
		t.Errorf("%d messages recorded", s.Count())
	}
	if err := s.WaitFor(3, 50*time.Millisecond); err == nil {
		t.Error("WaitFor did not time out")
	}
}

package bounces_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/relais-dev/relais/internal/bounces"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// imapServer is a real IMAP server (go-imap's in-memory server) on
// loopback, speaking TLS from the first byte (imaps), with one user.
type imapServer struct {
	addr   string
	caPEM  string
	client func(t *testing.T) *imapclient.Client
}

func startIMAP(t *testing.T) *imapServer {
	t.Helper()
	dir := t.TempDir()
	cert, _, _, err := tlsconf.LoadOrCreateSelfSigned(dir, []string{"127.0.0.1"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tlsconf.SelfSignedCertFile)))
	if err != nil {
		t.Fatal(err)
	}
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("bounces", "imap-password-1")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger: nopLogger{},
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	s := &imapServer{addr: ln.Addr().String(), caPEM: string(caPEM)}
	s.client = func(t *testing.T) *imapclient.Client {
		c, err := imapclient.DialTLS(s.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}}) // #nosec G402 -- the test's own server
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login("bounces", "imap-password-1").Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// deliver appends a message to the INBOX, as the MTA does for a bounce.
func (s *imapServer) deliver(t *testing.T, raw string) {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// inbox returns the messages left and how many are flagged seen.
func (s *imapServer) inbox(t *testing.T) (n, seen int) {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return 0, 0
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if f == imap.FlagSeen {
				seen++
			}
		}
	}
	return len(msgs), seen
}

func dsnFor(messageID, recipient, action, status string) string {
	return "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@acme.test\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; " + recipient + "\r\nAction: " + action + "\r\nStatus: " + status + "\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n" +
		"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@acme.test\r\nTo: " + recipient + "\r\nMessage-ID: <" + messageID + ">\r\n" +
		"--B--\r\n"
}

// TestBouncesFromTheMailbox sends messages through an SMTP connector whose
// bounce mailbox is a real IMAP server, delivers DSNs to that mailbox, and
// checks that a matching hard bounce marks its message bounced and its
// contact bounced; a delay changes nothing; a forged report (another
// recipient, an unknown message, free text) changes nothing and stays in
// the mailbox for an operator; a report applied twice changes nothing more.
func TestBouncesFromTheMailbox(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		tn, err := ts.Create(ctx, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		kr := tenants.NewKeyring(db, mk, 0)
		cs := &contacts.Service{DB: db, Keyring: kr}
		rs := &router.Service{DB: db, Keyring: kr}
		conns := &router.Connectors{Service: rs, Open: registry.Open, Redact: registry.Redact}
		sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSStartTLS})
		box := startIMAP(t)
		cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": sink.Port(), "tls": "starttls", "from": "news@acme.test",
			"envelope_from": "bounces@acme.test", "root_cas_pem": string(sink.CertPEM()) + box.caPEM,
			"bounce_mailbox": map[string]any{"url": "imaps://" + box.addr + "/INBOX", "username": "bounces", "password": "imap-password-1"}})
		if _, err := conns.AddConnector(ctx, tn.ID, "mail", registry.TypeSMTP, cfg); err != nil {
			t.Fatal(err)
		}
		// The password of the mailbox is a secret like the relay's.
		list, _ := conns.ListConnectors(ctx, tn.ID)
		if b, _ := json.Marshal(list); strings.Contains(string(b), "imap-password-1") {
			t.Fatalf("the bounce mailbox password is shown: %s", b)
		}

		jane, err := cs.Create(ctx, tn.ID, contacts.NewContact{Email: "jane@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		acc, err := rs.Accept(ctx, tn.ID, []router.NewMessage{
			{Channel: "email", To: "jane@example.test", ContactID: jane.ID, Content: router.Content{Subject: "Hi", Text: "x"}},
			{Channel: "email", To: "joe@example.test", Content: router.Content{Subject: "Hi", Text: "x"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		eng := router.NewEngine(db, kr, registry.Open, router.EngineOptions{Node: "n1", Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = eng.Run(runCtx) }()
		if err := sink.WaitFor(2, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		waitState := func(id, state string) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); ; {
				m, err := rs.Get(ctx, tn.ID, id)
				if err == nil && m.State == state {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("message %s is %s, want %s", id, m.State, state)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitState(acc[0].ID, router.StateSent)
		waitState(acc[1].ID, router.StateSent)
		cancel()
		<-done

		// The Message-IDs the relay saw are <message id@acme.test>.
		ids := map[string]string{}
		for _, m := range sink.Messages() {
			ids[m.To[0]] = strings.Trim(m.MessageID, "<>")
		}
		if !strings.HasPrefix(ids["jane@example.test"], acc[0].ID+"@") {
			t.Fatalf("Message-ID %q does not name message %s", ids["jane@example.test"], acc[0].ID)
		}
		box.deliver(t, dsnFor(ids["jane@example.test"], "jane@example.test", "failed", "5.1.1"))
		box.deliver(t, dsnFor(ids["joe@example.test"], "joe@example.test", "delayed", "4.4.7"))
		box.deliver(t, dsnFor(ids["joe@example.test"], "someone-else@example.test", "failed", "5.1.1")) // forged: wrong recipient
		box.deliver(t, dsnFor("nope@acme.test", "joe@example.test", "failed", "5.1.1"))                 // unknown message
		box.deliver(t, "From: a@b\r\nSubject: I am on holiday\r\n\r\nback on Monday\r\n")               // not a report

		svc := &bounces.Service{Tenants: ts, Router: rs, Connectors: conns, Contacts: cs}
		st, err := svc.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mailboxes != 1 || st.Applied != 1 || st.Ignored != 1 || st.Kept != 3 {
			t.Fatalf("stats %+v, want 1 mailbox, 1 applied, 1 ignored, 3 kept", st)
		}
		m, err := rs.Get(ctx, tn.ID, acc[0].ID)
		if err != nil || m.State != router.StateBounced || !strings.Contains(m.LastError, "5.1.1") {
			t.Fatalf("jane's message: %+v %v", m, err)
		}
		if m, _ := rs.Get(ctx, tn.ID, acc[1].ID); m.State != router.StateSent {
			t.Fatalf("joe's message changed on a forged or delayed report: %s", m.State)
		}
		if c, _ := cs.Get(ctx, tn.ID, jane.ID); c.Status != contacts.StatusBounced {
			t.Fatalf("jane's contact is %s, want bounced", c.Status)
		}
		if n, seen := box.inbox(t); n != 3 || seen != 3 {
			t.Fatalf("mailbox keeps %d messages (%d seen), want the 3 unmatched, flagged seen", n, seen)
		}
		// Nothing new: a second pass reads nothing; the same report again
		// changes nothing.
		if st, err := svc.Poll(ctx); err != nil || st.Applied+st.Ignored+st.Kept != 0 {
			t.Fatalf("second pass: %+v %v", st, err)
		}
		box.deliver(t, dsnFor(ids["jane@example.test"], "jane@example.test", "failed", "5.1.1"))
		if st, err := svc.Poll(ctx); err != nil || st.Applied != 0 || st.Ignored != 1 {
			t.Fatalf("replayed report: %+v %v", st, err)
		}
	})
}

// A mailbox that refuses the login or is not there fails the pass with a
// clear error that does not repeat the password.
func TestMailboxErrors(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, _ := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
		ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		tn, err := ts.Create(ctx, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		kr := tenants.NewKeyring(db, mk, 0)
		rs := &router.Service{DB: db, Keyring: kr}
		conns := &router.Connectors{Service: rs, Open: registry.Open, Redact: registry.Redact}
		box := startIMAP(t)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		_ = ln.Close()
		for i, c := range []struct{ url, password, want string }{
			{"imaps://" + box.addr + "/INBOX", "wrong-password-9", "login as bounces refused"},
			{"imaps://" + dead + "/INBOX", "imap-password-1", "connect"},
		} {
			cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": 2525, "tls": "none", "from": "news@acme.test",
				"envelope_from": "bounces@acme.test", "root_cas_pem": box.caPEM,
				"bounce_mailbox": map[string]any{"url": c.url, "username": "bounces", "password": c.password}})
			if _, err := conns.AddConnector(ctx, tn.ID, fmt.Sprintf("m%d", i), registry.TypeSMTP, cfg); err != nil {
				t.Fatal(err)
			}
			svc := &bounces.Service{Tenants: ts, Router: rs, Connectors: conns, Contacts: &contacts.Service{DB: db, Keyring: kr}}
			_, err := svc.Poll(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), c.password) {
				t.Fatalf("%s: %v", c.url, err)
			}
		}
		// Bad settings are refused when the connector is added.
		for _, bad := range []map[string]any{
			{"url": "pop3://" + box.addr, "username": "u", "password": "p"},
			{"url": "imaps://" + box.addr, "username": "", "password": "p"},
			{"url": "imaps://u:p@" + box.addr, "username": "u", "password": "p"},
		} {
			cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "tls": "none", "envelope_from": "b@acme.test", "bounce_mailbox": bad})
			if _, err := conns.AddConnector(ctx, tn.ID, "bad", registry.TypeSMTP, cfg); err == nil || !strings.Contains(err.Error(), "bounce_mailbox") {
				t.Fatalf("%v accepted: %v", bad, err)
			}
		}
		cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "tls": "none",
			"bounce_mailbox": map[string]any{"url": "imaps://" + box.addr, "username": "u", "password": "p"}})
		if _, err := conns.AddConnector(ctx, tn.ID, "noenv", registry.TypeSMTP, cfg); err == nil || !strings.Contains(err.Error(), "envelope_from") {
			t.Fatalf("a bounce mailbox without envelope_from: %v", err)
		}
	})
}

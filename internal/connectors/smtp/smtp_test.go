package smtp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/smtp"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

const (
	user     = "relais-acme"
	password = "s3cret-Pa55word-for-the-relay"
)

// batchWithGone is n messages (refs prefix0, prefix1...) to distinct
// recipients, the one at index gone addressed to gone@example.test (a
// recipient the tests' sinks refuse).
func batchWithGone(prefix string, n, gone int) []connectors.Message {
	batch := make([]connectors.Message, 0, n)
	for i := range n {
		to := fmt.Sprintf("user%d@example.test", i)
		if i == gone {
			to = "gone@example.test"
		}
		batch = append(batch, msg(fmt.Sprintf("%s%d", prefix, i), to))
	}
	return batch
}

// msg returns a message for recipient to with Ref ref.
func msg(ref, to string) connectors.Message {
	return connectors.Message{
		Ref:     ref,
		Channel: connectors.ChannelEmail,
		To:      to,
		From:    "Acmé News <news@acme.test>",
		Subject: "Prix d'été : -20 % sur tout",
		Text:    "Bonjour,\nnos prix d'été sont là.\n.\nUne ligne qui commence par un point.\n",
		HTML:    "<p>Bonjour,</p><p>nos prix d'<b>été</b> sont là.</p>",
		Headers: map[string]string{
			"List-Unsubscribe":      "<https://acme.test/u/" + ref + ">, <mailto:unsubscribe@acme.test?subject=" + ref + ">",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		},
		Attempt: 1,
	}
}

func newConnector(t testing.TB, cfg smtp.Config) *smtp.Connector {
	t.Helper()
	c, err := smtp.New(cfg)
	if err != nil {
		t.Fatalf("smtp.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func sinkConfig(s *smtpsink.Sink, tlsMode string) smtp.Config {
	return smtp.Config{
		Host:     s.Host(),
		Port:     s.Port(),
		TLS:      tlsMode,
		RootCAs:  s.CertPool(),
		HeloName: "relais.test",
		Timeout:  connectors.Duration(5 * time.Second),
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustOK(t testing.TB, out []connectors.Outcome) {
	t.Helper()
	for _, o := range out {
		if o.Err != nil {
			t.Fatalf("outcome %s: %v", o.Ref, o.Err)
		}
	}
}

func ed25519PEM(t testing.TB) (string, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), pub
}

func rsaPEM(t testing.TB, bits int) (string, *rsa.PublicKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})), &k.PublicKey
}

// dkimLookup answers the DKIM TXT query for selector._domainkey.domain
// with the given record, and nothing else: no network.
func dkimLookup(selector, domain, record string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if name == selector+"._domainkey."+domain {
			return []string{record}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
}

func verifyDKIM(t *testing.T, data []byte, lookup func(string) ([]string, error)) *dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("dkim.Verify: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("%d DKIM signatures, want 1", len(vs))
	}
	return vs[0]
}

// parts decodes the text and HTML parts of a multipart/alternative
// message.
func parts(t *testing.T, data []byte) (text, html string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			return text, html
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
			t.Fatalf("part encoding %q", p.Header.Get("Content-Transfer-Encoding"))
		}
		b, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		switch p.Header.Get("Content-Type") {
		case "text/plain; charset=utf-8":
			text = string(b)
		case "text/html; charset=utf-8":
			html = string(b)
		default:
			t.Fatalf("unexpected part %q", p.Header.Get("Content-Type"))
		}
	}
}

// TestSTARTTLSAuthDKIM sends through STARTTLS and AUTH PLAIN, signs with
// Ed25519 and RSA DKIM keys, and checks at the sink: encryption, the
// authenticated user, the envelope, the headers (deterministic
// Message-ID, encoded subject, RFC 8058 headers), both MIME parts, the
// queue id as ProviderRef, and a DKIM signature that go-msgauth verifies
// (with a local TXT lookup) and that breaks when a signed header changes.
func TestSTARTTLSAuthDKIM(t *testing.T) {
	edKey, edPub := ed25519PEM(t)
	rsaKey, rsaPub := rsaPEM(t, 2048)
	rsaDER, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, record string
	}{
		{"ed25519", edKey, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub)},
		{"rsa2048", rsaKey, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaDER)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := smtpsink.Start(t, smtpsink.Options{Username: user, Password: password})
			cfg := sinkConfig(sink, smtp.TLSStartTLS)
			cfg.Username, cfg.Password = user, password
			cfg.EnvelopeFrom = "bounces@acme.test"
			cfg.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "relais2026", PrivateKeyPEM: tc.key}
			c := newConnector(t, cfg)

			batch := []connectors.Message{msg("m1", "alice@example.test"), msg("m2", "bob@example.test"), msg("m3", "carol@example.test")}
			batch[1].To = "Bob Éléphant <bob@example.test>"
			out := c.Send(ctx(t), batch)
			mustOK(t, out)
			got := sink.Messages()
			if len(got) != 3 {
				t.Fatalf("sink has %d messages", len(got))
			}
			byID := map[string]smtpsink.Message{}
			for _, m := range got {
				byID[m.MessageID] = m
			}
			for i, o := range out {
				m, ok := byID["<"+batch[i].Ref+"@acme.test>"]
				if !ok {
					t.Fatalf("no message with Message-ID <%s@acme.test>; have %v", batch[i].Ref, sink.MessageIDCounts())
				}
				if o.ProviderRef != m.QueueID || o.ProviderRef == "" {
					t.Errorf("ProviderRef %q, sink queue id %q", o.ProviderRef, m.QueueID)
				}
				if !m.TLS || m.User != user {
					t.Errorf("TLS %v user %q", m.TLS, m.User)
				}
				if m.From != "bounces@acme.test" || len(m.To) != 1 || !strings.HasSuffix(m.To[0], "@example.test") {
					t.Errorf("envelope %q -> %v", m.From, m.To)
				}
				dec := new(mime.WordDecoder)
				subj, err := dec.DecodeHeader(m.Header.Get("Subject"))
				if err != nil || subj != batch[i].Subject {
					t.Errorf("Subject %q (%v)", subj, err)
				}
				from, err := mail.ParseAddress(m.Header.Get("From"))
				if err != nil || from.Name != "Acmé News" || from.Address != "news@acme.test" {
					t.Errorf("From %q: %+v %v", m.Header.Get("From"), from, err)
				}
				if _, err := mail.ParseDate(m.Header.Get("Date")); err != nil {
					t.Errorf("Date %q: %v", m.Header.Get("Date"), err)
				}
				if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" ||
					!strings.Contains(m.Header.Get("List-Unsubscribe"), "https://acme.test/u/"+batch[i].Ref) {
					t.Errorf("List-Unsubscribe headers: %q / %q", m.Header.Get("List-Unsubscribe"), m.Header.Get("List-Unsubscribe-Post"))
				}
				text, html := parts(t, m.Data)
				wantText := strings.ReplaceAll(batch[i].Text, "\n", "\r\n")
				if text != wantText || html != batch[i].HTML {
					t.Errorf("parts:\n%q\n%q\nwant\n%q\n%q", text, html, wantText, batch[i].HTML)
				}

				lookup := dkimLookup("relais2026", "acme.test", tc.record)
				v := verifyDKIM(t, m.Data, lookup)
				if v.Err != nil {
					t.Fatalf("DKIM verification failed: %v\n%s", v.Err, m.Data)
				}
				if v.Domain != "acme.test" {
					t.Errorf("DKIM d=%q", v.Domain)
				}
				signed := strings.ToLower(strings.Join(v.HeaderKeys, ":"))
				for _, h := range []string{"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"} {
					if !strings.Contains(":"+signed+":", ":"+h+":") {
						t.Errorf("header %s not signed (h=%s)", h, signed)
					}
				}
				tampered := bytes.Replace(m.Data, []byte("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), []byte("List-Unsubscribe-Post: List-Unsubscribe=One-Clack"), 1)
				if bytes.Equal(tampered, m.Data) {
					t.Fatal("could not tamper")
				}
				if v := verifyDKIM(t, tampered, lookup); v.Err == nil {
					t.Error("DKIM still verifies after List-Unsubscribe-Post changed")
				}
				added := append([]byte("List-Unsubscribe: <https://evil.test/>\r\n"), m.Data...)
				if v := verifyDKIM(t, added, lookup); v.Err == nil {
					t.Error("DKIM still verifies after a second List-Unsubscribe was added (not over-signed)")
				}
			}
		})
	}
}

// TestImplicitTLS sends over SMTPS (TLS from the first byte).
func TestImplicitTLS(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSImplicit, Username: user, Password: password})
	cfg := sinkConfig(sink, smtp.TLSImplicit)
	cfg.Username, cfg.Password = user, password
	c := newConnector(t, cfg)
	mustOK(t, c.Send(ctx(t), []connectors.Message{msg("implicit-1", "a@example.test"), msg("implicit-2", "b@example.test")}))
	for _, m := range sink.Messages() {
		if !m.TLS || m.User != user {
			t.Errorf("message over TLS %v as %q", m.TLS, m.User)
		}
	}
	if sink.Count() != 2 {
		t.Fatalf("sink has %d messages", sink.Count())
	}
}

// TestUntrustedCertificateRefused: a relay whose certificate does not
// chain to a trusted root is refused, over STARTTLS and implicit TLS,
// before any credential or message is sent; the error is temporary (the
// connector, not the message, is at fault) and names the certificate.
func TestUntrustedCertificateRefused(t *testing.T) {
	for _, mode := range []string{smtp.TLSStartTLS, smtp.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			sink := smtpsink.Start(t, smtpsink.Options{TLS: mode, Username: user, Password: password})
			cfg := sinkConfig(sink, mode)
			cfg.RootCAs = nil // the system roots: they do not know the sink's certificate
			cfg.Username, cfg.Password = user, password
			c := newConnector(t, cfg)
			out := c.Send(ctx(t), []connectors.Message{msg("x1", "a@example.test"), msg("x2", "b@example.test")})
			for _, o := range out {
				if o.Err == nil || !connectors.IsTemporary(o.Err) {
					t.Fatalf("outcome %v, want a temporary error", o.Err)
				}
				if !strings.Contains(o.Err.Error(), "certificate") {
					t.Errorf("error does not name the certificate: %v", o.Err)
				}
			}
			if sink.Count() != 0 {
				t.Fatal("a message reached an untrusted relay")
			}
		})
	}
}

// TestPlaintextOnlyToLoopback: TLS "none" is refused at Validate for
// anything but 127.0.0.0/8, ::1 and localhost, with an error that names
// the setting; names are not resolved.
func TestPlaintextOnlyToLoopback(t *testing.T) {
	for _, host := range []string{"relay.example.com", "10.0.0.1", "192.168.1.25", "localhost.evil.test", "127.0.0.1.nip.io", "::2", "0.0.0.0"} {
		err := smtp.Config{Host: host, TLS: smtp.TLSNone}.Validate()
		if !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), "tls") || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("host %q: Validate = %v, want a tls configuration error", host, err)
		}
		if _, err := smtp.New(smtp.Config{Host: host, TLS: smtp.TLSNone}); err == nil {
			t.Errorf("host %q: New accepted plaintext", host)
		}
	}
	for _, host := range []string{"127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"} {
		if err := (smtp.Config{Host: host, TLS: smtp.TLSNone}).Validate(); err != nil {
			t.Errorf("host %q: %v", host, err)
		}
	}
	if err := (smtp.Config{Host: "relay.example.com", TLS: "ssl"}).Validate(); !errors.Is(err, connectors.ErrConfig) {
		t.Errorf("unknown TLS mode accepted: %v", err)
	}
}

// TestPlaintextLoopback sends in clear to a loopback sink, with and
// without PIPELINING (the lock-step path).
func TestPlaintextLoopback(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSNone, NoPipelining: !pipelining})
			c := newConnector(t, sinkConfig(sink, smtp.TLSNone))
			var batch []connectors.Message
			for i := range 20 {
				batch = append(batch, msg(fmt.Sprintf("plain-%d", i), fmt.Sprintf("r%d@example.test", i)))
			}
			sink.FailRecipient("r3@example.test", 550, 0)
			out := c.Send(ctx(t), batch)
			for i, o := range out {
				if (i == 3) != (o.Err != nil) {
					t.Errorf("outcome %d: %v", i, o.Err)
				}
			}
			if sink.Count() != 19 || len(sink.Duplicates()) != 0 {
				t.Fatalf("sink has %d messages, duplicates %v", sink.Count(), sink.Duplicates())
			}
		})
	}
}

// TestTemporaryReplies: 421 and 451 to RCPT and 452 to the end of data are
// temporary, carry the reply code, and do not stop the rest of the batch.
func TestTemporaryReplies(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	c := newConnector(t, sinkConfig(sink, smtp.TLSStartTLS))
	sink.FailRecipient("busy@example.test", 451, 0)
	sink.FailRecipient("closing@example.test", 421, 0)
	out := c.Send(ctx(t), []connectors.Message{
		msg("t1", "busy@example.test"), msg("t2", "ok@example.test"), msg("t3", "closing@example.test"), msg("t4", "ok2@example.test"),
	})
	for i, want := range []int{451, 0, 421, 0} {
		o := out[i]
		if want == 0 {
			if o.Err != nil {
				t.Errorf("outcome %d: %v", i, o.Err)
			}
			continue
		}
		var re *smtp.ReplyError
		if !connectors.IsTemporary(o.Err) || !errors.As(o.Err, &re) || re.Code != want {
			t.Errorf("outcome %d: %v, want temporary %d", i, o.Err, want)
		}
	}
	sink.FailData(452, 1)
	out = c.Send(ctx(t), []connectors.Message{msg("t5", "ok3@example.test")})
	var re *smtp.ReplyError
	if !connectors.IsTemporary(out[0].Err) || !errors.As(out[0].Err, &re) || re.Code != 452 || re.Command != "end of data" {
		t.Errorf("end of data 452: %v", out[0].Err)
	}
	if errors.Is(out[0].Err, connectors.ErrInDoubt) {
		t.Error("a refused message is not in doubt")
	}
	if sink.Count() != 2 {
		t.Fatalf("sink has %d messages, want 2", sink.Count())
	}
}

// TestPermanentForThatMessageOnly: a 550 for one recipient fails that
// message permanently; the other messages of the batch, on the same
// connections, are delivered.
func TestPermanentForThatMessageOnly(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.PoolSize = 2
	c := newConnector(t, cfg)
	sink.FailRecipient("gone@example.test", 550, 0)
	batch := batchWithGone("p", 10, 4)
	out := c.Send(ctx(t), batch)
	for i, o := range out {
		if o.Ref != batch[i].Ref {
			t.Fatalf("outcome %d has Ref %q", i, o.Ref)
		}
		if i != 4 {
			if o.Err != nil {
				t.Errorf("outcome %d: %v", i, o.Err)
			}
			continue
		}
		var re *smtp.ReplyError
		if o.Err == nil || connectors.IsTemporary(o.Err) || !errors.As(o.Err, &re) || re.Code != 550 || re.Command != "RCPT TO" {
			t.Errorf("outcome 4: %v, want permanent 550 at RCPT TO", o.Err)
		}
		if strings.Contains(o.Err.Error(), "gone@example.test") && !strings.Contains(re.Message, "gone@") {
			t.Errorf("the connector added the address to the error: %v", o.Err)
		}
	}
	if sink.Count() != 9 {
		t.Fatalf("sink has %d messages, want 9", sink.Count())
	}
	if n := sink.Connections(); n > 2 {
		t.Errorf("%d connections for a pool of 2", n)
	}
}

// TestDroppedConnectionMidBatch: the relay hangs up in the middle of a
// message; that message is temporary (and in doubt: the relay may or may
// not have taken it), the others of the batch go through on a new
// connection, and the next batch finds a healthy pool.
func TestDroppedConnectionMidBatch(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.PoolSize = 2
	c := newConnector(t, cfg)
	var batch []connectors.Message
	for i := range 20 {
		batch = append(batch, msg(fmt.Sprintf("d%d", i), fmt.Sprintf("u%d@example.test", i)))
	}
	sink.DropDuringData(1)
	out := c.Send(ctx(t), batch)
	failed := 0
	for _, o := range out {
		if o.Err == nil {
			continue
		}
		failed++
		if !connectors.IsTemporary(o.Err) {
			t.Errorf("dropped connection gave a permanent error: %v", o.Err)
		}
		if !errors.Is(o.Err, connectors.ErrInDoubt) {
			t.Errorf("a message lost after its data left is not marked in doubt: %v", o.Err)
		}
	}
	if failed != 1 || sink.Count() != 19 {
		t.Fatalf("%d failed, sink has %d; want 1 and 19", failed, sink.Count())
	}
	var next []connectors.Message
	for i := range 10 {
		next = append(next, msg(fmt.Sprintf("e%d", i), fmt.Sprintf("v%d@example.test", i)))
	}
	mustOK(t, c.Send(ctx(t), next))
	if sink.Count() != 29 || len(sink.Duplicates()) != 0 {
		t.Fatalf("sink has %d messages, duplicates %v", sink.Count(), sink.Duplicates())
	}
}

// TestStalePooledConnections: the relay closes idle sessions; the next
// Send notices on the pooled connections, reconnects and loses nothing.
func TestStalePooledConnections(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	c := newConnector(t, sinkConfig(sink, smtp.TLSStartTLS))
	var batch []connectors.Message
	for i := range 8 {
		batch = append(batch, msg(fmt.Sprintf("s%d", i), fmt.Sprintf("u%d@example.test", i)))
	}
	mustOK(t, c.Send(ctx(t), batch))
	sink.CloseConnections()
	time.Sleep(50 * time.Millisecond)
	for i := range batch {
		batch[i].Ref += "-again"
	}
	mustOK(t, c.Send(ctx(t), batch))
	if sink.Count() != 16 || len(sink.Duplicates()) != 0 {
		t.Fatalf("sink has %d messages, duplicates %v", sink.Count(), sink.Duplicates())
	}
}

// TestConcurrency2000: 2,000 messages sent by four concurrent Sends
// through a pool of 4 arrive exactly once each (2,000 distinct
// Message-IDs), over at most 4 connections.
func TestConcurrency2000(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{Discard: true})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.PoolSize = 4
	c := newConnector(t, cfg)
	const total, senders = 2000, 4
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for s := range senders {
		wg.Go(func() {
			var batch []connectors.Message
			for i := range total / senders {
				batch = append(batch, msg(fmt.Sprintf("c%d-%d", s, i), fmt.Sprintf("u%d.%d@example.test", s, i)))
			}
			for _, o := range c.Send(ctx(t), batch) {
				if o.Err != nil {
					errs <- o.Err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := sink.DistinctMessageIDs(); n != total {
		t.Fatalf("%d distinct Message-IDs, want %d", n, total)
	}
	if d := sink.Duplicates(); len(d) != 0 {
		t.Fatalf("duplicates: %v", d)
	}
	if n := sink.Connections(); n > 4 {
		t.Errorf("%d connections for a pool of 4", n)
	}
}

// TestPasswordNeverInErrors: a relay refuses the credentials and quotes
// them back; neither the password nor its base64 forms appear in the
// outcome, nor in the Config printed or logged, nor in Validate errors.
func TestPasswordNeverInErrors(t *testing.T) {
	const wrong = "Wr0ng-but-still-secret-passw0rd"
	sink := smtpsink.Start(t, smtpsink.Options{Username: user, Password: password, EchoCredentials: true})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.Username, cfg.Password = user, wrong
	c := newConnector(t, cfg)
	out := c.Send(ctx(t), []connectors.Message{msg("pw1", "a@example.test")})
	err := out[0].Err
	if err == nil || !connectors.IsTemporary(err) {
		t.Fatalf("AUTH failure: %v, want a temporary error", err)
	}
	t.Logf("AUTH failure outcome: %v", err)
	if !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), "authenticate") {
		t.Errorf("error does not say what failed: %v", err)
	}
	forms := []string{
		wrong,
		base64.StdEncoding.EncodeToString([]byte(wrong)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + wrong)),
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("connector", "config", cfg)
	texts := map[string]string{
		"error":  err.Error(),
		"%v":     fmt.Sprintf("%v", cfg),
		"%+v":    fmt.Sprintf("%+v", cfg),
		"%#v":    fmt.Sprintf("%#v", cfg),
		"slog":   logBuf.String(),
		"unwrap": fmt.Sprintf("%v", errors.Unwrap(err)),
	}
	key, _ := ed25519PEM(t)
	dk := &smtp.DKIMConfig{Domain: "acme.test", Selector: "s", PrivateKeyPEM: key}
	texts["dkim %v"] = fmt.Sprintf("%v %+v %#v", dk, *dk, dk)
	if strings.Contains(texts["dkim %v"], "PRIVATE KEY") || strings.Contains(texts["dkim %v"], key[40:80]) {
		t.Errorf("printed DKIM config shows the key: %s", texts["dkim %v"])
	}
	bad := cfg
	bad.Port = 70000
	texts["validate"] = bad.Validate().Error()
	for where, text := range texts {
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("%s shows the password (%q): %s", where, f, text)
			}
		}
	}
	if !strings.Contains(texts["%v"], "********") {
		t.Errorf("printed config does not show a masked password: %s", texts["%v"])
	}
}

// TestBadMessagesRefused: header injection, reserved or malformed extra
// headers, invalid addresses and Refs are permanent errors for that
// message only, and nothing of them is sent.
func TestBadMessagesRefused(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	c := newConnector(t, sinkConfig(sink, smtp.TLSStartTLS))
	good := msg("good", "ok@example.test")
	mk := func(ref string, f func(*connectors.Message)) connectors.Message {
		m := msg(ref, "x@example.test")
		f(&m)
		return m
	}
	batch := []connectors.Message{
		mk("b1", func(m *connectors.Message) { m.Subject = "Hello\r\nBcc: victim@example.test" }),
		mk("b2", func(m *connectors.Message) { m.Headers["X-Campaign"] = "a\nb" }),
		mk("b3", func(m *connectors.Message) { m.Headers["Bcc"] = "victim@example.test" }),
		mk("b4", func(m *connectors.Message) { m.Headers["Bad Name"] = "v" }),
		mk("b5", func(m *connectors.Message) { m.To = "not an address" }),
		mk("b6", func(m *connectors.Message) { m.To = "x@example.test>\r\nRCPT TO:<victim@example.test" }),
		mk("b7", func(m *connectors.Message) { m.Ref = "has space" }),
		mk("b8", func(m *connectors.Message) { m.From = "" }),
		mk("b9", func(m *connectors.Message) { m.Text = "bad \xff utf-8" }),
		mk("b10", func(m *connectors.Message) { m.To = "jöhn@exämple.test" }),
		good,
	}
	out := c.Send(ctx(t), batch)
	for i, o := range out[:len(out)-1] {
		if o.Err == nil || connectors.IsTemporary(o.Err) {
			t.Errorf("message %d (%s): %v, want a permanent error", i, batch[i].Ref, o.Err)
		}
	}
	if out[len(out)-1].Err != nil {
		t.Fatalf("good message: %v", out[len(out)-1].Err)
	}
	if sink.Count() != 1 {
		t.Fatalf("sink has %d messages, want 1", sink.Count())
	}
}

// TestMessageFormat: a message with lines starting with a dot, a long
// non-ASCII subject, and only text arrives intact: dot-stuffing, folding
// and encoding are undone exactly, and no header line exceeds 78
// characters.
func TestMessageFormat(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.From = "Relais <noreply@notify.acme.test>"
	c := newConnector(t, cfg)
	m := connectors.Message{
		Ref:     "01J9ZK6W3Q8V2E5R7T9Y1U3I5O",
		To:      "dest@example.test",
		Subject: strings.Repeat("Très long sujet avec des accents é à ü ", 6),
		Text:    ".\n..\n. point\nfin\r\n.",
		Headers: map[string]string{"X-Campaign": "summer-2026"},
	}
	mustOK(t, c.Send(ctx(t), []connectors.Message{m}))
	got := sink.Messages()[0]
	if got.MessageID != "<01J9ZK6W3Q8V2E5R7T9Y1U3I5O@notify.acme.test>" {
		t.Errorf("Message-ID %q", got.MessageID)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(got.Header.Get("Subject"))
	if err != nil || subj != m.Subject {
		t.Errorf("Subject %q (%v)", subj, err)
	}
	if got.Header.Get("X-Campaign") != "summer-2026" {
		t.Errorf("X-Campaign %q", got.Header.Get("X-Campaign"))
	}
	head, body, _ := bytes.Cut(got.Data, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		if len(line) > 78 {
			t.Errorf("header line of %d characters: %q", len(line), line)
		}
	}
	text, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	if want := ".\r\n..\r\n. point\r\nfin\r\n.\r\n"; string(text) != want {
		t.Errorf("body %q, want %q", text, want)
	}
}

// TestTimeoutsAndCancellation: a relay slower than the timeout, or a
// context that ends while the relay has not answered the end of data,
// gives a temporary in-doubt error promptly, and the connector still works
// afterwards.
func TestTimeoutsAndCancellation(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.Timeout = connectors.Duration(300 * time.Millisecond)
	c := newConnector(t, cfg)
	mustOK(t, c.Send(ctx(t), []connectors.Message{msg("warm", "a@example.test")}))

	sink.SetDelay(2 * time.Second)
	start := time.Now()
	out := c.Send(ctx(t), []connectors.Message{msg("slow", "a@example.test")})
	if !connectors.IsTemporary(out[0].Err) || !errors.Is(out[0].Err, connectors.ErrInDoubt) {
		t.Errorf("timeout: %v, want temporary in doubt", out[0].Err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("timeout took %s", d)
	}

	cfg.Timeout = connectors.Duration(10 * time.Second)
	c2 := newConnector(t, cfg)
	cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	out = c2.Send(cctx, []connectors.Message{msg("cancelled", "a@example.test"), msg("cancelled2", "b@example.test")})
	for _, o := range out {
		if !connectors.IsTemporary(o.Err) || !errors.Is(o.Err, context.DeadlineExceeded) {
			t.Errorf("cancelled: %v, want temporary wrapping the context error", o.Err)
		}
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("cancellation took %s", d)
	}

	sink.SetDelay(0)
	mustOK(t, c.Send(ctx(t), []connectors.Message{msg("after", "a@example.test")}))
}

// TestSizeLimit: a message larger than the relay's SIZE is refused
// permanently without being sent.
func TestSizeLimit(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{MaxMessageBytes: 2000})
	c := newConnector(t, sinkConfig(sink, smtp.TLSStartTLS))
	big := msg("big", "a@example.test")
	big.Text = strings.Repeat("0123456789 ", 400)
	out := c.Send(ctx(t), []connectors.Message{big, msg("small", "b@example.test")})
	if out[0].Err == nil || connectors.IsTemporary(out[0].Err) || !strings.Contains(out[0].Err.Error(), "limit") {
		t.Errorf("big message: %v", out[0].Err)
	}
	if out[1].Err != nil {
		t.Errorf("small message: %v", out[1].Err)
	}
}

// TestClose: after Close, Send fails every message with a temporary
// error, and Close can be called again.
func TestClose(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	c := newConnector(t, sinkConfig(sink, smtp.TLSStartTLS))
	mustOK(t, c.Send(ctx(t), []connectors.Message{msg("c1", "a@example.test")}))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out := c.Send(ctx(t), []connectors.Message{msg("c2", "a@example.test")})
	if !errors.Is(out[0].Err, smtp.ErrClosed) || !connectors.IsTemporary(out[0].Err) {
		t.Errorf("after Close: %v", out[0].Err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	caps := c.Capabilities()
	if caps.Idempotent || len(caps.Channels) != 1 || caps.Channels[0] != connectors.ChannelEmail || caps.MaxBatch < 1 {
		t.Errorf("capabilities %+v", caps)
	}
}

// TestConfigValidation covers the settings Validate refuses, each error
// naming its field.
func TestConfigValidation(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	weak, _ := rsaPEM(t, 1024)
	ed, _ := ed25519PEM(t)
	base := smtp.Config{Host: "relay.example.com"}
	for _, tc := range []struct {
		field string
		mod   func(*smtp.Config)
	}{
		{"host", func(c *smtp.Config) { c.Host = "" }},
		{"host", func(c *smtp.Config) { c.Host = "smtp://relay.example.com" }},
		{"port", func(c *smtp.Config) { c.Port = 70000 }},
		{"username", func(c *smtp.Config) { c.Username = "u" }},
		{"username", func(c *smtp.Config) { c.Password = "p" }},
		{"from", func(c *smtp.Config) { c.From = "not an address" }},
		{"envelope_from", func(c *smtp.Config) { c.EnvelopeFrom = "Name <a@b.test>" }},
		{"pool_size", func(c *smtp.Config) { c.PoolSize = 1000 }},
		{"timeout", func(c *smtp.Config) { c.Timeout = connectors.Duration(time.Hour) }},
		{"root_cas_pem", func(c *smtp.Config) { c.RootCAsPEM = "nothing" }},
		{"rate_per_second", func(c *smtp.Config) { c.RatePerSecond = -1 }},
		{"dkim.private_key_pem", func(c *smtp.Config) {
			c.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "s", PrivateKeyPEM: weak}
		}},
		{"dkim.private_key_pem", func(c *smtp.Config) {
			c.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "s", PrivateKeyPEM: ecPEM}
		}},
		{"dkim.private_key_pem", func(c *smtp.Config) {
			c.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "s", PrivateKeyPEM: "garbage"}
		}},
		{"dkim.domain", func(c *smtp.Config) { c.DKIM = &smtp.DKIMConfig{Domain: "acme", Selector: "s", PrivateKeyPEM: ed} }},
		{"dkim.selector", func(c *smtp.Config) {
			c.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "a b", PrivateKeyPEM: ed}
		}},
	} {
		cfg := base
		tc.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, connectors.ErrConfig) || !strings.Contains(err.Error(), ": "+tc.field+":") {
			t.Errorf("%s: Validate = %v", tc.field, err)
		}
	}
	good := base
	good.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "s1", PrivateKeyPEM: ed}
	if err := good.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for the sink's connection
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRSETOnlyAfterAFailedTransaction: on a pipelining relay, a
// transaction the relay acknowledged is followed by the next MAIL at once;
// RSET comes only after a transaction that failed half-way, and the
// messages after it go through on the same connection.
func TestRSETOnlyAfterAFailedTransaction(t *testing.T) {
	var dialogue lockedBuffer
	sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSNone, Debug: &dialogue})
	cfg := sinkConfig(sink, smtp.TLSNone)
	cfg.PoolSize = 1
	c := newConnector(t, cfg)
	sink.FailRecipient("gone@example.test", 550, 0)
	batch := batchWithGone("r", 6, 2)
	out := c.Send(ctx(t), batch)
	for i, o := range out {
		if (o.Err != nil) != (i == 2) {
			t.Errorf("outcome %d: %v", i, o.Err)
		}
	}
	if sink.Count() != 5 || sink.Connections() != 1 {
		t.Fatalf("sink: %d messages on %d connections, want 5 on 1", sink.Count(), sink.Connections())
	}
	if n := strings.Count(dialogue.String(), "RSET\r\n"); n != 1 {
		t.Errorf("%d RSET commands, want 1 (after the refused recipient)\n%s", n, dialogue.String())
	}
}

// TestLargeMessagesIntact: messages smaller and larger than the
// connection's write buffer (16 kB) and than textproto's (4 kB) arrive
// byte for byte as rendered, over STARTTLS, one after the other on one
// connection.
func TestLargeMessagesIntact(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	cfg := sinkConfig(sink, smtp.TLSStartTLS)
	cfg.PoolSize = 1
	c := newConnector(t, cfg)
	var batch []connectors.Message
	sizes := []int{10, 4000, 6000, 16000, 40000, 100}
	for i, n := range sizes {
		m := msg(fmt.Sprintf("big%d", i), fmt.Sprintf("user%d@example.test", i))
		m.Text = strings.Repeat("Line of text number x.\n.dot first\n", n/34+1)
		m.HTML = ""
		batch = append(batch, m)
	}
	for i, o := range c.Send(ctx(t), batch) {
		if o.Err != nil {
			t.Fatalf("message %d: %v", i, o.Err)
		}
	}
	got := sink.Messages()
	if len(got) != len(batch) {
		t.Fatalf("sink has %d messages, want %d", len(got), len(batch))
	}
	for i, m := range got {
		parsed, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(parsed.Body))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		want := strings.ReplaceAll(batch[i].Text, "\n", "\r\n")
		if string(body) != want {
			t.Errorf("message %d: body of %d bytes differs from the %d bytes sent", i, len(body), len(want))
		}
	}
}

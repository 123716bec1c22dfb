package smtp_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/smtp"
)

// oddRelay is a relay that does what the tests' sink (go-smtp's server, a
// conforming one) cannot be made to do: it refuses RSET with 502 and still
// takes the transaction after it, and it answers DATA with 354 whatever
// came before (RFC 2920 3.1 wants 554 without a valid recipient). It is a
// fake because no conforming server behaves so; it speaks just enough
// SMTP with PIPELINING, in clear on loopback, and records each message it
// acknowledged, and each one whose data was left unfinished.
type oddRelay struct {
	ln         net.Listener
	mu         sync.Mutex
	delivered  []oddMessage
	unfinished int
	conns      int
}

type oddMessage struct{ rcpt, body string }

func startOddRelay(t *testing.T) *oddRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &oddRelay{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			go r.serve(c)
		}
	}()
	return r
}

// seen returns what the relay recorded so far.
func (r *oddRelay) seen() (delivered []oddMessage, unfinished, conns int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]oddMessage(nil), r.delivered...), r.unfinished, r.conns
}

func (r *oddRelay) serve(c net.Conn) {
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	in, out := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(s string) { _, _ = out.WriteString(s + "\r\n"); _ = out.Flush() }
	reply("220 relay.test ESMTP")
	rcpt := ""
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			reply("250-relay.test\r\n250 PIPELINING")
		case cmd == "RSET":
			reply("502 RSET not today")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			rcpt = ""
			reply("250 sender ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			if strings.Contains(cmd, "GONE@") {
				reply("550 no such user")
				continue
			}
			rcpt = strings.TrimSpace(line[len("RCPT TO:"):])
			reply("250 recipient ok")
		case cmd == "DATA":
			reply("354 go ahead")
			var body strings.Builder
			for {
				l, err := in.ReadString('\n')
				if err != nil {
					r.mu.Lock()
					r.unfinished++
					r.mu.Unlock()
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(l)
			}
			if rcpt == "" {
				reply("554 no valid recipients")
				continue
			}
			r.mu.Lock()
			r.delivered = append(r.delivered, oddMessage{rcpt: rcpt, body: body.String()})
			r.mu.Unlock()
			reply("250 queued")
		case cmd == "QUIT":
			reply("221 bye")
			return
		default:
			reply("500 what")
		}
	}
}

// TestRefusedRSETNeverDeliversAnEmptyMessage: after a refused recipient
// the next transaction on the connection starts with RSET; a relay that
// refuses that RSET but takes MAIL, RCPT and DATA holds a transaction with
// a recipient. Ending the data there would deliver an empty message to a
// real person, and the message itself again when retried. The connector
// leaves the data unfinished and drops the connection: the message fails
// for now (temporary, nothing handed over) and its retry delivers it once,
// whole. The refused recipient's own empty end of data is refused by the
// relay (no recipient).
func TestRefusedRSETNeverDeliversAnEmptyMessage(t *testing.T) {
	relay := startOddRelay(t)
	addr := relay.ln.Addr().(*net.TCPAddr)
	c := newConnector(t, smtp.Config{Host: "127.0.0.1", Port: addr.Port, TLS: smtp.TLSNone, HeloName: "relais.test", PoolSize: 1,
		Timeout: connectors.Duration(5 * time.Second)})
	out := c.Send(ctx(t), []connectors.Message{msg("g1", "gone@example.test"), msg("o1", "ok@example.test")})
	var re *smtp.ReplyError
	if out[0].Err == nil || connectors.IsTemporary(out[0].Err) || !errors.As(out[0].Err, &re) || re.Command != "RCPT TO" || re.Code != 550 {
		t.Errorf("refused recipient: %v, want permanent 550 at RCPT TO", out[0].Err)
	}
	if !connectors.IsTemporary(out[1].Err) || !errors.As(out[1].Err, &re) || re.Command != "RSET" || errors.Is(out[1].Err, connectors.ErrInDoubt) {
		t.Errorf("second message after the refused RSET: %v, want temporary, not in doubt", out[1].Err)
	}
	// The relay sees the unfinished data when the dropped connection
	// reaches it, after Send returned: wait for that (or 10 s).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, unfinished, _ := relay.seen(); unfinished > 0 {
			break
		}
	}
	if got, unfinished, _ := relay.seen(); len(got) != 0 || unfinished != 1 {
		t.Fatalf("after the refused RSET the relay acknowledged %+v (want nothing) and saw %d unfinished data (want 1)", got, unfinished)
	}
	// The router's retry.
	if out := c.Send(ctx(t), []connectors.Message{msg("o1", "ok@example.test")}); out[0].Err != nil {
		t.Fatalf("retry: %v", out[0].Err)
	}
	got, _, conns := relay.seen()
	if len(got) != 1 || got[0].rcpt != "<ok@example.test>" || !strings.Contains(got[0].body, "Subject:") {
		t.Fatalf("the relay acknowledged %d messages, want the message once and whole: %+v", len(got), got)
	}
	if conns != 2 {
		t.Errorf("%d connections, want 2", conns)
	}
}

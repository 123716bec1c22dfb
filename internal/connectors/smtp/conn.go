package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	gmsmtp "github.com/wneessen/go-mail/smtp"

	"github.com/relais-dev/relais/internal/connectors"
)

// ReplyError is an SMTP reply that refused a command: the error of an
// Outcome when the relay answered 4xx (inside connectors.Temporary) or 5xx
// (inside connectors.Permanent). Use errors.As to read the code, for
// example to record "550 5.1.1" as a bounce reason.
type ReplyError struct {
	// Command is the refused command: "MAIL FROM", "RCPT TO", "DATA" or
	// "end of data" (the answer to the message itself).
	Command string
	// Code is the three-digit reply code; Message the rest of the reply
	// (with the enhanced status code when the relay gives one).
	Code    int
	Message string
}

// Error prints the command and the reply.
func (e *ReplyError) Error() string {
	return fmt.Sprintf("smtp: %s: %03d %s", e.Command, e.Code, e.Message)
}

// classify wraps an SMTP reply: 4xx temporary, anything else permanent.
func (e *ReplyError) classify() error {
	if e.Code >= 400 && e.Code < 500 {
		return connectors.Temporary(e)
	}
	return connectors.Permanent(e)
}

// conn is one pooled connection to the relay. It is used by one goroutine
// at a time.
type conn struct {
	raw net.Conn // the TCP connection, for deadlines
	cl  *gmsmtp.Client
	// pipelining: the relay offers PIPELINING (RFC 2920).
	pipelining bool
	// maxSize is the relay's SIZE limit (0: none announced).
	maxSize int
	// dirty: the last transaction failed half-way; RSET before the next.
	dirty     bool
	idleSince time.Time
}

// writeBuffer is the size of a connection's write buffer.
const writeBuffer = 16 << 10

// flushThrough passes each Write to w and flushes it: under a larger
// bufio.Writer, every Flush of that one reaches the connection in one
// write (a Write at least as large as w's buffer goes straight through
// it, a smaller one is copied and flushed at once).
type flushThrough struct{ w *bufio.Writer }

// Write writes p to w and flushes w.
func (f flushThrough) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.w.Flush()
}

// step is one command of a transaction.
type step struct {
	name string // for errors
	line string
	code int // expected reply (25 means 250-259)
}

// txResult is the result of one transaction.
type txResult struct {
	reply string // the relay's answer to the end of data
	err   error  // classified
	// broken: the connection must not be used again.
	broken bool
	// retryable: nothing of the message was handed over, and the failure
	// is the connection's (a stale pooled connection): a fresh connection
	// may be tried at once.
	retryable bool
}

// transact sends one message: [RSET] MAIL RCPT DATA, pipelined when the
// relay offers it, then the message and the end of data.
func (cn *conn) transact(ctx context.Context, deadline time.Time, p *prepared) txResult {
	if err := cn.raw.SetDeadline(deadline); err != nil {
		return txResult{err: connectors.Temporary(fmt.Errorf("smtp: set deadline: %w", err)), broken: true, retryable: true}
	}
	stop := context.AfterFunc(ctx, func() { _ = cn.raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if cn.maxSize > 0 && len(p.data)+len(p.sig) > cn.maxSize {
		return txResult{err: connectors.Permanent(fmt.Errorf("smtp: message of %d bytes exceeds the relay's limit of %d", len(p.data)+len(p.sig), cn.maxSize))}
	}

	t := cn.cl.Text
	var stepsBuf [4]step
	steps := stepsBuf[:0]
	// A transaction the relay acknowledged leaves the session ready for
	// the next MAIL (RFC 5321 4.1.4): RSET only after one that failed
	// half-way.
	if cn.dirty {
		steps = append(steps, step{"RSET", "RSET", 250})
	}
	steps = append(steps,
		step{"MAIL FROM", "MAIL FROM:<" + p.envFrom + ">", 250},
		step{"RCPT TO", "RCPT TO:<" + p.rcpt + ">", 25},
		step{"DATA", "DATA", 354},
	)

	var refused *ReplyError
	dataAccepted := false
	ioFail := func(what string, err error, inDoubt bool) txResult {
		if cerr := ctxErr(ctx); cerr != nil {
			err = fmt.Errorf("smtp: %s: %w: %w", what, cerr, err)
		} else {
			err = fmt.Errorf("smtp: %s: %w", what, err)
		}
		if inDoubt {
			err = fmt.Errorf("%w; %w", err, connectors.ErrInDoubt)
		}
		return txResult{err: connectors.Temporary(err), broken: true, retryable: !inDoubt}
	}
	// dataFail: the message could not be written whole; the relay cannot
	// have accepted it, and the connection is left mid-DATA.
	dataFail := func(err error) txResult {
		var bad *malformedError
		if errors.As(err, &bad) {
			return txResult{err: connectors.Permanent(err), broken: true}
		}
		r := ioFail("send message", err, false)
		r.retryable = false
		return r
	}
	read := func(s step) (bool, error) {
		code, msg, err := t.ReadResponse(s.code)
		if err == nil {
			return true, nil
		}
		var tpe *textproto.Error
		if !errors.As(err, &tpe) {
			return false, err
		}
		if refused == nil {
			refused = &ReplyError{Command: s.name, Code: code, Message: msg}
		}
		return false, nil
	}

	if cn.pipelining {
		for _, s := range steps {
			if err := put(t.W, s.line, "\r\n"); err != nil {
				return ioFail("send envelope", err, false)
			}
		}
		if err := t.W.Flush(); err != nil {
			return ioFail("send envelope", err, false)
		}
		for _, s := range steps {
			ok, err := read(s)
			if err != nil {
				return ioFail("read reply to "+s.name, err, false)
			}
			if ok && s.name == "DATA" {
				dataAccepted = true
			}
		}
	} else {
		for _, s := range steps {
			if err := put(t.W, s.line, "\r\n"); err != nil {
				return ioFail("send "+s.name, err, false)
			}
			if err := t.W.Flush(); err != nil {
				return ioFail("send "+s.name, err, false)
			}
			ok, err := read(s)
			if err != nil {
				return ioFail("read reply to "+s.name, err, false)
			}
			if !ok {
				break
			}
			if s.name == "DATA" {
				dataAccepted = true
			}
		}
	}

	if refused != nil {
		cn.dirty = true
		if dataAccepted && refused.Command != "RCPT TO" {
			// The relay took DATA after refusing RSET or MAIL FROM: the
			// transaction it holds may have a recipient, so an empty
			// message ended now could be delivered. Leave the data
			// unfinished and drop the connection: a relay discards a
			// message whose end never came (RFC 5321 4.1.1.4), and
			// nothing of this one was handed over.
			res := txResult{err: refused.classify(), broken: true}
			if refused.Command == "RSET" || refused.Code == 421 {
				res.retryable = true
				res.err = connectors.Temporary(refused)
			}
			return res
		}
		if dataAccepted {
			// A relay that accepts DATA after refusing the recipient
			// (RFC 2920 3.1): end an empty message, which it must refuse
			// (the transaction has no recipient).
			if err := put(t.W, ".\r\n"); err != nil {
				return ioFail("end empty message", err, false)
			}
			if err := t.W.Flush(); err != nil {
				return ioFail("end empty message", err, false)
			}
			if _, _, err := t.ReadResponse(0); err != nil {
				var tpe *textproto.Error
				if !errors.As(err, &tpe) {
					return ioFail("read reply to empty message", err, false)
				}
			}
		}
		res := txResult{err: refused.classify()}
		switch {
		case refused.Command == "RSET", refused.Code == 421:
			// The relay is closing, or the session is confused: drop
			// the connection; nothing was accepted.
			res.broken, res.retryable = true, true
			res.err = connectors.Temporary(refused)
		}
		return res
	}

	if p.sig != "" {
		if err := writeLines(t.W, []byte(p.sig)); err != nil {
			return dataFail(err)
		}
	}
	if err := writeLines(t.W, p.data); err != nil {
		return dataFail(err)
	}
	if err := put(t.W, ".\r\n"); err != nil {
		return dataFail(err)
	}
	if err := t.W.Flush(); err != nil {
		// The end of data did not leave: the relay cannot have accepted.
		r := ioFail("send message", err, false)
		r.retryable = false
		return r
	}
	code, msg, err := t.ReadResponse(250)
	if err != nil {
		var tpe *textproto.Error
		if !errors.As(err, &tpe) {
			return ioFail("read reply to end of data", err, true)
		}
		cn.dirty = true
		re := &ReplyError{Command: "end of data", Code: code, Message: msg}
		res := txResult{err: re.classify()}
		if code == 421 {
			res.broken = true
		}
		return res
	}
	cn.dirty = false
	return txResult{reply: msg}
}

// ctxErr is ctx.Err(), or DeadlineExceeded once ctx's deadline has
// passed even if its timer has not fired yet (I/O deadlines are set to it).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// put writes strings to w; bufio errors are sticky, Flush reports them
// too.
func put(w *bufio.Writer, parts ...string) error {
	for _, p := range parts {
		if _, err := w.WriteString(p); err != nil {
			return err
		}
	}
	return nil
}

// malformedError is a message that cannot be put on the wire as it is.
type malformedError struct{ msg string }

// Error returns the description.
func (e *malformedError) Error() string { return e.msg }

// writeLines writes data, which must consist of CRLF-terminated lines,
// dot-stuffed (RFC 5321 4.5.2). A bare CR or LF is refused rather than
// sent: relays disagree on their meaning, which is what SMTP smuggling
// exploits.
func writeLines(w *bufio.Writer, data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return &malformedError{"smtp: message does not end with CRLF"}
		}
		if i == 0 || data[i-1] != '\r' || bytes.IndexByte(data[:i-1], '\r') >= 0 {
			return &malformedError{"smtp: message contains a bare CR or LF"}
		}
		if data[0] == '.' {
			if err := w.WriteByte('.'); err != nil {
				return err
			}
		}
		if _, err := w.Write(data[:i+1]); err != nil {
			return err
		}
		data = data[i+1:]
	}
	return nil
}

// queueID extracts the relay's queue id from its answer to the end of
// data: "queued as X" (Postfix, go-smtp), "id=X" (Exim); "" when there is
// none.
func queueID(reply string) string {
	if _, rest, ok := strings.Cut(reply, "queued as "); ok {
		return firstToken(rest)
	}
	if _, rest, ok := strings.Cut(reply, "id="); ok {
		return firstToken(rest)
	}
	return ""
}

func firstToken(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '@')
	})
	if end >= 0 {
		s = s[:end]
	}
	s = strings.TrimRight(s, ".")
	if len(s) > 128 {
		return ""
	}
	return s
}

// close ends the connection: QUIT when polite, then close.
func (cn *conn) close(polite bool) {
	if polite {
		_ = cn.raw.SetDeadline(time.Now().Add(time.Second))
		_ = cn.cl.Quit()
	}
	_ = cn.raw.Close()
}

// dial opens, secures and authenticates one connection. Its errors are
// Temporary: they concern the connector, not a message (the router
// retries, fails over to the secondary connector, then dead-letters).
func (c *Connector) dial(ctx context.Context) (*conn, error) {
	deadline := c.deadline(ctx)
	addr := c.addr
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, connectors.Temporary(fmt.Errorf("smtp: connect to %s: %w", addr, err))
	}
	fail := func(what string, err error) (*conn, error) {
		_ = raw.Close()
		if cerr := ctxErr(ctx); cerr != nil {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, connectors.Temporary(fmt.Errorf("smtp: %s %s: %w", what, addr, c.scrub(err)))
	}
	if err := raw.SetDeadline(deadline); err != nil {
		return fail("set deadline on", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var nc net.Conn = raw
	if c.cfg.TLS == TLSImplicit {
		tc := tls.Client(raw, c.tlsConf)
		if err := tc.HandshakeContext(dctx); err != nil {
			return fail("TLS handshake with", err)
		}
		nc = tc
	}
	cl, err := gmsmtp.NewClient(nc, c.cfg.Host)
	if err != nil {
		return fail("greeting from", err)
	}
	cl.SkipSMTPUTF8(true)
	if err := cl.Hello(c.helo); err != nil {
		return fail("EHLO to", err)
	}
	if c.cfg.TLS == TLSStartTLS {
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return fail("STARTTLS refused: the relay does not offer STARTTLS, and the connector never sends in clear (use tls \"implicit\" if the port expects TLS at once):", errors.New("no STARTTLS"))
		}
		if err := cl.StartTLS(c.tlsConf); err != nil {
			return fail("STARTTLS with", err)
		}
	}
	if c.cfg.Username != "" {
		if err := c.authenticate(cl); err != nil {
			return fail("authenticate as "+strconv.Quote(c.cfg.Username)+" to", err)
		}
	}
	// A message (about 5 kB for a newsletter) leaves in one write, one
	// TLS record, rather than in 4 kB pieces (textproto's buffer): fewer
	// records to seal here and to open at the relay.
	cl.Text.W = bufio.NewWriterSize(flushThrough{cl.Text.W}, writeBuffer)
	cn := &conn{raw: raw, cl: cl}
	cn.pipelining, _ = cl.Extension("PIPELINING")
	if ok, param := cl.Extension("SIZE"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(param)); err == nil && n > 0 {
			cn.maxSize = n
		}
	}
	return cn, nil
}

// authenticate runs SMTP AUTH, PLAIN when offered, else LOGIN.
func (c *Connector) authenticate(cl *gmsmtp.Client) error {
	ok, mechs := cl.Extension("AUTH")
	if !ok {
		return errors.New("the relay offers no AUTH (after TLS)")
	}
	var plain, login bool
	for m := range strings.FieldsSeq(strings.ToUpper(mechs)) {
		plain = plain || m == "PLAIN"
		login = login || m == "LOGIN"
	}
	var a gmsmtp.Auth
	switch {
	case plain:
		a = gmsmtp.PlainAuth("", c.cfg.Username, c.cfg.Password, c.cfg.Host, false)
	case login:
		a = gmsmtp.LoginAuth(c.cfg.Username, c.cfg.Password, c.cfg.Host, false)
	default:
		return fmt.Errorf("the relay offers AUTH %s; PLAIN or LOGIN is needed", mechs)
	}
	return cl.Auth(a)
}

// scrub returns err, or when its text contains the password in any form
// it was sent in (clear, base64 of LOGIN, base64 of PLAIN), an error with
// the same text minus the secret and without the original chain: a
// hostile or careless relay may echo what it received.
func (c *Connector) scrub(err error) error {
	if err == nil || c.cfg.Password == "" {
		return err
	}
	msg := err.Error()
	secrets := []string{
		base64.StdEncoding.EncodeToString([]byte("\x00" + c.cfg.Username + "\x00" + c.cfg.Password)),
		base64.StdEncoding.EncodeToString([]byte(c.cfg.Password)),
		c.cfg.Password,
	}
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "********")
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

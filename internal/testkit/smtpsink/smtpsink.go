// Package smtpsink is an in-process SMTP server for tests and benchmarks,
// built on github.com/emersion/go-smtp: it listens on 127.0.0.1 at a free
// port, offers STARTTLS with a self-signed ECDSA certificate made at start
// (or speaks TLS at once, or plaintext), optionally requires AUTH PLAIN,
// and records every message it accepts.
//
//	sink := smtpsink.Start(t, smtpsink.Options{Username: "u", Password: "p"})
//	// connect to sink.Host():sink.Port(), trusting sink.CertPool()
//	sink.WaitFor(10, 5*time.Second)
//	for _, m := range sink.Messages() { ... m.Header.Get("Subject") ... }
//
// Knobs make it misbehave the way real relays do: FailRecipient answers a
// given recipient with 421, 451 or 550; FailData answers the end of data
// with a given code; SetDelay delays that answer; DropDuringData closes the
// connection in the middle of a message. MessageIDCounts counts the
// Message-IDs received, so that a test can assert that every message
// arrived exactly once.
//
// A Sink has no package state; its methods are safe for concurrent use.
package smtpsink

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/mail"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes of Options.TLS.
const (
	// TLSStartTLS offers STARTTLS and refuses MAIL before it (the default).
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte.
	TLSImplicit = "implicit"
	// TLSNone is plaintext only.
	TLSNone = "none"
)

// Options configures a Sink.
type Options struct {
	// TLS is "starttls" (default), "implicit" or "none".
	TLS string
	// Username and Password, when set, make AUTH PLAIN (over TLS)
	// mandatory before MAIL.
	Username string
	Password string
	// EchoCredentials makes a failed AUTH answer quote the user name and
	// password it received, like a careless relay: for tests that check a
	// client never repeats them.
	EchoCredentials bool
	// Discard keeps no message data (benchmarks): Messages returns
	// envelopes and headers only.
	Discard bool
	// NoPipelining hides the PIPELINING extension (TLS "none" only).
	NoPipelining bool
	// MaxMessageBytes is announced as SIZE and enforced (0: no limit).
	MaxMessageBytes int64
	// Debug, when set, receives the SMTP dialogue.
	Debug io.Writer
}

// Message is one accepted message.
type Message struct {
	// From and To are the envelope (MAIL FROM, RCPT TO).
	From string
	To   []string
	// Data is the message as received (nil with Options.Discard).
	Data []byte
	// Header holds the parsed header fields; MessageID is its Message-ID.
	Header    mail.Header
	MessageID string
	// QueueID is the id the sink gave in its answer ("queued as <id>").
	QueueID string
	// TLS reports whether the session was encrypted; User is the
	// authenticated user name.
	TLS  bool
	User string
	At   time.Time
}

// fault is a programmed misbehaviour; times 0 means always.
type fault struct {
	code  int
	times int
}

// Sink is a running SMTP server.
type Sink struct {
	opts   Options
	server *smtp.Server
	ln     net.Listener
	pool   *x509.CertPool
	cert   []byte
	done   chan struct{}

	mu        sync.Mutex
	msgs      []Message
	ids       map[string]int
	conns     int
	open      []net.Conn
	queueSeq  int
	changed   chan struct{}
	rcptFault map[string]*fault
	dataFault *fault
	drops     int
	delay     time.Duration
	closeOnce sync.Once
	serveErr  chan error
}

// Start starts a sink for the calling test or benchmark and closes it when
// the test ends; it fails the test if the sink cannot start.
func Start(t testing.TB, opts Options) *Sink {
	t.Helper()
	s, err := Listen(opts)
	if err != nil {
		t.Fatalf("smtpsink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Listen starts a sink; the caller must Close it.
func Listen(opts Options) (*Sink, error) {
	switch opts.TLS {
	case "":
		opts.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("smtpsink: unknown TLS mode %q", opts.TLS)
	}
	if opts.NoPipelining && opts.TLS != TLSNone {
		return nil, errors.New("smtpsink: NoPipelining works only with TLS \"none\"")
	}
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	s := &Sink{
		opts:      opts,
		pool:      pool,
		cert:      certPEM,
		done:      make(chan struct{}),
		ids:       make(map[string]int),
		changed:   make(chan struct{}),
		rcptFault: make(map[string]*fault),
		serveErr:  make(chan error, 1),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtpsink: listen: %w", err)
	}
	var inner net.Listener = &countingListener{Listener: ln, s: s}
	if opts.TLS == TLSImplicit {
		inner = tls.NewListener(inner, tlsConf)
	}
	s.ln = inner

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "sink.relais.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if opts.Debug != nil {
		srv.Debug = opts.Debug
		srv.ErrorLog = log.New(opts.Debug, "smtpsink: ", 0)
	}
	if opts.TLS != TLSNone {
		srv.TLSConfig = tlsConf
	}
	s.server = srv
	go func() { s.serveErr <- srv.Serve(inner) }()
	return s, nil
}

// Close stops the server and closes every connection.
func (s *Sink) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.server.Close()
		if errors.Is(err, smtp.ErrServerClosed) {
			err = nil
		}
	})
	return err
}

// Addr is "127.0.0.1:port".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host is "127.0.0.1".
func (s *Sink) Host() string { return "127.0.0.1" }

// Port is the listening port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPool trusts the sink's certificate (valid for 127.0.0.1, ::1 and
// localhost).
func (s *Sink) CertPool() *x509.CertPool { return s.pool }

// CertPEM is the sink's certificate, PEM.
func (s *Sink) CertPEM() []byte { return bytes.Clone(s.cert) }

// Messages returns the accepted messages, in order of acceptance.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns the number of accepted messages.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Connections returns the number of connections accepted so far.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// WaitFor waits until at least n messages have been accepted, or timeout.
func (s *Sink) WaitFor(n int, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.msgs), s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("smtpsink: %d messages after %s, want %d", got, timeout, n)
		case <-s.done:
			return fmt.Errorf("smtpsink: closed with %d messages, want %d", got, n)
		}
	}
}

// MessageIDCounts returns how many times each Message-ID was received.
func (s *Sink) MessageIDCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.ids))
	for k, v := range s.ids {
		m[k] = v
	}
	return m
}

// DistinctMessageIDs returns the number of different Message-IDs received.
func (s *Sink) DistinctMessageIDs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// Duplicates returns the Message-IDs received more than once, sorted.
func (s *Sink) Duplicates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d []string
	for k, v := range s.ids {
		if v > 1 {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// FailRecipient makes RCPT TO:<addr> answer code (421, 451, 452: temporary;
// 550, 553: permanent) for the next times attempts, or always when times is
// 0. A code of 0 removes the fault.
func (s *Sink) FailRecipient(addr string, code, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		delete(s.rcptFault, addr)
		return
	}
	s.rcptFault[addr] = &fault{code: code, times: times}
}

// FailData makes the answer to the end of data code for the next times
// messages (always when times is 0); the message is then not recorded. A
// code of 0 removes the fault.
func (s *Sink) FailData(code, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.dataFault = nil
		return
	}
	s.dataFault = &fault{code: code, times: times}
}

// SetDelay delays the answer to the end of data of every message by d (0:
// none).
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// DropDuringData makes the sink close the connection in the middle of the
// data of the next n messages, without answering; they are not recorded.
func (s *Sink) DropDuringData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops = n
}

// CloseConnections closes every connection accepted so far, as a relay
// does with idle sessions; clients holding them find them dead.
func (s *Sink) CloseConnections() {
	s.mu.Lock()
	open := s.open
	s.open = nil
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

// Reset forgets the recorded messages and removes every fault.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = nil
	s.ids = make(map[string]int)
	s.rcptFault = make(map[string]*fault)
	s.dataFault = nil
	s.drops = 0
	s.delay = 0
}

// take consumes one use of a fault; it reports whether the fault applies.
func take(f *fault) bool {
	if f == nil {
		return false
	}
	if f.times == 0 {
		return true
	}
	if f.times < 0 {
		return false
	}
	f.times--
	if f.times == 0 {
		f.times = -1
	}
	return true
}

// replyFor builds the SMTP error for a programmed code.
func replyFor(code int, what string) *smtp.SMTPError {
	enh := smtp.EnhancedCode{code / 100, 0, 0}
	text := "Requested action not taken"
	switch code {
	case 421:
		enh, text = smtp.EnhancedCode{4, 3, 2}, "Service shutting down, closing transmission channel"
	case 450, 451:
		enh, text = smtp.EnhancedCode{4, 3, 0}, "Temporary local problem, try again later"
	case 452:
		enh, text = smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage"
	case 550:
		enh, text = smtp.EnhancedCode{5, 1, 1}, "Mailbox unavailable"
	case 552:
		enh, text = smtp.EnhancedCode{5, 3, 4}, "Message too big"
	case 553:
		enh, text = smtp.EnhancedCode{5, 1, 3}, "Mailbox name not allowed"
	case 554:
		enh, text = smtp.EnhancedCode{5, 7, 1}, "Transaction failed"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text + " (" + what + ")"}
}

// session is one SMTP session.
type session struct {
	s    *Sink
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, conn: c}, nil
}

func (ss *session) isTLS() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

// AuthMechanisms implements smtp.AuthSession.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username == ss.s.opts.Username && password == ss.s.opts.Password {
			ss.user = username
			return nil
		}
		if ss.s.opts.EchoCredentials {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
				Message: fmt.Sprintf("Authentication failed for user %q with password %q", username, password)}
		}
		return smtp.ErrAuthFailed
	}), nil
}

// Mail implements smtp.Session.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.TLS == TLSStartTLS && !ss.isTLS() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if ss.s.opts.Username != "" && ss.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.from = from
	return nil
}

// Rcpt implements smtp.Session.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	f := ss.s.rcptFault[to]
	apply := take(f)
	ss.s.mu.Unlock()
	if apply {
		return replyFor(f.code, "recipient")
	}
	ss.to = append(ss.to, to)
	return nil
}

// Data implements smtp.Session.
func (ss *session) Data(r io.Reader) error {
	s := ss.s
	s.mu.Lock()
	drop := s.drops > 0
	if drop {
		s.drops--
	}
	var df *fault
	if take(s.dataFault) {
		df = s.dataFault
	}
	delay := s.delay
	s.mu.Unlock()

	if drop {
		// Read part of the message, then hang up without answering.
		_, _ = io.CopyN(io.Discard, r, 512)
		_ = ss.conn.Close()
		return errors.New("smtpsink: dropped")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
		}
	}
	if df != nil {
		return replyFor(df.code, "data")
	}
	msg := Message{From: ss.from, To: append([]string(nil), ss.to...), TLS: ss.isTLS(), User: ss.user, At: time.Now()}
	if m, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data))); err == nil {
		msg.Header = m.Header
		msg.MessageID = m.Header.Get("Message-Id")
	}
	if !s.opts.Discard {
		msg.Data = data
	}
	s.mu.Lock()
	s.queueSeq++
	msg.QueueID = "Q" + strconv.FormatInt(int64(s.queueSeq), 16)
	s.msgs = append(s.msgs, msg)
	if msg.MessageID != "" {
		s.ids[msg.MessageID]++
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + msg.QueueID}
}

// Reset implements smtp.Session.
func (ss *session) Reset() {
	ss.from = ""
	ss.to = nil
}

// Logout implements smtp.Session.
func (ss *session) Logout() error { return nil }

// countingListener counts connections and, with NoPipelining, hides the
// PIPELINING extension.
type countingListener struct {
	net.Listener
	s *Sink
}

// Accept counts and returns the next connection.
func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.conns++
	l.s.open = append(l.s.open, c)
	l.s.mu.Unlock()
	if l.s.opts.NoPipelining {
		return &filterConn{Conn: c}, nil
	}
	return c, nil
}

// filterConn drops the EHLO line announcing PIPELINING (go-smtp writes
// and flushes each reply line on its own).
type filterConn struct{ net.Conn }

// Write drops the PIPELINING line and passes everything else.
func (c *filterConn) Write(b []byte) (int, error) {
	if bytes.Equal(b, []byte("250-PIPELINING\r\n")) {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpsink: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpsink: serial: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smtpsink", Organization: []string{"relais smtpsink " + host}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpsink: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("smtpsink: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

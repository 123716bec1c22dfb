// Package forward sends copies of the audit trail to the operator's central
// log system (LOG-6): syslog (RFC 5424 messages, RFC 5425 / RFC 6587
// octet-counted framing over TCP or TLS) and GELF (Graylog: TCP or TLS with
// NUL-terminated frames, or HTTP(S) posts).
//
// The sinks implement [audit.Sink]; [audit.Service.Forward] tails the logs
// in the store and calls them, so a sink never sits on a request's path.
// [Open] builds a sink from its URL:
//
//	tls://host:6514     syslog over TLS (RFC 5425)
//	tcp://host:514      syslog over plain TCP (RFC 6587 octet counting)
//	gelf+tls://host:12201, gelf+tcp://host:12201    GELF, NUL-terminated frames
//	gelf+https://host:12201/gelf, gelf+http://...   GELF over HTTP, one message per post
//
// TLS connections follow the platform's policy (TLS 1.2+, AEAD suites with
// ephemeral key exchange, the same groups as the HTTPS server) and verify
// the receiver's certificate against the system roots or a CA file.
//
// What crosses: the events' headers, actors, objects and details, which by
// the audit package's rule hold no personal values (field names only).
package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// Options configure the sinks [Open] builds.
type Options struct {
	// CAFile is a PEM bundle of the authorities that sign the receivers'
	// certificates; empty means the system roots.
	CAFile string
	// Hostname is the HOSTNAME of syslog messages and the host of GELF
	// messages (the machine's name when empty).
	Hostname string
	// Timeout bounds a connection and one batch's write (10s when zero).
	Timeout time.Duration
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "relais"
		}
		o.Hostname = h
	}
}

// Open builds the sink a URL names (see the package comment).
func Open(rawURL string, o Options) (audit.Sink, error) {
	o.defaults()
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("audit forwarding: invalid URL: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("audit forwarding: put no credentials in the URL")
	}
	switch u.Scheme {
	case "tls", "tcp", "gelf+tls", "gelf+tcp":
		if u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("audit forwarding: %s URL needs host:port and no path, as in %s://logs.example:6514", u.Scheme, u.Scheme)
		}
	case "gelf+http", "gelf+https":
		if u.Hostname() == "" {
			return nil, errors.New("audit forwarding: GELF HTTP URL needs a host, as in gelf+https://graylog.example:12201/gelf")
		}
	default:
		return nil, fmt.Errorf("audit forwarding: unknown scheme %q; use tls://, tcp://, gelf+tls://, gelf+tcp://, gelf+https:// or gelf+http://", u.Scheme)
	}
	var tc *tls.Config
	if strings.HasSuffix(u.Scheme, "tls") || u.Scheme == "gelf+https" {
		if tc, err = clientTLS(u.Hostname(), o.CAFile); err != nil {
			return nil, err
		}
	}
	name := redacted(u)
	switch u.Scheme {
	case "tls", "tcp":
		return &streamSink{name: name, addr: u.Host, tls: tc, timeout: o.Timeout, frame: syslogFrame(o.Hostname)}, nil
	case "gelf+tls", "gelf+tcp":
		return &streamSink{name: name, addr: u.Host, tls: tc, timeout: o.Timeout, frame: gelfFrame(o.Hostname)}, nil
	default:
		return newGELFHTTP(name, u, tc, o), nil
	}
}

// redacted is the sink's name: its URL without query or fragment.
func redacted(u *url.URL) string {
	c := *u
	c.RawQuery, c.Fragment = "", ""
	return c.String()
}

func clientTLS(serverName, caFile string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     tlsconf.CipherSuites(true),
		CurvePreferences: tlsconf.CurvePreferences(),
		ServerName:       serverName,
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile) // #nosec G304 -- the operator names the CA file.
		if err != nil {
			return nil, fmt.Errorf("audit forwarding: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("audit forwarding: CA file %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// streamSink keeps one connection to a stream receiver and writes framed
// messages on it; a failed write closes it and the next batch redials.
// A stream protocol has no acknowledgement: a batch counts as delivered
// once the kernel took it, so an event can be lost only if the receiver
// dies with it unread in its buffers (use GELF over HTTP for end-to-end
// acknowledgement).
type streamSink struct {
	name    string
	addr    string
	tls     *tls.Config
	timeout time.Duration
	frame   func(audit.Record) ([]byte, error)
	conn    net.Conn
}

func (s *streamSink) Name() string { return s.name }

func (s *streamSink) Send(ctx context.Context, recs []audit.Record) error {
	var buf []byte
	for _, r := range recs {
		b, err := s.frame(r)
		if err != nil {
			return err
		}
		buf = append(buf, b...)
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	if _, err := s.conn.Write(buf); err != nil {
		_ = s.conn.Close()
		s.conn = nil
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (s *streamSink) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: s.timeout, KeepAlive: 30 * time.Second}
	if s.tls == nil {
		c, err := d.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		return c, nil
	}
	td := &tls.Dialer{NetDialer: d, Config: s.tls}
	c, err := td.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// Close closes the sink's connection, if any.
func (s *streamSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

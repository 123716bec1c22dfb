// Package smtp is the email connector: it hands messages to an SMTP relay
// (submission port with STARTTLS, SMTPS, or a loopback relay in clear).
//
// Most callers need New and the connectors.Connector methods:
//
//	c, err := smtp.New(smtp.Config{Host: "relay.example", Username: u, Password: p,
//		From: "News <news@acme.example>",
//		DKIM: &smtp.DKIMConfig{Domain: "acme.example", Selector: "relais", PrivateKeyPEM: key}})
//	outcomes := c.Send(ctx, batch)
//
// # Connections
//
// The connector keeps a pool of Config.PoolSize connections (default 4).
// Each connection sends many messages in turn, one transaction per message
// (MAIL, RCPT, DATA; RSET after a failed transaction); a broken
// connection is dropped and replaced. Send spreads a batch over the pool
// concurrently. When the relay offers PIPELINING (RFC 2920), MAIL, RCPT and
// DATA leave in one write. go-mail's client does not implement pipelining;
// this package speaks the transaction itself over the textproto connection
// go-mail's smtp.Client exports for extensions, and uses go-mail for the
// greeting, EHLO, STARTTLS and AUTH.
//
// TLS is verified, 1.2 at least with ECDHE + AEAD suites; there is no
// option to skip verification. Plaintext is accepted only to a loopback
// host. Credentials are sent only over TLS (or to a loopback host) and
// never appear in errors, even when the relay echoes them.
//
// # Messages
//
// Each connectors.Message becomes a UTF-8 MIME message (text and HTML as
// multipart/alternative, quoted-printable, encoded headers) with a
// deterministic Message-ID, <Ref@domain-of-From>, and the extra headers of
// Message.Headers (List-Unsubscribe, List-Unsubscribe-Post for RFC 8058
// one-click unsubscribe). Header values with line breaks are refused, and a
// message is never sent with a bare CR or LF (SMTP smuggling). With
// Config.DKIM the message is DKIM-signed with go-msgauth.
//
// # Outcomes
//
// ProviderRef is the relay's queue id when its answer to the message names
// one ("queued as X"), else the Message-ID. A 4xx reply, a connection error
// or a timeout is connectors.Temporary; a 5xx reply is connectors.Permanent
// for that message only (a 550 for one recipient does not affect the
// others). A connection lost after the whole message left but before the
// relay answered is Temporary and wraps connectors.ErrInDoubt: plain SMTP
// cannot deduplicate (Capabilities.Idempotent is false), so the router
// should not retry such a message blindly.
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/smtp/bouncebox"
)

// ErrClosed is the (temporary) error of messages given to a closed
// connector.
var ErrClosed = errors.New("smtp: connector closed")

// maxIdle is how long a pooled connection may stay idle before it is
// replaced rather than reused (relays drop idle sessions).
const maxIdle = 30 * time.Second

// Connector sends email through one SMTP relay. It is safe for concurrent
// use; Send calls share its pool of connections.
type Connector struct {
	cfg     Config
	addr    string
	helo    string
	timeout time.Duration
	tlsConf *tls.Config
	render  renderer

	// slots holds one token per open connection (at most PoolSize); idle
	// holds the open connections not in use.
	slots chan struct{}
	idle  chan *conn
	bufs  sync.Pool

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
}

var _ connectors.Connector = (*Connector)(nil)

// New validates cfg and returns a connector. It does not connect: the
// first Send does.
func New(cfg Config) (*Connector, error) {
	cc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	cfg = cc.cfg
	helo := cc.heloName
	if helo == "" {
		if h, err := os.Hostname(); err == nil && validHost(h) {
			helo = h
		} else {
			helo = "localhost"
		}
	}
	serverName := cfg.Host
	if len(serverName) > 1 && serverName[0] == '[' {
		serverName = serverName[1 : len(serverName)-1]
	}
	c := &Connector{
		cfg:     cfg,
		addr:    net.JoinHostPort(serverName, strconv.Itoa(cfg.Port)),
		helo:    helo,
		timeout: cc.timeout,
		tlsConf: netx.TLSConfig(serverName, cc.roots),
		render: renderer{
			defaultFrom: cc.from,
			envFrom:     cc.envFrom,
			dkimKey:     cc.dkimKey,
			dkimDomain:  cc.dkimDom,
			dkimSel:     cc.dkimSel,
			now:         time.Now,
		},
		slots:    make(chan struct{}, cfg.PoolSize),
		idle:     make(chan *conn, cfg.PoolSize),
		closedCh: make(chan struct{}),
	}
	c.cfg.Host = serverName
	c.bufs.New = func() any { return new(bytes.Buffer) }
	return c, nil
}

// Capabilities reports email only, not idempotent (plain SMTP cannot
// deduplicate), batches of up to MaxBatch and the configured rate.
func (c *Connector) Capabilities() connectors.Capabilities {
	return connectors.Capabilities{
		Channels:      []string{connectors.ChannelEmail},
		Idempotent:    false,
		MaxBatch:      MaxBatch,
		RatePerSecond: c.cfg.RatePerSecond,
	}
}

// Close closes the idle connections (QUIT) and makes later Sends fail;
// connections in use close when their Send ends. It is safe to call more
// than once.
func (c *Connector) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.closedCh)
	c.mu.Unlock()
	for {
		select {
		case cn := <-c.idle:
			cn.close(true)
			<-c.slots
		default:
			return nil
		}
	}
}

// deadline is the end of the next network step.
func (c *Connector) deadline(ctx context.Context) time.Time {
	dl, ok := ctx.Deadline()
	return netx.ContextDeadline(time.Now(), c.timeout, dl, ok)
}

// acquire returns a pooled connection (reused true) or a new one.
func (c *Connector) acquire(ctx context.Context) (cn *conn, reused bool, err error) {
	for {
		select {
		case cn = <-c.idle:
		default:
			select {
			case cn = <-c.idle:
			case c.slots <- struct{}{}:
				cn, err = c.dial(ctx)
				if err != nil {
					<-c.slots
					return nil, false, err
				}
				return cn, false, nil
			case <-ctx.Done():
				return nil, false, connectors.Temporary(fmt.Errorf("smtp: waiting for a connection: %w", ctx.Err()))
			case <-c.closedCh:
				return nil, false, connectors.Temporary(ErrClosed)
			}
		}
		if time.Since(cn.idleSince) > maxIdle {
			cn.close(true)
			<-c.slots
			continue
		}
		return cn, true, nil
	}
}

// release returns cn to the pool, or closes it when it is broken or the
// connector is closed.
func (c *Connector) release(cn *conn, broken bool) {
	if !broken {
		c.mu.Lock()
		if !c.closed {
			cn.idleSince = time.Now()
			c.idle <- cn // never blocks: at most PoolSize connections exist
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
	cn.close(!broken)
	<-c.slots
}

// Send hands off the batch over the pool and returns one outcome per
// message, in order. It returns when every message has an outcome; when ctx
// ends, messages not yet started fail with a temporary error.
func (c *Connector) Send(ctx context.Context, batch []connectors.Message) []connectors.Outcome {
	out := make([]connectors.Outcome, len(batch))
	for i := range batch {
		out[i].Ref = batch[i].Ref
	}
	if len(batch) == 0 {
		return out
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return connectors.Failed(batch, connectors.Temporary(ErrClosed))
	}
	s := &sendState{batch: batch, out: out, attempted: make([]bool, len(batch))}
	var wg sync.WaitGroup
	for range min(c.cfg.PoolSize, len(batch)) {
		wg.Go(func() { c.work(ctx, s) })
	}
	wg.Wait()
	for i := range out {
		if !s.attempted[i] {
			err := s.setupErr
			if err == nil {
				err = ctx.Err()
			}
			out[i].Err = connectors.Temporary(fmt.Errorf("smtp: not attempted: %w", err))
		}
	}
	return out
}

// sendState is one Send call shared by its workers; each index of out and
// attempted is written by the one worker that took it.
type sendState struct {
	batch     []connectors.Message
	out       []connectors.Outcome
	attempted []bool
	next      atomic.Int64
	mu        sync.Mutex
	setupErr  error
}

// work sends messages of s in turn on one connection until none is left
// or no connection can be had.
func (c *Connector) work(ctx context.Context, s *sendState) {
	var cn *conn
	var reused bool
	defer func() {
		if cn != nil {
			c.release(cn, false)
		}
	}()
	buf := c.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			c.bufs.Put(buf)
		}
	}()
	for {
		i := int(s.next.Add(1)) - 1
		if i >= len(s.batch) {
			return
		}
		s.attempted[i] = true
		if err := ctx.Err(); err != nil {
			s.out[i].Err = connectors.Temporary(fmt.Errorf("smtp: not sent: %w", err))
			continue
		}
		p, err := c.render.prepare(buf, &s.batch[i])
		if err != nil {
			s.out[i].Err = err
			continue
		}
		for try := 0; ; try++ {
			if cn == nil {
				cn, reused, err = c.acquire(ctx)
				if err != nil {
					s.out[i].Err = err
					s.mu.Lock()
					s.setupErr = err
					s.mu.Unlock()
					return
				}
			}
			res := cn.transact(ctx, c.deadline(ctx), &p)
			if res.broken {
				c.release(cn, true)
				cn = nil
			}
			if res.err != nil && res.retryable && reused && try < c.cfg.PoolSize {
				// A stale pooled connection (the relay dropped it while
				// idle) and nothing handed over: try the next one, or a
				// fresh one.
				continue
			}
			s.out[i].Err = res.err
			if res.err == nil {
				s.out[i].ProviderRef = queueID(res.reply)
				if s.out[i].ProviderRef == "" {
					s.out[i].ProviderRef = p.messageID
				}
			}
			break
		}
	}
}

// BounceMailbox returns the connector's bounce mailbox and the options to
// read it (the relay's trusted roots serve the mailbox's server too), and
// false when none is configured.
func (c *Connector) BounceMailbox() (bouncebox.Config, bouncebox.Options, bool) {
	if c.cfg.BounceMailbox == nil {
		return bouncebox.Config{}, bouncebox.Options{}, false
	}
	return *c.cfg.BounceMailbox, bouncebox.Options{RootCAs: c.tlsConf.RootCAs, Timeout: c.timeout}, true
}

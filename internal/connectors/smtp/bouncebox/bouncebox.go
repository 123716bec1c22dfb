// Package bouncebox reads a bounce mailbox over IMAP: the mailbox the
// envelope sender of an SMTP connector's messages delivers to, where mail
// servers send delivery status notifications. [Drain] fetches the messages
// not yet looked at, hands each to a function, deletes those it handled and
// flags the others as seen, so that an operator finds them and they are not
// read again.
//
// Only TLS connections are made: imaps:// (TLS from the first byte, port
// 993) or imap:// with STARTTLS required (port 143); the password is never
// sent in clear, and the server's certificate is verified.
package bouncebox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// Config is a bounce mailbox, kept in the SMTP connector's sealed
// configuration; Password is a secret.
type Config struct {
	// URL is imaps://host[:993]/MAILBOX or imap://host[:143]/MAILBOX
	// (STARTTLS); the mailbox defaults to INBOX.
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	_, _, _, err := c.parse()
	return err
}

func (c Config) parse() (addr, mailbox string, implicit bool, err error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return "", "", false, errors.New("bounce_mailbox.url must be imaps://host[:port]/MAILBOX or imap://host[:port]/MAILBOX, credentials apart")
	}
	port := u.Port()
	switch u.Scheme {
	case "imaps":
		implicit = true
		if port == "" {
			port = "993"
		}
	case "imap":
		if port == "" {
			port = "143"
		}
	default:
		return "", "", false, fmt.Errorf("bounce_mailbox.url: scheme %q: use imaps:// or imap:// (STARTTLS)", u.Scheme)
	}
	if c.Username == "" || c.Password == "" {
		return "", "", false, errors.New("bounce_mailbox: username and password are required")
	}
	mailbox = strings.TrimPrefix(u.Path, "/")
	if mailbox == "" {
		mailbox = "INBOX"
	}
	return net.JoinHostPort(u.Hostname(), port), mailbox, implicit, nil
}

// Options are the connection's settings beyond Config.
type Options struct {
	// RootCAs verifies the server's certificate (system roots when nil).
	RootCAs *x509.CertPool
	// Timeout bounds the connection and each command (30s when zero).
	Timeout time.Duration
	// Max is the most messages read in one Drain (100 when zero).
	Max int
	// MaxSize skips larger messages (flagged seen, not read; 1 MiB when zero).
	MaxSize int64
}

// ErrKeep, returned by a Drain handler, keeps the message in the mailbox
// (flagged seen) instead of deleting it.
var ErrKeep = errors.New("bouncebox: keep the message")

// Result counts what one Drain did.
type Result struct {
	Handled, Kept int
}

// Drain reads up to Options.Max unseen messages; for each it calls handle
// with the whole message. A nil answer deletes the message (expunged at
// the end); ErrKeep, another error or a message larger than MaxSize flags
// it seen and keeps it. An error of handle other than ErrKeep stops the
// drain and is returned after the flags are stored.
func Drain(ctx context.Context, cfg Config, o Options, handle func(raw []byte) error) (Result, error) {
	var res Result
	addr, mailbox, implicit, err := cfg.parse()
	if err != nil {
		return res, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Max <= 0 {
		o.Max = 100
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 1 << 20
	}
	host, _, _ := net.SplitHostPort(addr)
	opts := &imapclient.Options{
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, RootCAs: o.RootCAs,
			CipherSuites: tlsconf.CipherSuites(true), CurvePreferences: tlsconf.CurvePreferences()},
		Dialer: &net.Dialer{Timeout: o.Timeout},
	}
	var c *imapclient.Client
	if implicit {
		c, err = imapclient.DialTLS(addr, opts)
	} else {
		c, err = imapclient.DialStartTLS(addr, opts)
	}
	if err != nil {
		return res, fmt.Errorf("bounce mailbox %s: connect: %w", addr, err)
	}
	defer func() { _ = c.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if err := c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
		return res, fmt.Errorf("bounce mailbox %s: login as %s refused", addr, cfg.Username)
	}
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		return res, fmt.Errorf("bounce mailbox %s: select %s: %w", addr, mailbox, err)
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return res, fmt.Errorf("bounce mailbox %s: search: %w", addr, err)
	}
	uids := found.AllUIDs()
	if len(uids) > o.Max {
		uids = uids[:o.Max]
	}
	var done, keep imap.UIDSet
	var herr error
	for _, uid := range uids {
		if ctx.Err() != nil {
			herr = ctx.Err()
			break
		}
		section := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return res, fmt.Errorf("bounce mailbox %s: fetch: %w", addr, err)
		}
		if len(msgs) != 1 {
			continue // expunged meanwhile by another reader
		}
		raw := msgs[0].FindBodySection(section)
		if msgs[0].RFC822Size > o.MaxSize || int64(len(raw)) > o.MaxSize {
			keep.AddNum(uid)
			res.Kept++
			continue
		}
		switch err := handle(raw); {
		case err == nil:
			done.AddNum(uid)
			res.Handled++
		case errors.Is(err, ErrKeep):
			keep.AddNum(uid)
			res.Kept++
		default:
			keep.AddNum(uid)
			res.Kept++
			herr = err
		}
		if herr != nil {
			break
		}
	}
	if len(keep) > 0 {
		if err := c.Store(keep, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Close(); err != nil {
			return res, fmt.Errorf("bounce mailbox %s: flag seen: %w", addr, err)
		}
	}
	if len(done) > 0 {
		if err := c.Store(done, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			return res, fmt.Errorf("bounce mailbox %s: flag deleted: %w", addr, err)
		}
		if err := c.Expunge().Close(); err != nil {
			return res, fmt.Errorf("bounce mailbox %s: expunge: %w", addr, err)
		}
	}
	_ = c.Logout().Wait()
	return res, herr
}

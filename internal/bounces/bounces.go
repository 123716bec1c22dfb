// Package bounces takes in the delivery status notifications (RFC 3464)
// that mail servers send back to the bounce mailboxes of the tenants' SMTP
// connectors (issue 5, MSG-5): it reads each configured mailbox over IMAP
// (connectors/smtp/bouncebox), parses the reports (connectors/smtp/dsn),
// and for each one that names a message Relais sent through that connector
// to that very recipient, records the outcome on the message (bounced or
// delivered, with the status code and diagnostic) and, for a permanent
// failure, marks the contact bounced so that later campaigns skip the
// address.
//
// A report is trusted only as far as it can be checked: its Message-ID must
// be one of this connector's messages (Relais's Message-IDs are
// <message id@domain>) and its Final-Recipient that message's recipient; a
// report that names another address, another connector's message or no
// known message changes nothing and stays in the mailbox, flagged seen, for
// an operator to look at. A free-text bounce that is not an RFC 3464 report
// is kept the same way.
package bounces

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/smtp/bouncebox"
	"github.com/relais-dev/relais/internal/connectors/smtp/dsn"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/tenants"
)

// Mailboxed is implemented by connectors that have a bounce mailbox (the
// SMTP connector when bounce_mailbox is configured).
type Mailboxed interface {
	BounceMailbox() (bouncebox.Config, bouncebox.Options, bool)
}

// Service reads the bounce mailboxes.
type Service struct {
	Tenants    *tenants.Service
	Router     *router.Service
	Connectors *router.Connectors
	Contacts   *contacts.Service
	Logger     *slog.Logger
}

// Stats counts what a pass did.
type Stats struct {
	Mailboxes int
	// Applied are reports recorded on a message; Ignored were read and
	// needed nothing (a delay, a message already final); Kept stay in the
	// mailbox for an operator (not a report, or not matching a message).
	Applied, Ignored, Kept int
}

// Poll reads every configured bounce mailbox once.
func (s *Service) Poll(ctx context.Context) (Stats, error) {
	var st Stats
	ts, err := s.Tenants.List(ctx)
	if err != nil {
		return st, err
	}
	var errs []error
	for _, t := range ts {
		if t.Status != tenants.StatusActive {
			continue
		}
		cs, err := s.Connectors.ListConnectors(ctx, t.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ci := range cs {
			conn, err := s.Connectors.Opened(ctx, t.ID, ci.ID)
			if err != nil {
				continue // a connector that does not open has no mailbox to read either
			}
			mb, ok := conn.(Mailboxed)
			if !ok {
				continue
			}
			cfg, opts, ok := mb.BounceMailbox()
			if !ok {
				continue
			}
			st.Mailboxes++
			if err := s.drain(ctx, t.ID, ci.ID, cfg, opts, &st); err != nil {
				errs = append(errs, fmt.Errorf("tenant %s, connector %s: %w", t.Slug, ci.Name, err))
			}
		}
	}
	return st, errors.Join(errs...)
}

func (s *Service) drain(ctx context.Context, tenantID, connectorID string, cfg bouncebox.Config, opts bouncebox.Options, st *Stats) error {
	_, err := bouncebox.Drain(ctx, cfg, opts, func(raw []byte) error {
		rep, err := dsn.Parse(bytes.NewReader(raw))
		if err != nil {
			st.Kept++
			return bouncebox.ErrKeep
		}
		applied, err := s.Apply(ctx, tenantID, connectorID, rep)
		switch {
		case errors.Is(err, errNoMatch):
			st.Kept++
			return bouncebox.ErrKeep
		case err != nil:
			return err
		case applied:
			st.Applied++
		default:
			st.Ignored++
		}
		return nil
	})
	return err
}

var errNoMatch = errors.New("bounces: the report names no message of this connector and recipient")

// Apply records one report on the message it names, after checking that
// the message went through connectorID to the report's recipient. It
// returns whether a state changed; errNoMatch when the report cannot be
// matched.
func (s *Service) Apply(ctx context.Context, tenantID, connectorID string, rep dsn.Report) (bool, error) {
	ref, _, ok := strings.Cut(rep.MessageID, "@")
	if !ok || ref == "" {
		return false, errNoMatch
	}
	m, err := s.Router.Get(ctx, tenantID, ref)
	if errors.Is(err, router.ErrNotFound) {
		return false, errNoMatch
	}
	if err != nil {
		return false, err
	}
	if m.ConnectorID != connectorID || m.Channel != "email" {
		return false, errNoMatch
	}
	var rc *dsn.Recipient
	for i := range rep.Recipients {
		if strings.EqualFold(rep.Recipients[i].FinalRecipient, m.To) {
			rc = &rep.Recipients[i]
		}
	}
	if rc == nil {
		return false, errNoMatch
	}
	var status string
	switch rc.Action {
	case "failed":
		status = connectors.StatusBounced
	case "delivered":
		status = connectors.StatusDelivered
	default: // delayed, relayed, expanded: nothing final yet
		return false, nil
	}
	reason := rc.Status
	if rc.Diagnostic != "" {
		reason += " " + rc.Diagnostic
	}
	res, err := s.Router.ApplyReceipts(ctx, tenantID, connectorID, []connectors.Receipt{{Ref: ref, Status: status, Reason: reason, At: time.Time{}}})
	if err != nil {
		return false, err
	}
	if res.Applied == 0 {
		return false, nil
	}
	if status == connectors.StatusBounced && rc.Permanent() && m.ContactID != "" {
		s.markBounced(ctx, tenantID, m.ContactID, m.To)
	}
	return true, nil
}

// markBounced sets a contact's status to bounced when its address is still
// the one that bounced. A contact that cannot take the status (erased,
// blocklisted) keeps its own; the message's bounce is recorded anyway.
func (s *Service) markBounced(ctx context.Context, tenantID, contactID, address string) {
	c, err := s.Contacts.Get(ctx, tenantID, contactID)
	if err != nil || !strings.EqualFold(c.Email, address) || c.Status != contacts.StatusActive {
		return
	}
	st := contacts.StatusBounced
	if _, err := s.Contacts.Update(ctx, tenantID, contactID, contacts.Patch{Status: &st}); err != nil && s.Logger != nil {
		s.Logger.WarnContext(ctx, "bounce: contact not marked bounced", "tenant", tenantID, "contact", contactID, "error", err)
	}
}

// Run polls every interval until ctx ends; failures are logged.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Poll(ctx); err != nil && s.Logger != nil {
				s.Logger.WarnContext(ctx, "bounce mailboxes", "error", err)
			}
		}
	}
}

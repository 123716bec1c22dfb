package contacts

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// BlockKind is what a blocklist entry holds.
type BlockKind string

// Kinds of blocklist entries.
const (
	BlockEmail BlockKind = "email"
	BlockPhone BlockKind = "phone"
)

const maxReasonRunes = 200

// blockIndex normalises a value and returns its blind index, the one the
// contacts of the tenant carry (so the blocklist matches them).
func (s *Service) blockIndex(ctx context.Context, tenantID string, kind BlockKind, value string) ([]byte, error) {
	var norm, field string
	var err error
	switch kind {
	case BlockEmail:
		norm, err = NormaliseEmail(value)
		field = fEmail
	case BlockPhone:
		norm, err = NormalisePhone(value, "")
		field = fPhone
	default:
		return nil, invalid("kind", "must be email or phone")
	}
	if err != nil {
		return nil, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return cr.Index(field, norm), nil
}

// Block puts an email address or phone number on the tenant's blocklist
// (only its blind index is stored) and marks every contact with that
// address blocklisted, at once: CanSend is false for them from the next
// send, and no import or contact update can change it back. reason is a
// short note for the tenant (no personal data). Blocking an address already
// on the list changes nothing.
func (s *Service) Block(ctx context.Context, tenantID string, kind BlockKind, value, reason string) error {
	idx, err := s.blockIndex(ctx, tenantID, kind, value)
	if err != nil {
		return err
	}
	reason = strings.TrimSpace(reason)
	if utf8.RuneCountInString(reason) > maxReasonRunes || !printable(reason) {
		return invalid("reason", "must be at most %d printable characters", maxReasonRunes)
	}
	now := s.now()
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		n, err := blockTx(ctx, tx, kind, idx, reason, "api", now)
		if err != nil || n < 0 {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "blocklist.add", ObjectType: "blocklist",
			Changes: []audit.Change{{Field: "kind", After: string(kind)}, {Field: "value", Personal: true}, {Field: "reason", After: reason}},
			Details: map[string]any{"contacts_blocklisted": n}})
		return err
	})
}

// blockTx adds one entry and blocklists the matching contacts; it returns
// the number of contacts changed, or -1 when the entry already existed.
func blockTx(ctx context.Context, tx *store.Tx, kind BlockKind, idx []byte, reason, source string, now time.Time) (int64, error) {
	res, err := tx.Exec(ctx, `INSERT INTO blocklist (tenant_id, kind, value_bidx, reason, source, created_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, kind, value_bidx) DO NOTHING`, string(kind), idx, reason, source, micros(now))
	if err != nil {
		return 0, fmt.Errorf("contacts: add to the blocklist: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return -1, nil
	}
	q := `UPDATE contacts SET status = 'blocklisted', updated_at = $3 WHERE tenant_id = $1 AND email_bidx = $2 AND status <> 'blocklisted'`
	if kind == BlockPhone {
		q = `UPDATE contacts SET status = 'blocklisted', updated_at = $3 WHERE tenant_id = $1 AND phone_bidx = $2 AND status <> 'blocklisted'`
	}
	res, err = tx.Exec(ctx, q, idx, micros(now))
	if err != nil {
		return 0, fmt.Errorf("contacts: blocklist contacts: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Unblock removes an address from the blocklist. Contacts that were
// blocklisted only because of it become active again (consents are
// untouched: a withdrawn consent stays withdrawn). Removing an address that
// is not on the list gives ErrNotFound.
func (s *Service) Unblock(ctx context.Context, tenantID string, kind BlockKind, value string) error {
	idx, err := s.blockIndex(ctx, tenantID, kind, value)
	if err != nil {
		return err
	}
	now := s.now()
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM blocklist WHERE tenant_id = $1 AND kind = $2 AND value_bidx = $3`, string(kind), idx)
		if err != nil {
			return fmt.Errorf("contacts: remove from the blocklist: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("blocklist entry %w", ErrNotFound)
		}
		col := "email_bidx"
		q := `UPDATE contacts SET status = 'active', updated_at = $3 WHERE tenant_id = $1 AND email_bidx = $2 AND status = 'blocklisted'
			AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.tenant_id = contacts.tenant_id
				AND ((b.kind = 'email' AND b.value_bidx = contacts.email_bidx) OR (b.kind = 'phone' AND b.value_bidx = contacts.phone_bidx)))`
		if kind == BlockPhone {
			col = "phone_bidx"
			q = `UPDATE contacts SET status = 'active', updated_at = $3 WHERE tenant_id = $1 AND phone_bidx = $2 AND status = 'blocklisted'
			AND NOT EXISTS (SELECT 1 FROM blocklist b WHERE b.tenant_id = contacts.tenant_id
				AND ((b.kind = 'email' AND b.value_bidx = contacts.email_bidx) OR (b.kind = 'phone' AND b.value_bidx = contacts.phone_bidx)))`
		}
		res, err = tx.Exec(ctx, q, idx, micros(now))
		if err != nil {
			return fmt.Errorf("contacts: reactivate contacts (%s): %w", col, err)
		}
		n, _ := res.RowsAffected()
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "blocklist.remove", ObjectType: "blocklist",
			Changes: []audit.Change{{Field: "kind", After: string(kind)}, {Field: "value", Personal: true}},
			Details: map[string]any{"contacts_reactivated": n}})
		return err
	})
}

// IsBlocked reports whether an address is on the tenant's blocklist.
func (s *Service) IsBlocked(ctx context.Context, tenantID string, kind BlockKind, value string) (bool, error) {
	idx, err := s.blockIndex(ctx, tenantID, kind, value)
	if err != nil {
		return false, err
	}
	var n int
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM blocklist WHERE tenant_id = $1 AND kind = $2 AND value_bidx = $3`, string(kind), idx).Scan(&n)
	})
	if err != nil {
		return false, fmt.Errorf("contacts: check the blocklist: %w", err)
	}
	return n > 0, nil
}

// Reason says why CanSend allows or refuses a send.
type Reason string

// Reasons of CanSend.
const (
	ReasonOK               Reason = "ok"
	ReasonNotFound         Reason = "contact_not_found"
	ReasonBlocklisted      Reason = "blocklisted"
	ReasonUnsubscribed     Reason = "unsubscribed"
	ReasonBounced          Reason = "bounced"
	ReasonNoAddress        Reason = "no_address"
	ReasonNoConsent        Reason = "no_consent"
	ReasonConsentWithdrawn Reason = "consent_withdrawn"
	ReasonConsentPending   Reason = "consent_pending"
)

// CanSend tells the router whether a message may go to a contact on a
// channel for a purpose (DefaultPurpose when empty): the contact exists and
// is active, has an address for the channel, no address of it is on the
// blocklist, and its consent for the channel and purpose is granted. It reads
// the store at each call, so an unsubscribe or a blocklist entry takes effect
// for the next send. It returns no personal data and records no access event.
func (s *Service) CanSend(ctx context.Context, tenantID, contactID string, channel Channel, purpose string) (bool, Reason, error) {
	if purpose == "" {
		purpose = DefaultPurpose
	}
	if channel != ChannelEmail && channel != ChannelSMS {
		return false, "", invalid("channel", "must be email or sms")
	}
	var status string
	var hasEmail, hasPhone, isBlocked bool
	var consent *string
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT c.status, c.email_bidx IS NOT NULL, c.phone_bidx IS NOT NULL,
			(SELECT s.status FROM consents s WHERE s.tenant_id = c.tenant_id AND s.contact_id = c.id AND s.channel = $3 AND s.purpose = $4),
			EXISTS (SELECT 1 FROM blocklist b WHERE b.tenant_id = c.tenant_id
				AND ((b.kind = 'email' AND b.value_bidx = c.email_bidx) OR (b.kind = 'phone' AND b.value_bidx = c.phone_bidx)))
			FROM contacts c WHERE c.tenant_id = $1 AND c.id = $2 AND c.erased_at IS NULL`,
			contactID, string(channel), purpose).Scan(&status, &hasEmail, &hasPhone, &consent, &isBlocked)
	})
	switch {
	case err == nil:
	case isNotFound(err):
		return false, ReasonNotFound, nil
	default:
		return false, "", fmt.Errorf("contacts: can send: %w", err)
	}
	switch {
	case isBlocked || status == string(StatusBlocklisted):
		return false, ReasonBlocklisted, nil
	case status == string(StatusUnsubscribed):
		return false, ReasonUnsubscribed, nil
	case status == string(StatusBounced):
		return false, ReasonBounced, nil
	case (channel == ChannelEmail && !hasEmail) || (channel == ChannelSMS && !hasPhone):
		return false, ReasonNoAddress, nil
	case consent == nil:
		return false, ReasonNoConsent, nil
	case *consent == string(ConsentWithdrawn):
		return false, ReasonConsentWithdrawn, nil
	case *consent == string(ConsentPending):
		return false, ReasonConsentPending, nil
	case *consent == string(ConsentGranted) && status == string(StatusActive):
		return true, ReasonOK, nil
	}
	return false, ReasonNoConsent, nil
}

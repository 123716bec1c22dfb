package contacts

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// ShredContact crypto-shreds one person (PRIV-4 erasure): the contact's own
// key is deleted, with its blind indexes and sealed fields, and a shredding
// record and an audit event are written, in one transaction. The person's
// fields in every older backup were sealed under that key: they can no longer
// be opened once the restore re-applies the shredding record (the contract in
// docs/architecture.md). The contact row stays (status, dates, consents) for
// the privacy workflow to tombstone; reads show it without personal fields.
// Contacts written before per-contact keys have no key of their own: their
// live fields are erased the same way, but copies in older backups stay under
// the tenant key.
func (s *Service) ShredContact(ctx context.Context, tenantID, contactID, reason string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return ShredContactTx(ctx, tx, contactID, reason)
	})
}

// ShredContactTx is ShredContact inside the caller's transaction (for the
// privacy workflow's erasure, which does more in the same transaction).
func ShredContactTx(ctx context.Context, tx *store.Tx, contactID, reason string) error {
	res, err := tx.Exec(ctx, tenants.ShredContactSQL, contactID)
	if err != nil {
		return fmt.Errorf("contacts: shred contact: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("contact %w", ErrNotFound)
	}
	actor := audit.MetaFrom(ctx).Actor
	if _, err := tx.Exec(ctx, `INSERT INTO shredding_records (tenant_id, id, kind, subject_id, reason, actor, at) VALUES ($1, $2, 'contact', $3, $4, $5, $6)`,
		uuid.NewString(), contactID, reason, actor.Type+":"+actor.ID, store.Micros(tx.Now())); err != nil {
		return fmt.Errorf("contacts: record shredding: %w", err)
	}
	_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryKey, Action: "contact.shred", ObjectType: "contact", ObjectID: contactID,
		Details: map[string]any{"reason": reason}})
	return err
}

// KeyShredder adapts ShredContactTx to the privacy workflow's ContactShredder
// hook (erasure runs it inside its own transaction). It returns a
// description of the key destroyed.
type KeyShredder struct{}

// ShredContact shreds the contact's key in tx.
func (KeyShredder) ShredContact(ctx context.Context, tx *store.Tx, contactID string) (string, error) {
	if err := ShredContactTx(ctx, tx, contactID, "erasure"); err != nil {
		return "", err
	}
	return "contact-key " + contactID + " (sealed by the tenant's data key; deleted)", nil
}

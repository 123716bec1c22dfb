package privacy

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// SweepErased stops and clears the messages addressed to contacts that
// were erased after the messages' audience was read: a campaign expansion
// that read a page of its audience before an erasure may enqueue the
// erased person's message after it. The router's check before hand-off
// already refuses to send such a message (the contact is not found); the
// sweep removes the address and content it still holds. The privacy job
// runs it for every tenant; it returns how many messages it cleared.
func (s *Service) SweepErased(ctx context.Context, tenantID string) (int64, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		var cleared int64
		err := s.inSecureTx(ctx, tenantID, func(tx *store.Tx) error {
			ids, err := messageIDs(ctx, tx, `SELECT m.id FROM messages m JOIN contacts c ON c.tenant_id = m.tenant_id AND c.id = m.contact_id
				WHERE m.tenant_id = $1 AND c.erased_at IS NOT NULL AND m.content_purged_at IS NULL AND m.state <> 'sending' ORDER BY m.id LIMIT 500`)
			if err != nil || len(ids) == 0 {
				return err
			}
			if _, cleared, err = clearMessages(ctx, tx, cr, ids, "erased"); err != nil {
				return err
			}
			_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.sweep_erased", ObjectType: "message",
				Details: map[string]any{"count": len(ids), "message_ids": ids}})
			return err
		})
		if err != nil {
			return total, fmt.Errorf("privacy: sweep messages of erased contacts: %w", err)
		}
		total += cleared
		if cleared == 0 {
			return total, nil
		}
	}
}

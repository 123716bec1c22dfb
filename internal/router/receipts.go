package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/store"
)

// ReceiptResult counts what ApplyReceipts did.
type ReceiptResult struct {
	Applied int `json:"applied"`
	// Ignored: already in that state, or a later state (a replayed or
	// late receipt changes nothing).
	Ignored int `json:"ignored"`
	// Unknown: no message of this connector with that reference.
	Unknown int `json:"unknown"`
}

// ApplyReceipts records delivery receipts and bounces (MSG-5) for the
// messages a connector sent. A receipt finds its message by the router's
// id (Ref) or by the connector's id for it (ProviderRef). It is
// idempotent: applying the same receipt twice changes nothing the second
// time, so receipts can be retried and replayed across nodes.
func (s *Service) ApplyReceipts(ctx context.Context, tenantID, connectorID string, receipts []connectors.Receipt) (ReceiptResult, error) {
	var res ReceiptResult
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		for _, r := range receipts {
			var state string
			switch r.Status {
			case connectors.StatusDelivered:
				state = StateDelivered
			case connectors.StatusBounced:
				state = StateBounced
			case connectors.StatusFailed:
				state = StateFailed
			default:
				return fmt.Errorf("receipt status %q", r.Status)
			}
			var id, cur string
			var err error
			if r.Ref != "" {
				err = tx.QueryRow(ctx, `SELECT id, state FROM messages WHERE tenant_id = $1 AND id = $2 AND connector_id = $3`, r.Ref, connectorID).Scan(&id, &cur)
			} else {
				err = tx.QueryRow(ctx, `SELECT id, state FROM messages WHERE tenant_id = $1 AND connector_id = $2 AND provider_ref = $3`, connectorID, r.ProviderRef).Scan(&id, &cur)
			}
			if errors.Is(err, store.ErrNotFound) {
				res.Unknown++
				continue
			}
			if err != nil {
				return err
			}
			// Only a sent (or unknown) message takes a receipt; a final
			// state is never changed by a replay.
			if cur != StateSent && cur != StateUnknown {
				res.Ignored++
				continue
			}
			at := tx.Now()
			if !r.At.IsZero() {
				at = r.At
			}
			var delivered any
			if state == StateDelivered {
				delivered = store.Micros(at)
			}
			if _, err := tx.Exec(ctx, `UPDATE messages SET state = $3, delivered_at = $4, last_error = $5, updated_at = $6 WHERE tenant_id = $1 AND id = $2`,
				id, state, delivered, r.Reason, store.Micros(tx.Now())); err != nil {
				return err
			}
			detail, _ := json.Marshal(map[string]string{"connector": connectorID, "provider_ref": r.ProviderRef, "reason": r.Reason})
			if _, err := tx.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)`,
				id, store.Micros(at), state, string(detail)); err != nil {
				return err
			}
			res.Applied++
		}
		return nil
	})
	return res, err
}

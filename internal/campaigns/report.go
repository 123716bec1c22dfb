package campaigns

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// Report is a campaign's accounting (MSG-4, AVL-4).
type Report struct {
	Campaign Campaign `json:"campaign"`
	// Counts are the campaign's messages by router state (queued, held,
	// sending, sent, delivered, bounced, failed, unknown, suppressed),
	// exact, from the queue itself.
	Counts map[string]int64 `json:"counts"`
	// Messages is the number of messages the campaign created.
	Messages int64 `json:"messages"`
	// HandedOff is the number accepted by a connector: sent + delivered +
	// bounced (a delivered or bounced message was sent first).
	HandedOff int64 `json:"handed_off"`
	// Deliverability is delivered / handed off (null before any hand-off).
	Deliverability *float64 `json:"deliverability"`
	// MeanAcceptedToSentSeconds and MeanAcceptedToDeliveredSeconds are the
	// mean transit times from the message's acceptance into the queue to
	// the connector's acceptance and to the delivery receipt (null when no
	// message got there). For a campaign scheduled ahead they include the
	// wait until the send time.
	MeanAcceptedToSentSeconds      *float64 `json:"mean_accepted_to_sent_seconds"`
	MeanAcceptedToDeliveredSeconds *float64 `json:"mean_accepted_to_delivered_seconds"`
}

// Report returns a campaign's report.
func (s *Service) Report(ctx context.Context, tenantID, id string) (Report, error) {
	c, err := s.Get(ctx, tenantID, id)
	if err != nil {
		return Report{}, err
	}
	counts, err := s.Router.Counts(ctx, tenantID, id)
	if err != nil {
		return Report{}, fmt.Errorf("campaigns: counts: %w", err)
	}
	if _, ok := counts[router.StateHeld]; !ok {
		counts[router.StateHeld] = 0
	}
	r := Report{Campaign: c, Counts: counts}
	for _, n := range counts {
		r.Messages += n
	}
	r.HandedOff = counts[router.StateSent] + counts[router.StateDelivered] + counts[router.StateBounced]
	if r.HandedOff > 0 {
		d := float64(counts[router.StateDelivered]) / float64(r.HandedOff)
		r.Deliverability = &d
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var nSent, nDelivered int64
		var toSent, toDelivered float64
		err := tx.QueryRow(ctx, `SELECT count(sent_at), CAST(COALESCE(avg(sent_at - accepted_at), 0) AS DOUBLE PRECISION),
			count(delivered_at), CAST(COALESCE(avg(delivered_at - accepted_at), 0) AS DOUBLE PRECISION)
			FROM messages WHERE tenant_id = $1 AND campaign_id = $2`, id).Scan(&nSent, &toSent, &nDelivered, &toDelivered)
		if err != nil {
			return fmt.Errorf("campaigns: transit times: %w", err)
		}
		if nSent > 0 {
			v := toSent / 1e6
			r.MeanAcceptedToSentSeconds = &v
		}
		if nDelivered > 0 {
			v := toDelivered / 1e6
			r.MeanAcceptedToDeliveredSeconds = &v
		}
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	return r, nil
}

package campaigns

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// Suppressor is the router's check just before hand-off
// (router.EngineOptions.Suppress, wired as Suppressor.Check): whether the
// contact may still receive a message on the channel for the purpose of
// the message's campaign (contacts.DefaultPurpose for a transactional
// message), by contacts.CanSend's rules (consent granted, contact active,
// an address for the channel, no address on the blocklist), read at that
// moment, so that an unsubscribe, a withdrawn consent or a blocklist entry
// made after the campaign's expansion stops the message; the reason is
// CanSend's.
//
// The engine asks about each message of a claimed batch in turn, after the
// claim and before any hand-off of the batch. Asking the store once per
// message would cost a transaction each (on SQLite a write lock, on
// PostgreSQL four round trips), so the engine first hands the batch's
// contacts to Preload (router.EngineOptions.SuppressLoad), which reads
// their answers in one query per 500 contacts and purpose
// (contacts.CanSendMany), and the following questions are answered from
// that read, each answer used once (without Preload wired, each question
// is asked with contacts.CanSend). The read happens after the claim, as a
// per-message check would: the guarantee is the same. Answers older than
// MaxAge are never used; a contact the read did not cover is asked with
// contacts.CanSend. A campaign's purpose never changes once created, so it
// is read once per campaign and kept.
type Suppressor struct {
	Contacts *contacts.Service
	// MaxAge bounds how long an answer is kept (1 s when 0).
	MaxAge time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu       sync.Mutex
	cache    map[suppressKey]*suppressVerdict
	purposes map[campaignKey]string
}

type suppressKey struct{ tenant, contact, channel, purpose string }

type campaignKey struct{ tenant, campaign string }

// maxPurposes bounds the campaign -> purpose cache (it is emptied when full).
const maxPurposes = 10000

type suppressVerdict struct {
	uses int // messages of the batch to this contact on this channel
	v    contacts.Verdict
	at   time.Time
}

func (s *Suppressor) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Check answers whether to suppress a message to contactID on channel,
// sent by campaignID (empty: transactional) (true: do not send; reason
// says why).
func (s *Suppressor) Check(ctx context.Context, tenantID, contactID, channel, campaignID string) (bool, string, error) {
	purpose, err := s.purpose(ctx, tenantID, campaignID)
	if err != nil {
		return false, "", err
	}
	k := suppressKey{tenantID, contactID, channel, purpose}
	if v, ok := s.take(k); ok {
		return !v.OK, string(v.Reason), nil
	}
	ok, reason, err := s.Contacts.CanSend(ctx, tenantID, contactID, contacts.Channel(channel), purpose)
	if err != nil {
		return false, "", err
	}
	return !ok, string(reason), nil
}

// purpose returns a campaign's consent purpose (DefaultPurpose for a
// transactional message or a campaign that no longer exists).
func (s *Suppressor) purpose(ctx context.Context, tenantID, campaignID string) (string, error) {
	if campaignID == "" {
		return contacts.DefaultPurpose, nil
	}
	k := campaignKey{tenantID, campaignID}
	s.mu.Lock()
	p, ok := s.purposes[k]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	var purpose string
	err := s.Contacts.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT purpose FROM campaigns WHERE tenant_id = $1 AND id = $2`, campaignID).Scan(&purpose)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		purpose = contacts.DefaultPurpose
	case err != nil:
		return "", fmt.Errorf("campaigns: purpose of %s: %w", campaignID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.purposes == nil || len(s.purposes) >= maxPurposes {
		s.purposes = map[campaignKey]string{}
	}
	s.purposes[k] = purpose
	return purpose, nil
}

// take uses one fresh answer for k.
func (s *Suppressor) take(k suppressKey) (contacts.Verdict, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.cache[k]
	if !ok {
		return contacts.Verdict{}, false
	}
	if s.now().Sub(v.at) > durationOr(s.MaxAge, time.Second) {
		delete(s.cache, k)
		return contacts.Verdict{}, false
	}
	v.uses--
	if v.uses <= 0 {
		delete(s.cache, k)
	}
	return v.v, true
}

// Preload reads the answers for the given messages of a tenant (the
// engine's claimed batch, router.EngineOptions.SuppressLoad), replacing
// the tenant's previous answers: the engine passes the batch it claimed,
// so that the read needs no look-up of the messages being sent.
func (s *Suppressor) Preload(ctx context.Context, tenantID string, sending []router.ContactChannel) error {
	uses := map[suppressKey]int{}
	type group struct{ channel, purpose string }
	byGroup := map[group][]string{}
	for _, m := range sending {
		purpose, err := s.purpose(ctx, tenantID, m.CampaignID)
		if err != nil {
			return err
		}
		k := suppressKey{tenantID, m.ContactID, m.Channel, purpose}
		if uses[k] == 0 {
			g := group{m.Channel, purpose}
			byGroup[g] = append(byGroup[g], m.ContactID)
		}
		uses[k]++
	}
	at := s.now()
	fresh := make(map[suppressKey]*suppressVerdict, len(uses))
	for g, ids := range byGroup {
		vs, err := s.Contacts.CanSendMany(ctx, tenantID, contacts.Channel(g.channel), g.purpose, ids)
		if err != nil {
			return err
		}
		for id, v := range vs {
			k := suppressKey{tenantID, id, g.channel, g.purpose}
			fresh[k] = &suppressVerdict{uses: uses[k], v: v, at: at}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache == nil {
		s.cache = map[suppressKey]*suppressVerdict{}
	}
	maxAge := durationOr(s.MaxAge, time.Second)
	for k, v := range s.cache {
		if k.tenant == tenantID || at.Sub(v.at) > maxAge {
			delete(s.cache, k)
		}
	}
	for k, v := range fresh {
		s.cache[k] = v
	}
	return nil
}

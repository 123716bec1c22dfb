package campaigns

import (
	"context"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/router"
)

// Suppressor is the router's check just before hand-off
// (router.EngineOptions.Suppress, wired as Suppressor.Check): whether the
// contact may still receive a message on the channel for the default
// purpose, by contacts.CanSend's rules (consent granted, contact active, an
// address for the channel, no address on the blocklist), read at that
// moment, so that an unsubscribe, a withdrawn consent or a blocklist entry
// made after the campaign's expansion stops the message; the reason is
// CanSend's. The hook receives no purpose: campaigns accept only the
// default one (see Input.Purpose).
//
// The engine asks about each message of a claimed batch in turn, after the
// claim and before any hand-off of the batch. Asking the store once per
// message would cost a transaction each (on SQLite a write lock, on
// PostgreSQL four round trips), so the first question about a batch reads
// the answers for every message the node has claimed (router state
// sending, this node) in one query per 500 contacts
// (contacts.CanSendMany), and the following questions are answered from
// that read, each answer used once. The read happens after the claim, as a
// per-message check would: the guarantee is the same. Answers older than
// MaxAge are never used; a contact the read did not cover is asked with
// contacts.CanSend.
type Suppressor struct {
	Contacts *contacts.Service
	Router   *router.Service
	// Node is the engine's node id (router.EngineOptions.Node): only its
	// claimed messages are read.
	Node string
	// MaxAge bounds how long an answer is kept (1 s when 0).
	MaxAge time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu    sync.Mutex
	cache map[suppressKey]*suppressVerdict
}

type suppressKey struct{ tenant, contact, channel string }

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

// Check answers whether to suppress a message to contactID on channel
// (true: do not send; reason says why).
func (s *Suppressor) Check(ctx context.Context, tenantID, contactID, channel string) (bool, string, error) {
	k := suppressKey{tenantID, contactID, channel}
	if v, ok := s.take(k); ok {
		return !v.OK, string(v.Reason), nil
	}
	if err := s.load(ctx, tenantID); err != nil {
		return false, "", err
	}
	if v, ok := s.take(k); ok {
		return !v.OK, string(v.Reason), nil
	}
	ok, reason, err := s.Contacts.CanSend(ctx, tenantID, contactID, contacts.Channel(channel), contacts.DefaultPurpose)
	if err != nil {
		return false, "", err
	}
	return !ok, string(reason), nil
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

// load reads the answers for every message this node is handing off for
// the tenant, replacing the tenant's previous answers.
func (s *Suppressor) load(ctx context.Context, tenantID string) error {
	sending, err := s.Router.Sending(ctx, tenantID, s.Node)
	if err != nil {
		return err
	}
	uses := map[suppressKey]int{}
	byChannel := map[string][]string{}
	for _, m := range sending {
		k := suppressKey{tenantID, m.ContactID, m.Channel}
		if uses[k] == 0 {
			byChannel[m.Channel] = append(byChannel[m.Channel], m.ContactID)
		}
		uses[k]++
	}
	at := s.now()
	fresh := make(map[suppressKey]*suppressVerdict, len(uses))
	for ch, ids := range byChannel {
		vs, err := s.Contacts.CanSendMany(ctx, tenantID, contacts.Channel(ch), contacts.DefaultPurpose, ids)
		if err != nil {
			return err
		}
		for id, v := range vs {
			k := suppressKey{tenantID, id, ch}
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

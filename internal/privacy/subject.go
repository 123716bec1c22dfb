package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// AccessFormat names the subject access export (the document's "format").
const AccessFormat = "relais-subject-access/1"

// AccessReport is everything held on one person (PRIV-4 access and
// portability): the contact with its consents and their proofs, list
// memberships, messages with their history, and the accesses to the
// person's data recorded in the audit trail.
type AccessReport struct {
	Format         string                  `json:"format"`
	TenantID       string                  `json:"tenant_id"`
	RequestID      string                  `json:"request_id"`
	GeneratedAt    time.Time               `json:"generated_at"`
	Contact        contacts.Contact        `json:"contact"`
	ConsentHistory []contacts.ConsentEvent `json:"consent_history"`
	Lists          []ListMembership        `json:"lists"`
	Messages       []SubjectMessage        `json:"messages"`
	AccessEvents   []AccessEvent           `json:"access_events"`
}

// ListMembership is one list the person is on.
type ListMembership struct {
	ListID  string    `json:"list_id"`
	Name    string    `json:"name"`
	AddedAt time.Time `json:"added_at"`
}

// SubjectMessage is one message to the person, decrypted.
type SubjectMessage struct {
	ID         string          `json:"id"`
	Channel    string          `json:"channel"`
	To         string          `json:"to"`
	State      string          `json:"state"`
	CampaignID string          `json:"campaign_id,omitempty"`
	AcceptedAt time.Time       `json:"accepted_at"`
	Content    json.RawMessage `json:"content"`
	Events     []MessageEvent  `json:"events"`
}

// MessageEvent is one step of a message's history.
type MessageEvent struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// AccessEvent is one recorded access to the person's data.
type AccessEvent struct {
	At        time.Time       `json:"at"`
	Action    string          `json:"action"`
	ActorType string          `json:"actor_type"`
	ActorID   string          `json:"actor_id"`
	Details   json.RawMessage `json:"details,omitempty"`
}

// Access answers an access (or portability) request: it records the
// request, gathers everything held on the person, and completes the request.
func (s *Service) Access(ctx context.Context, tenantID string, sub Subject, kind, by string) (Request, AccessReport, error) {
	if kind == "" {
		kind = KindAccess
	}
	if kind != KindAccess && kind != KindPortability {
		return Request{}, AccessReport{}, fmt.Errorf("%w: kind must be access or portability", ErrInvalid)
	}
	id, err := s.resolve(ctx, tenantID, sub)
	if err != nil {
		return Request{}, AccessReport{}, err
	}
	req, err := s.openRequest(ctx, tenantID, kind, id, by, "")
	if err != nil {
		return Request{}, AccessReport{}, err
	}
	rep := AccessReport{Format: AccessFormat, TenantID: tenantID, RequestID: req.ID, GeneratedAt: s.now()}
	if rep.Contact, err = s.Contacts.Get(ctx, tenantID, id); err != nil {
		return req, rep, err
	}
	if rep.ConsentHistory, err = s.Contacts.ConsentHistory(ctx, tenantID, id); err != nil {
		return req, rep, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return req, rep, err
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if rep.Lists, err = subjectLists(ctx, tx, id); err != nil {
			return err
		}
		if rep.Messages, err = subjectMessages(ctx, tx, cr, id); err != nil {
			return err
		}
		if rep.AccessEvents, err = subjectAccesses(ctx, tx, id); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAccess, Action: "privacy.access", ObjectType: "contact", ObjectID: id,
			Details: map[string]any{"request_id": req.ID, "kind": kind, "messages": len(rep.Messages)}}); err != nil {
			return err
		}
		return closeRequest(ctx, tx, &req, StatusCompleted, map[string]any{"messages": len(rep.Messages), "lists": len(rep.Lists),
			"consent_events": len(rep.ConsentHistory), "access_events": len(rep.AccessEvents)})
	})
	if err != nil {
		return req, AccessReport{}, err
	}
	if rep.Lists == nil {
		rep.Lists = []ListMembership{}
	}
	if rep.Messages == nil {
		rep.Messages = []SubjectMessage{}
	}
	return req, rep, nil
}

func subjectLists(ctx context.Context, tx *store.Tx, id string) ([]ListMembership, error) {
	rows, err := tx.Query(ctx, `SELECT l.id, l.name, m.added_at FROM list_members m JOIN lists l ON l.tenant_id = m.tenant_id AND l.id = m.list_id
		WHERE m.tenant_id = $1 AND m.contact_id = $2 ORDER BY l.name`, id)
	if err != nil {
		return nil, fmt.Errorf("privacy: read lists: %w", err)
	}
	var out []ListMembership
	var lm ListMembership
	var at int64
	err = scanAll(rows, func() []any {
		if lm.ListID != "" {
			lm.AddedAt = store.FromMicros(at)
			out = append(out, lm)
		}
		lm = ListMembership{}
		return []any{&lm.ListID, &lm.Name, &at}
	})
	if lm.ListID != "" {
		lm.AddedAt = store.FromMicros(at)
		out = append(out, lm)
	}
	return out, err
}

func subjectMessages(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, id string) ([]SubjectMessage, error) {
	rows, err := tx.Query(ctx, `SELECT m.id, m.channel, m.recipient_enc, c.content_enc, m.state, m.campaign_id, m.accepted_at FROM messages m
		JOIN message_contents c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
		WHERE m.tenant_id = $1 AND m.contact_id = $2 ORDER BY m.accepted_at, m.id LIMIT 100000`, id)
	if err != nil {
		return nil, fmt.Errorf("privacy: read messages: %w", err)
	}
	var out []SubjectMessage
	for rows.Next() {
		var m SubjectMessage
		var to, content []byte
		var campaign *string
		var at int64
		if err := rows.Scan(&m.ID, &m.Channel, &to, &content, &m.State, &campaign, &at); err != nil {
			_ = rows.Close()
			return nil, err
		}
		if m.To, err = cr.OpenString("message.to", to); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("privacy: decrypt a message: %w", err)
		}
		c, err := cr.Open("message.content", content)
		if err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("privacy: decrypt a message: %w", err)
		}
		if !json.Valid(c) {
			c, _ = json.Marshal(string(c))
		}
		m.Content = c
		if campaign != nil {
			m.CampaignID = *campaign
		}
		m.AcceptedAt = store.FromMicros(at)
		out = append(out, m)
	}
	_ = rows.Close()
	for i := range out {
		ev, err := tx.Query(ctx, `SELECT at, kind, detail FROM message_events WHERE tenant_id = $1 AND message_id = $2 ORDER BY id`, out[i].ID)
		if err != nil {
			return nil, err
		}
		accepted := false
		for ev.Next() {
			var e MessageEvent
			var at int64
			if err := ev.Scan(&at, &e.Kind, &e.Detail); err != nil {
				_ = ev.Close()
				return nil, err
			}
			e.At = store.FromMicros(at)
			if e.Kind == "accepted" {
				accepted = true
			}
			out[i].Events = append(out[i].Events, e)
		}
		_ = ev.Close()
		if !accepted {
			// Since accepting a message writes no event row, its
			// 'accepted' event is the row's accepted_at (as in
			// router.WithAcceptedEvent).
			out[i].Events = append([]MessageEvent{{At: out[i].AcceptedAt, Kind: "accepted"}}, out[i].Events...)
		}
	}
	return out, nil
}

func subjectAccesses(ctx context.Context, tx *store.Tx, id string) ([]AccessEvent, error) {
	if err := audit.SequenceLog(ctx, tx); err != nil { // the queued reads too
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT at, action, actor_type, actor_id, details FROM audit_events
		WHERE tenant_id = $1 AND category = 'access' AND (object_id = $2 OR details LIKE $3) ORDER BY seq LIMIT 10000`, id, `%"`+id+`"%`)
	if err != nil {
		return nil, fmt.Errorf("privacy: read access events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []AccessEvent
	for rows.Next() {
		var e AccessEvent
		var at int64
		var details string
		if err := rows.Scan(&at, &e.Action, &e.ActorType, &e.ActorID, &details); err != nil {
			return nil, err
		}
		e.At = store.FromMicros(at)
		if json.Valid([]byte(details)) {
			e.Details = json.RawMessage(details)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Rectify applies a correction (a contacts.Patch) as a tracked request.
func (s *Service) Rectify(ctx context.Context, tenantID string, sub Subject, p contacts.Patch, by string) (Request, error) {
	id, err := s.resolve(ctx, tenantID, sub)
	if err != nil {
		return Request{}, err
	}
	req, err := s.openRequest(ctx, tenantID, KindRectification, id, by, "")
	if err != nil {
		return Request{}, err
	}
	if _, err := s.Contacts.Update(ctx, tenantID, id, p); err != nil {
		_ = s.closeRequest(ctx, tenantID, &req, StatusRejected, map[string]any{"error": "the correction was refused: " + safeErr(err)})
		return req, err
	}
	return req, s.closeRequest(ctx, tenantID, &req, StatusCompleted, map[string]any{"rectified": true})
}

// safeErr keeps a validation error's field and rule (never a value).
func safeErr(err error) string {
	var ve *contacts.ValidationError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	return "error"
}

// Restrict answers a restriction or objection request: consent withdrawn
// on every channel and purpose, and the contact set unsubscribed so that no
// campaign selects it; the record itself is kept.
func (s *Service) Restrict(ctx context.Context, tenantID string, sub Subject, kind, by string) (Request, error) {
	if kind == "" {
		kind = KindRestriction
	}
	if kind != KindRestriction && kind != KindObjection {
		return Request{}, fmt.Errorf("%w: kind must be restriction or objection", ErrInvalid)
	}
	id, err := s.resolve(ctx, tenantID, sub)
	if err != nil {
		return Request{}, err
	}
	req, err := s.openRequest(ctx, tenantID, kind, id, by, "")
	if err != nil {
		return Request{}, err
	}
	c, err := s.Contacts.Get(ctx, tenantID, id)
	if err != nil {
		return req, err
	}
	withdrawn := 0
	for _, cs := range c.Consents {
		if cs.Status == contacts.ConsentWithdrawn {
			continue
		}
		if _, err := s.Contacts.Withdraw(ctx, tenantID, id, contacts.ConsentInput{Channel: cs.Channel, Purpose: cs.Purpose,
			Status: contacts.ConsentWithdrawn, Source: contacts.SourceAdmin, Wording: "Data-subject " + kind + " request " + req.ID}); err != nil {
			return req, err
		}
		withdrawn++
	}
	if c.Status == contacts.StatusActive {
		st := contacts.StatusUnsubscribed
		if _, err := s.Contacts.Update(ctx, tenantID, id, contacts.Patch{Status: &st}); err != nil {
			return req, err
		}
	}
	return req, s.closeRequest(ctx, tenantID, &req, StatusCompleted, map[string]any{"consents_withdrawn": withdrawn, "status": "unsubscribed"})
}

// EraseOptions tune an erasure.
type EraseOptions struct {
	// Suppress keeps the blind indexes of the person's addresses on the
	// blocklist (reason "erasure"), so that a later import does not bring
	// the person back; nothing else of them is kept.
	Suppress bool
	// By names who asked (kept in the request, never a personal value).
	By string
}

// EraseResult says what an erasure did.
type EraseResult struct {
	ContactID          string `json:"contact_id"`
	MessagesCleared    int64  `json:"messages_cleared"`
	MessagesStopped    int64  `json:"messages_stopped"`
	ConsentProofs      int64  `json:"consent_proofs_anonymised"`
	ListMemberships    int64  `json:"list_memberships_removed"`
	Suppressed         bool   `json:"suppressed"`
	ContactKeyShredded string `json:"contact_key_shredded,omitempty"`
}

// Erase answers an erasure request (PRIV-4): in one transaction, the
// contact's personal fields are deleted (the row stays as an anonymous
// shell: status, source, dates, for statistics), its list memberships
// removed, its consent proofs deleted (its current consents kept without
// source IP), its messages' recipient and content overwritten (their states,
// times and event kinds kept as statistics), event details cleared, and
// messages not yet handed off stopped (state suppressed): the router's
// check before hand-off (contacts.CanSend) no longer finds the contact, so
// erasure wins over any later send. Messages sent without a contact id to
// one of the person's addresses are found by decrypting recipients and
// cleared too. With a ContactShredder, the contact's own key is destroyed
// in the same transaction.
func (s *Service) Erase(ctx context.Context, tenantID string, sub Subject, o EraseOptions) (Request, EraseResult, error) {
	id, err := s.resolve(ctx, tenantID, sub)
	if err != nil {
		return Request{}, EraseResult{}, err
	}
	req, err := s.openRequest(ctx, tenantID, KindErasure, id, o.By, "")
	if err != nil {
		return Request{}, EraseResult{}, err
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return req, EraseResult{}, err
	}
	var res EraseResult
	err = s.inSecureTx(ctx, tenantID, func(tx *store.Tx) error {
		res, err = s.eraseTx(ctx, tx, cr, id, o.Suppress, "erasure")
		if err != nil {
			return err
		}
		return closeRequest(ctx, tx, &req, StatusCompleted, res)
	})
	if err != nil {
		return req, EraseResult{}, err
	}
	return req, res, nil
}

// inSecureTx runs fn in a transaction of the tenant; on SQLite it first
// turns on secure_delete for the connection, so that the overwritten and
// deleted cells are zeroed in the database file, not left in free pages.
func (s *Service) inSecureTx(ctx context.Context, tenantID string, fn func(*store.Tx) error) error {
	if s.DB.Dialect() != store.SQLite {
		return s.DB.Tenant(tenantID).Tx(ctx, fn)
	}
	return s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `PRAGMA secure_delete = ON`); err != nil {
			return fmt.Errorf("privacy: secure_delete: %w", err)
		}
		return fn(p.Tenant(tenantID))
	})
}

// eraseTx erases one contact inside tx (see Erase). reason names the cause
// in the audit event (erasure, retention, purge). Only a subject's erasure
// (reason "erasure") also looks for messages sent without a contact id to
// the person's addresses: that search decrypts every such message's
// recipient, too costly per contact for bulk erasures, whose tenants clear
// old message contents with the message_content retention rule.
func (s *Service) eraseTx(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, id string, suppress bool, reason string) (EraseResult, error) {
	res := EraseResult{ContactID: id}
	var emailEnc, phoneEnc, emailIdx, phoneIdx, keyEnc []byte
	err := tx.QueryRow(ctx, `SELECT email_enc, phone_enc, email_bidx, phone_bidx, key_enc FROM contacts WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL`, id).
		Scan(&emailEnc, &phoneEnc, &emailIdx, &phoneIdx, &keyEnc)
	if errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("contact %w in this tenant", ErrNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("privacy: read the contact: %w", err)
	}
	// The person's fields are sealed under the contact's own key (sealed
	// by the tenant key in key_enc); contacts written before per-contact
	// keys have none and their fields open with the tenant key.
	cc, err := cr.ContactCipher(keyEnc)
	if err != nil {
		return res, fmt.Errorf("privacy: the contact's key: %w", err)
	}
	var addrs []string
	for _, p := range []struct {
		label string
		ct    []byte
	}{{"contact.email", emailEnc}, {"contact.phone", phoneEnc}} {
		if len(p.ct) > 0 {
			v, err := cc.OpenString(p.label, p.ct)
			if err != nil {
				return res, fmt.Errorf("privacy: decrypt the contact: %w", err)
			}
			addrs = append(addrs, v)
		}
	}
	now := store.Micros(tx.Now())
	if suppress {
		for _, b := range []struct {
			kind string
			idx  []byte
		}{{"email", emailIdx}, {"phone", phoneIdx}} {
			if len(b.idx) == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO blocklist (tenant_id, kind, value_bidx, reason, source, created_at) VALUES ($1, $2, $3, 'erasure', 'erasure', $4)
				ON CONFLICT (tenant_id, kind, value_bidx) DO NOTHING`, b.kind, b.idx, now); err != nil {
				return res, fmt.Errorf("privacy: suppression entry: %w", err)
			}
		}
		res.Suppressed = true
	}
	if s.ContactShredder != nil {
		kid, err := s.ContactShredder.ShredContact(ctx, tx, id)
		if err != nil {
			return res, fmt.Errorf("privacy: shred the contact's key: %w", err)
		}
		res.ContactKeyShredded = kid
	}
	if res.ListMemberships, res.ConsentProofs, err = eraseRows(ctx, tx, id, now); err != nil {
		return res, err
	}
	ids, err := messageIDs(ctx, tx, `SELECT id FROM messages WHERE tenant_id = $1 AND contact_id = $2`, id)
	if err != nil {
		return res, err
	}
	if len(addrs) > 0 && reason == "erasure" {
		more, err := messagesTo(ctx, tx, cr, addrs)
		if err != nil {
			return res, err
		}
		ids = append(ids, more...)
	}
	stopped, cleared, err := clearMessages(ctx, tx, cr, ids, "erased")
	if err != nil {
		return res, err
	}
	res.MessagesStopped, res.MessagesCleared = stopped, cleared
	_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact.erase", ObjectType: "contact", ObjectID: id,
		Changes: []audit.Change{{Field: "email", Personal: true}, {Field: "phone", Personal: true}, {Field: "first_name", Personal: true},
			{Field: "last_name", Personal: true}, {Field: "attributes", Personal: true}},
		Details: map[string]any{"reason": reason, "messages_cleared": res.MessagesCleared, "messages_stopped": res.MessagesStopped,
			"suppressed": res.Suppressed, "method": "deletion and overwrite"}})
	return res, err
}

// eraseRows clears an erased contact's row (sealed fields, blind indexes,
// attributes), deletes its list memberships and consent proofs, and drops
// the source IPs of its current consents. Consent proofs are append-only
// (PostgreSQL admits no UPDATE on them): they are deleted; the current
// consents stay, without source IP, as anonymous statistics.
func eraseRows(ctx context.Context, tx *store.Tx, id string, now int64) (lists, proofs int64, err error) {
	if _, err := tx.Exec(ctx, `UPDATE contacts SET email_enc = NULL, email_bidx = NULL, phone_enc = NULL, phone_bidx = NULL, first_name_enc = NULL,
		last_name_enc = NULL, attributes_enc = NULL, attributes = '{}', erased_at = $3, updated_at = $3 WHERE tenant_id = $1 AND id = $2`, id, now); err != nil {
		return 0, 0, fmt.Errorf("privacy: erase the contact: %w", err)
	}
	r, err := tx.Exec(ctx, `DELETE FROM list_members WHERE tenant_id = $1 AND contact_id = $2`, id)
	if err != nil {
		return 0, 0, fmt.Errorf("privacy: list memberships: %w", err)
	}
	lists, _ = r.RowsAffected()
	if _, err := tx.Exec(ctx, `UPDATE consents SET source_ip_enc = NULL WHERE tenant_id = $1 AND contact_id = $2`, id); err != nil {
		return 0, 0, fmt.Errorf("privacy: consents: %w", err)
	}
	if r, err = tx.Exec(ctx, `DELETE FROM consent_events WHERE tenant_id = $1 AND contact_id = $2`, id); err != nil {
		return 0, 0, fmt.Errorf("privacy: consent proofs: %w", err)
	}
	proofs, _ = r.RowsAffected()
	return lists, proofs, nil
}

func messageIDs(ctx context.Context, tx *store.Tx, q string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("privacy: read messages: %w", err)
	}
	var ids []string
	err = scanAll(rows, func() []any { ids = append(ids, ""); return []any{&ids[len(ids)-1]} })
	return ids, err
}

// messagesTo finds messages without a contact id sent to one of addrs, by
// decrypting their recipients (there is no index on them).
func messagesTo(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, addrs []string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT id, recipient_enc FROM messages WHERE tenant_id = $1 AND contact_id IS NULL AND content_purged_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("privacy: read messages: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var id string
		var ct []byte
		if err := rows.Scan(&id, &ct); err != nil {
			return nil, err
		}
		to, err := cr.Open("message.to", ct)
		if err != nil {
			continue // unreadable already
		}
		for _, a := range addrs {
			if bytes.EqualFold(to, []byte(a)) {
				out = append(out, id)
				break
			}
		}
	}
	return out, rows.Err()
}

// clearMessages stops the given messages that are not yet handed off and
// overwrites the recipient and content of all of them, clearing their
// errors and event details. It returns how many it stopped and cleared.
func clearMessages(ctx context.Context, tx *store.Tx, cr *tenants.Crypto, ids []string, reason string) (int64, int64, error) {
	if len(ids) == 0 {
		return 0, 0, nil
	}
	to, err := cr.SealString("message.to", "")
	if err != nil {
		return 0, 0, err
	}
	content, err := cr.Seal("message.content", []byte("{}"))
	if err != nil {
		return 0, 0, err
	}
	now := store.Micros(tx.Now())
	detail, _ := json.Marshal(map[string]string{"reason": reason})
	var stopped, cleared int64
	for _, id := range ids {
		r, err := tx.Exec(ctx, `UPDATE messages SET state = 'suppressed', last_error = $3, updated_at = $4
			WHERE tenant_id = $1 AND id = $2 AND state IN ('queued', 'held')`, id, "suppressed: "+reason, now)
		if err != nil {
			return 0, 0, fmt.Errorf("privacy: stop a message: %w", err)
		}
		if n, _ := r.RowsAffected(); n > 0 {
			stopped++
			if _, err := tx.Exec(ctx, `INSERT INTO message_events (tenant_id, message_id, at, kind, detail) VALUES ($1, $2, $3, 'suppressed', $4)`,
				id, now, string(detail)); err != nil {
				return 0, 0, err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE messages SET recipient_enc = $3, content_purged_at = $4,
			last_error = CASE WHEN last_error = $5 THEN last_error ELSE '' END WHERE tenant_id = $1 AND id = $2`,
			id, to, now, "suppressed: "+reason); err != nil {
			return 0, 0, fmt.Errorf("privacy: clear a message: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE message_contents SET content_enc = $3 WHERE tenant_id = $1 AND message_id = $2`, id, content); err != nil {
			return 0, 0, fmt.Errorf("privacy: clear a message: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE message_events SET detail = '' WHERE tenant_id = $1 AND message_id = $2 AND kind <> 'suppressed'`, id); err != nil {
			return 0, 0, err
		}
		cleared++
	}
	return stopped, cleared, nil
}

// EraseRestored erases, in a restore's transaction, what a backup taken
// before an erasure brings back of that person besides their sealed
// fields (which the restore already made unreadable by deleting the
// contact's key again): list memberships, consent source IPs and proofs,
// and the personal content of their messages. Backups call it for every
// contact shredding record of the live store (backup.StoreShredding).
// The message placeholders are sealed with the live tenant key.
func (s *Service) EraseRestored(ctx context.Context, tx *store.Tx, contactID string) error {
	cr, err := s.crypto(ctx, tx.TenantID())
	if err != nil {
		return err
	}
	if _, _, err := eraseRows(ctx, tx, contactID, store.Micros(tx.Now())); err != nil {
		return err
	}
	ids, err := messageIDs(ctx, tx, `SELECT id FROM messages WHERE tenant_id = $1 AND contact_id = $2`, contactID)
	if err != nil {
		return err
	}
	_, _, err = clearMessages(ctx, tx, cr, ids, "erased")
	return err
}

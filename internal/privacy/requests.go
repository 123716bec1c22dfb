package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/store"
)

// Kinds of data-subject requests (PRIV-4).
const (
	KindAccess        = "access"
	KindPortability   = "portability"
	KindRectification = "rectification"
	KindErasure       = "erasure"
	KindRestriction   = "restriction"
	KindObjection     = "objection"
)

// Request statuses.
const (
	StatusOpen      = "open"
	StatusCompleted = "completed"
	StatusRejected  = "rejected"
)

// Request is a tracked data-subject request: who it is about (a contact id,
// never the person's address), its deadline and its outcome.
type Request struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"`
	ContactID   string          `json:"contact_id"`
	Status      string          `json:"status"`
	ReceivedAt  time.Time       `json:"received_at"`
	DueAt       time.Time       `json:"due_at"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	Overdue     bool            `json:"overdue"`
	RequestedBy string          `json:"requested_by,omitempty"`
	Note        string          `json:"note,omitempty"`
	Result      json.RawMessage `json:"result"`
}

// Subject names the person a request is about: a contact id, or an email
// address or phone number looked up by blind index in the tenant.
type Subject struct {
	ContactID string `json:"contact_id"`
	Email     string `json:"email"`
	Phone     string `json:"phone"`
}

func validKind(k string) bool {
	switch k {
	case KindAccess, KindPortability, KindRectification, KindErasure, KindRestriction, KindObjection:
		return true
	}
	return false
}

// resolve finds the contact a subject names in the tenant. A contact of
// another tenant is not found (every lookup is tenant-scoped).
func (s *Service) resolve(ctx context.Context, tenantID string, sub Subject) (string, error) {
	switch {
	case sub.ContactID != "":
		var id string
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT id FROM contacts WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL`, sub.ContactID).Scan(&id)
		})
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("contact %w in this tenant", ErrNotFound)
		}
		return id, err
	case sub.Email != "":
		e, err := contacts.NormaliseEmail(sub.Email)
		if err != nil {
			return "", fmt.Errorf("%w: email: %v", ErrInvalid, err)
		}
		return s.byIndex(ctx, tenantID, "email_bidx", "contact.email", e)
	case sub.Phone != "":
		p, err := contacts.NormalisePhone(sub.Phone, "")
		if err != nil {
			return "", fmt.Errorf("%w: phone: %v", ErrInvalid, err)
		}
		return s.byIndex(ctx, tenantID, "phone_bidx", "contact.phone", p)
	}
	return "", fmt.Errorf("%w: name the person by contact id, email or phone", ErrInvalid)
}

func (s *Service) byIndex(ctx context.Context, tenantID, col, field, value string) (string, error) {
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return "", err
	}
	var ids []string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		// col is one of two constants chosen by the caller.
		rows, err := tx.Query(ctx, `SELECT id FROM contacts WHERE tenant_id = $1 AND `+col+` = $2 AND erased_at IS NULL ORDER BY id LIMIT 2`, cr.Index(field, value))
		if err != nil {
			return err
		}
		return scanAll(rows, func() []any { ids = append(ids, ""); return []any{&ids[len(ids)-1]} })
	})
	if err != nil {
		return "", err
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no contact with this address: %w in this tenant", ErrNotFound)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%w: several contacts share this phone number; name the contact by id", ErrInvalid)
}

// open records a new request, in its own transaction with its audit event.
func (s *Service) openRequest(ctx context.Context, tenantID, kind, contactID, by, note string) (Request, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Request{}, err
	}
	now := s.now()
	r := Request{ID: id.String(), Kind: kind, ContactID: contactID, Status: StatusOpen, ReceivedAt: now, DueAt: s.dueFrom(now),
		RequestedBy: by, Note: note, Result: json.RawMessage(`{}`)}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO privacy_requests (tenant_id, id, kind, contact_id, status, received_at, due_at, requested_by, note, result)
			VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, '{}')`, r.ID, kind, contactID, store.Micros(now), store.Micros(r.DueAt), by, note); err != nil {
			return fmt.Errorf("privacy: record the request: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.request.open", ObjectType: "privacy_request", ObjectID: r.ID,
			Details: map[string]any{"kind": kind, "contact_id": contactID, "due_at": r.DueAt}})
		return err
	})
	return r, err
}

// closeRequest marks a request completed with its result, inside tx.
func closeRequest(ctx context.Context, tx *store.Tx, r *Request, status string, result any) error {
	b, err := json.Marshal(result)
	if err != nil {
		return err
	}
	now := tx.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, `UPDATE privacy_requests SET status = $3, completed_at = $4, result = $5 WHERE tenant_id = $1 AND id = $2`,
		r.ID, status, store.Micros(now), string(b)); err != nil {
		return fmt.Errorf("privacy: close the request: %w", err)
	}
	r.Status, r.CompletedAt, r.Result = status, &now, b
	_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "privacy.request." + status, ObjectType: "privacy_request", ObjectID: r.ID,
		Details: map[string]any{"kind": r.Kind, "contact_id": r.ContactID}})
	return err
}

func (s *Service) closeRequest(ctx context.Context, tenantID string, r *Request, status string, result any) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error { return closeRequest(ctx, tx, r, status, result) })
}

// Requests lists a tenant's subject requests, newest first (at most 1000),
// open ones only when openOnly; Overdue is set for open requests past due.
func (s *Service) Requests(ctx context.Context, tenantID string, openOnly bool) ([]Request, error) {
	var out []Request
	now := s.now()
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		q := `SELECT id, kind, contact_id, status, received_at, due_at, completed_at, requested_by, note, result FROM privacy_requests WHERE tenant_id = $1`
		if openOnly {
			q += ` AND status = 'open'`
		}
		rows, err := tx.Query(ctx, q+` ORDER BY received_at DESC, id DESC LIMIT 1000`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var r Request
			var rec, due int64
			var done *int64
			var res string
			if err := rows.Scan(&r.ID, &r.Kind, &r.ContactID, &r.Status, &rec, &due, &done, &r.RequestedBy, &r.Note, &res); err != nil {
				return err
			}
			r.ReceivedAt, r.DueAt, r.Result = store.FromMicros(rec), store.FromMicros(due), json.RawMessage(res)
			if done != nil {
				t := store.FromMicros(*done)
				r.CompletedAt = &t
			}
			r.Overdue = r.Status == StatusOpen && now.After(r.DueAt)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("privacy: list requests: %w", err)
	}
	return out, nil
}

// OpenRequest records a request to be handled later (for instance one
// received by post whose identity check is pending).
func (s *Service) OpenRequest(ctx context.Context, tenantID, kind string, sub Subject, by, note string) (Request, error) {
	if !validKind(kind) {
		return Request{}, fmt.Errorf("%w: kind must be access, portability, rectification, erasure, restriction or objection", ErrInvalid)
	}
	id, err := s.resolve(ctx, tenantID, sub)
	if err != nil {
		return Request{}, err
	}
	return s.openRequest(ctx, tenantID, kind, id, by, note)
}

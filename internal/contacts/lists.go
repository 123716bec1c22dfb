package contacts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts/filter"
	"github.com/relais-dev/relais/internal/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// List is a static list of contacts.
type List struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// MaxMembersPerCall bounds AddToList and RemoveFromList.
const MaxMembersPerCall = 1000

func validateListName(name, description string) (string, string, error) {
	n, err := validateName("name", name)
	if err != nil {
		return "", "", err
	}
	if n == "" {
		return "", "", invalid("name", "is required")
	}
	d, err := validateName("description", description)
	return n, d, err
}

// CreateList creates an empty list. Names are unique in a tenant
// (ErrConflict).
func (s *Service) CreateList(ctx context.Context, tenantID, name, description string) (List, error) {
	n, d, err := validateListName(name, description)
	if err != nil {
		return List{}, err
	}
	now := s.now()
	l := List{ID: newID(), Name: n, Description: d, CreatedAt: now, UpdatedAt: now}
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO lists (tenant_id, id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			l.ID, l.Name, l.Description, micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a list with this name exists", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: create list: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "list.create", ObjectType: "list", ObjectID: l.ID,
			Changes: []audit.Change{{Field: "name", After: l.Name}, {Field: "description", After: l.Description}}})
		return err
	})
	if err != nil {
		return List{}, err
	}
	return l, nil
}

func listExists(ctx context.Context, tx *store.Tx, id string) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM lists WHERE tenant_id = $1 AND id = $2`, id).Scan(&n); err != nil {
		return fmt.Errorf("contacts: read list: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("list %w", ErrNotFound)
	}
	return nil
}

// GetList returns a list.
func (s *Service) GetList(ctx context.Context, tenantID, id string) (List, error) {
	var l List
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		var c, u int64
		err := tx.QueryRow(ctx, `SELECT id, name, description, created_at, updated_at FROM lists WHERE tenant_id = $1 AND id = $2`, id).
			Scan(&l.ID, &l.Name, &l.Description, &c, &u)
		l.CreatedAt, l.UpdatedAt = store.FromMicros(c), store.FromMicros(u)
		return err
	})
	if isNotFound(err) {
		return List{}, fmt.Errorf("list %w", ErrNotFound)
	}
	if err != nil {
		return List{}, fmt.Errorf("contacts: read list: %w", err)
	}
	return l, nil
}

// Lists returns the tenant's lists by name.
func (s *Service) Lists(ctx context.Context, tenantID string) ([]List, error) {
	out := []List{}
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, description, created_at, updated_at FROM lists WHERE tenant_id = $1 ORDER BY name LIMIT 10000`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var l List
			var c, u int64
			if err := rows.Scan(&l.ID, &l.Name, &l.Description, &c, &u); err != nil {
				return err
			}
			l.CreatedAt, l.UpdatedAt = store.FromMicros(c), store.FromMicros(u)
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: read lists: %w", err)
	}
	return out, nil
}

// UpdateList renames a list or changes its description (nil leaves a
// field unchanged).
func (s *Service) UpdateList(ctx context.Context, tenantID, id string, name, description *string) (List, error) {
	l, err := s.GetList(ctx, tenantID, id)
	if err != nil {
		return List{}, err
	}
	n, d := l.Name, l.Description
	if name != nil {
		n = *name
	}
	if description != nil {
		d = *description
	}
	if n, d, err = validateListName(n, d); err != nil {
		return List{}, err
	}
	now := s.now()
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE lists SET name = $3, description = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2`, id, n, d, micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a list with this name exists", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: update list: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("list %w", ErrNotFound)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "list.update", ObjectType: "list", ObjectID: id,
			Changes: []audit.Change{{Field: "name", Before: l.Name, After: n}, {Field: "description", Before: l.Description, After: d}}})
		return err
	})
	if err != nil {
		return List{}, err
	}
	l.Name, l.Description, l.UpdatedAt = n, d, now
	return l, nil
}

// DeleteList deletes a list and its memberships (not the contacts).
func (s *Service) DeleteList(ctx context.Context, tenantID, id string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM lists WHERE tenant_id = $1 AND id = $2`, id)
		if err != nil {
			return fmt.Errorf("contacts: delete list: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("list %w", ErrNotFound)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "list.delete", ObjectType: "list", ObjectID: id})
		return err
	})
}

func checkIDs(ids []string) error {
	if len(ids) == 0 {
		return invalid("contact_ids", "at least one contact id is required")
	}
	if len(ids) > MaxMembersPerCall {
		return invalid("contact_ids", "at most %d contact ids per call", MaxMembersPerCall)
	}
	return nil
}

// AddToList adds contacts to a list and returns how many were added
// (contacts already members are counted out). Every id must be a contact of
// the tenant, or nothing is added (ErrNotFound).
func (s *Service) AddToList(ctx context.Context, tenantID, listID string, contactIDs ...string) (int, error) {
	if err := checkIDs(contactIDs); err != nil {
		return 0, err
	}
	ids := dedupe(contactIDs)
	now := s.now()
	var added int
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if err := listExists(ctx, tx, listID); err != nil {
			return err
		}
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		v := newValues(tx.Dialect())
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = $1 AND erased_at IS NULL AND id IN (`+v.in(args)+`)`, v.args...).Scan(&n); err != nil {
			return fmt.Errorf("contacts: check contacts: %w", err)
		}
		if n != len(ids) {
			return fmt.Errorf("contacts: %d of the contacts: %w", len(ids)-n, ErrNotFound)
		}
		mv := newValues(tx.Dialect())
		for _, id := range ids {
			mv.row(lit("$1"), listID, id, micros(now))
		}
		res, err := tx.Exec(ctx, `INSERT INTO list_members (tenant_id, list_id, contact_id, added_at) VALUES `+mv.b.String()+
			` ON CONFLICT (tenant_id, list_id, contact_id) DO NOTHING`, mv.args...)
		if err != nil {
			return fmt.Errorf("contacts: add to list: %w", err)
		}
		k, _ := res.RowsAffected()
		added = int(k)
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "list.members.add", ObjectType: "list", ObjectID: listID,
			Details: map[string]any{"contact_ids": ids, "added": added}})
		return err
	})
	return added, err
}

// RemoveFromList removes contacts from a list and returns how many were
// members.
func (s *Service) RemoveFromList(ctx context.Context, tenantID, listID string, contactIDs ...string) (int, error) {
	if err := checkIDs(contactIDs); err != nil {
		return 0, err
	}
	ids := dedupe(contactIDs)
	var removed int
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if err := listExists(ctx, tx, listID); err != nil {
			return err
		}
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		v := newValues(tx.Dialect(), listID)
		res, err := tx.Exec(ctx, `DELETE FROM list_members WHERE tenant_id = $1 AND list_id = $2 AND contact_id IN (`+v.in(args)+`)`, v.args...)
		if err != nil {
			return fmt.Errorf("contacts: remove from list: %w", err)
		}
		k, _ := res.RowsAffected()
		removed = int(k)
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "list.members.remove", ObjectType: "list", ObjectID: listID,
			Details: map[string]any{"contact_ids": ids, "removed": removed}})
		return err
	})
	return removed, err
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// CountList returns the number of contacts in a list.
func (s *Service) CountList(ctx context.Context, tenantID, listID string) (int64, error) {
	return s.count(ctx, tenantID, selection{listID: listID})
}

// count counts the contacts of a selection.
func (s *Service) count(ctx context.Context, tenantID string, sel selection) (int64, error) {
	var n int64
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		sc, err := loadSchema(ctx, tx)
		if err != nil {
			return err
		}
		where, args, err := s.selection(ctx, tx, sc, sel, 2)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM contacts c WHERE `+where, args...).Scan(&n); err != nil {
			return fmt.Errorf("contacts: count: %w", err)
		}
		return nil
	})
	return n, err
}

// Segment is a saved filter over contacts (see package filter).
type Segment struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Filter      string    `json:"filter"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ValidateFilter parses a filter and checks it against the tenant's
// attribute schema, without running it. The error is a *filter.Error with
// the position of the problem.
func (s *Service) ValidateFilter(ctx context.Context, tenantID, text string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		return validateFilterTx(ctx, tx, text)
	})
}

func validateFilterTx(ctx context.Context, tx *store.Tx, text string) error {
	sc, err := loadSchema(ctx, tx)
	if err != nil {
		return err
	}
	_, err = filter.ParseAndCompile(text, filter.Options{Dialect: tx.Dialect(), Attributes: sc.filterAttributes()})
	return err
}

// CreateSegment saves a segment after validating its filter.
func (s *Service) CreateSegment(ctx context.Context, tenantID, name, description, filterText string) (Segment, error) {
	n, d, err := validateListName(name, description)
	if err != nil {
		return Segment{}, err
	}
	now := s.now()
	seg := Segment{ID: newID(), Name: n, Description: d, Filter: filterText, CreatedAt: now, UpdatedAt: now}
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if err := validateFilterTx(ctx, tx, filterText); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO segments (tenant_id, id, name, description, filter, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)`,
			seg.ID, seg.Name, seg.Description, seg.Filter, micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a segment with this name exists", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: create segment: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "segment.create", ObjectType: "segment", ObjectID: seg.ID,
			Changes: []audit.Change{{Field: "name", After: n}, {Field: "filter", After: filterText}}})
		return err
	})
	if err != nil {
		return Segment{}, err
	}
	return seg, nil
}

func getSegment(ctx context.Context, tx *store.Tx, id string) (Segment, error) {
	var seg Segment
	var c, u int64
	err := tx.QueryRow(ctx, `SELECT id, name, description, filter, created_at, updated_at FROM segments WHERE tenant_id = $1 AND id = $2`, id).
		Scan(&seg.ID, &seg.Name, &seg.Description, &seg.Filter, &c, &u)
	if isNotFound(err) {
		return Segment{}, fmt.Errorf("segment %w", ErrNotFound)
	}
	if err != nil {
		return Segment{}, fmt.Errorf("contacts: read segment: %w", err)
	}
	seg.CreatedAt, seg.UpdatedAt = store.FromMicros(c), store.FromMicros(u)
	return seg, nil
}

// GetSegment returns a segment.
func (s *Service) GetSegment(ctx context.Context, tenantID, id string) (Segment, error) {
	var seg Segment
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		seg, err = getSegment(ctx, tx, id)
		return err
	})
	return seg, err
}

// Segments returns the tenant's segments by name.
func (s *Service) Segments(ctx context.Context, tenantID string) ([]Segment, error) {
	out := []Segment{}
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, description, filter, created_at, updated_at FROM segments WHERE tenant_id = $1 ORDER BY name LIMIT 10000`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var seg Segment
			var c, u int64
			if err := rows.Scan(&seg.ID, &seg.Name, &seg.Description, &seg.Filter, &c, &u); err != nil {
				return err
			}
			seg.CreatedAt, seg.UpdatedAt = store.FromMicros(c), store.FromMicros(u)
			out = append(out, seg)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: read segments: %w", err)
	}
	return out, nil
}

// UpdateSegment changes a segment's name, description or filter (nil
// leaves a field unchanged); a new filter is validated first.
func (s *Service) UpdateSegment(ctx context.Context, tenantID, id string, name, description, filterText *string) (Segment, error) {
	now := s.now()
	var seg Segment
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		old, err := getSegment(ctx, tx, id)
		if err != nil {
			return err
		}
		seg = old
		if name != nil {
			seg.Name = *name
		}
		if description != nil {
			seg.Description = *description
		}
		if filterText != nil {
			seg.Filter = *filterText
		}
		if seg.Name, seg.Description, err = validateListName(seg.Name, seg.Description); err != nil {
			return err
		}
		if err := validateFilterTx(ctx, tx, seg.Filter); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE segments SET name = $3, description = $4, filter = $5, updated_at = $6 WHERE tenant_id = $1 AND id = $2`,
			id, seg.Name, seg.Description, seg.Filter, micros(now))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("contacts: %w: a segment with this name exists", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("contacts: update segment: %w", err)
		}
		seg.UpdatedAt = now
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "segment.update", ObjectType: "segment", ObjectID: id,
			Changes: []audit.Change{{Field: "name", Before: old.Name, After: seg.Name}, {Field: "filter", Before: old.Filter, After: seg.Filter}}})
		return err
	})
	if err != nil {
		return Segment{}, err
	}
	return seg, nil
}

// DeleteSegment deletes a segment.
func (s *Service) DeleteSegment(ctx context.Context, tenantID, id string) error {
	return s.tx(ctx, tenantID, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM segments WHERE tenant_id = $1 AND id = $2`, id)
		if err != nil {
			return fmt.Errorf("contacts: delete segment: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("segment %w", ErrNotFound)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "segment.delete", ObjectType: "segment", ObjectID: id})
		return err
	})
}

// CountSegment returns the number of contacts a segment matches now.
func (s *Service) CountSegment(ctx context.Context, tenantID, id string) (int64, error) {
	return s.count(ctx, tenantID, selection{segmentID: id})
}

// CountFilter returns the number of contacts an unsaved filter matches (a
// preview while a segment is edited).
func (s *Service) CountFilter(ctx context.Context, tenantID, filterText string) (int64, error) {
	return s.count(ctx, tenantID, selection{filter: filterText})
}

// Package tenants manages the platform's client organisations (CORE-1): their
// creation with a fresh data key wrapped by the master key (ISO-2, DATA-1),
// their status, and their security policy (the platform defaults merged
// with the tenant's own overrides, AUD-2).
package tenants

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// Statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Tenant is a client organisation.
type Tenant struct {
	ID        string    `json:"id"`
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Errors.
var (
	ErrNotFound  = errors.New("tenant not found")
	ErrSlugTaken = errors.New("tenant slug already in use")
)

// ValidationError names the field that is wrong.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Service manages tenants.
type Service struct {
	DB       *store.DB
	Master   keys.MasterKey
	Defaults config.Policy
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// ValidateSlug checks a tenant slug: 2 to 63 characters, lower-case letters,
// digits and hyphens, starting with a letter or digit.
func ValidateSlug(slug string) error {
	if !slugRE.MatchString(slug) {
		return &ValidationError{Field: "slug", Message: "use 2 to 63 lower-case letters, digits or hyphens, starting with a letter or digit"}
	}
	return nil
}

// ValidateName checks a display name: 1 to 200 characters, no control characters.
func ValidateName(name string) error {
	n := strings.TrimSpace(name)
	if n == "" || utf8.RuneCountInString(n) > 200 || !utf8.ValidString(n) {
		return &ValidationError{Field: "name", Message: "must be 1 to 200 characters"}
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return &ValidationError{Field: "name", Message: "must not contain control characters"}
		}
	}
	return nil
}

// Create makes a tenant with its first data key, in one transaction with
// its audit events (in the operator's log and the tenant's own).
func (s *Service) Create(ctx context.Context, name, slug string) (Tenant, error) {
	name = strings.TrimSpace(name)
	if err := ValidateName(name); err != nil {
		return Tenant{}, err
	}
	if err := ValidateSlug(slug); err != nil {
		return Tenant{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant id: %w", err)
	}
	t := Tenant{ID: id.String(), Slug: slug, Name: name, Status: StatusActive}
	dk, err := keys.NewDataKey()
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant data key: %w", err)
	}
	defer dk.Destroy()
	const keyVersion = 1
	tenantMaster := keys.ForTenant(s.Master, t.ID)
	wrapped, err := keys.WrapDataKey(ctx, tenantMaster, t.ID, keyVersion, dk)
	if err != nil {
		return Tenant{}, fmt.Errorf("wrap tenant data key: %w", err)
	}
	err = s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		now := ptx.Now().UTC().Truncate(time.Microsecond)
		t.CreatedAt, t.UpdatedAt = now, now
		_, err := ptx.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			t.ID, t.Slug, t.Name, t.Status, store.Micros(now))
		if store.IsUniqueViolation(err) {
			return ErrSlugTaken
		}
		if err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		tx := ptx.Tenant(t.ID)
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_keys (tenant_id, version, master_key_id, wrapped, state, created_at)
			VALUES ($1, $2, $3, $4, 'active', $5)`, keyVersion, tenantMaster.ID(), wrapped, store.Micros(now)); err != nil {
			return fmt.Errorf("insert tenant key: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, policy, updated_at) VALUES ($1, '{}', $2)`, store.Micros(now)); err != nil {
			return fmt.Errorf("insert tenant settings: %w", err)
		}
		if err := access.EnsureBuiltinRoles(ctx, tx); err != nil {
			return fmt.Errorf("built-in roles: %w", err)
		}
		ev := audit.Event{
			Category: audit.CategoryAdmin, Action: "tenant.create", ObjectType: "tenant", ObjectID: t.ID,
			Changes: []audit.Change{{Field: "slug", After: t.Slug}, {Field: "name", After: t.Name}, {Field: "status", After: t.Status}},
		}
		if _, err := audit.Append(ctx, ptx.Tenant(""), ev); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{
			Category: audit.CategoryKey, Action: "key.create", ObjectType: "tenant_key", ObjectID: "1",
			Details: map[string]any{"master_key_id": tenantMaster.ID(), "algorithm": "AES-256-GCM"},
		})
		return err
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

const tenantColumns = `id, slug, name, status, created_at, updated_at`

func scanTenant(sc interface{ Scan(...any) error }) (Tenant, error) {
	var t Tenant
	var created, updated int64
	if err := sc.Scan(&t.ID, &t.Slug, &t.Name, &t.Status, &created, &updated); err != nil {
		return Tenant{}, err
	}
	t.CreatedAt, t.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	return t, nil
}

// List returns every tenant, by slug.
func (s *Service) List(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		rows, err := ptx.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY slug`)
		if err != nil {
			return fmt.Errorf("list tenants: %w", err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			t, err := scanTenant(rows)
			if err != nil {
				return fmt.Errorf("list tenants: %w", err)
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// Get finds a tenant by id or slug.
func (s *Service) Get(ctx context.Context, ref string) (Tenant, error) {
	var t Tenant
	err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		var err error
		t, err = get(ctx, ptx, ref)
		return err
	})
	return t, err
}

func get(ctx context.Context, ptx *store.PlatformTx, ref string) (Tenant, error) {
	t, err := scanTenant(ptx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1 OR slug = $1`, ref))
	if errors.Is(err, store.ErrNotFound) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrNotFound, ref)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	return t, nil
}

// SetStatus enables or disables a tenant. Disabling keeps its data; later
// issues refuse sign-in and sending for a disabled tenant.
func (s *Service) SetStatus(ctx context.Context, ref, status string) (Tenant, error) {
	if status != StatusActive && status != StatusDisabled {
		return Tenant{}, &ValidationError{Field: "status", Message: "must be active or disabled"}
	}
	var t Tenant
	err := s.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		var err error
		if t, err = get(ctx, ptx, ref); err != nil {
			return err
		}
		if t.Status == status {
			return nil
		}
		before := t.Status
		t.Status, t.UpdatedAt = status, ptx.Now().UTC().Truncate(time.Microsecond)
		if _, err := ptx.Exec(ctx, `UPDATE tenants SET status = $1, updated_at = $2 WHERE id = $3`, status, store.Micros(t.UpdatedAt), t.ID); err != nil {
			return fmt.Errorf("update tenant: %w", err)
		}
		action := "tenant.disable"
		if status == StatusActive {
			action = "tenant.enable"
		}
		ev := audit.Event{Category: audit.CategoryAdmin, Action: action, ObjectType: "tenant", ObjectID: t.ID,
			Changes: []audit.Change{{Field: "status", Before: before, After: status}}}
		if _, err := audit.Append(ctx, ptx.Tenant(""), ev); err != nil {
			return err
		}
		_, err = audit.Append(ctx, ptx.Tenant(t.ID), ev)
		return err
	})
	return t, err
}

// Policy returns the tenant's effective policy: the platform defaults with
// the tenant's stored overrides applied.
func (s *Service) Policy(ctx context.Context, tenantID string) (config.Policy, error) {
	var raw string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&raw)
	})
	if errors.Is(err, store.ErrNotFound) {
		return config.Policy{}, fmt.Errorf("%w: %q", ErrNotFound, tenantID)
	}
	if err != nil {
		return config.Policy{}, fmt.Errorf("read tenant policy: %w", err)
	}
	return mergePolicy(s.Defaults, []byte(raw))
}

func mergePolicy(defaults config.Policy, overrides []byte) (config.Policy, error) {
	p := defaults
	dec := json.NewDecoder(bytes.NewReader(overrides))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return config.Policy{}, &ValidationError{Field: "policy", Message: err.Error()}
	}
	if err := p.Validate(); err != nil {
		return config.Policy{}, &ValidationError{Field: "policy", Message: err.Error()}
	}
	return p, nil
}

// SetPolicy stores the tenant's overrides (a JSON object in the shape of
// config.Policy; absent fields keep the platform default) after checking
// the merged policy is valid, and records the change.
func (s *Service) SetPolicy(ctx context.Context, tenantID string, overrides json.RawMessage) (config.Policy, error) {
	merged, err := mergePolicy(s.Defaults, overrides)
	if err != nil {
		return config.Policy{}, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, overrides); err != nil {
		return config.Policy{}, &ValidationError{Field: "policy", Message: err.Error()}
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var before string
		if err := tx.QueryRow(ctx, `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&before); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %q", ErrNotFound, tenantID)
			}
			return fmt.Errorf("read tenant policy: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE tenant_settings SET policy = $2, updated_at = $3 WHERE tenant_id = $1`,
			compact.String(), store.Micros(tx.Now())); err != nil {
			return fmt.Errorf("update tenant policy: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "tenant.policy.update",
			ObjectType: "tenant", ObjectID: tenantID,
			Changes: []audit.Change{{Field: "policy", Before: json.RawMessage(before), After: json.RawMessage(compact.Bytes())}}})
		return err
	})
	if err != nil {
		return config.Policy{}, err
	}
	return merged, nil
}

// DataKey unwraps the tenant's active data key. The caller must Destroy it
// when done.
func (s *Service) DataKey(ctx context.Context, tenantID string) (*keys.DataKey, int, error) {
	var version int
	var wrapped []byte
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT version, wrapped FROM tenant_keys WHERE tenant_id = $1 AND state = 'active'
			ORDER BY version DESC LIMIT 1`).Scan(&version, &wrapped)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w: no active data key for tenant %q", ErrNotFound, tenantID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read tenant key: %w", err)
	}
	dk, err := keys.UnwrapDataKey(ctx, keys.ForTenant(s.Master, tenantID), tenantID, version, wrapped)
	if err != nil {
		return nil, 0, fmt.Errorf("unwrap tenant key: %w", err)
	}
	return dk, version, nil
}

package sso

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
)

// SCIM 2.0 provisioning (ACC-5): an identity provider creates, updates and
// deactivates a tenant's users, and manages groups and their members, with
// a bearer token of the tenant. Deactivating a user disables it, which
// revokes its sessions and tokens in the same transaction
// (identity.SetUserStatus).

// prefixSCIM marks SCIM bearer tokens: "rst_<tenant id>.<256 bits>".
const prefixSCIM = "rst_"

// SCIMToken describes a SCIM bearer token (never its secret).
type SCIMToken struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// CreateSCIMToken makes a tenant's SCIM token; the secret is shown once.
func (s *Service) CreateSCIMToken(ctx context.Context, tenantID, name string) (SCIMToken, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return SCIMToken{}, "", &ValidationError{Field: "name", Message: "is required (at most 100 characters)"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return SCIMToken{}, "", err
	}
	secret := newSecret(prefixSCIM, tenantID)
	tok := SCIMToken{ID: id.String(), Name: name, CreatedAt: s.now().Truncate(time.Microsecond)}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO scim_tokens (tenant_id, id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)`,
			tok.ID, tok.Name, hashSecret(secret), micros(tok.CreatedAt)); err != nil {
			return fmt.Errorf("insert SCIM token: %w", err)
		}
		return recordAdmin(ctx, tx, "scim.token.create", "scim_token", tok.ID, map[string]any{"name": tok.Name})
	})
	if err != nil {
		return SCIMToken{}, "", err
	}
	return tok, secret, nil
}

// ListSCIMTokens returns a tenant's SCIM tokens.
func (s *Service) ListSCIMTokens(ctx context.Context, tenantID string) ([]SCIMToken, error) {
	var out []SCIMToken
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, created_at, last_used_at, revoked_at FROM scim_tokens WHERE tenant_id = $1 ORDER BY created_at`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var t SCIMToken
			var created int64
			var used, revoked *int64
			if err := rows.Scan(&t.ID, &t.Name, &created, &used, &revoked); err != nil {
				return err
			}
			t.CreatedAt, t.LastUsedAt, t.RevokedAt = store.FromMicros(created), timePtr(used), timePtr(revoked)
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

func timePtr(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := store.FromMicros(*v)
	return &t
}

// RevokeSCIMToken revokes a SCIM token at once.
func (s *Service) RevokeSCIMToken(ctx context.Context, tenantID, id string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE scim_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL`, id, micros(s.now()))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: SCIM token %q", ErrNotFound, truncate(id, 60))
		}
		return recordAdmin(ctx, tx, "scim.token.revoke", "scim_token", id, nil)
	})
}

// ErrBadToken: a missing, malformed, unknown or revoked SCIM token.
var ErrBadToken = errors.New("sso: invalid SCIM token")

// AuthenticateSCIM resolves a SCIM bearer token into its tenant and token
// id. The tenant must be active.
func (s *Service) AuthenticateSCIM(ctx context.Context, secret string) (tenantID, tokenID string, err error) {
	tenantID, ok := splitSecret(prefixSCIM, secret)
	if !ok {
		return "", "", ErrBadToken
	}
	if _, err := s.tenant(ctx, tenantID); err != nil {
		return "", "", ErrBadToken
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `UPDATE scim_tokens SET last_used_at = $3 WHERE tenant_id = $1 AND token_hash = $2 AND revoked_at IS NULL RETURNING id`,
			hashSecret(secret), micros(s.now())).Scan(&tokenID)
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", "", ErrBadToken
	}
	return tenantID, tokenID, err
}

// SCIMUser is a user as SCIM sees it.
type SCIMUser struct {
	User       identity.User
	ExternalID string
}

func (s *Service) externalIDs(ctx context.Context, tenantID, kind string) (map[string]string, error) {
	out := map[string]string{}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT resource_id, external_id FROM scim_external WHERE tenant_id = $1 AND kind = $2`, kind)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var id, ext string
			if err := rows.Scan(&id, &ext); err != nil {
				return err
			}
			out[id] = ext
		}
		return rows.Err()
	})
	return out, err
}

func setExternalID(ctx context.Context, tx *store.Tx, kind, id, ext string) error {
	if ext == "" {
		return nil
	}
	if len(ext) > 256 {
		return &ValidationError{Field: "externalId", Message: "must be at most 256 characters"}
	}
	_, err := tx.Exec(ctx, `INSERT INTO scim_external (tenant_id, kind, resource_id, external_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, kind, resource_id) DO UPDATE SET external_id = $4`, kind, id, ext)
	return err
}

// SCIMListUsers returns the tenant's users, optionally only the one with
// this email (SCIM filter userName eq "...").
func (s *Service) SCIMListUsers(ctx context.Context, tenantID, userName string) ([]SCIMUser, error) {
	ext, err := s.externalIDs(ctx, tenantID, "user")
	if err != nil {
		return nil, err
	}
	var users []identity.User
	if userName != "" {
		u, err := s.Identity.FindUserByEmail(ctx, tenantID, userName)
		var ve *identity.ValidationError
		switch {
		case errors.Is(err, identity.ErrNotFound), errors.As(err, &ve):
		case err != nil:
			return nil, err
		default:
			users = []identity.User{u}
		}
	} else if users, err = s.Identity.ListUsers(ctx, tenantID); err != nil {
		return nil, err
	}
	out := make([]SCIMUser, 0, len(users))
	for _, u := range users {
		out = append(out, SCIMUser{User: u, ExternalID: ext[u.ID]})
	}
	return out, nil
}

// SCIMGetUser returns one user.
func (s *Service) SCIMGetUser(ctx context.Context, tenantID, userID string) (SCIMUser, error) {
	u, err := s.Identity.GetUser(ctx, tenantID, userID)
	if err != nil {
		return SCIMUser{}, err
	}
	ext, err := s.externalIDs(ctx, tenantID, "user")
	return SCIMUser{User: u, ExternalID: ext[u.ID]}, err
}

// SCIMCreateUser provisions a user (source "scim", no password: it signs
// in through the IdP); active false creates it disabled.
func (s *Service) SCIMCreateUser(ctx context.Context, tenantID, email, name, externalID string, active bool) (SCIMUser, error) {
	u, _, err := s.Identity.CreateUser(ctx, tenantID, identity.NewUser{Email: email, Name: name, Source: "scim"})
	if err != nil {
		return SCIMUser{}, err
	}
	if err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error { return setExternalID(ctx, tx, "user", u.ID, externalID) }); err != nil {
		return SCIMUser{}, err
	}
	if !active {
		if err := s.Identity.SetUserStatus(ctx, tenantID, u.ID, identity.StatusDisabled); err != nil {
			return SCIMUser{}, err
		}
	}
	return s.SCIMGetUser(ctx, tenantID, u.ID)
}

// SCIMSetActive activates or deactivates a user. Deactivation disables the
// user and revokes its sessions and tokens at once (ACC-5).
func (s *Service) SCIMSetActive(ctx context.Context, tenantID, userID string, active bool, externalID string) (SCIMUser, error) {
	u, err := s.Identity.GetUser(ctx, tenantID, userID)
	if err != nil {
		return SCIMUser{}, err
	}
	want := map[bool]string{true: identity.StatusActive, false: identity.StatusDisabled}[active]
	if u.Status != want {
		if err := s.Identity.SetUserStatus(ctx, tenantID, userID, want); err != nil {
			return SCIMUser{}, err
		}
	}
	if externalID != "" {
		// A new external id is a change of the account's link to the
		// identity provider: recorded in the same transaction.
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			var old string
			err := tx.QueryRow(ctx, `SELECT external_id FROM scim_external WHERE tenant_id = $1 AND kind = 'user' AND resource_id = $2`, userID).Scan(&old)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if old == externalID {
				return nil
			}
			if err := setExternalID(ctx, tx, "user", userID, externalID); err != nil {
				return err
			}
			_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "user.external_id.set", ObjectType: "user", ObjectID: userID,
				Actor: scimActor(ctx), Changes: []audit.Change{{Field: "external_id"}}})
			return err
		})
		if err != nil {
			return SCIMUser{}, err
		}
	}
	return s.SCIMGetUser(ctx, tenantID, userID)
}

// SCIMGroup is a relais group as SCIM sees it.
type SCIMGroup struct {
	ID, Name, ExternalID string
	Members              []string
}

// SCIM manages only the groups it created (source "scim"): a SCIM token
// cannot put anyone in a group an administrator made, such as one that
// holds the admin role. Which roles a SCIM group holds is decided by an
// administrator (roles:admin, anti-escalation applies).

// SCIMListGroups returns the groups SCIM created, with their members.
func (s *Service) SCIMListGroups(ctx context.Context, tenantID, displayName string) ([]SCIMGroup, error) {
	ext, err := s.externalIDs(ctx, tenantID, "group")
	if err != nil {
		return nil, err
	}
	var out []SCIMGroup
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name FROM groups WHERE tenant_id = $1 AND source = 'scim' AND (name = $2 OR $2 = '') ORDER BY name`, displayName)
		if err != nil {
			return err
		}
		for rows.Next() {
			var g SCIMGroup
			if err := rows.Scan(&g.ID, &g.Name); err != nil {
				_ = rows.Close()
				return err
			}
			g.ExternalID = ext[g.ID]
			out = append(out, g)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for i := range out {
			if out[i].Members, err = groupMembers(ctx, tx, out[i].ID); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func groupMembers(ctx context.Context, tx *store.Tx, groupID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT user_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id`, groupID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// SCIMGetGroup returns one group.
func (s *Service) SCIMGetGroup(ctx context.Context, tenantID, groupID string) (SCIMGroup, error) {
	groups, err := s.SCIMListGroups(ctx, tenantID, "")
	if err != nil {
		return SCIMGroup{}, err
	}
	for _, g := range groups {
		if g.ID == groupID {
			return g, nil
		}
	}
	return SCIMGroup{}, fmt.Errorf("%w: group", ErrNotFound)
}

// scimActor is who a SCIM change is recorded as: the caller the request
// names (the SCIM token, "scim:<token id>", set by the web layer), so that
// the trail says which identity provider's token made it (LOG-1); a
// call without one (a job, a test) is the system's "scim".
func scimActor(ctx context.Context) audit.Actor {
	if a := audit.MetaFrom(ctx).Actor; a.Type != "" {
		return a
	}
	return audit.Actor{Type: audit.ActorSystem, ID: "scim"}
}

// SCIMCreateGroup creates a group (source "scim") with members. It holds
// no role until an administrator gives it one (or a mapping rule uses it).
func (s *Service) SCIMCreateGroup(ctx context.Context, tenantID, name, externalID string, members []string) (SCIMGroup, error) {
	name = strings.TrimSpace(name)
	if name == "" || len([]rune(name)) > 64 {
		return SCIMGroup{}, &ValidationError{Field: "displayName", Message: "is required (at most 64 characters)"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return SCIMGroup{}, err
	}
	now := micros(s.now())
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO groups (tenant_id, id, name, description, source, created_at, updated_at) VALUES ($1, $2, $3, 'provisioned by SCIM', 'scim', $4, $4)`,
			id.String(), name, now)
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a group named %q", ErrConflict, name)
		}
		if err != nil {
			return err
		}
		if err := setExternalID(ctx, tx, "group", id.String(), externalID); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "group.create", ObjectType: "group", ObjectID: id.String(),
			Actor: scimActor(ctx), Changes: []audit.Change{{Field: "name", After: name}, {Field: "source", After: "scim"}}}); err != nil {
			return err
		}
		return changeMembers(ctx, tx, id.String(), members, true)
	})
	if err != nil {
		return SCIMGroup{}, err
	}
	return s.SCIMGetGroup(ctx, tenantID, id.String())
}

// SCIMChangeMembers adds or removes members of a group. A member removed
// loses the group's roles at once.
func (s *Service) SCIMChangeMembers(ctx context.Context, tenantID, groupID string, add, remove []string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM groups WHERE tenant_id = $1 AND id = $2 AND source = 'scim'`, groupID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: SCIM group", ErrNotFound)
		}
		if err := changeMembers(ctx, tx, groupID, add, true); err != nil {
			return err
		}
		return changeMembers(ctx, tx, groupID, remove, false)
	})
}

func changeMembers(ctx context.Context, tx *store.Tx, groupID string, users []string, add bool) error {
	for _, u := range users {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND id = $2`, u).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return &ValidationError{Field: "members", Message: "no user " + truncate(u, 60) + " in this tenant"}
		}
		stmt := `DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3`
		if add {
			stmt = `INSERT INTO group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		}
		res, err := tx.Exec(ctx, stmt, groupID, u)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			continue
		}
		ev := audit.Event{Category: audit.CategoryAdmin, Action: "group.member.add", ObjectType: "group", ObjectID: groupID, Actor: scimActor(ctx),
			Changes: []audit.Change{{Field: "member", After: u}}}
		if !add {
			ev.Action, ev.Changes = "group.member.remove", []audit.Change{{Field: "member", Before: u}}
		}
		if _, err := audit.Append(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// SCIMDeleteGroup deletes a group that SCIM created.
func (s *Service) SCIMDeleteGroup(ctx context.Context, tenantID, groupID string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM groups WHERE tenant_id = $1 AND id = $2 AND source = 'scim'`, groupID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: SCIM group", ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM scim_external WHERE tenant_id = $1 AND kind = 'group' AND resource_id = $2`, groupID); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "group.delete", ObjectType: "group", ObjectID: groupID, Actor: scimActor(ctx)})
		return err
	})
}

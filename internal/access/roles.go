package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Role is a named set of permissions of one tenant.
type Role struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Permissions []Permission `json:"permissions"` // sorted
	Builtin     bool         `json:"builtin"`
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
}

// Set returns the role's permissions as a set.
func (r Role) Set() Set { return NewSet(r.Permissions...) }

// Names of the built-in roles.
const (
	RoleAdmin   = "admin"
	RoleManager = "manager"
	RoleEditor  = "editor"
	RoleViewer  = "viewer"
	RoleAuditor = "auditor"
)

// BuiltinRoles returns the definitions of the built-in roles (without ids or
// dates), in a fixed order. The slice is fresh.
//
//   - admin: every permission.
//   - manager: every non-administrative permission (users:read included).
//   - editor: contacts, lists, templates and campaigns read and write,
//     campaigns:send, messages:send, contacts:import and :export, reports:read.
//   - viewer: every :read permission except audit:read and users:read.
//   - auditor: audit:read, audit:export, users:read, settings:read, reports:read.
func BuiltinRoles() []Role {
	var admin, manager, viewer []Permission
	for _, info := range permissionCatalogue {
		p := info.Permission
		admin = append(admin, p)
		if !info.Administrative {
			manager = append(manager, p)
		}
		if strings.HasSuffix(string(p), ":read") && p != AuditRead && p != UsersRead {
			viewer = append(viewer, p)
		}
	}
	editor := []Permission{ContactsRead, ContactsWrite, ContactsImport, ContactsExport, ListsRead, ListsWrite,
		TemplatesRead, TemplatesWrite, CampaignsRead, CampaignsWrite, CampaignsSend, MessagesSend, MessagesRead, ReportsRead}
	auditor := []Permission{AuditRead, AuditExport, UsersRead, SettingsRead, ReportsRead}
	mk := func(name, desc string, ps []Permission) Role {
		return Role{Name: name, Description: desc, Permissions: NewSet(ps...).List(), Builtin: true}
	}
	return []Role{
		mk(RoleAdmin, "Every permission, including users, roles, keys, backups and security settings", admin),
		mk(RoleManager, "Every non-administrative permission", manager),
		mk(RoleEditor, "Manage contacts, lists, templates and campaigns, and send messages", editor),
		mk(RoleViewer, "Read contacts, lists, templates, campaigns, messages, settings and reports", viewer),
		mk(RoleAuditor, "Read and export the audit trail; read users, settings and reports", auditor),
	}
}

func isBuiltinName(name string) bool {
	for _, r := range BuiltinRoles() {
		if strings.EqualFold(r.Name, name) {
			return true
		}
	}
	return false
}

// EnsureBuiltinRoles creates the built-in roles in tx's tenant, or brings
// them back to their definition (a newer release may add a permission to
// one). It is idempotent: a second run changes nothing and records nothing.
// It fails with ErrConflict when a custom role already uses a built-in name.
// Call it in the transaction that creates a tenant, and at upgrade.
func EnsureBuiltinRoles(ctx context.Context, tx *store.Tx) error {
	existing, err := listRoles(ctx, tx)
	if err != nil {
		return err
	}
	now := tx.Now().UTC().Truncate(time.Microsecond)
	for _, def := range BuiltinRoles() {
		var found *Role
		for i := range existing {
			if strings.EqualFold(existing[i].Name, def.Name) {
				found = &existing[i]
				break
			}
		}
		switch {
		case found == nil:
			id, err := newID()
			if err != nil {
				return err
			}
			def.ID, def.CreatedAt, def.UpdatedAt = id, now, now
			if err := insertRole(ctx, tx, def); err != nil {
				return err
			}
			if _, err := audit.Append(ctx, tx, audit.Event{
				Category: audit.CategoryAdmin, Action: "role.create", ObjectType: "role", ObjectID: def.ID,
				Changes: roleChanges(Role{}, def),
			}); err != nil {
				return fmt.Errorf("access: record built-in role %s: %w", def.Name, err)
			}
		case !found.Builtin || found.Name != def.Name:
			return fmt.Errorf("%w: a custom role is named %q, which is reserved for a built-in role; rename it first", ErrConflict, found.Name)
		case !slices.Equal(found.Permissions, def.Permissions) || found.Description != def.Description:
			def.ID, def.CreatedAt, def.UpdatedAt = found.ID, found.CreatedAt, now
			if _, err := tx.Exec(ctx, `UPDATE roles SET description = $2, permissions = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $5`,
				def.Description, encodePermissions(def.Set()), store.Micros(now), def.ID); err != nil {
				return fmt.Errorf("access: update built-in role %s: %w", def.Name, err)
			}
			if _, err := audit.Append(ctx, tx, audit.Event{
				Category: audit.CategoryAdmin, Action: "role.update", ObjectType: "role", ObjectID: def.ID,
				Changes: roleChanges(*found, def), Details: map[string]any{"reason": "built-in role definition"},
			}); err != nil {
				return fmt.Errorf("access: record built-in role %s: %w", def.Name, err)
			}
		}
	}
	return nil
}

func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("access: new id: %w", err)
	}
	return id.String(), nil
}

// roleChanges lists the audited fields that differ between two versions of
// a role (before is the zero Role for a creation, after for a deletion).
func roleChanges(before, after Role) []audit.Change {
	var out []audit.Change
	str := func(field, b, a string) {
		if b != a {
			out = append(out, audit.Change{Field: field, Before: nonEmpty(b), After: nonEmpty(a)})
		}
	}
	str("name", before.Name, after.Name)
	str("description", before.Description, after.Description)
	if !slices.Equal(before.Permissions, after.Permissions) || before.ID == "" || after.ID == "" {
		c := audit.Change{Field: "permissions"}
		if before.Permissions != nil {
			c.Before = before.Permissions
		}
		if after.Permissions != nil {
			c.After = after.Permissions
		}
		out = append(out, c)
	}
	if before.Builtin != after.Builtin {
		out = append(out, audit.Change{Field: "builtin", Before: before.Builtin, After: after.Builtin})
	}
	return out
}

// nonEmpty keeps an empty string out of a change (omitted, not "").
func nonEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const roleColumns = `id, name, description, permissions, builtin, created_at, updated_at`

func scanRole(sc interface{ Scan(...any) error }) (Role, error) {
	var r Role
	var perms string
	var created, updated int64
	if err := sc.Scan(&r.ID, &r.Name, &r.Description, &perms, &r.Builtin, &created, &updated); err != nil {
		return Role{}, err
	}
	ps, err := decodePermissions(perms)
	if err != nil {
		return Role{}, err
	}
	r.Permissions = NewSet(ps...).List()
	r.CreatedAt, r.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	return r, nil
}

func listRoles(ctx context.Context, tx *store.Tx) ([]Role, error) {
	rows, err := tx.Query(ctx, `SELECT `+roleColumns+` FROM roles WHERE tenant_id = $1 ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("access: list roles: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Role
	for rows.Next() {
		r, err := scanRole(rows)
		if err != nil {
			return nil, fmt.Errorf("access: list roles: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("access: list roles: %w", err)
	}
	return out, nil
}

// findRole finds a role by id, then by exact name.
func findRole(ctx context.Context, tx *store.Tx, ref string) (Role, error) {
	r, err := scanRole(tx.QueryRow(ctx, `SELECT `+roleColumns+` FROM roles WHERE tenant_id = $1 AND id = $2`, ref))
	if errors.Is(err, store.ErrNotFound) {
		r, err = scanRole(tx.QueryRow(ctx, `SELECT `+roleColumns+` FROM roles WHERE tenant_id = $1 AND name = $2`, ref))
	}
	if errors.Is(err, store.ErrNotFound) {
		return Role{}, fmt.Errorf("%w: no role %q", ErrNotFound, truncate(ref, 80))
	}
	if err != nil {
		return Role{}, fmt.Errorf("access: read role: %w", err)
	}
	return r, nil
}

func insertRole(ctx context.Context, tx *store.Tx, r Role) error {
	_, err := tx.Exec(ctx, `INSERT INTO roles (tenant_id, id, name, description, permissions, builtin, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.ID, r.Name, r.Description, encodePermissions(r.Set()), r.Builtin, store.Micros(r.CreatedAt), store.Micros(r.UpdatedAt))
	if store.IsUniqueViolation(err) {
		return fmt.Errorf("%w: a role named %q already exists", ErrConflict, r.Name)
	}
	if err != nil {
		return fmt.Errorf("access: insert role: %w", err)
	}
	return nil
}

// checkRoleName refuses a name that a built-in role or another role (other
// than exceptID) already uses, compared without regard to case, so that a
// custom "Admin" cannot pass for the built-in admin.
func checkRoleName(ctx context.Context, tx *store.Tx, name, exceptID string) error {
	if isBuiltinName(name) {
		return fmt.Errorf("%w: %q is the name of a built-in role", ErrConflict, name)
	}
	rows, err := tx.Query(ctx, `SELECT id, name FROM roles WHERE tenant_id = $1`)
	if err != nil {
		return fmt.Errorf("access: read role names: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var id, n string
		if err := rows.Scan(&id, &n); err != nil {
			return fmt.Errorf("access: read role names: %w", err)
		}
		if id != exceptID && strings.EqualFold(n, name) {
			return fmt.Errorf("%w: a role named %q already exists", ErrConflict, n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("access: read role names: %w", err)
	}
	return nil
}

// validateRole checks the caller's input for a role.
func validateRole(name, description string, perms []Permission) (Set, error) {
	if err := validateName("name", name); err != nil {
		return Set{}, err
	}
	if err := validateDescription(description); err != nil {
		return Set{}, err
	}
	return parsePermissions(perms)
}

// ListRoles returns the tenant's roles, by name. Callers check users:read.
func (s *Service) ListRoles(ctx context.Context, tenantID string) ([]Role, error) {
	var out []Role
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = listRoles(ctx, tx)
		return err
	})
	return out, err
}

// GetRole returns a role by id or name. Callers check users:read.
func (s *Service) GetRole(ctx context.Context, tenantID, ref string) (Role, error) {
	var r Role
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		r, err = findRole(ctx, tx, ref)
		return err
	})
	return r, err
}

// CreateRole makes a custom role. The actor needs roles:admin and must hold
// every permission it puts in the role, unless it is the operator.
func (s *Service) CreateRole(ctx context.Context, tenantID string, actor Actor, name, description string, perms []Permission) (Role, error) {
	set, err := validateRole(name, description, perms)
	if err != nil {
		return Role{}, err
	}
	id, err := newID()
	if err != nil {
		return Role{}, err
	}
	r := Role{ID: id, Name: name, Description: description, Permissions: set.List()}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		if err := au.mayHandle(set, fmt.Sprintf("role %q", name)); err != nil {
			return err
		}
		if err := checkRoleName(ctx, tx, name, ""); err != nil {
			return err
		}
		r.CreatedAt = tx.Now().UTC().Truncate(time.Microsecond)
		r.UpdatedAt = r.CreatedAt
		if err := insertRole(ctx, tx, r); err != nil {
			return err
		}
		return record(ctx, tx, actor, audit.Event{Action: "role.create", ObjectType: "role", ObjectID: r.ID,
			Changes: roleChanges(Role{}, r)})
	})
	if err != nil {
		return Role{}, err
	}
	return r, nil
}

// UpdateRole replaces a custom role's name, description and permissions.
// Built-in roles cannot be updated (ErrBuiltinRole). The actor needs
// roles:admin and must hold every permission of the role, before and after,
// unless it is the operator. Adding an administrative permission to a role
// that users or clients hold is flagged as an admin grant (ACC-4). An update
// that changes nothing records nothing.
func (s *Service) UpdateRole(ctx context.Context, tenantID string, actor Actor, ref, name, description string, perms []Permission) (Role, error) {
	set, err := validateRole(name, description, perms)
	if err != nil {
		return Role{}, err
	}
	var r Role
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		old, err := findRole(ctx, tx, ref)
		if err != nil {
			return err
		}
		if old.Builtin {
			return fmt.Errorf("role %q: %w", old.Name, ErrBuiltinRole)
		}
		if err := au.mayHandle(old.Set().Union(set), fmt.Sprintf("role %q", old.Name)); err != nil {
			return err
		}
		r = old
		r.Name, r.Description, r.Permissions = name, description, set.List()
		changes := roleChanges(old, r)
		if len(changes) == 0 {
			return nil
		}
		if name != old.Name {
			if err := checkRoleName(ctx, tx, name, old.ID); err != nil {
				return err
			}
		}
		holders, err := roleHolders(ctx, tx, old.ID)
		if err != nil {
			return err
		}
		before, err := snapshot(ctx, tx, holders)
		if err != nil {
			return err
		}
		r.UpdatedAt = tx.Now().UTC().Truncate(time.Microsecond)
		_, err = tx.Exec(ctx, `UPDATE roles SET name = $2, description = $3, permissions = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $6`,
			r.Name, r.Description, encodePermissions(set), store.Micros(r.UpdatedAt), r.ID)
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a role named %q already exists", ErrConflict, name)
		}
		if err != nil {
			return fmt.Errorf("access: update role: %w", err)
		}
		after, err := snapshot(ctx, tx, holders)
		if err != nil {
			return err
		}
		return record(ctx, tx, actor, audit.Event{Action: "role.update", ObjectType: "role", ObjectID: r.ID,
			Changes: changes, Details: adminAlert(holders, before, after)})
	})
	if err != nil {
		return Role{}, err
	}
	return r, nil
}

// DeleteRole deletes a custom role and every grant of it (to users, groups
// and clients). Built-in roles cannot be deleted (ErrBuiltinRole). The actor
// needs roles:admin and must hold every permission of the role, unless it is
// the operator.
func (s *Service) DeleteRole(ctx context.Context, tenantID string, actor Actor, ref string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		r, err := findRole(ctx, tx, ref)
		if err != nil {
			return err
		}
		if r.Builtin {
			return fmt.Errorf("role %q: %w", r.Name, ErrBuiltinRole)
		}
		if err := au.mayHandle(r.Set(), fmt.Sprintf("deleting role %q", r.Name)); err != nil {
			return err
		}
		counts := map[string]any{}
		for _, t := range []struct{ key, stmt string }{
			{"user_grants", `DELETE FROM user_roles WHERE tenant_id = $1 AND role_id = $2`},
			{"group_grants", `DELETE FROM group_roles WHERE tenant_id = $1 AND role_id = $2`},
			{"client_grants", `DELETE FROM client_roles WHERE tenant_id = $1 AND role_id = $2`},
			{"", `DELETE FROM roles WHERE tenant_id = $1 AND id = $2`},
		} {
			res, err := tx.Exec(ctx, t.stmt, r.ID)
			if err != nil {
				return fmt.Errorf("access: delete role: %w", err)
			}
			if t.key != "" {
				n, _ := res.RowsAffected()
				counts[t.key] = n
			}
		}
		return record(ctx, tx, actor, audit.Event{Action: "role.delete", ObjectType: "role", ObjectID: r.ID,
			Changes: roleChanges(r, Role{}), Details: counts})
	})
}

// roleHolders lists the users (directly or through a group) and clients that
// hold a role.
func roleHolders(ctx context.Context, tx *store.Tx, roleID string) (principals, error) {
	var p principals
	var err error
	p.users, err = ids(ctx, tx, `
		SELECT user_id FROM user_roles WHERE tenant_id = $1 AND role_id = $2
		UNION
		SELECT gm.user_id FROM group_members gm
		JOIN group_roles gr ON gr.tenant_id = gm.tenant_id AND gr.group_id = gm.group_id
		WHERE gm.tenant_id = $1 AND gr.role_id = $2
		ORDER BY 1`, roleID)
	if err != nil {
		return p, err
	}
	p.clients, err = ids(ctx, tx, `SELECT client_id FROM client_roles WHERE tenant_id = $1 AND role_id = $2 ORDER BY client_id`, roleID)
	return p, err
}

// ids runs a query returning one text column.
func ids(ctx context.Context, tx *store.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("access: read ids: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("access: read ids: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("access: read ids: %w", err)
	}
	return out, nil
}

package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Group is a set of users who share the group's roles.
type Group struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Source is "local" for groups made here; single sign-on (ACC-2) may
	// create others.
	Source      string    `json:"source"`
	Roles       []RoleRef `json:"roles"` // sorted by name
	MemberCount int       `json:"member_count"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// RoleRef names a role.
type RoleRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

const groupColumns = `id, name, description, source, created_at, updated_at`

func scanGroup(sc interface{ Scan(...any) error }) (Group, error) {
	var g Group
	var created, updated int64
	if err := sc.Scan(&g.ID, &g.Name, &g.Description, &g.Source, &created, &updated); err != nil {
		return Group{}, err
	}
	g.CreatedAt, g.UpdatedAt = store.FromMicros(created), store.FromMicros(updated)
	return g, nil
}

// findGroup finds a group by id, then by exact name, without its roles.
func findGroup(ctx context.Context, tx *store.Tx, ref string) (Group, error) {
	g, err := scanGroup(tx.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups WHERE tenant_id = $1 AND id = $2`, ref))
	if errors.Is(err, store.ErrNotFound) {
		g, err = scanGroup(tx.QueryRow(ctx, `SELECT `+groupColumns+` FROM groups WHERE tenant_id = $1 AND name = $2`, ref))
	}
	if errors.Is(err, store.ErrNotFound) {
		return Group{}, fmt.Errorf("%w: no group %q", ErrNotFound, truncate(ref, 80))
	}
	if err != nil {
		return Group{}, fmt.Errorf("access: read group: %w", err)
	}
	return g, nil
}

// fillGroup adds the group's roles and member count.
func fillGroup(ctx context.Context, tx *store.Tx, g *Group) error {
	rows, err := tx.Query(ctx, `SELECT r.id, r.name FROM group_roles gr
		JOIN roles r ON r.tenant_id = gr.tenant_id AND r.id = gr.role_id
		WHERE gr.tenant_id = $1 AND gr.group_id = $2 ORDER BY r.name`, g.ID)
	if err != nil {
		return fmt.Errorf("access: read group roles: %w", err)
	}
	defer func() { _ = rows.Close() }()
	g.Roles = []RoleRef{}
	for rows.Next() {
		var r RoleRef
		if err := rows.Scan(&r.ID, &r.Name); err != nil {
			return fmt.Errorf("access: read group roles: %w", err)
		}
		g.Roles = append(g.Roles, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("access: read group roles: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM group_members WHERE tenant_id = $1 AND group_id = $2`, g.ID).Scan(&g.MemberCount); err != nil {
		return fmt.Errorf("access: count group members: %w", err)
	}
	return nil
}

// groupPermissions is the union of the group's roles.
func groupPermissions(ctx context.Context, tx *store.Tx, groupID string) (Set, error) {
	return unionOf(ctx, tx, `SELECT r.permissions FROM group_roles gr
		JOIN roles r ON r.tenant_id = gr.tenant_id AND r.id = gr.role_id
		WHERE gr.tenant_id = $1 AND gr.group_id = $2`, groupID)
}

func groupMembers(ctx context.Context, tx *store.Tx, groupID string) ([]string, error) {
	return ids(ctx, tx, `SELECT user_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id`, groupID)
}

// ListGroups returns the tenant's groups with their roles and member
// counts, by name. Callers check users:read.
func (s *Service) ListGroups(ctx context.Context, tenantID string) ([]Group, error) {
	var out []Group
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+groupColumns+` FROM groups WHERE tenant_id = $1 ORDER BY name`)
		if err != nil {
			return fmt.Errorf("access: list groups: %w", err)
		}
		for rows.Next() {
			g, err := scanGroup(rows)
			if err != nil {
				_ = rows.Close()
				return fmt.Errorf("access: list groups: %w", err)
			}
			out = append(out, g)
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return fmt.Errorf("access: list groups: %w", err)
		}
		for i := range out {
			if err := fillGroup(ctx, tx, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// GetGroup returns a group by id or name, with its roles and member count.
// Callers check users:read.
func (s *Service) GetGroup(ctx context.Context, tenantID, ref string) (Group, error) {
	var g Group
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		if g, err = findGroup(ctx, tx, ref); err != nil {
			return err
		}
		return fillGroup(ctx, tx, &g)
	})
	return g, err
}

// GroupMembers returns the ids of a group's users, sorted. Callers check
// users:read.
func (s *Service) GroupMembers(ctx context.Context, tenantID, groupRef string) ([]string, error) {
	var out []string
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		g, err := findGroup(ctx, tx, groupRef)
		if err != nil {
			return err
		}
		out, err = groupMembers(ctx, tx, g.ID)
		return err
	})
	return out, err
}

// checkGroupName refuses a name another group uses, regardless of case.
func checkGroupName(ctx context.Context, tx *store.Tx, name string) error {
	names, err := ids(ctx, tx, `SELECT name FROM groups WHERE tenant_id = $1`)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return fmt.Errorf("%w: a group named %q already exists", ErrConflict, n)
		}
	}
	return nil
}

// CreateGroup makes an empty local group. The actor needs roles:admin.
func (s *Service) CreateGroup(ctx context.Context, tenantID string, actor Actor, name, description string) (Group, error) {
	if err := validateName("name", name); err != nil {
		return Group{}, err
	}
	if err := validateDescription(description); err != nil {
		return Group{}, err
	}
	id, err := newID()
	if err != nil {
		return Group{}, err
	}
	g := Group{ID: id, Name: name, Description: description, Source: "local", Roles: []RoleRef{}}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := authorise(ctx, tx, actor, RolesAdmin); err != nil {
			return err
		}
		if err := checkGroupName(ctx, tx, name); err != nil {
			return err
		}
		g.CreatedAt = tx.Now().UTC().Truncate(time.Microsecond)
		g.UpdatedAt = g.CreatedAt
		_, err := tx.Exec(ctx, `INSERT INTO groups (tenant_id, id, name, description, source, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)`, g.ID, g.Name, g.Description, g.Source, store.Micros(g.CreatedAt))
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w: a group named %q already exists", ErrConflict, name)
		}
		if err != nil {
			return fmt.Errorf("access: insert group: %w", err)
		}
		return record(ctx, tx, actor, audit.Event{Action: "group.create", ObjectType: "group", ObjectID: g.ID,
			Changes: []audit.Change{{Field: "name", After: g.Name}, {Field: "description", After: nonEmpty(g.Description)}}})
	})
	if err != nil {
		return Group{}, err
	}
	return g, nil
}

// DeleteGroup deletes a group, its memberships and its role grants. The
// actor needs roles:admin and must hold every permission the group's roles
// give, since its members lose them, unless it is the operator.
func (s *Service) DeleteGroup(ctx context.Context, tenantID string, actor Actor, ref string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		g, err := findGroup(ctx, tx, ref)
		if err != nil {
			return err
		}
		if err := fillGroup(ctx, tx, &g); err != nil {
			return err
		}
		perms, err := groupPermissions(ctx, tx, g.ID)
		if err != nil {
			return err
		}
		if err := au.mayHandle(perms, fmt.Sprintf("deleting group %q", g.Name)); err != nil {
			return err
		}
		for _, stmt := range []string{
			`DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2`,
			`DELETE FROM group_roles WHERE tenant_id = $1 AND group_id = $2`,
			`DELETE FROM groups WHERE tenant_id = $1 AND id = $2`,
		} {
			if _, err := tx.Exec(ctx, stmt, g.ID); err != nil {
				return fmt.Errorf("access: delete group: %w", err)
			}
		}
		roleNames := make([]string, len(g.Roles))
		for i, r := range g.Roles {
			roleNames[i] = r.Name
		}
		return record(ctx, tx, actor, audit.Event{Action: "group.delete", ObjectType: "group", ObjectID: g.ID,
			Changes: []audit.Change{{Field: "name", Before: g.Name}},
			Details: map[string]any{"roles": roleNames, "members": g.MemberCount}})
	})
}

// AddMember puts a user in a group, giving it the group's roles. The actor
// needs roles:admin and must hold every permission of the group's roles,
// unless it is the operator. Adding a member twice changes and records
// nothing.
func (s *Service) AddMember(ctx context.Context, tenantID string, actor Actor, groupRef, userID string) error {
	return s.changeMember(ctx, tenantID, actor, groupRef, userID, true)
}

// RemoveMember takes a user out of a group; it loses the group's roles at
// once. The actor needs roles:admin and must hold every permission of the
// group's roles, unless it is the operator. Removing a non-member changes
// and records nothing.
func (s *Service) RemoveMember(ctx context.Context, tenantID string, actor Actor, groupRef, userID string) error {
	return s.changeMember(ctx, tenantID, actor, groupRef, userID, false)
}

func (s *Service) changeMember(ctx context.Context, tenantID string, actor Actor, groupRef, userID string, add bool) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		g, err := findGroup(ctx, tx, groupRef)
		if err != nil {
			return err
		}
		if err := requireUser(ctx, tx, userID); err != nil {
			return err
		}
		perms, err := groupPermissions(ctx, tx, g.ID)
		if err != nil {
			return err
		}
		verb := "adding a member to"
		if !add {
			verb = "removing a member from"
		}
		if err := au.mayHandle(perms, fmt.Sprintf("%s group %q", verb, g.Name)); err != nil {
			return err
		}
		who := principals{users: []string{userID}}
		before, err := snapshot(ctx, tx, who)
		if err != nil {
			return err
		}
		stmt := `DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3`
		if add {
			stmt = `INSERT INTO group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		}
		changed, err := execChanged(ctx, tx, stmt, g.ID, userID)
		if err != nil || !changed {
			return err
		}
		ev := audit.Event{Action: "group.member.add", ObjectType: "group", ObjectID: g.ID,
			Changes: []audit.Change{{Field: "member", After: userID}}}
		if !add {
			ev.Action, ev.Changes = "group.member.remove", []audit.Change{{Field: "member", Before: userID}}
		}
		ev.Details = map[string]any{"group": g.Name}
		if add {
			after, err := snapshot(ctx, tx, who)
			if err != nil {
				return err
			}
			mergeAlert(&ev, adminAlert(who, before, after))
		}
		return record(ctx, tx, actor, ev)
	})
}

// AddGroupRole gives a role to a group and so to all its members. The actor
// needs roles:admin and must hold every permission of the role, unless it is
// the operator. Adding it twice changes and records nothing.
func (s *Service) AddGroupRole(ctx context.Context, tenantID string, actor Actor, groupRef, roleRef string) error {
	return s.changeGroupRole(ctx, tenantID, actor, groupRef, roleRef, true)
}

// RemoveGroupRole takes a role from a group; its members lose it at once
// (unless they hold it another way). The actor needs roles:admin and must
// hold every permission of the role, unless it is the operator.
func (s *Service) RemoveGroupRole(ctx context.Context, tenantID string, actor Actor, groupRef, roleRef string) error {
	return s.changeGroupRole(ctx, tenantID, actor, groupRef, roleRef, false)
}

func (s *Service) changeGroupRole(ctx context.Context, tenantID string, actor Actor, groupRef, roleRef string, add bool) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		g, err := findGroup(ctx, tx, groupRef)
		if err != nil {
			return err
		}
		r, err := findRole(ctx, tx, roleRef)
		if err != nil {
			return err
		}
		verb := "granting"
		if !add {
			verb = "revoking"
		}
		if err := au.mayHandle(r.Set(), fmt.Sprintf("%s role %q", verb, r.Name)); err != nil {
			return err
		}
		members, err := groupMembers(ctx, tx, g.ID)
		if err != nil {
			return err
		}
		who := principals{users: members}
		var before map[string]Set
		if add {
			if before, err = snapshot(ctx, tx, who); err != nil {
				return err
			}
		}
		stmt := `DELETE FROM group_roles WHERE tenant_id = $1 AND group_id = $2 AND role_id = $3`
		if add {
			stmt = `INSERT INTO group_roles (tenant_id, group_id, role_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		}
		changed, err := execChanged(ctx, tx, stmt, g.ID, r.ID)
		if err != nil || !changed {
			return err
		}
		ev := audit.Event{Action: "group.role.add", ObjectType: "group", ObjectID: g.ID,
			Changes: []audit.Change{{Field: "role", After: r.ID}}}
		if !add {
			ev.Action, ev.Changes = "group.role.remove", []audit.Change{{Field: "role", Before: r.ID}}
		}
		ev.Details = map[string]any{"group": g.Name, "role": r.Name, "permissions": r.Permissions, "members": len(members)}
		if add {
			after, err := snapshot(ctx, tx, who)
			if err != nil {
				return err
			}
			mergeAlert(&ev, adminAlert(who, before, after))
		}
		return record(ctx, tx, actor, ev)
	})
}

// mergeAlert adds an admin_grant alert to an event's details. The alert's
// "permissions" (the administrative ones gained) replace any list there.
func mergeAlert(ev *audit.Event, alert map[string]any) {
	if alert == nil {
		return
	}
	if ev.Details == nil {
		ev.Details = map[string]any{}
	}
	if p, ok := ev.Details["permissions"]; ok {
		ev.Details["role_permissions"] = p
	}
	for k, v := range alert {
		ev.Details[k] = v
	}
}

// execChanged runs a statement and reports whether it touched a row.
func execChanged(ctx context.Context, tx *store.Tx, stmt string, args ...any) (bool, error) {
	res, err := tx.Exec(ctx, stmt, args...)
	if err != nil {
		return false, fmt.Errorf("access: write grant: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("access: write grant: %w", err)
	}
	return n > 0, nil
}

// requireUser checks the user exists in the tx's tenant.
func requireUser(ctx context.Context, tx *store.Tx, userID string) error {
	return requireRow(ctx, tx, `SELECT id FROM users WHERE tenant_id = $1 AND id = $2`, "user", userID)
}

// requireClient checks the API client exists in the tx's tenant.
func requireClient(ctx context.Context, tx *store.Tx, clientID string) error {
	return requireRow(ctx, tx, `SELECT id FROM api_clients WHERE tenant_id = $1 AND id = $2`, "API client", clientID)
}

func requireRow(ctx context.Context, tx *store.Tx, query, what, id string) error {
	var got string
	err := tx.QueryRow(ctx, query, id).Scan(&got)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: no %s %q", ErrNotFound, what, truncate(id, 80))
	}
	if err != nil {
		return fmt.Errorf("access: read %s: %w", what, err)
	}
	return nil
}

package access

import (
	"context"
	"fmt"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// GrantUserRole gives a role (by id or name) directly to a user. The actor
// needs roles:admin and must hold every permission of the role, unless it is
// the operator. Granting a role the user already has changes and records
// nothing.
func (s *Service) GrantUserRole(ctx context.Context, tenantID string, actor Actor, userID, roleRef string) error {
	return s.changeGrant(ctx, tenantID, actor, userGrants(), userID, roleRef, true)
}

// RevokeUserRole takes a directly granted role from a user; it loses the
// role's permissions at once (unless a group gives them too). The actor
// needs roles:admin and must hold every permission of the role, unless it is
// the operator. Revoking a role the user lacks changes and records nothing.
func (s *Service) RevokeUserRole(ctx context.Context, tenantID string, actor Actor, userID, roleRef string) error {
	return s.changeGrant(ctx, tenantID, actor, userGrants(), userID, roleRef, false)
}

// GrantClientRole gives a role (by id or name) to an API client, under the
// same rules as GrantUserRole.
func (s *Service) GrantClientRole(ctx context.Context, tenantID string, actor Actor, clientID, roleRef string) error {
	return s.changeGrant(ctx, tenantID, actor, clientGrants(), clientID, roleRef, true)
}

// RevokeClientRole takes a role from an API client, under the same rules as
// RevokeUserRole.
func (s *Service) RevokeClientRole(ctx context.Context, tenantID string, actor Actor, clientID, roleRef string) error {
	return s.changeGrant(ctx, tenantID, actor, clientGrants(), clientID, roleRef, false)
}

// grantKind describes the two kinds of direct grant.
type grantKind struct {
	object  string // audit object type and action prefix
	require func(context.Context, *store.Tx, string) error
	insert  string
	delete  string
	who     func(id string) principals
}

func userGrants() grantKind {
	return grantKind{
		object:  "user",
		require: requireUser,
		insert:  `INSERT INTO user_roles (tenant_id, user_id, role_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		delete:  `DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3`,
		who:     func(id string) principals { return principals{users: []string{id}} },
	}
}

func clientGrants() grantKind {
	return grantKind{
		object:  "client",
		require: requireClient,
		insert:  `INSERT INTO client_roles (tenant_id, client_id, role_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		delete:  `DELETE FROM client_roles WHERE tenant_id = $1 AND client_id = $2 AND role_id = $3`,
		who:     func(id string) principals { return principals{clients: []string{id}} },
	}
}

func (s *Service) changeGrant(ctx context.Context, tenantID string, actor Actor, k grantKind, id, roleRef string, grant bool) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		au, err := authorise(ctx, tx, actor, RolesAdmin)
		if err != nil {
			return err
		}
		if err := k.require(ctx, tx, id); err != nil {
			return err
		}
		r, err := findRole(ctx, tx, roleRef)
		if err != nil {
			return err
		}
		verb := "granting"
		if !grant {
			verb = "revoking"
		}
		if err := au.mayHandle(r.Set(), fmt.Sprintf("%s role %q", verb, r.Name)); err != nil {
			return err
		}
		who := k.who(id)
		var before map[string]Set
		if grant {
			if before, err = snapshot(ctx, tx, who); err != nil {
				return err
			}
		}
		stmt := k.delete
		if grant {
			stmt = k.insert
		}
		changed, err := execChanged(ctx, tx, stmt, id, r.ID)
		if err != nil || !changed {
			return err
		}
		ev := audit.Event{Action: k.object + ".role.grant", ObjectType: k.object, ObjectID: id,
			Changes: []audit.Change{{Field: "role", After: r.ID}},
			Details: map[string]any{"role": r.Name, "permissions": r.Permissions}}
		if !grant {
			ev.Action, ev.Changes = k.object+".role.revoke", []audit.Change{{Field: "role", Before: r.ID}}
		}
		if grant {
			after, err := snapshot(ctx, tx, who)
			if err != nil {
				return err
			}
			mergeAlert(&ev, adminAlert(who, before, after))
		}
		return record(ctx, tx, actor, ev)
	})
}

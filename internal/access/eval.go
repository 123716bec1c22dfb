package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/relais-dev/relais/internal/store"
)

// Principal statuses, as stored in users and api_clients.
const statusActive = "active"

// UserPermissions returns what the user holds: the permissions of its direct
// roles and of the roles of its groups. A disabled or unknown user holds
// nothing (default deny), without error.
func (s *Service) UserPermissions(ctx context.Context, tenantID, userID string) (Set, error) {
	var out Set
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = userPermissions(ctx, tx, userID, true)
		return err
	})
	return out, err
}

// ClientPermissions returns what the API client holds through its roles. A
// disabled or unknown client holds nothing, without error.
func (s *Service) ClientPermissions(ctx context.Context, tenantID, clientID string) (Set, error) {
	var out Set
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = clientPermissions(ctx, tx, clientID, true)
		return err
	})
	return out, err
}

// userPermissions unions the user's grants. With activeOnly, a user that is
// not active (or does not exist) holds nothing.
func userPermissions(ctx context.Context, tx *store.Tx, userID string, activeOnly bool) (Set, error) {
	if activeOnly {
		ok, err := isActive(ctx, tx, `SELECT status FROM users WHERE tenant_id = $1 AND id = $2`, userID)
		if err != nil || !ok {
			return Set{}, err
		}
	}
	return unionOf(ctx, tx, `
		SELECT r.permissions FROM user_roles ur
		JOIN roles r ON r.tenant_id = ur.tenant_id AND r.id = ur.role_id
		WHERE ur.tenant_id = $1 AND ur.user_id = $2
		UNION ALL
		SELECT r.permissions FROM group_members gm
		JOIN group_roles gr ON gr.tenant_id = gm.tenant_id AND gr.group_id = gm.group_id
		JOIN roles r ON r.tenant_id = gr.tenant_id AND r.id = gr.role_id
		WHERE gm.tenant_id = $1 AND gm.user_id = $2`, userID)
}

// clientPermissions unions the client's grants. With activeOnly, a client
// that is not active (or does not exist) holds nothing.
func clientPermissions(ctx context.Context, tx *store.Tx, clientID string, activeOnly bool) (Set, error) {
	if activeOnly {
		ok, err := isActive(ctx, tx, `SELECT status FROM api_clients WHERE tenant_id = $1 AND id = $2`, clientID)
		if err != nil || !ok {
			return Set{}, err
		}
	}
	return unionOf(ctx, tx, `
		SELECT r.permissions FROM client_roles cr
		JOIN roles r ON r.tenant_id = cr.tenant_id AND r.id = cr.role_id
		WHERE cr.tenant_id = $1 AND cr.client_id = $2`, clientID)
}

func isActive(ctx context.Context, tx *store.Tx, query, id string) (bool, error) {
	var status string
	err := tx.QueryRow(ctx, query, id).Scan(&status)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("access: read principal status: %w", err)
	}
	return status == statusActive, nil
}

// unionOf runs a query returning stored permission lists and unions them.
func unionOf(ctx context.Context, tx *store.Tx, query string, args ...any) (Set, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return Set{}, fmt.Errorf("access: read grants: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var all []Permission
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return Set{}, fmt.Errorf("access: read grants: %w", err)
		}
		ps, err := decodePermissions(raw)
		if err != nil {
			return Set{}, err
		}
		all = append(all, ps...)
	}
	if err := rows.Err(); err != nil {
		return Set{}, fmt.Errorf("access: read grants: %w", err)
	}
	return NewSet(all...), nil
}

// encodePermissions is the stored form of a role's permissions: a JSON
// array of names, sorted.
func encodePermissions(s Set) string {
	b, err := json.Marshal(s.List())
	if err != nil { // a slice of strings: cannot fail
		panic(fmt.Sprintf("access: encode permissions: %v", err))
	}
	return string(b)
}

// decodePermissions reads a stored permission list. Names no longer in the
// catalogue are dropped: they grant nothing.
func decodePermissions(raw string) ([]Permission, error) {
	var names []string
	if err := json.Unmarshal([]byte(raw), &names); err != nil {
		return nil, fmt.Errorf("access: stored role permissions are not a JSON array: %w", err)
	}
	out := make([]Permission, 0, len(names))
	for _, n := range names {
		if p := Permission(n); p.Known() {
			out = append(out, p)
		}
	}
	return out, nil
}

// principals are users and clients whose permissions a mutation may change.
type principals struct {
	users   []string
	clients []string
}

// snapshot records the permissions each principal is granted (whatever its
// status), to compare before and after a mutation.
func snapshot(ctx context.Context, tx *store.Tx, p principals) (map[string]Set, error) {
	out := make(map[string]Set, len(p.users)+len(p.clients))
	for _, u := range p.users {
		s, err := userPermissions(ctx, tx, u, false)
		if err != nil {
			return nil, err
		}
		out["user:"+u] = s
	}
	for _, c := range p.clients {
		s, err := clientPermissions(ctx, tx, c, false)
		if err != nil {
			return nil, err
		}
		out["client:"+c] = s
	}
	return out, nil
}

// adminAlert compares snapshots around a mutation and, when some principal
// gained an administrative permission, returns the audit details that flag
// it (ACC-4); nil otherwise.
func adminAlert(p principals, before, after map[string]Set) map[string]any {
	var gained []Permission
	var users, clients []string
	check := func(key string) bool {
		newOnes := before[key].Missing(after[key].Administrative())
		gained = append(gained, newOnes...)
		return len(newOnes) > 0
	}
	for _, u := range p.users {
		if check("user:" + u) {
			users = append(users, u)
		}
	}
	for _, c := range p.clients {
		if check("client:" + c) {
			clients = append(clients, c)
		}
	}
	if len(gained) == 0 {
		return nil
	}
	d := map[string]any{"alert": "admin_grant", "permissions": NewSet(gained...).List()}
	if len(users) > 0 {
		d["users"] = users
	}
	if len(clients) > 0 {
		d["clients"] = clients
	}
	return d
}

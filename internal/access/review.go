package access

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/relais-dev/relais/internal/store"
)

// Kinds of principal in an access review.
const (
	KindUser   = "user"
	KindClient = "client"
)

// ReviewEntry is one principal in the access review (ACC-4): who it is, its
// state, and each permission it holds with every path that grants it.
type ReviewEntry struct {
	// Kind is KindUser or KindClient.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Name is an API client's name. Users' names and e-mail addresses are
	// encrypted: the review gives their ids, the caller decrypts.
	Name   string `json:"name,omitempty"`
	Status string `json:"status"`
	// Source is where a user comes from ("local", or single sign-on).
	Source string `json:"source,omitempty"`
	// TOTPEnabled reports a user's authenticator-app second factor.
	TOTPEnabled bool `json:"totp_enabled"`
	// LastLoginAt is a user's last sign-in, nil if never.
	LastLoginAt *time.Time `json:"last_login_at,omitempty"`
	// LastUsedAt is a client's last use, nil if never.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// Administrative reports whether the principal holds at least one
	// administrative permission.
	Administrative bool `json:"administrative"`
	// Permissions are sorted by name; empty for a principal with no role.
	Permissions []PermissionGrant `json:"permissions"`
}

// PermissionGrant is one permission held and the paths that grant it.
type PermissionGrant struct {
	Permission     Permission  `json:"permission"`
	Administrative bool        `json:"administrative"`
	Paths          []GrantPath `json:"paths"`
}

// GrantPath is how a permission reaches a principal: a role granted
// directly (GroupID empty), or a role of a group the user belongs to.
type GrantPath struct {
	GroupID   string `json:"group_id,omitempty"`
	GroupName string `json:"group_name,omitempty"`
	RoleID    string `json:"role_id"`
	RoleName  string `json:"role_name"`
}

// String renders the path as "role R" or "group G -> role R".
func (p GrantPath) String() string {
	if p.GroupID == "" {
		return "role " + p.RoleName
	}
	return "group " + p.GroupName + " -> role " + p.RoleName
}

// Review returns the tenant's access review: every user, then every API
// client, each by id, with its status and each permission it is granted
// and how. A disabled principal is listed with the grants it would have;
// its status says it holds nothing now. Callers check users:read.
func (s *Service) Review(ctx context.Context, tenantID string) ([]ReviewEntry, error) {
	var out []ReviewEntry
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		users, err := reviewUsers(ctx, tx)
		if err != nil {
			return err
		}
		clients, err := reviewClients(ctx, tx)
		if err != nil {
			return err
		}
		out = append(users, clients...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pathsBy collects, per principal id, the permissions and their paths.
type pathsBy map[string]map[Permission][]GrantPath

func (pb pathsBy) add(id, raw string, path GrantPath) error {
	ps, err := decodePermissions(raw)
	if err != nil {
		return err
	}
	if pb[id] == nil {
		pb[id] = map[Permission][]GrantPath{}
	}
	for _, p := range ps {
		pb[id][p] = append(pb[id][p], path)
	}
	return nil
}

// fill sets the entry's permissions from the collected paths.
func (pb pathsBy) fill(e *ReviewEntry) {
	e.Permissions = []PermissionGrant{}
	for p, paths := range pb[e.ID] {
		slices.SortFunc(paths, func(a, b GrantPath) int {
			return cmp.Or(cmp.Compare(a.GroupName, b.GroupName), cmp.Compare(a.GroupID, b.GroupID),
				cmp.Compare(a.RoleName, b.RoleName), cmp.Compare(a.RoleID, b.RoleID))
		})
		admin := IsAdministrative(p)
		e.Administrative = e.Administrative || admin
		e.Permissions = append(e.Permissions, PermissionGrant{Permission: p, Administrative: admin, Paths: paths})
	}
	slices.SortFunc(e.Permissions, func(a, b PermissionGrant) int { return cmp.Compare(a.Permission, b.Permission) })
}

func reviewUsers(ctx context.Context, tx *store.Tx) ([]ReviewEntry, error) {
	pb := pathsBy{}
	if err := scanEach(ctx, tx, `SELECT ur.user_id, r.id, r.name, r.permissions FROM user_roles ur
		JOIN roles r ON r.tenant_id = ur.tenant_id AND r.id = ur.role_id
		WHERE ur.tenant_id = $1`, func(rows *sql.Rows) error {
		var id, raw string
		var p GrantPath
		if err := rows.Scan(&id, &p.RoleID, &p.RoleName, &raw); err != nil {
			return err
		}
		return pb.add(id, raw, p)
	}); err != nil {
		return nil, err
	}
	if err := scanEach(ctx, tx, `SELECT gm.user_id, g.id, g.name, r.id, r.name, r.permissions FROM group_members gm
		JOIN groups g ON g.tenant_id = gm.tenant_id AND g.id = gm.group_id
		JOIN group_roles gr ON gr.tenant_id = gm.tenant_id AND gr.group_id = gm.group_id
		JOIN roles r ON r.tenant_id = gr.tenant_id AND r.id = gr.role_id
		WHERE gm.tenant_id = $1`, func(rows *sql.Rows) error {
		var id, raw string
		var p GrantPath
		if err := rows.Scan(&id, &p.GroupID, &p.GroupName, &p.RoleID, &p.RoleName, &raw); err != nil {
			return err
		}
		return pb.add(id, raw, p)
	}); err != nil {
		return nil, err
	}
	var out []ReviewEntry
	err := scanEach(ctx, tx, `SELECT id, status, source, totp_enabled, last_login_at FROM users
		WHERE tenant_id = $1 ORDER BY id`, func(rows *sql.Rows) error {
		e := ReviewEntry{Kind: KindUser}
		var last sql.NullInt64
		if err := rows.Scan(&e.ID, &e.Status, &e.Source, &e.TOTPEnabled, &last); err != nil {
			return err
		}
		e.LastLoginAt = timePtr(last)
		pb.fill(&e)
		out = append(out, e)
		return nil
	})
	return out, err
}

func reviewClients(ctx context.Context, tx *store.Tx) ([]ReviewEntry, error) {
	pb := pathsBy{}
	if err := scanEach(ctx, tx, `SELECT cr.client_id, r.id, r.name, r.permissions FROM client_roles cr
		JOIN roles r ON r.tenant_id = cr.tenant_id AND r.id = cr.role_id
		WHERE cr.tenant_id = $1`, func(rows *sql.Rows) error {
		var id, raw string
		var p GrantPath
		if err := rows.Scan(&id, &p.RoleID, &p.RoleName, &raw); err != nil {
			return err
		}
		return pb.add(id, raw, p)
	}); err != nil {
		return nil, err
	}
	var out []ReviewEntry
	err := scanEach(ctx, tx, `SELECT id, name, status, last_used_at FROM api_clients
		WHERE tenant_id = $1 ORDER BY id`, func(rows *sql.Rows) error {
		e := ReviewEntry{Kind: KindClient}
		var last sql.NullInt64
		if err := rows.Scan(&e.ID, &e.Name, &e.Status, &last); err != nil {
			return err
		}
		e.LastUsedAt = timePtr(last)
		pb.fill(&e)
		out = append(out, e)
		return nil
	})
	return out, err
}

func timePtr(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := store.FromMicros(us.Int64)
	return &t
}

// scanEach runs a query and calls fn for each row.
func scanEach(ctx context.Context, tx *store.Tx, query string, fn func(*sql.Rows) error) error {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return fmt.Errorf("access: review: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("access: review: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("access: review: %w", err)
	}
	return nil
}

package access

import "context"

// Source adapts a Service to the permission lookups the identity service
// makes (identity.PermissionSource), in plain strings.
type Source struct{ S *Service }

// UserPermissionList returns the permissions a user holds, sorted.
func (p Source) UserPermissionList(ctx context.Context, tenantID, userID string) ([]string, error) {
	set, err := p.S.UserPermissions(ctx, tenantID, userID)
	return names(set), err
}

// ClientPermissionList returns the permissions an API client holds, sorted.
func (p Source) ClientPermissionList(ctx context.Context, tenantID, clientID string) ([]string, error) {
	set, err := p.S.ClientPermissions(ctx, tenantID, clientID)
	return names(set), err
}

// IsAdministrative reports whether a permission is administrative.
func (p Source) IsAdministrative(perm string) bool { return IsAdministrative(Permission(perm)) }

func names(s Set) []string {
	list := s.List()
	out := make([]string, len(list))
	for i, p := range list {
		out[i] = string(p)
	}
	return out
}

package app

import (
	"context"

	"github.com/relais-dev/relais/internal/access"
)

// permSource adapts the RBAC service to what identity needs.
type permSource struct{ a *access.Service }

func (p permSource) UserPermissionList(ctx context.Context, tenantID, userID string) ([]string, error) {
	set, err := p.a.UserPermissions(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	return permNames(set), nil
}

func (p permSource) ClientPermissionList(ctx context.Context, tenantID, clientID string) ([]string, error) {
	set, err := p.a.ClientPermissions(ctx, tenantID, clientID)
	if err != nil {
		return nil, err
	}
	return permNames(set), nil
}

func (p permSource) IsAdministrative(perm string) bool {
	return access.IsAdministrative(access.Permission(perm))
}

func permNames(s access.Set) []string {
	list := s.List()
	out := make([]string, len(list))
	for i, p := range list {
		out[i] = string(p)
	}
	return out
}

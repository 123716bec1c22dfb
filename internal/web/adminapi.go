package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The tenant administration API (ACC-1, ACC-4, ACC-5, AUTH-6): users, roles,
// groups, API clients, the access review and the permission catalogue.
//
// The tenant is always the caller's own (the principal's): ids are looked
// up inside that tenant only, so an id of another tenant's user, role,
// group, client or session is answered 404, exactly like an unknown one.
// Every mutation of roles, groups and grants goes through internal/access
// with an Actor built from the principal, so that the anti-escalation rule
// applies: nobody grants, revokes or redefines a permission they do not hold.
// The services write the audit events; this layer adds none.

// adminBodyLimit bounds the JSON bodies of this API.
const adminBodyLimit = 16 << 10

// Bounds on list inputs (hostile input stays small).
const (
	maxRolesPerRequest = 32
	maxAllowCIDRs      = 64
)

// adminRoutes are the tenant administration endpoints (users, roles,
// groups, API clients, access review).
func (s *Server) adminRoutes() []Route {
	usersRead := string(access.UsersRead)
	usersAdmin := string(access.UsersAdmin)
	rolesAdmin := string(access.RolesAdmin)
	clientsAdmin := string(access.ClientsAdmin)
	return []Route{
		{"GET /api/v1/users", usersRead, s.listUsers},
		{"POST /api/v1/users", usersAdmin, s.createUser},
		{"GET /api/v1/users/{id}", usersRead, s.getUser},
		{"POST /api/v1/users/{id}/disable", usersAdmin, s.setUserStatus(identity.StatusDisabled)},
		{"POST /api/v1/users/{id}/enable", usersAdmin, s.setUserStatus(identity.StatusActive)},
		{"POST /api/v1/users/{id}/unlock", usersAdmin, s.unlockUser},
		{"POST /api/v1/users/{id}/reset-totp", usersAdmin, s.resetUserTOTP},
		{"GET /api/v1/users/{id}/sessions", usersAdmin, s.listUserSessions},
		{"DELETE /api/v1/users/{id}/sessions/{sid}", usersAdmin, s.revokeUserSession},
		{"POST /api/v1/users/{id}/roles", rolesAdmin, s.grantUserRole},
		{"DELETE /api/v1/users/{id}/roles/{role}", rolesAdmin, s.revokeUserRole},

		{"GET /api/v1/roles", usersRead, s.listRoles},
		{"POST /api/v1/roles", rolesAdmin, s.createRole},
		{"GET /api/v1/roles/{ref}", usersRead, s.getRole},
		{"PUT /api/v1/roles/{ref}", rolesAdmin, s.updateRole},
		{"DELETE /api/v1/roles/{ref}", rolesAdmin, s.deleteRole},

		{"GET /api/v1/groups", usersRead, s.listGroups},
		{"POST /api/v1/groups", rolesAdmin, s.createGroup},
		{"GET /api/v1/groups/{ref}", usersRead, s.getGroup},
		{"DELETE /api/v1/groups/{ref}", rolesAdmin, s.deleteGroup},
		{"POST /api/v1/groups/{ref}/members/{user}", rolesAdmin, s.changeGroupMember(true)},
		{"DELETE /api/v1/groups/{ref}/members/{user}", rolesAdmin, s.changeGroupMember(false)},
		{"POST /api/v1/groups/{ref}/roles/{role}", rolesAdmin, s.changeGroupRole(true)},
		{"DELETE /api/v1/groups/{ref}/roles/{role}", rolesAdmin, s.changeGroupRole(false)},

		{"GET /api/v1/clients", clientsAdmin, s.listClients},
		{"POST /api/v1/clients", clientsAdmin, s.createClient},
		{"POST /api/v1/clients/{id}/disable", clientsAdmin, s.setClientStatus(identity.StatusDisabled)},
		{"POST /api/v1/clients/{id}/enable", clientsAdmin, s.setClientStatus(identity.StatusActive)},
		{"POST /api/v1/clients/{id}/roles", rolesAdmin, s.grantClientRole},
		{"DELETE /api/v1/clients/{id}/roles/{role}", rolesAdmin, s.revokeClientRole},

		{"GET /api/v1/access/review", usersRead, s.accessReview},
		{"GET /api/v1/permissions", PermAuthenticated, s.permissionCatalogue},
	}
}

// actorOfPrincipal is the access.Actor of the caller: the service checks
// its permissions again, intersected with what its roles grant now.
func actorOfPrincipal(p *identity.Principal) access.Actor {
	perms := make([]access.Permission, 0, len(p.Permissions))
	for perm, ok := range p.Permissions {
		if ok {
			perms = append(perms, access.Permission(perm))
		}
	}
	return access.Actor{UserID: p.UserID, ClientID: p.ClientID, Permissions: access.NewSet(perms...)}
}

// adminHeld is the caller's permissions as a set.
func adminHeld(p *identity.Principal) access.Set { return actorOfPrincipal(p).Permissions }

// adminError maps access and identity errors to problem documents; anything
// else is a server error.
func (s *Server) adminError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *access.ValidationError
	switch {
	case errors.As(err, &ve):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
	case errors.Is(err, access.ErrBuiltinRole): // before ErrForbidden, which it matches
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: "builtin_role", Title: "Built-in role",
			Detail: "Built-in roles cannot be modified or deleted; create a custom role instead."})
	case errors.Is(err, access.ErrForbidden):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Forbidden",
			Detail: adminForbiddenDetail(err)})
	case errors.Is(err, access.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
			Detail: adminSentence(adminCleanError(err, access.ErrNotFound)) + " in this tenant."})
	case errors.Is(err, access.ErrConflict):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict",
			Detail: adminSentence(adminCleanError(err, access.ErrConflict)) + "."})
	default:
		s.identityError(w, r, err)
	}
}

// adminCleanError returns the context the service put after a sentinel
// ("access: not found: no role \"x\"" -> "no role \"x\""), without the
// package prefix.
func adminCleanError(err, sentinel error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, sentinel.Error()+": "); ok {
		msg = after
	}
	return strings.ReplaceAll(msg, "access: ", "")
}

func adminSentence(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func adminForbiddenDetail(err error) string {
	msg := adminCleanError(err, access.ErrForbidden)
	if strings.Contains(msg, "do not hold") {
		return "You cannot grant, revoke or redefine a permission you do not hold: " + msg + "."
	}
	return adminSentence(msg) + "."
}

func adminForbidden(w http.ResponseWriter, r *http.Request, detail string) {
	problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Forbidden", Detail: detail})
}

func adminInvalid(w http.ResponseWriter, r *http.Request, field, msg string) {
	problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
		Detail: field + ": " + msg, Errors: []problem.FieldError{{Field: field, Message: msg}}})
}

func (s *Server) adminDecode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if p := problem.DecodeJSON(w, r, dst, min(s.maxBody, adminBodyLimit)); p != nil {
		problem.Write(w, r, *p)
		return false
	}
	return true
}

// --- who holds what -------------------------------------------------------

// adminGrantIndex lists, per user, the roles granted directly and the groups it
// belongs to, and per API client its roles (names, sorted).
type adminGrantIndex struct {
	userRoles, userGroups, clientRoles map[string][]string
}

// grants builds the grant index of a tenant from the access review and the
// group memberships. The review lists a role only when it grants at least
// one permission: an empty role confers nothing and is not shown.
func (s *Server) adminGrants(ctx context.Context, tenantID string) (adminGrantIndex, error) {
	gi := adminGrantIndex{userRoles: map[string][]string{}, userGroups: map[string][]string{}, clientRoles: map[string][]string{}}
	entries, err := s.opts.Access.Review(ctx, tenantID)
	if err != nil {
		return gi, err
	}
	for _, e := range entries {
		target := gi.userRoles
		if e.Kind == access.KindClient {
			target = gi.clientRoles
		}
		for _, pg := range e.Permissions {
			for _, path := range pg.Paths {
				if path.GroupID == "" {
					target[e.ID] = append(target[e.ID], path.RoleName)
				}
			}
		}
	}
	groups, err := s.opts.Access.ListGroups(ctx, tenantID)
	if err != nil {
		return gi, err
	}
	for _, g := range groups {
		if g.MemberCount == 0 {
			continue
		}
		members, err := s.opts.Access.GroupMembers(ctx, tenantID, g.ID)
		if err != nil {
			if errors.Is(err, access.ErrNotFound) { // deleted meanwhile
				continue
			}
			return gi, err
		}
		for _, m := range members {
			gi.userGroups[m] = append(gi.userGroups[m], g.Name)
		}
	}
	for _, m := range []map[string][]string{gi.userRoles, gi.userGroups, gi.clientRoles} {
		for k, v := range m {
			slices.Sort(v)
			m[k] = slices.Compact(v)
		}
	}
	return gi, nil
}

func adminOrEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// --- users ----------------------------------------------------------------

// adminUserView is a user as the administration API shows it.
type adminUserView struct {
	identity.User
	Roles  []string `json:"roles"`
	Groups []string `json:"groups"`
}

func (gi adminGrantIndex) user(u identity.User) adminUserView {
	return adminUserView{User: u, Roles: adminOrEmpty(gi.userRoles[u.ID]), Groups: adminOrEmpty(gi.userGroups[u.ID])}
}

func (s *Server) adminLoadUser(ctx context.Context, tenantID, userID string) (adminUserView, error) {
	u, err := s.opts.Identity.GetUser(ctx, tenantID, userID)
	if err != nil {
		return adminUserView{}, err
	}
	gi, err := s.adminGrants(ctx, tenantID)
	if err != nil {
		return adminUserView{}, err
	}
	return gi.user(u), nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	users, err := s.opts.Identity.ListUsers(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gi, err := s.adminGrants(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	out := make([]adminUserView, len(users))
	for i, u := range users {
		out[i] = gi.user(u)
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	v, err := s.adminLoadUser(r.Context(), p.TenantID, r.PathValue("id"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

type adminCreateUserRequest struct {
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	Password string   `json:"password"`
}

type adminCreatedUser struct {
	adminUserView
	// EnrolmentToken is the one-time secret with which the user sets a
	// first password (POST /api/v1/auth/enrol); shown only here.
	EnrolmentToken string `json:"enrolment_token,omitempty"`
}

// resolveRoles checks a list of role references (ids or names) for a grant
// by the caller, before anything is written: every role must exist, the
// caller needs roles:admin to grant any, and must hold every permission the
// roles give (anti-escalation; the service checks again when granting).
// It answers the problem itself and returns ok=false on failure.
func (s *Server) resolveRoles(w http.ResponseWriter, r *http.Request, p *identity.Principal, refs []string) ([]access.Role, access.Set, bool) {
	if len(refs) > maxRolesPerRequest {
		adminInvalid(w, r, "roles", fmt.Sprintf("at most %d roles", maxRolesPerRequest))
		return nil, access.Set{}, false
	}
	var roles []access.Role
	var unknown []string
	union := access.NewSet()
	seen := map[string]bool{}
	for _, ref := range refs {
		if strings.TrimSpace(ref) == "" || len(ref) > 200 {
			adminInvalid(w, r, "roles", "role names must be 1 to 200 characters")
			return nil, access.Set{}, false
		}
		role, err := s.opts.Access.GetRole(r.Context(), p.TenantID, ref)
		if errors.Is(err, access.ErrNotFound) {
			unknown = append(unknown, fmt.Sprintf("%q", ref))
			continue
		}
		if err != nil {
			s.serverError(w, r, err)
			return nil, access.Set{}, false
		}
		if seen[role.ID] {
			continue
		}
		seen[role.ID] = true
		roles = append(roles, role)
		union = union.Union(role.Set())
	}
	if len(unknown) > 0 {
		adminInvalid(w, r, "roles", "unknown role "+strings.Join(unknown, ", ")+"; see GET /api/v1/roles")
		return nil, access.Set{}, false
	}
	if len(roles) > 0 {
		held := adminHeld(p)
		if !held.Has(access.RolesAdmin) {
			adminForbidden(w, r, "Assigning roles needs the roles:admin permission; create without roles, and ask a role administrator.")
			return nil, access.Set{}, false
		}
		if missing := held.Missing(union); len(missing) > 0 {
			names := make([]string, len(missing))
			for i, m := range missing {
				names[i] = string(m)
			}
			adminForbidden(w, r, "You cannot grant a permission you do not hold: the roles give "+strings.Join(names, ", ")+".")
			return nil, access.Set{}, false
		}
	}
	return roles, union, true
}

// createUser creates a user with its roles. Everything that can be checked
// is checked before the user is written (email, roles, the caller's right
// to grant them, and the password against the policy that the roles make
// apply), so a refused request creates nothing.
func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminCreateUserRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	if _, err := identity.NormaliseEmail(req.Email); err != nil {
		s.identityError(w, r, err)
		return
	}
	roles, perms, ok := s.resolveRoles(w, r, p, req.Roles)
	if !ok {
		return
	}
	u, enrol, err := s.opts.Identity.CreateUser(r.Context(), p.TenantID, identity.NewUser{Email: req.Email, Name: req.Name,
		Password: req.Password, Privileged: perms.HasAdministrative()})
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	actor := actorOfPrincipal(p)
	for _, role := range roles {
		if err := s.opts.Access.GrantUserRole(r.Context(), p.TenantID, actor, u.ID, role.ID); err != nil {
			// Only a concurrent change (the role deleted, the caller's
			// rights revoked) gets here. identity has no user deletion:
			// disable the user so that no half-made account is usable.
			if derr := s.opts.Identity.SetUserStatus(r.Context(), p.TenantID, u.ID, identity.StatusDisabled); derr != nil {
				s.log.ErrorContext(r.Context(), "could not disable a user whose role grant failed", "user", u.ID, "error", derr)
			}
			s.adminError(w, r, err)
			return
		}
	}
	v, err := s.adminLoadUser(r.Context(), p.TenantID, u.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, adminCreatedUser{adminUserView: v, EnrolmentToken: enrol})
}

// requireUserID answers 404 unless the user exists in the caller's tenant.
func (s *Server) requireUserID(w http.ResponseWriter, r *http.Request, tenantID, userID string) bool {
	if _, err := s.opts.Identity.GetUser(r.Context(), tenantID, userID); err != nil {
		s.adminError(w, r, err)
		return false
	}
	return true
}

// respondUser answers 200 with the user's current view.
func (s *Server) respondUser(w http.ResponseWriter, r *http.Request, tenantID, userID string) {
	v, err := s.adminLoadUser(r.Context(), tenantID, userID)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// setUserStatus disables or enables a user. Disabling revokes the user's
// sessions and tokens at once (ACC-5, done by identity). Administrators
// cannot disable themselves (the tenant would risk losing its last one).
func (s *Server) setUserStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		id := r.PathValue("id")
		if status == identity.StatusDisabled && id == p.UserID {
			problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict",
				Detail: "You cannot disable your own account; ask another administrator."})
			return
		}
		if err := s.opts.Identity.SetUserStatus(r.Context(), p.TenantID, id, status); err != nil {
			s.adminError(w, r, err)
			return
		}
		s.respondUser(w, r, p.TenantID, id)
	}
}

func (s *Server) unlockUser(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if err := s.opts.Identity.Unlock(r.Context(), p.TenantID, id); err != nil {
		s.adminError(w, r, err)
		return
	}
	s.respondUser(w, r, p.TenantID, id)
}

func (s *Server) resetUserTOTP(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	// ResetTOTP does not report an unknown user: check first, so that an
	// id from elsewhere is a 404 and leaves no audit event.
	if !s.requireUserID(w, r, p.TenantID, id) {
		return
	}
	if err := s.opts.Identity.ResetTOTP(r.Context(), p.TenantID, id); err != nil {
		s.adminError(w, r, err)
		return
	}
	s.respondUser(w, r, p.TenantID, id)
}

func (s *Server) listUserSessions(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if !s.requireUserID(w, r, p.TenantID, id) {
		return
	}
	list, err := s.opts.Identity.ListSessions(r.Context(), p.TenantID, id, p.SessionHash)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if list == nil {
		list = []identity.Session{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

// revokeUserSession revokes one session of the user named in the path (a
// session of anyone else is not found).
func (s *Server) revokeUserSession(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.opts.Identity.RevokeSession(r.Context(), p.TenantID, r.PathValue("sid"), r.PathValue("id")); err != nil {
		s.adminError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type adminRoleGrantRequest struct {
	Role string `json:"role"`
}

func (s *Server) grantUserRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminRoleGrantRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	if req.Role == "" {
		adminInvalid(w, r, "role", "is required: a role id or name")
		return
	}
	if err := s.opts.Access.GrantUserRole(r.Context(), p.TenantID, actorOfPrincipal(p), r.PathValue("id"), req.Role); err != nil {
		s.adminError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) revokeUserRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.opts.Access.RevokeUserRole(r.Context(), p.TenantID, actorOfPrincipal(p), r.PathValue("id"), r.PathValue("role")); err != nil {
		s.adminError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- roles ----------------------------------------------------------------

type adminRoleRequest struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Permissions []access.Permission `json:"permissions"`
}

func (s *Server) listRoles(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	roles, err := s.opts.Access.ListRoles(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if roles == nil {
		roles = []access.Role{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": roles})
}

func (s *Server) getRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	role, err := s.opts.Access.GetRole(r.Context(), p.TenantID, r.PathValue("ref"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, role)
}

func (s *Server) createRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminRoleRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	role, err := s.opts.Access.CreateRole(r.Context(), p.TenantID, actorOfPrincipal(p), req.Name, req.Description, req.Permissions)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/roles/"+role.ID)
	writeJSON(w, http.StatusCreated, role)
}

// updateRole replaces a custom role's name, description and permissions.
// The API clients holding the role get their outstanding tokens revoked:
// a token carries the permissions of the moment it was issued.
func (s *Server) updateRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminRoleRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	old, err := s.opts.Access.GetRole(r.Context(), p.TenantID, r.PathValue("ref"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	role, err := s.opts.Access.UpdateRole(r.Context(), p.TenantID, actorOfPrincipal(p), old.ID, req.Name, req.Description, req.Permissions)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	if err := s.bumpRoleHolders(r.Context(), p.TenantID, old.ID); err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, role)
}

func (s *Server) deleteRole(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	role, err := s.opts.Access.GetRole(r.Context(), p.TenantID, r.PathValue("ref"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	holders, err := s.clientsHolding(r.Context(), p.TenantID, role.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if err := s.opts.Access.DeleteRole(r.Context(), p.TenantID, actorOfPrincipal(p), role.ID); err != nil {
		s.adminError(w, r, err)
		return
	}
	if err := s.bumpClients(r.Context(), p.TenantID, holders); err != nil {
		s.serverError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clientsHolding lists the API clients that hold a role (through which
// they hold at least one permission).
func (s *Server) clientsHolding(ctx context.Context, tenantID, roleID string) ([]string, error) {
	entries, err := s.opts.Access.Review(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Kind != access.KindClient {
			continue
		}
	perms:
		for _, pg := range e.Permissions {
			for _, path := range pg.Paths {
				if path.RoleID == roleID {
					out = append(out, e.ID)
					break perms
				}
			}
		}
	}
	return out, nil
}

func (s *Server) bumpRoleHolders(ctx context.Context, tenantID, roleID string) error {
	ids, err := s.clientsHolding(ctx, tenantID, roleID)
	if err != nil {
		return err
	}
	return s.bumpClients(ctx, tenantID, ids)
}

// bumpClients revokes the outstanding tokens of API clients whose
// permissions changed, and forgets this node's cached state of them.
func (s *Server) bumpClients(ctx context.Context, tenantID string, ids []string) error {
	for _, id := range ids {
		if err := s.opts.Identity.BumpClientVersion(ctx, tenantID, id); err != nil {
			return err
		}
		s.caches.clients.forget(clientKey{tenantID, id})
	}
	return nil
}

// --- groups ---------------------------------------------------------------

type adminGroupRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type adminGroupMember struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

type adminGroupView struct {
	access.Group
	Members []adminGroupMember `json:"members"`
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	groups, err := s.opts.Access.ListGroups(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if groups == nil {
		groups = []access.Group{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": groups})
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	g, err := s.opts.Access.GetGroup(r.Context(), p.TenantID, r.PathValue("ref"))
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	ids, err := s.opts.Access.GroupMembers(r.Context(), p.TenantID, g.ID)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	v := adminGroupView{Group: g, Members: []adminGroupMember{}}
	if len(ids) > 0 {
		users, err := s.opts.Identity.ListUsers(r.Context(), p.TenantID)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		byID := make(map[string]identity.User, len(users))
		for _, u := range users {
			byID[u.ID] = u
		}
		for _, id := range ids {
			u := byID[id]
			v.Members = append(v.Members, adminGroupMember{ID: id, Email: u.Email, Name: u.Name})
		}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminGroupRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	g, err := s.opts.Access.CreateGroup(r.Context(), p.TenantID, actorOfPrincipal(p), req.Name, req.Description)
	if err != nil {
		s.adminError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/groups/"+g.ID)
	writeJSON(w, http.StatusCreated, g)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.opts.Access.DeleteGroup(r.Context(), p.TenantID, actorOfPrincipal(p), r.PathValue("ref")); err != nil {
		s.adminError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) changeGroupMember(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		change := s.opts.Access.RemoveMember
		if add {
			change = s.opts.Access.AddMember
		}
		if err := change(r.Context(), p.TenantID, actorOfPrincipal(p), r.PathValue("ref"), r.PathValue("user")); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) changeGroupRole(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		change := s.opts.Access.RemoveGroupRole
		if add {
			change = s.opts.Access.AddGroupRole
		}
		if err := change(r.Context(), p.TenantID, actorOfPrincipal(p), r.PathValue("ref"), r.PathValue("role")); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// --- API clients ----------------------------------------------------------

type adminClientView struct {
	identity.APIClient
	Roles []string `json:"roles"`
}

type adminCreatedClient struct {
	adminClientView
	// ClientSecret is shown only in this response; only its hash is kept.
	ClientSecret string `json:"client_secret"`
}

type adminCreateClientRequest struct {
	Name       string   `json:"name"`
	Roles      []string `json:"roles"`
	AllowCIDRs []string `json:"allow_cidrs"`
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	list, err := s.opts.Identity.ListClients(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gi, err := s.adminGrants(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	out := make([]adminClientView, len(list))
	for i, c := range list {
		out[i] = adminClientView{APIClient: c, Roles: adminOrEmpty(gi.clientRoles[c.ID])}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// adminLoadClient returns one client of the tenant with its roles.
func (s *Server) adminLoadClient(ctx context.Context, tenantID, clientID string) (adminClientView, error) {
	list, err := s.opts.Identity.ListClients(ctx, tenantID)
	if err != nil {
		return adminClientView{}, err
	}
	for _, c := range list {
		if c.ID == clientID {
			gi, err := s.adminGrants(ctx, tenantID)
			if err != nil {
				return adminClientView{}, err
			}
			return adminClientView{APIClient: c, Roles: adminOrEmpty(gi.clientRoles[c.ID])}, nil
		}
	}
	return adminClientView{}, fmt.Errorf("%w: client", identity.ErrNotFound)
}

// createClient creates an API client with its roles; as for users, every
// check comes before the client is written.
func (s *Server) createClient(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	var req adminCreateClientRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	if len(req.AllowCIDRs) > maxAllowCIDRs {
		adminInvalid(w, r, "allow_cidrs", fmt.Sprintf("at most %d prefixes", maxAllowCIDRs))
		return
	}
	roles, _, ok := s.resolveRoles(w, r, p, req.Roles)
	if !ok {
		return
	}
	cl, secret, err := s.opts.Identity.CreateClient(r.Context(), p.TenantID, req.Name, req.AllowCIDRs)
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	actor := actorOfPrincipal(p)
	for _, role := range roles {
		if err := s.opts.Access.GrantClientRole(r.Context(), p.TenantID, actor, cl.ID, role.ID); err != nil {
			// A concurrent change only; identity has no client deletion:
			// disable the client so that its secret is worthless.
			if derr := s.opts.Identity.SetClientStatus(r.Context(), p.TenantID, cl.ID, identity.StatusDisabled); derr != nil {
				s.log.ErrorContext(r.Context(), "could not disable a client whose role grant failed", "client", cl.ID, "error", derr)
			}
			s.caches.clients.forget(clientKey{p.TenantID, cl.ID})
			s.adminError(w, r, err)
			return
		}
	}
	v, err := s.adminLoadClient(r.Context(), p.TenantID, cl.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, adminCreatedClient{adminClientView: v, ClientSecret: secret})
}

// setClientStatus disables or enables a client. identity bumps the token
// version in the same transaction, so a disabled client's tokens stop
// working at once; this node's cache forgets the client.
func (s *Server) setClientStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		id := r.PathValue("id")
		if err := s.opts.Identity.SetClientStatus(r.Context(), p.TenantID, id, status); err != nil {
			s.adminError(w, r, err)
			return
		}
		s.caches.clients.forget(clientKey{p.TenantID, id})
		v, err := s.adminLoadClient(r.Context(), p.TenantID, id)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// changeClientRole grants or revokes a client's role, then revokes the
// client's outstanding tokens (they carry the permissions of the moment
// they were issued).
func (s *Server) changeClientRole(w http.ResponseWriter, r *http.Request, role string, grant bool) {
	p := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	change := s.opts.Access.RevokeClientRole
	if grant {
		change = s.opts.Access.GrantClientRole
	}
	if err := change(r.Context(), p.TenantID, actorOfPrincipal(p), id, role); err != nil {
		s.adminError(w, r, err)
		return
	}
	if err := s.bumpClients(r.Context(), p.TenantID, []string{id}); err != nil {
		s.serverError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) grantClientRole(w http.ResponseWriter, r *http.Request) {
	var req adminRoleGrantRequest
	if !s.adminDecode(w, r, &req) {
		return
	}
	if req.Role == "" {
		adminInvalid(w, r, "role", "is required: a role id or name")
		return
	}
	s.changeClientRole(w, r, req.Role, true)
}

func (s *Server) revokeClientRole(w http.ResponseWriter, r *http.Request) {
	s.changeClientRole(w, r, r.PathValue("role"), false)
}

// --- access review and catalogue ------------------------------------------

// adminReviewEntry is an access review entry with the user's decrypted name and
// email (the review itself gives ids only).
type adminReviewEntry struct {
	access.ReviewEntry
	Email string `json:"email,omitempty"`
}

// accessReview is ACC-4's report: every user and client, what it holds and
// by which path.
func (s *Server) accessReview(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	entries, err := s.opts.Access.Review(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	users, err := s.opts.Identity.ListUsers(r.Context(), p.TenantID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	byID := make(map[string]identity.User, len(users))
	for _, u := range users {
		byID[u.ID] = u
	}
	out := make([]adminReviewEntry, len(entries))
	for i, e := range entries {
		out[i] = adminReviewEntry{ReviewEntry: e}
		if e.Kind == access.KindUser {
			if u, ok := byID[e.ID]; ok {
				out[i].Name, out[i].Email = u.Name, u.Email
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"generated_at": s.now().UTC(), "entries": out})
}

func (s *Server) permissionCatalogue(w http.ResponseWriter, r *http.Request) {
	// The catalogue is fixed at build time: encode it once.
	s.catalogueOnce.Do(func() {
		s.catalogueJSON, _ = json.Marshal(map[string]any{"permissions": access.Catalogue()})
		s.catalogueJSON = append(s.catalogueJSON, '\n')
	})
	writeJSONBytes(w, http.StatusOK, s.catalogueJSON)
}

package web

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// The administration and audit pages: users, groups, roles, the access
// review, the security policy, connectors, API clients, and the audit
// trail (search, verification, export). Every change goes through the
// same services as the API, with the signed-in user as the actor, so the
// services' own checks (no privilege escalation, built-in roles) apply.

func (s *Server) uiAdminRoutes() []Route {
	ur, ua, ra := string(access.UsersRead), string(access.UsersAdmin), string(access.RolesAdmin)
	sr, sa, ca := string(access.SettingsRead), string(access.SettingsAdmin), string(access.ClientsAdmin)
	var rs []Route
	if s.opts.Access != nil {
		rs = append(rs,
			Route{"GET /admin/users", ur, s.usersPage},
			Route{"POST /admin/users", ua, s.userCreate},
			Route{"POST /admin/users/invite", ua, s.usersInvite},
			Route{"GET /admin/users/{id}", ur, s.userPage},
			Route{"POST /admin/users/{id}/{action}", ua, s.userAction},
			Route{"POST /admin/users/{id}/roles", ra, s.userRole},
			Route{"GET /admin/groups", ur, s.groupsPage},
			Route{"POST /admin/groups", ra, s.groupCreate},
			Route{"POST /admin/groups/{id}", ra, s.groupChange},
			Route{"GET /admin/roles", ur, s.rolesPage},
			Route{"POST /admin/roles", ra, s.roleCreate},
			Route{"POST /admin/roles/{id}/delete", ra, s.roleDelete},
			Route{"GET /admin/access-review", ur, s.reviewPage},
			Route{"GET /admin/access-review.csv", ur, s.reviewCSV},
			Route{"GET /admin/clients", ca, s.clientsPage},
			Route{"POST /admin/clients", ca, s.clientCreate},
			Route{"POST /admin/clients/{id}/{action}", ca, s.clientAction},
		)
	}
	rs = append(rs, Route{"GET /admin/security", sr, s.securityPage}, Route{"POST /admin/security", sa, s.securitySave})
	if s.opts.Connectors != nil {
		rs = append(rs, Route{"GET /admin/connectors", sr, s.connectorsPage}, Route{"POST /admin/connectors", sa, s.connectorCreate})
	}
	if s.opts.DB != nil && s.opts.Tenants != nil {
		rs = append(rs, Route{"GET /audit", string(access.AuditRead), s.auditPage}, Route{"POST /audit/verify", string(access.AuditRead), s.auditVerifyPage})
	}
	return rs
}

func adminUIError(err error) (int, string, bool) {
	switch {
	case errors.Is(err, access.ErrBuiltinRole):
		return http.StatusConflict, "Built-in roles cannot be changed; create a custom role instead.", true
	case errors.Is(err, access.ErrForbidden):
		return http.StatusForbidden, adminForbiddenDetail(err), true
	case errors.Is(err, access.ErrConflict), errors.Is(err, identity.ErrConflict):
		return http.StatusConflict, "That name or address is already in use.", true
	}
	var ve *identity.ValidationError
	if errors.As(err, &ve) {
		return http.StatusUnprocessableEntity, ve.Error(), true
	}
	return uiErrorMessage(err)
}

// failAdmin is failPage with the access errors.
func (s *Server) failAdmin(w http.ResponseWriter, r *http.Request, err error, again func(int, string)) {
	st, msg, ok := adminUIError(err)
	if !ok {
		s.serverError(w, r, err)
		return
	}
	if again == nil {
		s.errorPage(w, r, st, "Not possible", msg)
		return
	}
	again(st, msg)
}

func uiActor(r *http.Request) access.Actor { return actorOfPrincipal(PrincipalFrom(r.Context())) }

// ---- users ----

type usersData struct {
	flashData
	Users     []adminUserView
	Roles     []access.Role
	EnrolLink string
	Form      map[string]string
	// The list of people to invite, its refused lines, and who it
	// invited (with their one-time links).
	InviteText     string
	InviteProblems []inviteProblem
	Invited        []invited
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request) {
	s.showUsers(w, r, http.StatusOK, usersData{})
}

func (s *Server) showUsers(w http.ResponseWriter, r *http.Request, status int, d usersData) {
	ctx, tid := r.Context(), tenantOf(r)
	users, err := s.opts.Identity.ListUsers(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gi, err := s.adminGrants(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, u := range users {
		d.Users = append(d.Users, gi.user(u))
	}
	if d.Roles, err = s.opts.Access.ListRoles(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "users", "Users", "users", d)
}

func (s *Server) userCreate(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	form := map[string]string{"email": strings.TrimSpace(r.PostFormValue("email")), "name": strings.TrimSpace(r.PostFormValue("name")), "role": r.PostFormValue("role")}
	again := func(st int, msg string) { s.showUsers(w, r, st, usersData{flashData: flashData{Err: msg}, Form: form}) }
	privileged := false
	if form["role"] != "" {
		role, err := s.opts.Access.GetRole(ctx, tid, form["role"])
		if err != nil {
			s.failAdmin(w, r, err, again)
			return
		}
		privileged = role.Set().HasAdministrative()
		// The grant must be possible before the user exists.
		if !PrincipalFrom(ctx).Has(string(access.RolesAdmin)) {
			again(http.StatusForbidden, "Granting a role needs the roles:admin permission; create the user without one.")
			return
		}
	}
	u, enrol, err := s.opts.Identity.CreateUser(ctx, tid, identity.NewUser{Email: form["email"], Name: form["name"], Privileged: privileged})
	if err != nil {
		s.failAdmin(w, r, err, again)
		return
	}
	if form["role"] != "" {
		if err := s.opts.Access.GrantUserRole(ctx, tid, uiActor(r), u.ID, form["role"]); err != nil {
			_ = s.opts.Identity.SetUserStatus(ctx, tid, u.ID, identity.StatusDisabled) // no half-made account
			s.failAdmin(w, r, err, again)
			return
		}
	}
	d := usersData{flashData: flashData{Msg: "The user is created. Send them this one-time link to choose their password (it is not shown again)."}}
	d.EnrolLink = "/enrol?token=" + url.QueryEscape(enrol)
	s.showUsers(w, r, http.StatusOK, d)
}

type userData struct {
	flashData
	U        adminUserView
	Sessions []identity.Session
	Roles    []access.Role
}

func (s *Server) userPage(w http.ResponseWriter, r *http.Request) {
	s.showUser(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"done": "Done."})})
}

func (s *Server) showUser(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	ctx, tid := r.Context(), tenantOf(r)
	v, err := s.adminLoadUser(ctx, tid, r.PathValue("id"))
	if err != nil {
		s.failAdmin(w, r, err, nil)
		return
	}
	d := userData{flashData: fl, U: v}
	if PrincipalFrom(ctx).Has(string(access.UsersAdmin)) {
		if d.Sessions, err = s.opts.Identity.ListSessions(ctx, tid, v.ID, nil); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if d.Roles, err = s.opts.Access.ListRoles(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "user", v.Name, "users", d)
}

func (s *Server) userAction(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	if _, err := s.opts.Identity.GetUser(ctx, tid, id); err != nil {
		s.failAdmin(w, r, err, nil)
		return
	}
	var err error
	switch r.PathValue("action") {
	case "disable":
		if id == PrincipalFrom(ctx).UserID {
			s.showUser(w, r, http.StatusConflict, flashData{Err: "You cannot disable yourself."})
			return
		}
		err = s.opts.Identity.SetUserStatus(ctx, tid, id, identity.StatusDisabled)
	case "enable":
		err = s.opts.Identity.SetUserStatus(ctx, tid, id, identity.StatusActive)
	case "unlock":
		err = s.opts.Identity.Unlock(ctx, tid, id)
	case "reset-totp":
		err = s.opts.Identity.ResetTOTP(ctx, tid, id)
	case "revoke-session":
		err = s.opts.Identity.RevokeSession(ctx, tid, r.PostFormValue("session"), id)
	default:
		s.errorPage(w, r, http.StatusNotFound, "Not found", "No such action.")
		return
	}
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showUser(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/users/"+url.PathEscape(id)+"?done=done", http.StatusSeeOther)
}

func (s *Server) userRole(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	role := r.PostFormValue("role")
	var err error
	if r.PostFormValue("op") == "revoke" {
		err = s.opts.Access.RevokeUserRole(ctx, tid, uiActor(r), id, role)
	} else {
		err = s.opts.Access.GrantUserRole(ctx, tid, uiActor(r), id, role)
	}
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showUser(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/users/"+url.PathEscape(id)+"?done=done", http.StatusSeeOther)
}

// ---- groups ----

type groupView struct {
	access.Group
	Members []adminUserView
}

type groupsData struct {
	flashData
	Groups []groupView
	Roles  []access.Role
	Users  []identity.User
}

func (s *Server) groupsPage(w http.ResponseWriter, r *http.Request) {
	s.showGroups(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"done": "Saved."})})
}

func (s *Server) showGroups(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	ctx, tid := r.Context(), tenantOf(r)
	groups, err := s.opts.Access.ListGroups(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := groupsData{flashData: fl}
	if d.Users, err = s.opts.Identity.ListUsers(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	byID := map[string]identity.User{}
	for _, u := range d.Users {
		byID[u.ID] = u
	}
	for _, g := range groups {
		gv := groupView{Group: g}
		ids, err := s.opts.Access.GroupMembers(ctx, tid, g.ID)
		if err != nil && !errors.Is(err, access.ErrNotFound) {
			s.serverError(w, r, err)
			return
		}
		for _, id := range ids {
			gv.Members = append(gv.Members, adminUserView{User: byID[id]})
		}
		d.Groups = append(d.Groups, gv)
	}
	if d.Roles, err = s.opts.Access.ListRoles(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "groups", "Groups", "groups", d)
}

func (s *Server) groupCreate(w http.ResponseWriter, r *http.Request) {
	_, err := s.opts.Access.CreateGroup(r.Context(), tenantOf(r), uiActor(r), strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("description")))
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showGroups(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/groups?done=done", http.StatusSeeOther)
}

func (s *Server) groupChange(w http.ResponseWriter, r *http.Request) {
	ctx, tid, g, a := r.Context(), tenantOf(r), r.PathValue("id"), uiActor(r)
	var err error
	switch r.PostFormValue("op") {
	case "add-member":
		err = s.opts.Access.AddMember(ctx, tid, a, g, r.PostFormValue("user"))
	case "remove-member":
		err = s.opts.Access.RemoveMember(ctx, tid, a, g, r.PostFormValue("user"))
	case "add-role":
		err = s.opts.Access.AddGroupRole(ctx, tid, a, g, r.PostFormValue("role"))
	case "remove-role":
		err = s.opts.Access.RemoveGroupRole(ctx, tid, a, g, r.PostFormValue("role"))
	case "delete":
		err = s.opts.Access.DeleteGroup(ctx, tid, a, g)
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Bad request", "No such change.")
		return
	}
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showGroups(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/groups?done=done", http.StatusSeeOther)
}

// ---- roles ----

type rolesData struct {
	flashData
	Roles     []access.Role
	Catalogue []access.PermissionInfo
}

func (s *Server) rolesPage(w http.ResponseWriter, r *http.Request) {
	s.showRoles(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"done": "The role is created.", "deleted": "The role is deleted."})})
}

func (s *Server) showRoles(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	roles, err := s.opts.Access.ListRoles(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "roles", "Roles and permissions", "roles", rolesData{flashData: fl, Roles: roles, Catalogue: access.Catalogue()})
}

func (s *Server) roleCreate(w http.ResponseWriter, r *http.Request) {
	var perms []access.Permission
	for _, p := range r.PostForm["perm"] {
		perms = append(perms, access.Permission(p))
	}
	_, err := s.opts.Access.CreateRole(r.Context(), tenantOf(r), uiActor(r), strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("description")), perms)
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showRoles(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/roles?done=done", http.StatusSeeOther)
}

func (s *Server) roleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Access.DeleteRole(r.Context(), tenantOf(r), uiActor(r), r.PathValue("id")); err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { s.showRoles(w, r, st, flashData{Err: msg}) })
		return
	}
	http.Redirect(w, r, "/admin/roles?done=deleted", http.StatusSeeOther)
}

// ---- access review ----

type reviewRow struct {
	access.ReviewEntry
	Label string
	// Grants are the permissions by the path that grants them (a role, or
	// a group's role), for a compact table.
	Grants []reviewGrant
}

type reviewGrant struct {
	Path  string
	Perms []string
}

func (s *Server) reviewPage(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	entries, err := s.opts.Access.Review(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	users, err := s.opts.Identity.ListUsers(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	names := map[string]string{}
	for _, u := range users {
		names[u.ID] = u.Name + " <" + u.Email + ">"
	}
	d := struct {
		Rows      []reviewRow
		Generated time.Time
	}{Generated: s.now()}
	for _, e := range entries {
		l := e.Name
		if e.Kind == access.KindUser {
			l = names[e.ID]
		}
		row := reviewRow{ReviewEntry: e, Label: l}
		idx := map[string]int{}
		for _, pg := range e.Permissions {
			for _, path := range pg.Paths {
				k := path.String()
				i, ok := idx[k]
				if !ok {
					i = len(row.Grants)
					idx[k] = i
					row.Grants = append(row.Grants, reviewGrant{Path: k})
				}
				row.Grants[i].Perms = append(row.Grants[i].Perms, string(pg.Permission))
			}
		}
		d.Rows = append(d.Rows, row)
	}
	s.page(w, r, http.StatusOK, "review", "Access review", "review", d)
}

// reviewCSV downloads the access review (ACC-4): one line per permission
// held, with the paths that grant it.
func (s *Server) reviewCSV(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	entries, err := s.opts.Access.Review(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	users, err := s.opts.Identity.ListUsers(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	emails := map[string]string{}
	for _, u := range users {
		emails[u.ID] = u.Email
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="access-review-`+s.now().UTC().Format("2006-01-02")+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"kind", "id", "name_or_email", "status", "second_factor", "permission", "administrative", "granted_by"})
	for _, e := range entries {
		who := e.Name
		if e.Kind == access.KindUser {
			who = emails[e.ID]
		}
		for _, pg := range e.Permissions {
			paths := make([]string, len(pg.Paths))
			for i, p := range pg.Paths {
				paths[i] = p.String()
			}
			_ = cw.Write([]string{e.Kind, e.ID, csvSafe(who), e.Status, strconv.FormatBool(e.TOTPEnabled), string(pg.Permission),
				strconv.FormatBool(pg.Administrative), csvSafe(strings.Join(paths, "; "))})
		}
	}
	cw.Flush()
}

// ---- API clients ----

type clientView struct {
	identity.APIClient
	Roles []string
}

type clientsData struct {
	flashData
	Clients []clientView
	Roles   []access.Role
	Secret  string
	NewID   string
}

func (s *Server) clientsPage(w http.ResponseWriter, r *http.Request) {
	s.showClients(w, r, http.StatusOK, clientsData{flashData: flashData{Msg: notice(r, map[string]string{"done": "Done."})}})
}

func (s *Server) showClients(w http.ResponseWriter, r *http.Request, status int, d clientsData) {
	ctx, tid := r.Context(), tenantOf(r)
	list, err := s.opts.Identity.ListClients(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	gi, err := s.adminGrants(ctx, tid)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, c := range list {
		d.Clients = append(d.Clients, clientView{c, gi.clientRoles[c.ID]})
	}
	if d.Roles, err = s.opts.Access.ListRoles(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.page(w, r, status, "clients", "API clients", "clients", d)
}

func (s *Server) clientCreate(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	again := func(st int, msg string) { s.showClients(w, r, st, clientsData{flashData: flashData{Err: msg}}) }
	var allow []string
	for _, f := range strings.FieldsFunc(r.PostFormValue("allow"), func(c rune) bool { return c == ',' || c == '\n' || c == ' ' || c == '\r' }) {
		allow = append(allow, f)
	}
	role := r.PostFormValue("role")
	if role != "" && !PrincipalFrom(ctx).Has(string(access.RolesAdmin)) {
		again(http.StatusForbidden, "Granting a role needs the roles:admin permission.")
		return
	}
	c, secret, err := s.opts.Identity.CreateClient(ctx, tid, strings.TrimSpace(r.PostFormValue("name")), allow)
	if err != nil {
		s.failAdmin(w, r, err, again)
		return
	}
	if role != "" {
		if err := s.opts.Access.GrantClientRole(ctx, tid, uiActor(r), c.ID, role); err != nil {
			_ = s.opts.Identity.SetClientStatus(ctx, tid, c.ID, identity.StatusDisabled)
			s.failAdmin(w, r, err, again)
			return
		}
	}
	s.showClients(w, r, http.StatusOK, clientsData{flashData: flashData{Msg: "The client is created. Copy its secret now: it is not shown again."}, Secret: secret, NewID: c.ID})
}

func (s *Server) clientAction(w http.ResponseWriter, r *http.Request) {
	ctx, tid, id := r.Context(), tenantOf(r), r.PathValue("id")
	var err error
	switch r.PathValue("action") {
	case "disable":
		err = s.opts.Identity.SetClientStatus(ctx, tid, id, identity.StatusDisabled)
	case "enable":
		err = s.opts.Identity.SetClientStatus(ctx, tid, id, identity.StatusActive)
	default:
		s.errorPage(w, r, http.StatusNotFound, "Not found", "No such action.")
		return
	}
	if err != nil {
		s.failAdmin(w, r, err, nil)
		return
	}
	s.caches.clients.forget(clientKey{tid, id})
	http.Redirect(w, r, "/admin/clients?done=done", http.StatusSeeOther)
}

// ---- security policy ----

type securityData struct {
	flashData
	P                   config.Policy
	Idle, Life, Lock    string
	Window, MaxLock     string
	AuditRet, AccessRet string
	UIAllow, APIAllow   string
}

func (s *Server) securityPage(w http.ResponseWriter, r *http.Request) {
	s.showSecurity(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"done": "The policy is saved; it applies from the next sign-in or request."})})
}

func (s *Server) showSecurity(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	pol, err := s.opts.Tenants.Policy(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := securityData{flashData: fl, P: pol, Idle: pol.Session.IdleTimeout.String(), Life: pol.Session.AbsoluteLifetime.String(), Lock: pol.Lockout.LockDuration.String(),
		Window: pol.Lockout.Window.String(), MaxLock: pol.Lockout.MaxLockDuration.String(),
		AuditRet: pol.Audit.Retention.String(), AccessRet: pol.Audit.AccessRetention.String(),
		UIAllow: strings.Join(pol.Network.UIAllow, ", "), APIAllow: strings.Join(pol.Network.APIAllow, ", ")}
	s.page(w, r, status, "security", "Security policy", "security", d)
}

// securitySave changes the policy fields of the form, keeping the
// tenant's other overrides; tenants.SetPolicy validates the merged policy
// against the platform's floors and records the change.
func (s *Server) securitySave(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	again := func(st int, msg string) { s.showSecurity(w, r, st, flashData{Err: msg}) }
	var raw string
	err := s.opts.DB.Tenant(tid).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT policy FROM tenant_settings WHERE tenant_id = $1`).Scan(&raw)
	})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	over := map[string]map[string]any{}
	if strings.TrimSpace(raw) != "" {
		if err := json.Unmarshal([]byte(raw), &over); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	set := func(section, key string, v any) {
		if over[section] == nil {
			over[section] = map[string]any{}
		}
		over[section][key] = v
	}
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	ints := []struct{ field, section, key, label string }{
		{"min_length", "password", "min_length", "The minimum password length"},
		{"max_failures", "lockout", "max_failures", "The failures before a lock"},
	}
	for _, x := range ints {
		n, err := strconv.Atoi(f(x.field))
		if err != nil || n < 1 {
			again(http.StatusUnprocessableEntity, x.label+" must be a positive whole number.")
			return
		}
		set(x.section, x.key, n)
	}
	for _, x := range []struct{ field, key, label string }{{"idle_timeout", "idle_timeout", "The idle timeout"}, {"absolute_lifetime", "absolute_lifetime", "The session lifetime"}} {
		d, err := config.ParseDuration(f(x.field))
		if err != nil {
			again(http.StatusUnprocessableEntity, x.label+` must be a duration such as "30m", "12h" or "1d".`)
			return
		}
		set("session", x.key, d.String())
	}
	switch f("preset") {
	case "seed", "nist":
		set("password", "preset", f("preset"))
	default:
		again(http.StatusUnprocessableEntity, "Choose a password preset.")
		return
	}
	switch f("two_factor") {
	case "none", "admins", "all":
		set("two_factor", "required", f("two_factor"))
	default:
		again(http.StatusUnprocessableEntity, "Choose who needs a second factor.")
		return
	}
	cidrs := func(v string) []string {
		out := []string{}
		for _, c := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' }) {
			out = append(out, c)
		}
		return out
	}
	set("network", "ui_allow", cidrs(f("ui_allow")))
	set("network", "api_allow", cidrs(f("api_allow")))
	// Refuse an allow-list that would lock out the administrator making
	// the change.
	ip, _ := clientAddr(r)
	if ui := cidrs(f("ui_allow")); len(ui) > 0 && !identity.Allowed(ui, ip) {
		again(http.StatusUnprocessableEntity, "Your own address ("+ip+") is not in the interface allow-list: you would lock yourself out.")
		return
	}
	body, err := json.Marshal(over)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if _, err := s.opts.Tenants.SetPolicy(ctx, tid, body); err != nil {
		s.failAdmin(w, r, err, again)
		return
	}
	s.caches.policies.forget(tid)
	http.Redirect(w, r, "/admin/security?done=done", http.StatusSeeOther)
}

// ---- connectors ----

type connectorsData struct {
	flashData
	Connectors []connectorView
	Form       map[string]string
}

type connectorView struct {
	router.ConnectorInfo
	ConfigText string
}

func (s *Server) connectorsPage(w http.ResponseWriter, r *http.Request) {
	s.showConnectors(w, r, http.StatusOK, connectorsData{flashData: flashData{Msg: notice(r, map[string]string{"done": "The connector is added."})}})
}

func (s *Server) showConnectors(w http.ResponseWriter, r *http.Request, status int, d connectorsData) {
	list, err := s.opts.Connectors.ListConnectors(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, c := range list {
		var pretty []byte
		var v any
		if json.Unmarshal(c.Config, &v) == nil {
			pretty, _ = json.MarshalIndent(v, "", "  ")
		}
		d.Connectors = append(d.Connectors, connectorView{c, string(pretty)})
	}
	s.page(w, r, status, "connectors", "Connectors", "connectors", d)
}

func (s *Server) connectorCreate(w http.ResponseWriter, r *http.Request) {
	form := map[string]string{"name": strings.TrimSpace(r.PostFormValue("name")), "kind": r.PostFormValue("kind"), "config": r.PostFormValue("config")}
	again := func(st int, msg string) {
		s.showConnectors(w, r, st, connectorsData{flashData: flashData{Err: msg}, Form: form})
	}
	if !json.Valid([]byte(form["config"])) {
		again(http.StatusUnprocessableEntity, "The configuration must be a JSON object.")
		return
	}
	if _, err := s.opts.Connectors.AddConnector(r.Context(), tenantOf(r), form["name"], form["kind"], json.RawMessage(form["config"])); err != nil {
		var ve *router.ValidationError
		if errors.As(err, &ve) {
			again(http.StatusUnprocessableEntity, ve.Error())
			return
		}
		s.failAdmin(w, r, err, again)
		return
	}
	http.Redirect(w, r, "/admin/connectors?done=done", http.StatusSeeOther)
}

// ---- audit trail ----

type auditData struct {
	flashData
	// Names are the tenant's users' names by id, for the actor column.
	Names   map[string]string
	Q       map[string]string
	Events  []audit.Record
	Next    string
	Verify  *audit.Report
	Checked time.Time
}

var auditUIParams = []string{"from", "to", "action", "actor_id", "category", "object_type", "object_id", "ip"}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	s.showAudit(w, r, http.StatusOK, auditData{})
}

func (s *Server) showAudit(w http.ResponseWriter, r *http.Request, status int, d auditData) {
	q := r.URL.Query()
	d.Q = map[string]string{}
	for _, k := range auditUIParams {
		d.Q[k] = strings.TrimSpace(q.Get(k))
	}
	from, to, field, err := auditPeriod(url.Values{"from": {d.Q["from"]}, "to": {d.Q["to"]}})
	if err != nil {
		d.Err = field + ": " + err.Error()
		s.page(w, r, http.StatusBadRequest, "audit", "Audit trail", "audit", d)
		return
	}
	f := audit.Filter{From: from, To: to, Action: d.Q["action"], ActorID: d.Q["actor_id"], Category: d.Q["category"], ObjectType: d.Q["object_type"],
		ObjectID: d.Q["object_id"], IP: d.Q["ip"], Cursor: q.Get("cursor"), Limit: 50}
	pg, err := s.auditService().Search(r.Context(), tenantOf(r), f)
	if errors.Is(err, audit.ErrInvalid) {
		d.Err = err.Error()
		s.page(w, r, http.StatusBadRequest, "audit", "Audit trail", "audit", d)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d.Events = pg.Events
	d.Names = map[string]string{}
	if users, err := s.opts.Identity.ListUsers(r.Context(), tenantOf(r)); err == nil {
		for _, u := range users {
			d.Names[u.ID] = u.Name
		}
	}
	if pg.Next != "" {
		v := url.Values{"cursor": {pg.Next}}
		for k, val := range d.Q {
			if val != "" {
				v.Set(k, val)
			}
		}
		d.Next = "/audit?" + v.Encode()
	}
	s.page(w, r, status, "audit", "Audit trail", "audit", d)
}

// auditVerifyPage verifies the tenant's log (hash chain, Merkle tree,
// signed checkpoints) and records that it was verified.
func (s *Server) auditVerifyPage(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	rep, err := s.auditService().Verify(ctx, tid, audit.VerifyOptions{})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	err = s.opts.DB.Tenant(tid).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAccess, Action: "audit.verify", ObjectType: "audit_log",
			ObjectID: tid, Details: map[string]any{"ok": rep.OK, "events": rep.Events}})
		return err
	})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := auditData{Verify: &rep, Checked: s.now()}
	if rep.OK {
		d.Msg = "The audit trail verified: every event is chained, in the Merkle tree, and under a valid signed checkpoint."
	} else {
		d.Err = "The audit trail did NOT verify: see the first inconsistency below."
	}
	s.showAudit(w, r, http.StatusOK, d)
}

// sortedPerms lists a set of permissions, sorted.
func sortedPerms(ps []access.Permission) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	sort.Strings(out)
	return out
}

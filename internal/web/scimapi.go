package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/sso"
)

// PermSCIM marks the SCIM 2.0 provisioning routes (ACC-5): they take a
// tenant's SCIM bearer token (relais sso scim-token create), not a
// session or an access token. Their errors use SCIM's error schema
// (RFC 7644 §3.12), which identity providers expect, instead of RFC 9457.
const PermSCIM = "scim"

func (s *Server) scimRoutes() []Route {
	return []Route{
		{"GET /scim/v2/ServiceProviderConfig", PermSCIM, s.scimConfig},
		{"GET /scim/v2/Users", PermSCIM, s.scimListUsers},
		{"POST /scim/v2/Users", PermSCIM, s.scimCreateUser},
		{"GET /scim/v2/Users/{id}", PermSCIM, s.scimGetUser},
		{"PUT /scim/v2/Users/{id}", PermSCIM, s.scimPutUser},
		{"PATCH /scim/v2/Users/{id}", PermSCIM, s.scimPatchUser},
		{"DELETE /scim/v2/Users/{id}", PermSCIM, s.scimDeleteUser},
		{"GET /scim/v2/Groups", PermSCIM, s.scimListGroups},
		{"POST /scim/v2/Groups", PermSCIM, s.scimCreateGroup},
		{"GET /scim/v2/Groups/{id}", PermSCIM, s.scimGetGroup},
		{"PATCH /scim/v2/Groups/{id}", PermSCIM, s.scimPatchGroup},
		{"DELETE /scim/v2/Groups/{id}", PermSCIM, s.scimDeleteGroup},
	}
}

const (
	scimUserSchema  = "urn:ietf:params:scim:schemas:core:2.0:User"
	scimGroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"
	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimErrSchema   = "urn:ietf:params:scim:api:messages:2.0:Error"
	scimContentType = "application/scim+json"
)

type scimTenantKey struct{}

func scimTenant(ctx context.Context) string {
	t, _ := ctx.Value(scimTenantKey{}).(string)
	return t
}

func scimWrite(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", scimContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func scimFail(w http.ResponseWriter, status int, scimType, detail string) {
	body := map[string]any{"schemas": []string{scimErrSchema}, "status": strconv.Itoa(status), "detail": detail}
	if scimType != "" {
		body["scimType"] = scimType
	}
	scimWrite(w, status, body)
}

// scimAuth checks the SCIM bearer token and puts its tenant in the
// request's context; the audit actor is the token.
func (s *Server) scimAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relais-scim"`)
			scimFail(w, http.StatusUnauthorized, "", "Send the tenant's SCIM token: Authorization: Bearer rst_...")
			return
		}
		if s.opts.SSO == nil {
			scimFail(w, http.StatusNotFound, "", "SCIM is not configured on this server.")
			return
		}
		tenantID, tokenID, err := s.opts.SSO.AuthenticateSCIM(r.Context(), tok)
		if err != nil {
			if !errors.Is(err, sso.ErrBadToken) {
				s.log.ErrorContext(r.Context(), "SCIM token lookup failed", "error", err)
				scimFail(w, http.StatusServiceUnavailable, "", "Try again shortly.")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="relais-scim", error="invalid_token"`)
			scimFail(w, http.StatusUnauthorized, "", "The SCIM token is not valid (unknown, revoked, or its tenant is disabled).")
			return
		}
		actor := audit.Actor{Type: audit.ActorAPI, ID: "scim:" + tokenID}
		SetPrincipal(r.Context(), tenantID, actor)
		meta := audit.MetaFrom(r.Context())
		meta.Actor = actor
		ctx := audit.WithMeta(context.WithValue(r.Context(), scimTenantKey{}, tenantID), meta)
		next(w, r.WithContext(ctx))
	}
}

func (s *Server) scimError(w http.ResponseWriter, r *http.Request, err error) {
	var ive *identity.ValidationError
	var sve *sso.ValidationError
	switch {
	case errors.Is(err, identity.ErrNotFound), errors.Is(err, sso.ErrNotFound):
		scimFail(w, http.StatusNotFound, "", "No such resource in this tenant.")
	case errors.Is(err, identity.ErrConflict), errors.Is(err, sso.ErrConflict):
		scimFail(w, http.StatusConflict, "uniqueness", "A resource with this name already exists.")
	case errors.As(err, &ive):
		scimFail(w, http.StatusBadRequest, "invalidValue", ive.Error())
	case errors.As(err, &sve):
		scimFail(w, http.StatusBadRequest, "invalidValue", sve.Error())
	default:
		s.log.ErrorContext(r.Context(), "SCIM request failed", "error", err)
		scimFail(w, http.StatusInternalServerError, "", "Internal error.")
	}
}

func scimDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 256<<10))
	if err := dec.Decode(v); err != nil {
		scimFail(w, http.StatusBadRequest, "invalidSyntax", "The body is not a SCIM JSON document.")
		return false
	}
	return true
}

func (s *Server) scimConfig(w http.ResponseWriter, r *http.Request) {
	scimWrite(w, http.StatusOK, map[string]any{
		"schemas":        []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"patch":          map[string]bool{"supported": true},
		"bulk":           map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":         map[string]any{"supported": true, "maxResults": scimMaxPage},
		"changePassword": map[string]bool{"supported": false},
		"sort":           map[string]bool{"supported": false},
		"etag":           map[string]bool{"supported": false},
		"authenticationSchemes": []map[string]any{{"type": "oauthbearertoken", "name": "Bearer token",
			"description": "A tenant's SCIM token (relais sso scim-token create)."}},
	})
}

func scimUserJSON(u sso.SCIMUser) map[string]any {
	out := map[string]any{
		"schemas": []string{scimUserSchema}, "id": u.User.ID, "userName": u.User.Email, "displayName": u.User.Name,
		"name":   map[string]string{"formatted": u.User.Name},
		"emails": []map[string]any{{"value": u.User.Email, "primary": true}},
		"active": u.User.Status == identity.StatusActive,
		"meta": map[string]string{"resourceType": "User", "created": u.User.CreatedAt.Format(time.RFC3339),
			"location": "/scim/v2/Users/" + u.User.ID},
	}
	if u.ExternalID != "" {
		out["externalId"] = u.ExternalID
	}
	return out
}

// scimMaxPage is the most resources one list answer holds (the
// ServiceProviderConfig's filter maxResults); a client pages through more
// with startIndex and count.
const scimMaxPage = 10000

// scimPage is a list request's window (RFC 7644 section 3.4.2.4):
// startIndex is 1-based, values below 1 mean 1; count is the page size, a
// negative value means 0 (the total only), and it is at most scimMaxPage.
type scimPage struct{ start, count int }

// scimPaging reads startIndex and count; a value that is not an integer is
// refused (400 invalidValue) before anything is read.
func scimPaging(w http.ResponseWriter, r *http.Request) (scimPage, bool) {
	p := scimPage{start: 1, count: scimMaxPage}
	q := r.URL.Query()
	for _, f := range []struct {
		name string
		dst  *int
	}{{"startIndex", &p.start}, {"count", &p.count}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			scimFail(w, http.StatusBadRequest, "invalidValue", f.name+" must be an integer.")
			return p, false
		}
		*f.dst = n
	}
	p.start = max(p.start, 1)
	p.count = min(max(p.count, 0), scimMaxPage)
	return p, true
}

// scimList answers one page of a list: totalResults counts every match,
// itemsPerPage the resources in this answer.
func scimList(resources []map[string]any, p scimPage) map[string]any {
	total := len(resources)
	from := min(p.start-1, total)
	page := resources[from:min(from+p.count, total)]
	return map[string]any{"schemas": []string{scimListSchema}, "totalResults": total, "startIndex": p.start,
		"itemsPerPage": len(page), "Resources": page}
}

var scimEqFilter = regexp.MustCompile(`^\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$`)

// scimFilter reads the one filter supported: `<attr> eq "value"`.
func scimFilter(w http.ResponseWriter, r *http.Request, attr string) (string, bool) {
	f := r.URL.Query().Get("filter")
	if f == "" {
		return "", true
	}
	m := scimEqFilter.FindStringSubmatch(f)
	if m == nil || !strings.EqualFold(m[1], attr) {
		scimFail(w, http.StatusBadRequest, "invalidFilter", `Only the filter `+attr+` eq "..." is supported.`)
		return "", false
	}
	return strings.ReplaceAll(m[2], `\"`, `"`), true
}

func (s *Server) scimListUsers(w http.ResponseWriter, r *http.Request) {
	userName, ok := scimFilter(w, r, "userName")
	if !ok {
		return
	}
	page, ok := scimPaging(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("filter") != "" && userName == "" {
		scimWrite(w, http.StatusOK, scimList([]map[string]any{}, page))
		return
	}
	users, err := s.opts.SSO.SCIMListUsers(r.Context(), scimTenant(r.Context()), userName)
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	res := make([]map[string]any, 0, len(users))
	for _, u := range users {
		res = append(res, scimUserJSON(u))
	}
	scimWrite(w, http.StatusOK, scimList(res, page))
}

type scimUserIn struct {
	UserName    string `json:"userName"`
	ExternalID  string `json:"externalId"`
	DisplayName string `json:"displayName"`
	Name        struct {
		Formatted  string `json:"formatted"`
		GivenName  string `json:"givenName"`
		FamilyName string `json:"familyName"`
	} `json:"name"`
	Active *bool `json:"active"`
}

func (u scimUserIn) name() string {
	switch {
	case u.DisplayName != "":
		return u.DisplayName
	case u.Name.Formatted != "":
		return u.Name.Formatted
	}
	return strings.TrimSpace(u.Name.GivenName + " " + u.Name.FamilyName)
}

func (s *Server) scimCreateUser(w http.ResponseWriter, r *http.Request) {
	var in scimUserIn
	if !scimDecode(w, r, &in) {
		return
	}
	active := in.Active == nil || *in.Active
	u, err := s.opts.SSO.SCIMCreateUser(r.Context(), scimTenant(r.Context()), in.UserName, in.name(), in.ExternalID, active)
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	scimWrite(w, http.StatusCreated, scimUserJSON(u))
}

func (s *Server) scimGetUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.opts.SSO.SCIMGetUser(r.Context(), scimTenant(r.Context()), r.PathValue("id"))
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	scimWrite(w, http.StatusOK, scimUserJSON(u))
}

// scimPutUser replaces a user: what Relais takes from it is active and
// externalId (the email is the account's identity and is not changed).
func (s *Server) scimPutUser(w http.ResponseWriter, r *http.Request) {
	var in scimUserIn
	if !scimDecode(w, r, &in) {
		return
	}
	active := in.Active == nil || *in.Active
	s.scimSetActive(w, r, active, in.ExternalID)
}

func (s *Server) scimSetActive(w http.ResponseWriter, r *http.Request, active bool, externalID string) {
	u, err := s.opts.SSO.SCIMSetActive(r.Context(), scimTenant(r.Context()), r.PathValue("id"), active, externalID)
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	scimWrite(w, http.StatusOK, scimUserJSON(u))
}

type scimPatch struct {
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	} `json:"Operations"`
}

// scimPatchUser applies "replace active" (the deactivation IdPs send),
// with a path or as {"active": false}.
func (s *Server) scimPatchUser(w http.ResponseWriter, r *http.Request) {
	var p scimPatch
	if !scimDecode(w, r, &p) {
		return
	}
	var active *bool
	for _, op := range p.Operations {
		if !strings.EqualFold(op.Op, "replace") && !strings.EqualFold(op.Op, "add") {
			scimFail(w, http.StatusBadRequest, "invalidPath", "Only replace of active is supported on users.")
			return
		}
		var v bool
		switch {
		case strings.EqualFold(op.Path, "active"):
			if err := json.Unmarshal(op.Value, &v); err != nil {
				// Some IdPs send "False" as a string.
				var sv string
				if json.Unmarshal(op.Value, &sv) != nil {
					scimFail(w, http.StatusBadRequest, "invalidValue", "active must be a boolean.")
					return
				}
				v = strings.EqualFold(sv, "true")
			}
			active = &v
		case op.Path == "":
			var m map[string]json.RawMessage
			if json.Unmarshal(op.Value, &m) != nil {
				scimFail(w, http.StatusBadRequest, "invalidValue", "The value must be an object.")
				return
			}
			if raw, ok := m["active"]; ok {
				if json.Unmarshal(raw, &v) != nil {
					scimFail(w, http.StatusBadRequest, "invalidValue", "active must be a boolean.")
					return
				}
				active = &v
			}
		}
	}
	if active == nil {
		s.scimGetUser(w, r)
		return
	}
	s.scimSetActive(w, r, *active, "")
}

// scimDeleteUser deactivates: the account and its audit trail stay.
func (s *Server) scimDeleteUser(w http.ResponseWriter, r *http.Request) {
	if _, err := s.opts.SSO.SCIMSetActive(r.Context(), scimTenant(r.Context()), r.PathValue("id"), false, ""); err != nil {
		s.scimError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func scimGroupJSON(g sso.SCIMGroup) map[string]any {
	members := make([]map[string]string, 0, len(g.Members))
	for _, m := range g.Members {
		members = append(members, map[string]string{"value": m, "$ref": "/scim/v2/Users/" + m})
	}
	out := map[string]any{"schemas": []string{scimGroupSchema}, "id": g.ID, "displayName": g.Name, "members": members,
		"meta": map[string]string{"resourceType": "Group", "location": "/scim/v2/Groups/" + g.ID}}
	if g.ExternalID != "" {
		out["externalId"] = g.ExternalID
	}
	return out
}

func (s *Server) scimListGroups(w http.ResponseWriter, r *http.Request) {
	name, ok := scimFilter(w, r, "displayName")
	if !ok {
		return
	}
	page, ok := scimPaging(w, r)
	if !ok {
		return
	}
	groups, err := s.opts.SSO.SCIMListGroups(r.Context(), scimTenant(r.Context()), name)
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	res := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		res = append(res, scimGroupJSON(g))
	}
	scimWrite(w, http.StatusOK, scimList(res, page))
}

type scimMember struct {
	Value string `json:"value"`
}

func (s *Server) scimCreateGroup(w http.ResponseWriter, r *http.Request) {
	var in struct {
		DisplayName string       `json:"displayName"`
		ExternalID  string       `json:"externalId"`
		Members     []scimMember `json:"members"`
	}
	if !scimDecode(w, r, &in) {
		return
	}
	ids := make([]string, 0, len(in.Members))
	for _, m := range in.Members {
		ids = append(ids, m.Value)
	}
	g, err := s.opts.SSO.SCIMCreateGroup(r.Context(), scimTenant(r.Context()), in.DisplayName, in.ExternalID, ids)
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	scimWrite(w, http.StatusCreated, scimGroupJSON(g))
}

func (s *Server) scimGetGroup(w http.ResponseWriter, r *http.Request) {
	g, err := s.opts.SSO.SCIMGetGroup(r.Context(), scimTenant(r.Context()), r.PathValue("id"))
	if err != nil {
		s.scimError(w, r, err)
		return
	}
	scimWrite(w, http.StatusOK, scimGroupJSON(g))
}

var scimMemberPath = regexp.MustCompile(`^members\[value eq "([^"]+)"\]$`)

// scimPatchGroup adds and removes members (path "members", or
// members[value eq "id"] for a removal).
func (s *Server) scimPatchGroup(w http.ResponseWriter, r *http.Request) {
	var p scimPatch
	if !scimDecode(w, r, &p) {
		return
	}
	var add, remove []string
	for _, op := range p.Operations {
		var members []scimMember
		if len(op.Value) > 0 && json.Unmarshal(op.Value, &members) != nil {
			scimFail(w, http.StatusBadRequest, "invalidValue", "members must be a list of {\"value\": user id}.")
			return
		}
		switch {
		case strings.EqualFold(op.Op, "add") && strings.EqualFold(op.Path, "members"):
			for _, m := range members {
				add = append(add, m.Value)
			}
		case strings.EqualFold(op.Op, "remove") && strings.EqualFold(op.Path, "members"):
			for _, m := range members {
				remove = append(remove, m.Value)
			}
		case strings.EqualFold(op.Op, "remove") && scimMemberPath.MatchString(op.Path):
			remove = append(remove, scimMemberPath.FindStringSubmatch(op.Path)[1])
		default:
			scimFail(w, http.StatusBadRequest, "invalidPath", "Only adding and removing members is supported on groups.")
			return
		}
	}
	if err := s.opts.SSO.SCIMChangeMembers(r.Context(), scimTenant(r.Context()), r.PathValue("id"), add, remove); err != nil {
		s.scimError(w, r, err)
		return
	}
	s.scimGetGroup(w, r)
}

func (s *Server) scimDeleteGroup(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.SSO.SCIMDeleteGroup(r.Context(), scimTenant(r.Context()), r.PathValue("id")); err != nil {
		s.scimError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

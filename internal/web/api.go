package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/optoken"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/problem"
)

// Route is one entry of the route table. Every route declares who may call
// it: Public routes need nothing; the others name the permission they need
// (the operator routes need an operator token).
type Route struct {
	Pattern    string
	Permission string // "public", "operator", or a permission from the catalogue
	handler    http.HandlerFunc
}

// Permission values for routes outside the tenant permission catalogue.
const (
	PermPublic   = "public"
	PermOperator = "operator"
)

// Routes returns the route table (tests walk it).
func (s *Server) Routes() []Route {
	routes := s.coreRoutes()
	routes = append(routes, s.adminRoutes()...)
	routes = append(routes, s.messageRoutes()...)
	routes = append(routes, s.auditRoutes()...)
	routes = append(routes, s.contactRoutes()...)
	routes = append(routes, s.campaignRoutes()...)
	routes = append(routes, s.sftpRoutes()...)
	routes = append(routes, s.ssoRoutes()...)
	routes = append(routes, s.ssoAdminRoutes()...)
	routes = append(routes, s.scimRoutes()...)
	routes = append(routes, s.privacyRoutes()...)
	routes = append(routes, s.monitorRoutes()...)
	return append(routes, s.uiRoutes()...)
}

func (s *Server) coreRoutes() []Route {
	return []Route{
		{"GET /healthz", PermPublic, s.healthz},
		{"GET /readyz", PermPublic, s.readyz},
		{"GET /api/v1", PermPublic, s.apiIndex},
		{"GET /api/v1/tenants", PermOperator, s.listTenants},
		{"POST /api/v1/tenants", PermOperator, s.createTenant},
		{"GET /api/v1/tenants/{ref}", PermOperator, s.getTenant},
		{"POST /api/v1/tenants/{ref}/disable", PermOperator, s.setTenantStatus(tenants.StatusDisabled)},
		{"POST /api/v1/tenants/{ref}/enable", PermOperator, s.setTenantStatus(tenants.StatusActive)},

		{"POST /api/v1/auth/login", PermPublic, s.login},
		{"POST /api/v1/auth/mfa", PermPublic, s.mfa},
		{"POST /api/v1/auth/mfa/email", PermPublic, s.mfaEmail},
		{"POST /api/v1/auth/enrol", PermPublic, s.enrol},
		{"POST /api/v1/auth/logout", PermPublic, s.logout},
		{"POST /oauth2/token", PermPublic, s.token},
		{"GET /.well-known/jwks.json", PermPublic, s.jwks},

		{"GET /api/v1/me", PermSetup, s.me},
		{"POST /api/v1/me/password", PermSetup, s.changePassword},
		{"POST /api/v1/me/reauth", PermSetup, s.reauth},
		{"GET /api/v1/me/sessions", PermAuthenticated, s.mySessions},
		{"DELETE /api/v1/me/sessions/{id}", PermAuthenticated, s.revokeMySession},
		{"POST /api/v1/me/totp", PermSetup, s.beginTOTP},
		{"POST /api/v1/me/totp/confirm", PermSetup, s.confirmTOTP},
		{"DELETE /api/v1/me/totp", PermAuthenticated, s.disableTOTP},
	}
}

// routes registers the table, wrapping each handler in the check its
// declared permission demands: what a route declares is what it enforces.
func (s *Server) routes(mux *http.ServeMux) {
	for _, rt := range s.Routes() {
		h := rt.handler
		switch rt.Permission {
		case PermPublic:
		case PermOperator:
			h = s.operator(h)
		case PermSCIM:
			h = s.scimAuth(h)
		default:
			if isPage(rt.Pattern) {
				h = s.requirePage(rt.Permission, h)
				break
			}
			h = s.require(rt.Permission, h)
		}
		mux.HandleFunc(rt.Pattern, h)
	}
}

// writeJSON answers status with v as compact JSON (clients pretty-print;
// indenting costs more than the rest of a small request). The document is
// encoded before anything is sent, so that a value that cannot be encoded
// becomes a 500 problem instead of a success status with a truncated body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, nil, problem.Problem{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
			Title: "Internal error", Detail: "The response could not be encoded; quote the request id to the operator."})
		return
	}
	writeJSONBytes(w, status, append(body, '\n'))
}

// writeJSONBytes answers status with an encoded JSON document (ending in a
// newline, as json.Encoder writes it). No Content-Length: with the API's
// security headers, X-Request-Id, Content-Type and Cache-Control, a ninth
// header would take the header map past the eight entries Go keeps in one
// small map group (two more allocations per response, and as many when
// net/http copies it); bodies over 2 KiB go out chunked.
func writeJSONBytes(w http.ResponseWriter, status int, body []byte) {
	// Both values in one array; each slice has capacity 1, so that a
	// later Add gets a new array instead of writing into its neighbour.
	vals := &[2]string{"application/json", "no-store"}
	h := w.Header()
	h["Content-Type"] = vals[0:1:1]
	h["Cache-Control"] = vals[1:2:2]
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if s.opts.DB == nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Not ready", Detail: "no store"})
		return
	}
	if err := s.opts.DB.Ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "error", err)
		problem.Write(w, r, problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable,
			Title: "Not ready", Detail: "The store is unreachable or its schema is not current."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "store": string(s.opts.DB.Dialect())})
}

func (s *Server) apiIndex(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"name": "relais", "version": s.opts.Version, "api": "v1"})
}

// operator wraps a handler that needs an operator token.
func (s *Server) operator(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relais-operator"`)
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized,
				Title: "Authentication required", Detail: "Send an operator token as Authorization: Bearer (create one with `relais operator token create`)."})
			return
		}
		tok, err := optoken.Authenticate(r.Context(), s.opts.DB, secret)
		if err != nil {
			if !errors.Is(err, optoken.ErrInvalid) {
				s.serverError(w, r, err)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="relais-operator", error="invalid_token"`)
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized,
				Title: "Invalid token", Detail: "The operator token is unknown or revoked."})
			return
		}
		actor := audit.Actor{Type: audit.ActorOperator, ID: "token:" + tok.ID}
		meta := audit.MetaFrom(r.Context())
		meta.Actor = actor
		SetPrincipal(r.Context(), "", actor)
		next(w, r.WithContext(audit.WithMeta(r.Context(), meta)))
	}
}

func bearer(r *http.Request) (string, bool) {
	h := headerValue(r.Header, "Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 4096 {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// serverError logs err and answers a problem document without details.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, tenants.ErrShredded) {
		// Crypto-shredding is a state, not a failure: say so, stably.
		problem.Write(w, r, problem.Problem{Status: http.StatusGone, Code: problem.CodeShredded, Title: "Data shredded",
			Detail: "This data was crypto-shredded: its keys were destroyed, so it can never be decrypted again."})
		return
	}
	s.log.ErrorContext(r.Context(), "request failed", "request_id", problem.RequestID(r.Context()), "error", err)
	problem.Write(w, r, problem.Problem{Status: http.StatusInternalServerError, Code: problem.CodeInternal,
		Title: "Internal error", Detail: "The server could not complete the request; quote the request id to the operator."})
}

// domainError maps the domain's errors to problem documents.
func (s *Server) domainError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *tenants.ValidationError
	switch {
	case errors.As(err, &ve):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation,
			Title: "Invalid input", Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
	case errors.Is(err, tenants.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such tenant."})
	case errors.Is(err, tenants.ErrSlugTaken):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict", Detail: "That slug is already in use."})
	default:
		s.serverError(w, r, err)
	}
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Tenants.List(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if list == nil {
		list = []tenants.Tenant{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": list})
}

type createTenantRequest struct {
	Name string `json:"name"`
	Slug string `json:"slug"`
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	var req createTenantRequest
	if p := problem.DecodeJSON(w, r, &req, s.maxBody); p != nil {
		problem.Write(w, r, *p)
		return
	}
	t, err := s.opts.Tenants.Create(r.Context(), req.Name, req.Slug)
	if err != nil {
		s.domainError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) {
	t, err := s.opts.Tenants.Get(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.domainError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) setTenantStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := s.opts.Tenants.SetStatus(r.Context(), r.PathValue("ref"), status)
		if err != nil {
			s.domainError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	}
}

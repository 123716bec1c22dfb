package web

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/web/problem"
)

func (s *Server) clientOf(r *http.Request) identity.Client {
	ip, port := clientAddr(r)
	return identity.Client{IP: ip, Port: port, UserAgent: r.UserAgent()}
}

// identityError maps identity errors to problem documents (never a 500 for
// a caller's mistake).
func (s *Server) identityError(w http.ResponseWriter, r *http.Request, err error) {
	var pe *identity.PolicyError
	var ve *identity.ValidationError
	switch {
	case errors.As(err, &pe):
		fe := make([]problem.FieldError, len(pe.Violations))
		for i, v := range pe.Violations {
			fe[i] = problem.FieldError{Field: "password", Message: v.Message}
		}
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: "password_policy", Title: "Password rejected",
			Detail: pe.Error(), Errors: fe})
	case errors.As(err, &ve):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
	case errors.Is(err, identity.ErrInvalidCredentials):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Title: "Sign-in failed",
			Detail: "The tenant, email or password is wrong."})
	case errors.Is(err, identity.ErrPasswordLoginDisabled):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "password_login_disabled", Title: "Use single sign-on",
			Detail: "This tenant signs its users in through its identity provider; passwords are not accepted."})
	case errors.Is(err, identity.ErrLocked):
		problem.Write(w, r, problem.Problem{Status: http.StatusLocked, Code: "account_locked", Title: "Account locked",
			Detail: "Too many failed attempts: the account is locked for a while, or until an administrator unlocks it."})
	case errors.Is(err, identity.ErrThrottled):
		w.Header().Set("Retry-After", "60")
		problem.Write(w, r, problem.Problem{Status: http.StatusTooManyRequests, Code: problem.CodeRateLimited, Title: "Too many attempts",
			Detail: "Too many attempts from this address or for this code; wait before trying again."})
	case errors.Is(err, identity.ErrInvalidCode):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: "invalid_code", Title: "Invalid code",
			Detail: "The code is wrong, expired or already used, or the sign-in attempt expired."})
	case errors.Is(err, identity.ErrIPNotAllowed):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "ip_not_allowed", Title: "Address not allowed",
			Detail: "Your network address is not in the tenant's allow-list."})
	case errors.Is(err, identity.ErrReauthRequired):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "reauth_required", Title: "Confirm your password",
			Detail: "This change needs a recent sign-in: POST /api/v1/me/reauth first."})
	case errors.Is(err, identity.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found", Detail: "No such resource in this tenant."})
	case errors.Is(err, identity.ErrConflict):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict", Detail: err.Error()})
	case errors.Is(err, identity.ErrUnavailable):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotImplemented, Code: "not_configured", Title: "Not available",
			Detail: "Email codes need a mail connector; use your authenticator app or a recovery code."})
	default:
		s.serverError(w, r, err)
	}
}

type loginRequest struct {
	Tenant   string `json:"tenant"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

type sessionResponse struct {
	TenantID  string    `json:"tenant_id"`
	UserID    string    `json:"user_id"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if p := problem.DecodeJSON(w, r, &req, 8<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	res, err := s.opts.Identity.Login(r.Context(), identity.LoginRequest{Tenant: req.Tenant, Email: req.Email, Password: req.Password, Client: s.clientOf(r)})
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	if res.MFAToken != "" {
		writeJSON(w, http.StatusOK, map[string]any{"mfa_required": true, "mfa_token": res.MFAToken, "methods": res.MFAMethods})
		return
	}
	s.sessionStarted(w, res.TenantID, res.UserID, *res.Session)
}

func (s *Server) sessionStarted(w http.ResponseWriter, tenantID, userID string, ns identity.NewSession) {
	setSessionCookie(w, ns)
	writeJSON(w, http.StatusOK, sessionResponse{TenantID: tenantID, UserID: userID, CSRFToken: identity.CSRFToken(ns.Secret), ExpiresAt: ns.ExpiresAt})
}

type mfaRequest struct {
	MFAToken string `json:"mfa_token"`
	Code     string `json:"code"`
}

func (s *Server) mfa(w http.ResponseWriter, r *http.Request) {
	var req mfaRequest
	if p := problem.DecodeJSON(w, r, &req, 4<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	code := strings.ReplaceAll(strings.TrimSpace(req.Code), " ", "")
	ns, err := s.opts.Identity.VerifyMFA(r.Context(), req.MFAToken, code, s.clientOf(r))
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	p, err := s.opts.Identity.Authenticate(r.Context(), ns.Secret, s.clientOf(r))
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	s.sessionStarted(w, p.TenantID, p.UserID, ns)
}

func (s *Server) mfaEmail(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MFAToken string `json:"mfa_token"`
	}
	if p := problem.DecodeJSON(w, r, &req, 4<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	if err := s.opts.Identity.SendEmailCode(r.Context(), req.MFAToken); err != nil {
		s.identityError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "sent"})
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if p := problem.DecodeJSON(w, r, &req, 8<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	u, err := s.opts.Identity.Enrol(r.Context(), req.Token, req.Password)
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": u.ID, "status": "password set; sign in"})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := s.opts.Identity.Logout(r.Context(), c.Value); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	clearSessionCookie(w)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	out := map[string]any{"tenant_id": p.TenantID, "permissions": p.PermissionList(), "method": p.Method}
	if p.ClientID != "" {
		out["client_id"] = p.ClientID
	} else {
		u, err := s.opts.Identity.GetUser(r.Context(), p.TenantID, p.UserID)
		if err != nil {
			s.identityError(w, r, err)
			return
		}
		out["user"] = u
		out["password_change_required"] = p.PasswordChangeRequired
		out["mfa_enrolment_required"] = p.MFAEnrolmentRequired
	}
	if t, err := s.opts.Tenants.Get(r.Context(), p.TenantID); err == nil {
		out["tenant"] = map[string]string{"id": t.ID, "slug": t.Slug, "name": t.Name}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) userOnly(w http.ResponseWriter, r *http.Request) *identity.Principal {
	p := PrincipalFrom(r.Context())
	if p.UserID == "" {
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Users only",
			Detail: "This endpoint is for signed-in users, not API clients."})
		return nil
	}
	return p
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	var req struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if pr := problem.DecodeJSON(w, r, &req, 8<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	if err := s.opts.Identity.ChangePassword(r.Context(), p.TenantID, p.UserID, req.Current, req.New, p.SessionHash); err != nil {
		s.identityError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reauth(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if pr := problem.DecodeJSON(w, r, &req, 8<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	if err := s.opts.Identity.Reauthenticate(r.Context(), p, req.Password); err != nil {
		s.identityError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) mySessions(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	list, err := s.opts.Identity.ListSessions(r.Context(), p.TenantID, p.UserID, p.SessionHash)
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	if list == nil {
		list = []identity.Session{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (s *Server) revokeMySession(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	if err := s.opts.Identity.RevokeSession(r.Context(), p.TenantID, r.PathValue("id"), p.UserID); err != nil {
		s.identityError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) beginTOTP(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	e, err := s.opts.Identity.BeginTOTP(r.Context(), p)
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	png, err := e.PNG(256)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "otpauth_url": e.URL,
		"qr_png_base64": base64.StdEncoding.EncodeToString(png)})
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	var req struct {
		Code string `json:"code"`
	}
	if pr := problem.DecodeJSON(w, r, &req, 4<<10); pr != nil {
		problem.Write(w, r, *pr)
		return
	}
	codes, err := s.opts.Identity.ConfirmTOTP(r.Context(), p, strings.ReplaceAll(req.Code, " ", ""))
	if err != nil {
		s.identityError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

func (s *Server) disableTOTP(w http.ResponseWriter, r *http.Request) {
	p := s.userOnly(w, r)
	if p == nil {
		return
	}
	if err := s.opts.Identity.DisableTOTP(r.Context(), p); err != nil {
		s.identityError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// oauthError answers RFC 6749 section 5.2 errors.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="relais-token"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// token is POST /oauth2/token: the client credentials grant (RFC 6749
// section 4.4), client authentication by HTTP Basic or in the body.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.opts.Issuer == nil {
		oauthError(w, http.StatusNotImplemented, "unsupported_grant_type", "tokens are not issued by this server")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "send application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the form could not be read")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else if r.PostForm.Get("client_secret") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method")
		return
	}
	cl, err := s.opts.Identity.AuthenticateClient(r.Context(), id, secret, s.clientOf(r))
	if err != nil {
		if errors.Is(err, identity.ErrIPNotAllowed) {
			oauthError(w, http.StatusForbidden, "access_denied", "this address may not use this client")
			return
		}
		if errors.Is(err, identity.ErrInvalidCredentials) {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
			return
		}
		s.serverError(w, r, err)
		return
	}
	perms, err := s.opts.Identity.ClientPermissions(r.Context(), cl.TenantID, cl.ID)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	scopes := perms
	if req := r.PostForm.Get("scope"); req != "" {
		held := map[string]bool{}
		for _, p := range perms {
			held[p] = true
		}
		scopes = nil
		for _, sc := range strings.Fields(req) {
			if !held[sc] {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "the client does not hold "+strconv.Quote(sc))
				return
			}
			scopes = append(scopes, sc)
		}
	}
	tok, exp, err := s.opts.Issuer.Issue(r.Context(), jwtauth.IssueRequest{Tenant: cl.TenantID, Subject: cl.ID, ClientID: cl.ID,
		Scopes: scopes, Version: cl.TokenVersion})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int(exp.Sub(s.now()).Seconds() + 0.5), "scope": strings.Join(scopes, " ")})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	if s.opts.Keys == nil {
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{}})
		return
	}
	b, err := s.opts.Keys.JWKS(r.Context())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

package web

import (
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/web/problem"
)

// FlowCookie carries a single sign-on flow secret from the start of a
// sign-in to its end, binding the IdP's answer to this browser (AUTH-5).
const FlowCookie = "__Host-relais_sso"

// ssoACSPattern is the SAML assertion consumer service: a cross-site POST
// from the IdP by design, so it bypasses the cross-origin check (the
// response's signature, audience, recipient, request id and the flow
// cookie protect it instead).
const ssoACSPattern = "POST /sso/{tenant}/{provider}/saml/acs"

// ssoRoutes are the single sign-on endpoints (AUTH-5): public, since they
// are how a browser gets a session.
func (s *Server) ssoRoutes() []Route {
	return []Route{
		{"GET /sso/{tenant}", PermPublic, s.ssoOptions},
		{"GET /sso/{tenant}/{provider}/login", PermPublic, s.ssoBegin},
		{"GET /sso/{tenant}/{provider}/oidc/callback", PermPublic, s.ssoOIDCCallback},
		{ssoACSPattern, PermPublic, s.ssoSAMLACS},
		{"GET /sso/{tenant}/{provider}/saml/metadata", PermPublic, s.ssoSAMLMetadata},
	}
}

func (s *Server) ssoUnavailable(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.SSO == nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
			Detail: "Single sign-on is not configured on this server."})
		return true
	}
	return false
}

func (s *Server) ssoError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, sso.ErrNotFound):
		problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound, Title: "Not found",
			Detail: "No such tenant or identity provider."})
	case errors.Is(err, sso.ErrNotProvisioned):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "sso_not_provisioned", Title: "No account",
			Detail: "Your identity provider vouched for you, but you have no account in this tenant; ask its administrator."})
	case errors.Is(err, identity.ErrIPNotAllowed):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "ip_not_allowed", Title: "Address not allowed",
			Detail: "Your network address is not in the tenant's allow-list."})
	case errors.Is(err, identity.ErrMFAUnavailable):
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "mfa_unavailable", Title: "Second factor required",
			Detail: "This tenant requires its own second factor and you have none set up; ask an administrator."})
	case errors.Is(err, sso.ErrUnavailable):
		s.log.WarnContext(r.Context(), "identity provider unavailable", "error", err)
		problem.Write(w, r, problem.Problem{Status: http.StatusBadGateway, Code: "sso_idp_unavailable", Title: "Identity provider unavailable",
			Detail: "The identity provider could not be reached; try again later or tell the tenant's administrator."})
	case errors.Is(err, sso.ErrRefused):
		problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: "sso_refused", Title: "Sign-in refused",
			Detail: "The identity provider's answer could not be accepted; start the sign-in again."})
	default:
		var ve *sso.ValidationError
		if errors.As(err, &ve) {
			problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
				Detail: ve.Error(), Errors: []problem.FieldError{{Field: ve.Field, Message: ve.Message}}})
			return
		}
		s.serverError(w, r, err)
	}
}

func setFlowCookie(w http.ResponseWriter, st sso.Start) {
	ss := http.SameSiteLaxMode
	if st.Kind == sso.KindSAML {
		// The SAML response arrives as a cross-site POST.
		ss = http.SameSiteNoneMode
	}
	// #nosec G124 -- Secure and HttpOnly; SameSite is Lax, or None for SAML's cross-site POST (the cookie only binds the flow to this browser)
	http.SetCookie(w, &http.Cookie{Name: FlowCookie, Value: st.FlowSecret, Path: "/", Secure: true, HttpOnly: true,
		SameSite: ss, MaxAge: int(sso.FlowTTL / time.Second)})
}

func clearFlowCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: FlowCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

func flowCookie(r *http.Request) string {
	if c, err := r.Cookie(FlowCookie); err == nil {
		return c.Value
	}
	return ""
}

// ssoOptions tells the sign-in page which providers a tenant offers and
// whether passwords are accepted.
func (s *Server) ssoOptions(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	ps, pw, err := s.opts.SSO.SignInOptions(r.Context(), r.PathValue("tenant"))
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": ps, "password_login": pw})
}

func (s *Server) ssoBegin(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	st, err := s.opts.SSO.Begin(r.Context(), r.PathValue("tenant"), r.PathValue("provider"), r.URL.Query().Get("return_to"), s.clientOf(r))
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	setFlowCookie(w, st)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, st.URL, http.StatusFound)
}

func (s *Server) ssoOIDCCallback(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	res, err := s.opts.SSO.OIDCCallback(r.Context(), r.PathValue("tenant"), r.PathValue("provider"), r.URL.Query(), flowCookie(r), s.clientOf(r))
	clearFlowCookie(w)
	s.ssoFinished(w, r, res, err)
}

func (s *Server) ssoSAMLACS(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	// The response is capped before it is read: a little over the
	// SAMLResponse limit for the form's other fields and encoding.
	r.Body = http.MaxBytesReader(w, r.Body, sso.MaxSAMLResponseBytes*2)
	if err := r.ParseForm(); err != nil {
		if rerr := s.opts.SSO.Refuse(r.Context(), r.PathValue("tenant"), r.PathValue("provider"), sso.KindSAML, "response_too_large", s.clientOf(r)); !errors.Is(rerr, sso.ErrRefused) {
			s.ssoError(w, r, rerr)
			return
		}
		problem.Write(w, r, problem.Problem{Status: http.StatusRequestEntityTooLarge, Code: problem.CodeBodyTooLarge, Title: "Response too large",
			Detail: "The SAML response is larger than this server accepts."})
		return
	}
	res, err := s.opts.SSO.SAMLResponse(r.Context(), r.PathValue("tenant"), r.PathValue("provider"), r.PostForm, flowCookie(r), s.clientOf(r))
	clearFlowCookie(w)
	s.ssoFinished(w, r, res, err)
}

// signedInPage sends the browser on to its destination from a page of
// this site, so that the SameSite=Strict session cookie set by a
// cross-site navigation is sent with the next request.
var signedInPage = template.Must(template.New("signed-in").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={{.}}"><title>Signed in</title></head>
<body><p>Signed in. <a href="{{.}}">Continue</a>.</p></body></html>
`))

func (s *Server) ssoFinished(w http.ResponseWriter, r *http.Request, res sso.Result, err error) {
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	if res.MFAToken != "" {
		s.render(w, r, http.StatusOK, "mfa", pageData{Title: "Second factor", MFAToken: res.MFAToken,
			EmailAvailable: contains(res.MFAMethods, identity.MethodEmail)})
		return
	}
	setSessionCookie(w, *res.Session)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = signedInPage.Execute(w, sso.SafeReturnTo(res.ReturnTo))
}

func (s *Server) ssoSAMLMetadata(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	b, err := s.opts.SSO.SPMetadata(r.Context(), r.PathValue("tenant"), r.PathValue("provider"))
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(b)
}

// ssoAdminRoutes let a tenant's administrator (sso:admin) see its
// providers and manage mapping rules, the password switch and SCIM
// tokens. Adding a provider (which makes the server fetch an issuer or a
// metadata URL) stays with the operator (`relais sso provider add`).
func (s *Server) ssoAdminRoutes() []Route {
	const perm = "sso:admin"
	return []Route{
		{"GET /api/v1/sso/providers", perm, s.ssoListProviders},
		{"GET /api/v1/sso/rules", perm, s.ssoListRules},
		{"POST /api/v1/sso/rules", perm, s.ssoAddRule},
		{"DELETE /api/v1/sso/rules/{id}", perm, s.ssoDeleteRule},
		{"GET /api/v1/sso/settings", perm, s.ssoGetSettings},
		{"PUT /api/v1/sso/settings", perm, s.ssoPutSettings},
		{"GET /api/v1/sso/scim-tokens", perm, s.ssoListSCIMTokens},
		{"POST /api/v1/sso/scim-tokens", perm, s.ssoCreateSCIMToken},
		{"DELETE /api/v1/sso/scim-tokens/{id}", perm, s.ssoRevokeSCIMToken},
	}
}

func (s *Server) ssoListProviders(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	ps, err := s.opts.SSO.ListProviders(r.Context(), PrincipalFrom(r.Context()).TenantID)
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	out := make([]sso.Provider, 0, len(ps))
	for _, p := range ps {
		p.Config.IdPMetadata = "" // large; the operator has it
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}

func (s *Server) ssoListRules(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	rules, err := s.opts.SSO.ListRules(r.Context(), PrincipalFrom(r.Context()).TenantID, r.URL.Query().Get("provider"))
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	if rules == nil {
		rules = []sso.Rule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
}

// ssoAddRule adds a mapping rule. Anti-escalation (ACC-1): the caller must
// hold every permission the rule would hand out, through the role or the
// group's roles.
func (s *Server) ssoAddRule(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	var in struct {
		Provider string `json:"provider"`
		Claim    string `json:"claim"`
		Value    string `json:"value"`
		Group    string `json:"group"`
		Role     string `json:"role"`
	}
	if p := problem.DecodeJSON(w, r, &in, 8<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	p := PrincipalFrom(r.Context())
	ctx := r.Context()
	var roles []string
	if in.Role != "" {
		roles = append(roles, in.Role)
	}
	if in.Group != "" && s.opts.Access != nil {
		g, err := s.opts.Access.GetGroup(ctx, p.TenantID, in.Group)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		for _, rr := range g.Roles {
			roles = append(roles, rr.ID)
		}
	}
	for _, ref := range roles {
		if s.opts.Access == nil {
			break
		}
		role, err := s.opts.Access.GetRole(ctx, p.TenantID, ref)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		for _, perm := range role.Permissions {
			if !p.Has(string(perm)) {
				s.recordDenied(ctx, p, string(perm), r)
				problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Forbidden",
					Detail: "This rule would hand out " + string(perm) + ", which you do not hold."})
				return
			}
		}
	}
	rule, err := s.opts.SSO.AddRule(ctx, p.TenantID, sso.NewRule{Provider: in.Provider, Claim: in.Claim, Value: in.Value, Group: in.Group, Role: in.Role})
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, rule)
}

func (s *Server) ssoDeleteRule(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	if err := s.opts.SSO.DeleteRule(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id")); err != nil {
		s.ssoError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ssoGetSettings(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	pw, err := s.opts.SSO.PasswordLogin(r.Context(), PrincipalFrom(r.Context()).TenantID)
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"password_login": pw})
}

func (s *Server) ssoPutSettings(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	var in struct {
		PasswordLogin *bool `json:"password_login"`
	}
	if p := problem.DecodeJSON(w, r, &in, 1<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	if in.PasswordLogin == nil {
		problem.Write(w, r, problem.Problem{Status: http.StatusUnprocessableEntity, Code: problem.CodeValidation, Title: "Invalid input",
			Detail: "password_login (true or false) is required.", Errors: []problem.FieldError{{Field: "password_login", Message: "is required"}}})
		return
	}
	if err := s.opts.SSO.SetPasswordLogin(r.Context(), PrincipalFrom(r.Context()).TenantID, *in.PasswordLogin); err != nil {
		s.ssoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"password_login": *in.PasswordLogin})
}

func (s *Server) ssoListSCIMTokens(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	toks, err := s.opts.SSO.ListSCIMTokens(r.Context(), PrincipalFrom(r.Context()).TenantID)
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	if toks == nil {
		toks = []sso.SCIMToken{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": toks})
}

func (s *Server) ssoCreateSCIMToken(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	var in struct {
		Name string `json:"name"`
	}
	if p := problem.DecodeJSON(w, r, &in, 1<<10); p != nil {
		problem.Write(w, r, *p)
		return
	}
	tok, secret, err := s.opts.SSO.CreateSCIMToken(r.Context(), PrincipalFrom(r.Context()).TenantID, in.Name)
	if err != nil {
		s.ssoError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": tok.ID, "name": tok.Name, "token": secret, "endpoint": "/scim/v2"})
}

func (s *Server) ssoRevokeSCIMToken(w http.ResponseWriter, r *http.Request) {
	if s.ssoUnavailable(w, r) {
		return
	}
	if err := s.opts.SSO.RevokeSCIMToken(r.Context(), PrincipalFrom(r.Context()).TenantID, r.PathValue("id")); err != nil {
		s.ssoError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

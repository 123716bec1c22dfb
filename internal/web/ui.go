package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/web/problem"
)

//go:embed assets
var assets embed.FS

// pages are the parsed templates, one set per page (layout, partials and
// the page's content).
type pages map[string]*template.Template

// uiFuncs are the helpers the page templates may call.
var uiFuncs = template.FuncMap{
	"when":    uiWhen,
	"pct":     uiPct,
	"secs":    uiSecs,
	"num":     uiNum,
	"join":    strings.Join,
	"jsonish": uiValue,
	"add":     func(a, b int) int { return a + b },
	"link": func(href, label string, on bool) map[string]any {
		return map[string]any{"Href": href, "Label": label, "On": on}
	},
	"initial": func(name string) string {
		for _, r := range name {
			return strings.ToUpper(string(r))
		}
		return "?"
	},
	"idleText": func(secs int) string {
		if secs%60 == 0 && secs >= 60 {
			if secs == 60 {
				return "1 minute"
			}
			return strconv.Itoa(secs/60) + " minutes"
		}
		return strconv.Itoa(secs) + " seconds"
	},
	"perms": sortedPerms,
	"list":  func(v ...string) []string { return v },
	"short": func(id string) string {
		if len(id) > 13 {
			return id[:8] + "…"
		}
		return id
	},
	// tail is the end of a UUIDv7 (its random part: ids made the same
	// millisecond share their beginning).
	"tail": func(id string) string {
		if len(id) > 13 {
			return "…" + id[len(id)-8:]
		}
		return id
	},
	"deref": func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	},
}

func loadPages() (pages, error) {
	names, err := fs.Glob(assets, "assets/templates/*.html")
	if err != nil {
		return nil, err
	}
	p := pages{}
	for _, f := range names {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(uiFuncs).ParseFS(assets, "assets/templates/layout.html", "assets/templates/partials.html", f)
		if err != nil {
			return nil, err
		}
		p[name] = t
	}
	return p, nil
}

// navData is what the layout needs to draw the navigation of a signed-in
// user: only the sections the user's permissions open are shown (the
// server checks them again on every page).
type navData struct {
	UserName, UserEmail, TenantName string
	// Active is the section of the page, to mark its link.
	Active string
	// IdleSeconds is the tenant's session idle timeout: app.js warns the
	// user before it ends (AUTH-6).
	IdleSeconds int
	perms       map[string]bool
	// features are the optional services this server runs (privacy, sso,
	// sftp, monitor): a section without its service is not linked.
	features map[string]bool
}

// On reports whether an optional service runs on this server.
func (n *navData) On(feature string) bool { return n != nil && n.features[feature] }

// Can reports whether the user holds a permission (to show a link or a
// button; the handler checks it again).
func (n *navData) Can(perm string) bool { return n != nil && n.perms[perm] }

// pageData is what every page template receives.
type pageData struct {
	Title, Error, Notice, CSRF string
	Signed, Wide               bool
	Form                       map[string]string
	Nav                        *navData
	// Refresh, when not zero, reloads the page after that many seconds
	// (progress pages, without script).
	Refresh int
	// RefreshURL is the page the refresh loads (its path, without the
	// one-time notice of the query).
	RefreshURL string
	// D is the page's own data.
	D any
	// Page-specific fields of the sign-in pages.
	MFAToken       string
	EmailAvailable bool
	Enrol          bool
	Required       bool
	Token          string
	MinLength      int
	Classes        int
	QR             template.URL
	Secret         string
	Enabled        bool
	RecoveryCodes  []string
	User           identity.User
	TenantName     string
	Permissions    []string
	// SSO are the sign-in page's single sign-on buttons; NoPassword hides
	// its password form (the organisation signs in through its IdP).
	SSO        []sso.PublicProvider
	NoPassword bool
	// SSOOn: the server runs single sign-on (the page offers to look up
	// an organisation's providers).
	SSOOn bool
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, d pageData) {
	t, ok := s.pages[page]
	if !ok {
		s.serverError(w, r, errors.New("no page "+page))
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// uiRoutes are the server-rendered browser pages: sign-in, second factor,
// enrolment, password change, TOTP set-up (AUTH-6, AUTH-7). They work
// without JavaScript; state-changing forms carry the session's CSRF token.
func (s *Server) uiRoutes() []Route {
	routes := []Route{
		{"GET /static/", PermPublic, s.static},
		{"GET /{$}", PermAuthenticated, s.homePage},
		{"GET /account/sessions", PermAuthenticated, s.sessionsPage},
		{"POST /account/sessions/revoke", PermAuthenticated, s.sessionRevoke},
		{"GET /account/keepalive", PermAuthenticated, s.keepalive},
		{"GET /login", PermPublic, s.loginPage},
		{"POST /login", PermPublic, s.loginSubmit},
		{"POST /login/mfa", PermPublic, s.mfaSubmit},
		{"POST /login/mfa/email", PermPublic, s.mfaEmailSubmit},
		{"GET /enrol", PermPublic, s.enrolPage},
		{"POST /enrol", PermPublic, s.enrolSubmit},
		{"POST /logout", PermPublic, s.logoutSubmit},
		{"GET /account/password", PermSetup, s.passwordPage},
		{"POST /account/password", PermSetup, s.passwordSubmit},
		{"GET /account/totp", PermSetup, s.totpPage},
		{"POST /account/totp", PermSetup, s.totpBegin},
		{"POST /account/totp/confirm", PermSetup, s.totpConfirm},
	}
	routes = append(routes, s.uiAppRoutes()...)
	return routes
}

func isPage(pattern string) bool {
	_, path, _ := strings.Cut(pattern, " ")
	return !strings.HasPrefix(path, "/api/") && !strings.HasPrefix(path, "/oauth2/") && !strings.HasPrefix(path, "/.well-known/")
}

// requirePage is require for browser pages: it redirects to the sign-in
// page instead of answering a problem document, sends a user who must
// finish their set-up to the right page, and answers a refused permission
// or a failed CSRF check with an HTML page (403), recorded like the API's.
func (s *Server) requirePage(perm string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/contacts/import" {
			s.allowLongUpload(w, r)
		}
		p, prob := s.authenticate(w, r)
		if prob != nil && prob.Code == "csrf_failed" {
			s.errorPage(w, r, http.StatusForbidden, "Form refused", "This form was not sent from a page of this site, or it expired. Go back, reload the page and try again.")
			return
		}
		if prob != nil && prob.Code == "ip_not_allowed" {
			s.errorPage(w, r, http.StatusForbidden, "Address not allowed", "Your network address is not in your organisation's allow-list.")
			return
		}
		if p == nil || p.UserID == "" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		meta := audit.MetaFrom(r.Context())
		meta.Actor = actorOf(p)
		ctx := audit.WithMeta(context.WithValue(r.Context(), principalKey{}, p), meta)
		SetPrincipal(ctx, p.TenantID, meta.Actor)
		r = r.WithContext(ctx)
		if perm != PermSetup && p.Restricted() {
			to := "/account/password"
			if !p.PasswordChangeRequired {
				to = "/account/totp"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if perm != PermSetup && perm != PermAuthenticated && !p.Has(perm) {
			s.recordDenied(ctx, p, perm, r)
			s.forbiddenPage(w, r, perm)
			return
		}
		next(w, r)
	}
}

// allowLongUpload lets a signed-in user's file upload outlast the
// server's read timeout as long as data flows (as the API's import does):
// the form's CSRF token is in the multipart body, so the body is read
// before the token is checked; only a valid session cookie earns the
// longer deadlines.
func (s *Server) allowLongUpload(w http.ResponseWriter, r *http.Request) {
	sec := sessionSecret(r)
	if sec == "" || r.Body == nil {
		return
	}
	ip, port := clientAddr(r)
	if _, err := s.opts.Identity.Authenticate(r.Context(), sec, identity.Client{IP: ip, Port: port, UserAgent: r.UserAgent()}); err != nil {
		return
	}
	r.Body = readCloser{&deadlineReader{r: r.Body, rc: http.NewResponseController(w)}, r.Body}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// forbiddenPage answers 403 for a permission the user does not hold.
func (s *Server) forbiddenPage(w http.ResponseWriter, r *http.Request, perm string) {
	s.errorPage(w, r, http.StatusForbidden, "Not allowed", "This page needs the "+perm+" permission, which your roles do not grant. Ask an administrator if you need it.")
}

// errorPage answers an HTML error page (with the navigation when the user
// is signed in).
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	d := pageData{Title: title}
	if PrincipalFrom(r.Context()) != nil && sessionSecret(r) != "" {
		d = s.signedData(r, title)
	}
	d.D = map[string]any{"Status": status, "Detail": detail, "RequestID": problem.RequestID(r.Context())}
	s.render(w, r, status, "error", d)
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	sub, err := fs.Sub(assets, "assets/static")
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.StripPrefix("/static/", http.FileServerFS(sub)).ServeHTTP(w, r)
}

func sessionSecret(r *http.Request) string {
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// signedData is the page data of a signed-in user: the CSRF token of the
// session, and the navigation.
func (s *Server) signedData(r *http.Request, title string) pageData {
	d := pageData{Title: title, Signed: true, CSRF: identity.CSRFToken(sessionSecret(r))}
	p := PrincipalFrom(r.Context())
	if p == nil {
		return d
	}
	n := &navData{perms: p.Permissions, features: map[string]bool{"privacy": s.opts.Privacy != nil, "sso": s.opts.SSO != nil,
		"sftp": s.opts.SFTP != nil, "monitor": s.opts.Monitor != nil && s.opts.DB != nil}}
	if p.Restricted() {
		n.perms = nil // a user who must finish set-up sees only the account pages
	}
	if u, err := s.opts.Identity.GetUser(r.Context(), p.TenantID, p.UserID); err == nil {
		n.UserName, n.UserEmail = u.Name, u.Email
	}
	if t, err := s.opts.Tenants.Get(r.Context(), p.TenantID); err == nil {
		n.TenantName = t.Name
	}
	if pol, err := s.tenantPolicy(r.Context(), p.TenantID); err == nil {
		n.IdleSeconds = int(pol.Session.IdleTimeout.D().Seconds())
	}
	d.Nav = n
	return d
}

// page renders a page of the signed-in interface.
func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, name, title, section string, data any) {
	d := s.signedData(r, title)
	d.Wide = true
	d.Nav.Active = section
	d.D = data
	if f, ok := data.(interface{ flash() (string, string) }); ok {
		d.Error, d.Notice = f.flash()
	}
	if f, ok := data.(interface{ refresh() int }); ok {
		d.Refresh = f.refresh()
		d.RefreshURL = r.URL.Path
	}
	s.render(w, r, status, name, d)
}

func (s *Server) homePage(w http.ResponseWriter, r *http.Request) {
	s.dashboardPage(w, r)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	// Already signed in: the dashboard (an expired or revoked cookie is
	// cleared by authenticate and the form shows).
	if sec := sessionSecret(r); sec != "" {
		ip, port := clientAddr(r)
		if _, err := s.opts.Identity.Authenticate(r.Context(), sec, identity.Client{IP: ip, Port: port, UserAgent: r.UserAgent()}); err == nil {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		} else if errors.Is(err, identity.ErrNoSession) {
			clearSessionCookie(w)
		}
	}
	d := pageData{Title: "Sign in", Form: map[string]string{"tenant": r.URL.Query().Get("tenant")}}
	if r.URL.Query().Get("expired") != "" {
		d.Notice = "You were signed out after a period of inactivity. Sign in again to continue."
	}
	s.loginSSO(r, &d)
	s.render(w, r, http.StatusOK, "login", d)
}

// uiError turns an identity error into a message for a page.
func uiMessage(err error) (int, string) {
	switch {
	case errors.Is(err, identity.ErrInvalidCredentials):
		return http.StatusUnauthorized, "The organisation, email or password is wrong."
	case errors.Is(err, identity.ErrPasswordLoginDisabled):
		return http.StatusForbidden, "This organisation signs in through its identity provider; use its single sign-on button."
	case errors.Is(err, identity.ErrLocked):
		return http.StatusLocked, "Too many failed attempts: this account is locked for a while, or until an administrator unlocks it."
	case errors.Is(err, identity.ErrThrottled):
		return http.StatusTooManyRequests, "Too many attempts; wait a minute before trying again."
	case errors.Is(err, identity.ErrInvalidCode):
		return http.StatusUnauthorized, "That code is wrong, expired or already used."
	case errors.Is(err, identity.ErrIPNotAllowed):
		return http.StatusForbidden, "Your network address is not allowed for this organisation."
	case errors.Is(err, identity.ErrReauthRequired):
		return http.StatusForbidden, "Sign in again before making this change."
	case errors.Is(err, identity.ErrUnavailable):
		return http.StatusNotImplemented, "Email codes are not available; use your authenticator app or a recovery code."
	}
	var pe *identity.PolicyError
	if errors.As(err, &pe) {
		return http.StatusUnprocessableEntity, pe.Error()
	}
	var ve *identity.ValidationError
	if errors.As(err, &ve) {
		return http.StatusUnprocessableEntity, ve.Error()
	}
	return 0, ""
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, page string, d pageData, err error) {
	status, msg := uiMessage(err)
	if status == 0 {
		s.serverError(w, r, err)
		return
	}
	d.Error = msg
	s.render(w, r, status, page, d)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.render(w, r, http.StatusBadRequest, "login", pageData{Title: "Sign in", Error: "The form could not be read."})
		return
	}
	form := map[string]string{"tenant": r.PostForm.Get("tenant"), "email": r.PostForm.Get("email")}
	res, err := s.opts.Identity.Login(r.Context(), identity.LoginRequest{Tenant: form["tenant"], Email: form["email"],
		Password: r.PostForm.Get("password"), Client: s.clientOf(r)})
	if err != nil {
		d := pageData{Title: "Sign in", Form: form}
		s.loginSSO(r, &d)
		s.pageError(w, r, "login", d, err)
		return
	}
	if res.MFAToken != "" {
		s.render(w, r, http.StatusOK, "mfa", pageData{Title: "Second factor", MFAToken: res.MFAToken, EmailAvailable: contains(res.MFAMethods, identity.MethodEmail)})
		return
	}
	setSessionCookie(w, *res.Session)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s *Server) mfaSubmit(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	tok := r.PostForm.Get("mfa_token")
	ns, err := s.opts.Identity.VerifyMFA(r.Context(), tok, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""), s.clientOf(r))
	if err != nil {
		s.pageError(w, r, "mfa", pageData{Title: "Second factor", MFAToken: tok, EmailAvailable: s.opts.Identity.Mailer != nil}, err)
		return
	}
	setSessionCookie(w, ns)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) mfaEmailSubmit(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	tok := r.PostForm.Get("mfa_token")
	d := pageData{Title: "Second factor", MFAToken: tok, EmailAvailable: true}
	if err := s.opts.Identity.SendEmailCode(r.Context(), tok); err != nil {
		s.pageError(w, r, "mfa", d, err)
		return
	}
	d.Notice = "A code is on its way to your email address."
	s.render(w, r, http.StatusOK, "mfa", d)
}

func (s *Server) passwordData(r *http.Request, d pageData) pageData {
	d.MinLength, d.Classes = 12, 3
	if p := PrincipalFrom(r.Context()); p != nil {
		if pol, err := s.opts.Tenants.Policy(r.Context(), p.TenantID); err == nil {
			d.MinLength, d.Classes = pol.Password.MinLength, pol.Password.MinClasses
			if pol.Password.Preset == "nist" {
				d.Classes = 0
			}
		}
	}
	return d
}

func (s *Server) enrolPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "password", s.passwordData(r, pageData{Title: "Choose your password", Enrol: true, Token: r.URL.Query().Get("token")}))
}

func (s *Server) enrolSubmit(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	d := s.passwordData(r, pageData{Title: "Choose your password", Enrol: true, Token: r.PostForm.Get("token")})
	if _, err := s.opts.Identity.Enrol(r.Context(), d.Token, r.PostForm.Get("new_password")); err != nil {
		if errors.Is(err, identity.ErrInvalidCredentials) {
			d.Error = "This link is invalid, expired or already used; ask your administrator for a new one."
			s.render(w, r, http.StatusBadRequest, "password", d)
			return
		}
		s.pageError(w, r, "password", d, err)
		return
	}
	s.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in", Notice: "Your password is set: sign in."})
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	if sec := sessionSecret(r); sec != "" {
		_ = r.ParseForm()
		// A cross-site form cannot sign the user out: the token is checked.
		if !identity.CheckCSRF(sec, r.PostForm.Get("csrf_token")) {
			s.render(w, r, http.StatusForbidden, "login", pageData{Title: "Sign in", Error: "The form expired."})
			return
		}
		if err := s.opts.Identity.Logout(r.Context(), sec); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	clearSessionCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) passwordPage(w http.ResponseWriter, r *http.Request) {
	d := s.passwordData(r, s.signedData(r, "Password"))
	d.Nav.Active = "account"
	d.Required = PrincipalFrom(r.Context()).PasswordChangeRequired
	s.render(w, r, http.StatusOK, "password", d)
}

func (s *Server) passwordSubmit(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	d := s.passwordData(r, s.signedData(r, "Password"))
	if p.UserID == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	err := s.opts.Identity.ChangePassword(r.Context(), p.TenantID, p.UserID, r.PostForm.Get("current_password"), r.PostForm.Get("new_password"), p.SessionHash)
	if err != nil {
		if errors.Is(err, identity.ErrInvalidCredentials) {
			d.Error = "Your current password is wrong."
			s.render(w, r, http.StatusUnauthorized, "password", d)
			return
		}
		s.pageError(w, r, "password", d, err)
		return
	}
	d.Notice = "Your password is changed; your other sessions were signed out."
	s.render(w, r, http.StatusOK, "password", d)
}

func (s *Server) totpPage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	d := s.signedData(r, "Second factor")
	if u, err := s.opts.Identity.GetUser(r.Context(), p.TenantID, p.UserID); err == nil {
		d.Enabled = u.TOTPEnabled
	}
	d.Required = p.MFAEnrolmentRequired
	s.render(w, r, http.StatusOK, "totp", d)
}

func (s *Server) totpBegin(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	d := s.signedData(r, "Second factor")
	e, err := s.opts.Identity.BeginTOTP(r.Context(), p)
	if err != nil {
		s.pageError(w, r, "totp", d, err)
		return
	}
	png, err := e.PNG(200)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	// A data: URL (allowed by the CSP's img-src) keeps the secret out of
	// any other request or cache.
	d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png)) // #nosec G203 -- our own base64 PNG
	d.Secret = e.Secret
	s.render(w, r, http.StatusOK, "totp", d)
}

func (s *Server) totpConfirm(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	d := s.signedData(r, "Second factor")
	codes, err := s.opts.Identity.ConfirmTOTP(r.Context(), p, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""))
	if err != nil {
		d.Error = "That code is wrong or expired; start the set-up again."
		if status, msg := uiMessage(err); status != 0 {
			d.Error = msg
		}
		s.render(w, r, http.StatusUnprocessableEntity, "totp", d)
		return
	}
	d.RecoveryCodes = codes
	s.render(w, r, http.StatusOK, "totp", d)
}

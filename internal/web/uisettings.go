package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
)

// The administration pages of single sign-on (AUTH-5, ACC-2), SFTP
// accounts (XFER-1..3) and feature flags (DEV-1), over the same services
// as their APIs, which record the audit events. Adding an identity
// provider (the server then fetches an issuer or a metadata URL) stays
// with the operator (`relais sso provider add`): the page shows them.

func (s *Server) uiSettingsRoutes() []Route {
	var rs []Route
	if s.opts.SSO != nil {
		perm := string(access.SSOAdmin)
		rs = append(rs,
			Route{"GET /admin/sso", perm, s.ssoPage},
			Route{"POST /admin/sso/rules", perm, s.ssoRuleAdd},
			Route{"POST /admin/sso/rules/{id}/delete", perm, s.ssoRuleDelete},
			Route{"POST /admin/sso/password", perm, s.ssoPasswordSwitch},
		)
	}
	if s.opts.SFTP != nil {
		perm := string(access.SFTPAdmin)
		rs = append(rs,
			Route{"GET /admin/sftp", perm, s.sftpPage},
			Route{"POST /admin/sftp", perm, s.sftpAdd},
			Route{"POST /admin/sftp/{id}/delete", perm, s.sftpRemove},
		)
	}
	if s.opts.Monitor != nil && s.opts.DB != nil {
		rs = append(rs,
			Route{"GET /admin/flags", string(access.SettingsRead), s.flagsPage},
			Route{"POST /admin/flags/{id}", string(access.SettingsAdmin), s.flagSwitch},
		)
	}
	return rs
}

// ---- single sign-on ----

type ssoData struct {
	flashData
	Providers     []sso.Provider
	Rules         []ssoRuleView
	PasswordLogin bool
	Groups        []access.Group
	Roles         []access.Role
	Slug          string
	Form          map[string]string
}

type ssoRuleView struct {
	sso.Rule
	Provider string
}

func ssoUIError(err error) (int, string, bool) {
	var ve *sso.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, sentence(ve.Field) + " " + ve.Message + ".", true
	case errors.Is(err, sso.ErrNotFound):
		return http.StatusNotFound, "No such identity provider, group, role or rule.", true
	}
	return adminUIError(err)
}

func (s *Server) ssoPage(w http.ResponseWriter, r *http.Request) {
	s.showSSO(w, r, http.StatusOK, ssoData{flashData: flashData{Msg: notice(r, map[string]string{
		"added": "The rule is added: it applies at each user's next sign-in.", "deleted": "The rule is deleted.", "saved": "Saved."})}})
}

func (s *Server) showSSO(w http.ResponseWriter, r *http.Request, status int, d ssoData) {
	ctx, tid := r.Context(), tenantOf(r)
	var err error
	if d.Providers, err = s.opts.SSO.ListProviders(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	names := map[string]string{}
	for _, p := range d.Providers {
		names[p.ID] = p.Name
	}
	rules, err := s.opts.SSO.ListRules(ctx, tid, "")
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	for _, ru := range rules {
		d.Rules = append(d.Rules, ssoRuleView{Rule: ru, Provider: names[ru.ProviderID]})
	}
	if d.PasswordLogin, err = s.opts.SSO.PasswordLogin(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	if s.opts.Access != nil {
		if d.Groups, err = s.opts.Access.ListGroups(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
		if d.Roles, err = s.opts.Access.ListRoles(ctx, tid); err != nil {
			s.serverError(w, r, err)
			return
		}
	}
	if t, err := s.opts.Tenants.Get(ctx, tid); err == nil {
		d.Slug = t.Slug
	}
	s.page(w, r, status, "sso", "Single sign-on", "sso", d)
}

// ssoRuleEscalation returns a permission the rule would hand out that the
// caller does not hold (ACC-1: no one grants more than they have), or "".
func (s *Server) ssoRuleEscalation(ctx context.Context, p *identity.Principal, group, role string) (string, error) {
	if s.opts.Access == nil {
		return "", nil
	}
	var roles []string
	if role != "" {
		roles = append(roles, role)
	}
	if group != "" {
		g, err := s.opts.Access.GetGroup(ctx, p.TenantID, group)
		if err != nil {
			return "", err
		}
		for _, rr := range g.Roles {
			roles = append(roles, rr.ID)
		}
	}
	for _, ref := range roles {
		ro, err := s.opts.Access.GetRole(ctx, p.TenantID, ref)
		if err != nil {
			return "", err
		}
		for _, perm := range ro.Permissions {
			if !p.Has(string(perm)) {
				return string(perm), nil
			}
		}
	}
	return "", nil
}

func (s *Server) ssoRuleAdd(w http.ResponseWriter, r *http.Request) {
	ctx, p := r.Context(), PrincipalFrom(r.Context())
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	form := map[string]string{"provider": f("provider"), "claim": f("claim"), "value": f("value"), "group": f("group"), "role": f("role")}
	again := func(st int, msg string) { s.showSSO(w, r, st, ssoData{flashData: flashData{Err: msg}, Form: form}) }
	fail := func(err error) {
		st, msg, ok := ssoUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		again(st, msg)
	}
	perm, err := s.ssoRuleEscalation(ctx, p, form["group"], form["role"])
	if err != nil {
		fail(err)
		return
	}
	if perm != "" {
		s.recordDenied(ctx, p, perm, r)
		again(http.StatusForbidden, "This rule would hand out "+perm+", which you do not hold.")
		return
	}
	if _, err := s.opts.SSO.AddRule(ctx, p.TenantID, sso.NewRule{Provider: form["provider"], Claim: form["claim"], Value: form["value"],
		Group: form["group"], Role: form["role"]}); err != nil {
		fail(err)
		return
	}
	http.Redirect(w, r, "/admin/sso?done=added", http.StatusSeeOther)
}

func (s *Server) ssoRuleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.SSO.DeleteRule(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		st, msg, ok := ssoUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showSSO(w, r, st, ssoData{flashData: flashData{Err: msg}})
		return
	}
	http.Redirect(w, r, "/admin/sso?done=deleted", http.StatusSeeOther)
}

func (s *Server) ssoPasswordSwitch(w http.ResponseWriter, r *http.Request) {
	on := r.PostFormValue("password_login") == "on"
	if err := s.opts.SSO.SetPasswordLogin(r.Context(), tenantOf(r), on); err != nil {
		st, msg, ok := ssoUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showSSO(w, r, st, ssoData{flashData: flashData{Err: msg}})
		return
	}
	http.Redirect(w, r, "/admin/sso?done=saved", http.StatusSeeOther)
}

// loginSSO fills the sign-in page's single sign-on buttons for the
// organisation named in the form or the query (an unknown one gets none,
// like any organisation without a provider).
func (s *Server) loginSSO(r *http.Request, d *pageData) {
	d.SSOOn = s.opts.SSO != nil
	tenant := strings.TrimSpace(d.Form["tenant"])
	if s.opts.SSO == nil || tenant == "" || len(tenant) > 63 {
		return
	}
	ps, pw, err := s.opts.SSO.SignInOptions(r.Context(), tenant)
	if err != nil {
		s.log.WarnContext(r.Context(), "sign-in page: single sign-on options", "error", err)
		return
	}
	d.SSO, d.NoPassword = ps, !pw && len(ps) > 0
}

// ---- SFTP accounts ----

type sftpData struct {
	flashData
	Accounts []sftpd.Account
	Slug     string
	Form     map[string]string
}

func sftpUIError(err error) (int, string, bool) {
	var ie *sftpd.InvalidError
	switch {
	case errors.As(err, &ie):
		return http.StatusUnprocessableEntity, sentence(ie.Field) + ": " + ie.Message + ".", true
	case errors.Is(err, sftpd.ErrNotFound):
		return http.StatusNotFound, "No such SFTP account.", true
	case errors.Is(err, sftpd.ErrNameTaken):
		return http.StatusConflict, "An SFTP account of your organisation already has that name.", true
	}
	return uiErrorMessage(err)
}

func (s *Server) sftpPage(w http.ResponseWriter, r *http.Request) {
	s.showSFTP(w, r, http.StatusOK, sftpData{flashData: flashData{Msg: notice(r, map[string]string{"added": "The account is created.", "removed": "The account is removed."})}})
}

func (s *Server) showSFTP(w http.ResponseWriter, r *http.Request, status int, d sftpData) {
	ctx, tid := r.Context(), tenantOf(r)
	var err error
	if d.Accounts, err = s.opts.SFTP.Accounts(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	if t, err := s.opts.Tenants.Get(ctx, tid); err == nil {
		d.Slug = t.Slug
	}
	if d.Form == nil {
		d.Form = map[string]string{"upload": "on", "download": "on"}
	}
	s.page(w, r, status, "sftp", "SFTP accounts", "sftp", d)
}

func (s *Server) sftpAdd(w http.ResponseWriter, r *http.Request) {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	form := map[string]string{"name": f("name"), "keys": f("keys"), "allow": f("allow"), "mode": f("mode"), "expires": f("expires"),
		"upload": f("upload"), "download": f("download")}
	again := func(st int, msg string) { s.showSFTP(w, r, st, sftpData{flashData: flashData{Err: msg}, Form: form}) }
	na := sftpd.NewAccount{Name: form["name"], Import: sftpd.ImportSettings{Mode: form["mode"]}}
	for _, line := range strings.Split(form["keys"], "\n") {
		if line = strings.TrimSpace(line); line != "" {
			na.Keys = append(na.Keys, line)
		}
	}
	na.Allow = strings.FieldsFunc(form["allow"], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	if form["upload"] != "" {
		na.Permissions = append(na.Permissions, sftpd.PermUpload)
	}
	if form["download"] != "" {
		na.Permissions = append(na.Permissions, sftpd.PermDownload)
	}
	if len(na.Permissions) == 0 {
		again(http.StatusUnprocessableEntity, "Give the account upload, download or both.")
		return
	}
	if form["expires"] != "" {
		t, err := time.Parse("2006-01-02", form["expires"])
		if err != nil {
			again(http.StatusUnprocessableEntity, "The expiry is a date (YYYY-MM-DD).")
			return
		}
		na.ExpiresAt = &t
	}
	if _, err := s.opts.SFTP.AddAccount(r.Context(), tenantOf(r), na); err != nil {
		st, msg, ok := sftpUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		again(st, msg)
		return
	}
	http.Redirect(w, r, "/admin/sftp?done=added", http.StatusSeeOther)
}

func (s *Server) sftpRemove(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	var err error
	if !validID(ref) {
		err = sftpd.ErrNotFound
	} else {
		_, err = s.opts.SFTP.RemoveAccount(r.Context(), tenantOf(r), ref)
	}
	if err != nil {
		st, msg, ok := sftpUIError(err)
		if !ok {
			s.serverError(w, r, err)
			return
		}
		s.showSFTP(w, r, st, sftpData{flashData: flashData{Err: msg}})
		return
	}
	http.Redirect(w, r, "/admin/sftp?done=removed", http.StatusSeeOther)
}

// ---- feature flags ----

type flagView struct {
	flags.State
	Description string
}

func (s *Server) flagsPage(w http.ResponseWriter, r *http.Request) {
	s.showFlags(w, r, http.StatusOK, flashData{Msg: notice(r, map[string]string{"done": "The flag is switched; it applies at once."})})
}

func (s *Server) showFlags(w http.ResponseWriter, r *http.Request, status int, fl flashData) {
	list, err := s.opts.Monitor.Flags.List(r.Context(), tenantOf(r))
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	d := struct {
		flashData
		Flags []flagView
	}{flashData: fl}
	for _, st := range list {
		v := flagView{State: st}
		for _, k := range flags.Known {
			if k.Name == st.Name {
				v.Description = k.Description
			}
		}
		d.Flags = append(d.Flags, v)
	}
	s.page(w, r, status, "flags", "Feature flags", "flags", d)
}

func (s *Server) flagSwitch(w http.ResponseWriter, r *http.Request) {
	on := r.PostFormValue("enabled") == "on"
	if _, err := s.opts.Monitor.Flags.Set(r.Context(), tenantOf(r), r.PathValue("id"), on); err != nil {
		if errors.Is(err, flags.ErrUnknown) {
			s.errorPage(w, r, http.StatusNotFound, "Not found", "No such feature flag.")
			return
		}
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, "/admin/flags?done=done", http.StatusSeeOther)
}

// dashboardAlerts are the tenant's firing alerts (AVL-5), newest first.
func (s *Server) dashboardAlerts(ctx context.Context, tenantID string) ([]alerts.Alert, error) {
	if s.opts.Monitor == nil || s.opts.DB == nil {
		return nil, nil
	}
	return alerts.List(ctx, s.opts.DB, tenantID, false, alerts.Filter{State: alerts.StateFiring, Limit: 10})
}

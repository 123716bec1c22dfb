package web

import (
	"fmt"
	"net/url"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
)

// ui2WalkExamples: the browser pages of privacy, single sign-on, SFTP
// accounts and feature flags (see auditwalk_test.go). Each posts the form
// as a browser does, with the CSRF token in the form, as the administrator.
func ui2WalkExamples() map[string]walkExample {
	form := func(w *walkEnv, path string, v url.Values) auditCall {
		v.Set("csrf_token", w.as.csrf)
		return auditCall{s: w.as, method: "POST", path: path, body: v.Encode(), ctype: formType, actor: w.admin.ID}
	}
	provider := func(w *walkEnv) string {
		name := fmt.Sprintf("page%d", w.next())
		_, err := w.sso.CreateProvider(w.ctx, w.a.ID, sso.NewProvider{Name: name, Kind: sso.KindOIDC, ClientSecret: "idp-client-secret",
			Config: sso.Config{BaseURL: "https://relais.example", Issuer: "https://idp.example", ClientID: "relais"}}, false)
		w.must(err)
		return name
	}
	return map[string]walkExample{
		"POST /privacy/requests": func(w *walkEnv) auditCall {
			email := fmt.Sprintf("page-erase%d@example.com", w.next())
			w.newID("POST", "/api/v1/contacts", admJSON(map[string]any{"email": email, "first_name": "Wilhelmina"}))
			c := form(w, "/privacy/requests", url.Values{"kind": {privacy.KindErasure}, "email": {email}, "suppress": {"on"}})
			c.personal = []string{email, "Wilhelmina"}
			return c
		},
		"POST /privacy/retention": func(w *walkEnv) auditCall {
			return form(w, "/privacy/retention", url.Values{"kind": {privacy.RuleBouncedContacts}, "months": {"6"}, "enabled": {"on"}})
		},
		"POST /privacy/retention/dry-run": func(w *walkEnv) auditCall {
			return form(w, "/privacy/retention/dry-run", url.Values{})
		},
		"POST /privacy/export": func(w *walkEnv) auditCall {
			return form(w, "/privacy/export", url.Values{"pgp_public_key": {w.pgpPublicKey()}})
		},
		"POST /privacy/purge": func(w *walkEnv) auditCall {
			// A draft campaign's messages (a list or contacts purge is
			// refused while other examples' campaigns are scheduled),
			// confirmed with the organisation's identifier.
			n := w.next()
			tpl := w.newID("POST", "/api/v1/templates", fmt.Sprintf(`{"name":"Page purged %d","channel":"email","variants":{"en":{"subject":"Hi","text":"Hello"}}}`, n))
			l := w.newID("POST", "/api/v1/lists", fmt.Sprintf(`{"name":"Page purged %d"}`, n))
			camp := w.newID("POST", "/api/v1/campaigns", admJSON(map[string]any{"name": fmt.Sprintf("Page purged %d", n), "channel": "email",
				"template_id": tpl, "audience": map[string]any{"list_ids": []string{l}}}))
			return form(w, "/privacy/purge", url.Values{"scope": {"campaign"}, "campaign": {camp}, "action": {"purge"}, "confirm": {w.a.Slug}})
		},
		"POST /admin/sso/rules": func(w *walkEnv) auditCall {
			return form(w, "/admin/sso/rules", url.Values{"provider": {provider(w)}, "claim": {"groups"}, "value": {"readers"}, "role": {access.RoleViewer}})
		},
		"POST /admin/sso/rules/{id}/delete": func(w *walkEnv) auditCall {
			r, err := w.sso.AddRule(w.ctx, w.a.ID, sso.NewRule{Provider: provider(w), Claim: "groups", Value: "gone", Role: access.RoleViewer})
			w.must(err)
			return form(w, "/admin/sso/rules/"+r.ID+"/delete", url.Values{})
		},
		"POST /admin/sso/password": func(w *walkEnv) auditCall {
			return form(w, "/admin/sso/password", url.Values{"password_login": {"on"}})
		},
		"POST /admin/sftp": func(w *walkEnv) auditCall {
			return form(w, "/admin/sftp", url.Values{"name": {fmt.Sprintf("page%d", w.next())}, "keys": {sftpTestKey}, "allow": {"203.0.113.0/24"}, "upload": {"on"}})
		},
		"POST /admin/sftp/{id}/delete": func(w *walkEnv) auditCall {
			a, err := w.sftp.AddAccount(w.ctx, w.a.ID, sftpd.NewAccount{Name: fmt.Sprintf("page%d", w.next()), Keys: []string{sftpTestKey}, Allow: []string{"203.0.113.0/24"}})
			w.must(err)
			return form(w, "/admin/sftp/"+a.ID+"/delete", url.Values{})
		},
		"POST /admin/flags/{id}": func(w *walkEnv) auditCall {
			return form(w, "/admin/flags/"+flags.ExperimentalCampaignIndicators, url.Values{"enabled": {"on"}})
		},
	}
}

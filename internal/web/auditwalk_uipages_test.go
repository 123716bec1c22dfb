package web

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/url"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
)

// The coverage walk's examples for the forms of the server-rendered
// interface (issue 14; see auditwalk_test.go). Each form is posted, with
// the session's CSRF token in the form as a browser does, by a user who
// holds only the route table's permission for it (plus, where the form's
// service checks more, what that check needs: anti-escalation, saving a
// segment), so the example also shows the route's permission is enough.
// A form succeeds with a page or a 303 redirect to one.

// holder signs in a new user of tenant A whose only role is a custom one
// with exactly perms.
func (w *walkEnv) holder(perms ...access.Permission) (identity.User, *adminSession) {
	w.t.Helper()
	n := w.next()
	r := w.role(w.t, w.a.ID, fmt.Sprintf("Holder %d", n), perms...)
	u, _ := w.user(w.t, w.a.ID, fmt.Sprintf("holder%d@acme.example", n), fmt.Sprintf("Holder Number%d", n), r.ID)
	return u, w.session(w.t, w.a.ID, u.ID)
}

// form is a browser form posted by a new holder of perms.
func (w *walkEnv) form(path string, v url.Values, perms ...access.Permission) auditCall {
	w.t.Helper()
	u, s := w.holder(perms...)
	v.Set("csrf_token", s.csrf)
	return auditCall{s: s, method: "POST", path: path, body: v.Encode(), ctype: formType, actor: u.ID}
}

// uiPageWalkExamples: the interface's forms (contacts, lists, segments,
// templates, campaigns, administration, audit, the account's sessions).
func uiPageWalkExamples() map[string]walkExample {
	contact := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/contacts", fmt.Sprintf(`{"email":"ui%d@example.com"}`, w.next()))
	}
	list := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/lists", fmt.Sprintf(`{"name":"UI list %d"}`, w.next()))
	}
	template := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/templates", fmt.Sprintf(`{"name":"UI news %d","channel":"email","variants":{"en":{"subject":"Hi","text":"Hello"}}}`, w.next()))
	}
	// campaign is a draft campaign to one consenting contact.
	campaign := func(w *walkEnv) string {
		l := list(w)
		c := w.newID("POST", "/api/v1/contacts", fmt.Sprintf(`{"email":"uireader%d@example.com","consents":[{"channel":"email","status":"granted","wording":"News"}]}`, w.next()))
		w.api("POST", "/api/v1/lists/"+l+"/members", admJSON(map[string]any{"contact_ids": []string{c}}))
		return w.newID("POST", "/api/v1/campaigns", admJSON(map[string]any{"name": fmt.Sprintf("UI campaign %d", w.next()), "channel": "email",
			"template_id": template(w), "audience": map[string]any{"list_ids": []string{l}}}))
	}
	sendAt := func() string { return time.Now().Add(24 * time.Hour).UTC().Format("2006-01-02T15:04") }
	role := func(w *walkEnv) access.Role {
		return w.role(w.t, w.a.ID, fmt.Sprintf("UI role %d", w.next()), access.ContactsRead)
	}
	return map[string]walkExample{
		// ---- account ----
		"POST /account/sessions/revoke": func(w *walkEnv) auditCall {
			u, s := w.member()
			mine, err := w.id.ListSessions(w.ctx, w.a.ID, u.ID, nil)
			w.must(err)
			w.session(w.t, w.a.ID, u.ID) // the same user's other browser
			all, err := w.id.ListSessions(w.ctx, w.a.ID, u.ID, nil)
			w.must(err)
			var other string
			for _, ss := range all {
				if len(mine) != 1 || ss.ID != mine[0].ID {
					other = ss.ID
				}
			}
			v := url.Values{"id": {other}, "csrf_token": {s.csrf}}
			return auditCall{s: s, method: "POST", path: "/account/sessions/revoke", body: v.Encode(), ctype: formType, actor: u.ID}
		},
		// ---- administration ----
		"POST /admin/users": func(w *walkEnv) auditCall {
			c := w.form("/admin/users", url.Values{"email": {"page-created@acme.example"}, "name": {"Paged Person"}}, access.UsersAdmin)
			c.personal = []string{"page-created@acme.example", "Paged Person"}
			return c
		},
		"POST /admin/users/invite": func(w *walkEnv) auditCall {
			c := w.form("/admin/users/invite", url.Values{"people": {"page-invited@acme.example,Invited Person"}}, access.UsersAdmin)
			c.personal = []string{"page-invited@acme.example", "Invited Person"}
			return c
		},
		"POST /admin/users/{id}/{action}": func(w *walkEnv) auditCall {
			return w.form("/admin/users/"+w.viewer().ID+"/disable", url.Values{}, access.UsersAdmin)
		},
		"POST /admin/users/{id}/roles": func(w *walkEnv) auditCall {
			// A role within the granter's own permissions (anti-escalation).
			return w.form("/admin/users/"+w.viewer().ID+"/roles", url.Values{"role": {role(w).ID}}, access.RolesAdmin, access.ContactsRead)
		},
		"POST /admin/groups": func(w *walkEnv) auditCall {
			return w.form("/admin/groups", url.Values{"name": {fmt.Sprintf("UI group %d", w.next())}, "description": {"Sales"}}, access.RolesAdmin)
		},
		"POST /admin/groups/{id}": func(w *walkEnv) auditCall {
			g, err := w.acc.CreateGroup(w.ctx, w.a.ID, admOperator, fmt.Sprintf("UI group %d", w.next()), "")
			w.must(err)
			return w.form("/admin/groups/"+g.ID, url.Values{"op": {"add-member"}, "user": {w.viewer().ID}}, access.RolesAdmin)
		},
		"POST /admin/roles": func(w *walkEnv) auditCall {
			return w.form("/admin/roles", url.Values{"name": {fmt.Sprintf("UI readers %d", w.next())}, "perm": {string(access.ContactsRead)}},
				access.RolesAdmin, access.ContactsRead)
		},
		"POST /admin/roles/{id}/delete": func(w *walkEnv) auditCall {
			return w.form("/admin/roles/"+role(w).ID+"/delete", url.Values{}, access.RolesAdmin, access.ContactsRead)
		},
		"POST /admin/security": func(w *walkEnv) auditCall {
			// The default policy, saved as an override.
			return w.form("/admin/security", url.Values{"min_length": {"12"}, "max_failures": {"5"}, "idle_timeout": {"30m"},
				"absolute_lifetime": {"12h"}, "preset": {"seed"}, "two_factor": {"none"}, "ui_allow": {""}, "api_allow": {""}}, access.SettingsAdmin)
		},
		"POST /admin/clients": func(w *walkEnv) auditCall {
			return w.form("/admin/clients", url.Values{"name": {fmt.Sprintf("ui-client-%d", w.next())}}, access.ClientsAdmin)
		},
		"POST /admin/clients/{id}/{action}": func(w *walkEnv) auditCall {
			c, _, err := w.id.CreateClient(w.ctx, w.a.ID, fmt.Sprintf("ui-client-%d", w.next()), nil)
			w.must(err)
			return w.form("/admin/clients/"+c.ID+"/disable", url.Values{}, access.ClientsAdmin)
		},
		"POST /admin/connectors": func(w *walkEnv) auditCall {
			return w.form("/admin/connectors", url.Values{"name": {fmt.Sprintf("ui-mail-%d", w.next())}, "kind": {"smtp"},
				"config": {`{"host":"127.0.0.1","port":2525,"tls":"starttls","from":"news@acme.example"}`}}, access.SettingsAdmin)
		},
		// ---- audit ----
		"POST /audit/verify": func(w *walkEnv) auditCall {
			// Records audit.verify (the check itself) in the trail.
			return w.form("/audit/verify", url.Values{}, access.AuditRead)
		},
		// ---- campaigns and templates ----
		"POST /campaigns/new": func(w *walkEnv) auditCall {
			return w.form("/campaigns/new", url.Values{"name": {fmt.Sprintf("UI launch %d", w.next())}, "template": {template(w)}, "list": {list(w)}},
				access.CampaignsWrite)
		},
		"POST /campaigns/settings": func(w *walkEnv) auditCall {
			return w.form("/campaigns/settings", url.Values{"quiet_start": {"21:00"}, "quiet_end": {"08:00"}, "timezone": {"Europe/Paris"}}, access.SettingsAdmin)
		},
		"POST /campaigns/{id}/edit": func(w *walkEnv) auditCall {
			return w.form("/campaigns/"+campaign(w)+"/edit", url.Values{"name": {fmt.Sprintf("UI renamed %d", w.next())}, "template": {template(w)},
				"list": {list(w)}}, access.CampaignsWrite)
		},
		"POST /campaigns/{id}/delete": func(w *walkEnv) auditCall {
			return w.form("/campaigns/"+campaign(w)+"/delete", url.Values{}, access.CampaignsWrite)
		},
		"POST /campaigns/{id}/schedule": func(w *walkEnv) auditCall {
			return w.form("/campaigns/"+campaign(w)+"/schedule", url.Values{"when": {"at"}, "send_at": {sendAt()}, "throttle": {"10"}}, access.CampaignsSend)
		},
		"POST /campaigns/{id}/{action}": func(w *walkEnv) auditCall {
			id := campaign(w)
			w.api("POST", "/api/v1/campaigns/"+id+"/schedule", `{"schedule":{"kind":"at","send_at":"`+time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339)+`"}}`)
			return w.form("/campaigns/"+id+"/pause", url.Values{}, access.CampaignsSend)
		},
		"POST /templates/new": func(w *walkEnv) auditCall {
			return w.form("/templates/new", url.Values{"name": {fmt.Sprintf("UI welcome %d", w.next())}, "channel": {"email"}, "locale": {"en"},
				"subject": {"Welcome"}, "text": {"Hello {{.contact.first_name}}"}}, access.TemplatesWrite)
		},
		"POST /templates/{id}": func(w *walkEnv) auditCall {
			return w.form("/templates/"+template(w), url.Values{"name": {fmt.Sprintf("UI renamed %d", w.next())}, "locale": {"en"}, "version": {"1"},
				"subject": {"Hi again"}, "text": {"Hello"}}, access.TemplatesWrite)
		},
		// ---- contacts, lists and segments ----
		"POST /contacts/new": func(w *walkEnv) auditCall {
			c := w.form("/contacts/new", url.Values{"email": {"paged@example.com"}, "first_name": {"Rosalind"}, "phone": {"+33698765432"}}, access.ContactsWrite)
			c.personal = []string{"paged@example.com", "Rosalind", "698765432"}
			return c
		},
		"POST /contacts/{id}": func(w *walkEnv) auditCall {
			c := w.form("/contacts/"+contact(w), url.Values{"email": {"repaged@example.com"}, "first_name": {"Evangeline"}, "status": {"active"}}, access.ContactsWrite)
			c.personal = []string{"repaged@example.com", "Evangeline"}
			return c
		},
		"POST /contacts/{id}/consent": func(w *walkEnv) auditCall {
			return w.form("/contacts/"+contact(w)+"/consent", url.Values{"channel": {"email"}, "status": {"granted"}, "wording": {"Newsletter, by phone"}},
				access.ContactsWrite)
		},
		"POST /contacts/{id}/delete": func(w *walkEnv) auditCall {
			return w.form("/contacts/"+contact(w)+"/delete", url.Values{}, access.ContactsWrite)
		},
		"POST /contacts/{id}/lists": func(w *walkEnv) auditCall {
			return w.form("/contacts/"+contact(w)+"/lists", url.Values{"list": {list(w)}}, access.ListsWrite)
		},
		"POST /contacts/import": func(w *walkEnv) auditCall {
			u, s := w.holder(access.ContactsImport)
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			w.must(mw.WriteField("csrf_token", s.csrf))
			w.must(mw.WriteField("mode", "upsert"))
			fw, err := mw.CreateFormFile("file", "people.csv")
			w.must(err)
			_, err = fw.Write([]byte("email,first_name\nuploaded@example.com,Ottoline\n"))
			w.must(err)
			w.must(mw.Close())
			return auditCall{s: s, method: "POST", path: "/contacts/import", body: body.String(), ctype: mw.FormDataContentType(), actor: u.ID,
				personal: []string{"uploaded@example.com", "Ottoline"}}
		},
		"POST /lists": func(w *walkEnv) auditCall {
			return w.form("/lists", url.Values{"name": {fmt.Sprintf("UI newsletter %d", w.next())}, "description": {"Monthly"}}, access.ListsWrite)
		},
		"POST /lists/{id}/delete": func(w *walkEnv) auditCall {
			return w.form("/lists/"+list(w)+"/delete", url.Values{}, access.ListsWrite)
		},
		"POST /segments": func(w *walkEnv) auditCall {
			// Saving a segment (its count action reads only) needs
			// lists:write beyond the route's lists:read.
			return w.form("/segments", url.Values{"name": {fmt.Sprintf("UI active %d", w.next())}, "filter": {`status = "active"`}},
				access.ListsRead, access.ListsWrite)
		},
		"POST /segments/{id}/delete": func(w *walkEnv) auditCall {
			id := w.newID("POST", "/api/v1/segments", fmt.Sprintf(`{"name":"UI segment %d","filter":"status = \"active\""}`, w.next()))
			return w.form("/segments/"+id+"/delete", url.Values{}, access.ListsWrite)
		},
	}
}

// browserForm reports whether a request's content type is a browser
// form's (URL-encoded or multipart, as the file upload).
func browserForm(ctype string) bool {
	return ctype == formType || strings.HasPrefix(ctype, "multipart/form-data")
}

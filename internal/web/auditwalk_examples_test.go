package web

import (
	"fmt"
	"net/url"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/sso"
)

// The coverage walk's examples, one function per area of the API (see
// auditwalk_test.go). Each example creates what it acts on, then returns
// the call to check.

// coreWalkExamples: tenants (operator) and the caller's own account.
func coreWalkExamples() map[string]walkExample {
	return map[string]walkExample{
		"POST /api/v1/tenants": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/tenants", `{"name":"Gamma","slug":"gamma"}`)
		},
		"POST /api/v1/tenants/{ref}/disable": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/tenants/beta/disable", "")
		},
		"POST /api/v1/tenants/{ref}/enable": func(w *walkEnv) auditCall {
			return w.asOperator("POST", "/api/v1/tenants/beta/enable", "")
		},
		"POST /api/v1/me/password": func(w *walkEnv) auditCall {
			u, s := w.member()
			return auditCall{s: s, method: "POST", path: "/api/v1/me/password", actor: u.ID,
				body: admJSON(map[string]string{"current_password": adminPassword, "new_password": "Another-Lantern-Quartz-88!"})}
		},
		"POST /api/v1/me/reauth": func(w *walkEnv) auditCall {
			u, s := w.member()
			return auditCall{s: s, method: "POST", path: "/api/v1/me/reauth", body: admJSON(map[string]string{"password": adminPassword}), actor: u.ID}
		},
		"DELETE /api/v1/me/sessions/{id}": func(w *walkEnv) auditCall {
			u, s := w.member()
			w.session(w.t, w.a.ID, u.ID)
			return auditCall{s: s, method: "DELETE", path: "/api/v1/me/sessions/" + admSessionID(w.t, w.adminEnv, w.a.ID, u.ID), actor: u.ID}
		},
		"POST /api/v1/me/totp": func(w *walkEnv) auditCall {
			u, s := w.member()
			return auditCall{s: s, method: "POST", path: "/api/v1/me/totp", actor: u.ID}
		},
		"POST /api/v1/me/totp/confirm": func(w *walkEnv) auditCall {
			u, s := w.member()
			return auditCall{s: s, method: "POST", path: "/api/v1/me/totp/confirm", body: admJSON(map[string]string{"code": w.beginTOTP(s)}), actor: u.ID}
		},
	}
}

// beginTOTP starts s's TOTP set-up through the API and returns a current
// code.
func (w *walkEnv) beginTOTP(s *adminSession) string {
	w.t.Helper()
	res, body := w.call(w.t, s, "POST", "/api/v1/me/totp", "")
	admWant(w.t, "begin totp", res, body, 200, "")
	var b struct{ Secret string }
	admDecode(w.t, body, &b)
	code, err := totp.GenerateCode(b.Secret, time.Now())
	w.must(err)
	return code
}

// adminWalkExamples: users, roles, groups and API clients.
func adminWalkExamples() map[string]walkExample {
	group := func(w *walkEnv) access.Group {
		g, err := w.acc.CreateGroup(w.ctx, w.a.ID, admOperator, fmt.Sprintf("Group %d", w.next()), "")
		w.must(err)
		return g
	}
	client := func(w *walkEnv) identity.APIClient {
		c, _, err := w.id.CreateClient(w.ctx, w.a.ID, fmt.Sprintf("client-%d", w.next()), nil)
		w.must(err)
		return c
	}
	role := func(w *walkEnv) access.Role {
		return w.role(w.t, w.a.ID, fmt.Sprintf("Role %d", w.next()), access.ContactsRead)
	}
	return map[string]walkExample{
		"POST /api/v1/users": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/users", `{"email":"created@acme.example","name":"Created Person"}`)
			c.personal = []string{"created@acme.example", "Created Person"}
			return c
		},
		"POST /api/v1/users/{id}/disable": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/users/"+w.viewer().ID+"/disable", "")
		},
		"POST /api/v1/users/{id}/enable": func(w *walkEnv) auditCall {
			u := w.viewer()
			w.must(w.id.SetUserStatus(w.ctx, w.a.ID, u.ID, identity.StatusDisabled))
			return w.asAdmin("POST", "/api/v1/users/"+u.ID+"/enable", "")
		},
		"POST /api/v1/users/{id}/unlock": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/users/"+w.viewer().ID+"/unlock", "")
		},
		"POST /api/v1/users/{id}/reset-totp": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/users/"+w.viewer().ID+"/reset-totp", "")
		},
		"DELETE /api/v1/users/{id}/sessions/{sid}": func(w *walkEnv) auditCall {
			u := w.viewer()
			w.session(w.t, w.a.ID, u.ID)
			return w.asAdmin("DELETE", "/api/v1/users/"+u.ID+"/sessions/"+admSessionID(w.t, w.adminEnv, w.a.ID, u.ID), "")
		},
		"POST /api/v1/users/{id}/roles": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/users/"+w.viewer().ID+"/roles", `{"role":"editor"}`)
		},
		"DELETE /api/v1/users/{id}/roles/{role}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/users/"+w.viewer().ID+"/roles/viewer", "")
		},
		"POST /api/v1/roles": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/roles", `{"name":"Readers","permissions":["contacts:read"]}`)
		},
		"PUT /api/v1/roles/{ref}": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/roles/"+role(w).ID, `{"name":"Renamed","permissions":["contacts:read","reports:read"]}`)
		},
		"DELETE /api/v1/roles/{ref}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/roles/"+role(w).ID, "")
		},
		"POST /api/v1/groups": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/groups", `{"name":"Marketing"}`)
		},
		"DELETE /api/v1/groups/{ref}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/groups/"+group(w).ID, "")
		},
		"POST /api/v1/groups/{ref}/members/{user}": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/groups/"+group(w).ID+"/members/"+w.viewer().ID, "")
		},
		"DELETE /api/v1/groups/{ref}/members/{user}": func(w *walkEnv) auditCall {
			g, u := group(w), w.viewer()
			w.must(w.acc.AddMember(w.ctx, w.a.ID, admOperator, g.ID, u.ID))
			return w.asAdmin("DELETE", "/api/v1/groups/"+g.ID+"/members/"+u.ID, "")
		},
		"POST /api/v1/groups/{ref}/roles/{role}": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/groups/"+group(w).ID+"/roles/viewer", "")
		},
		"DELETE /api/v1/groups/{ref}/roles/{role}": func(w *walkEnv) auditCall {
			g := group(w)
			w.must(w.acc.AddGroupRole(w.ctx, w.a.ID, admOperator, g.ID, access.RoleViewer))
			return w.asAdmin("DELETE", "/api/v1/groups/"+g.ID+"/roles/viewer", "")
		},
		"POST /api/v1/clients": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/clients", `{"name":"integration"}`)
		},
		"POST /api/v1/clients/{id}/disable": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/clients/"+client(w).ID+"/disable", "")
		},
		"POST /api/v1/clients/{id}/enable": func(w *walkEnv) auditCall {
			c := client(w)
			w.must(w.id.SetClientStatus(w.ctx, w.a.ID, c.ID, identity.StatusDisabled))
			return w.asAdmin("POST", "/api/v1/clients/"+c.ID+"/enable", "")
		},
		"POST /api/v1/clients/{id}/roles": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/clients/"+client(w).ID+"/roles", `{"role":"viewer"}`)
		},
		"DELETE /api/v1/clients/{id}/roles/{role}": func(w *walkEnv) auditCall {
			c := client(w)
			w.must(w.acc.GrantClientRole(w.ctx, w.a.ID, admOperator, c.ID, access.RoleViewer))
			return w.asAdmin("DELETE", "/api/v1/clients/"+c.ID+"/roles/viewer", "")
		},
	}
}

// messageWalkExamples: sending, connectors and routes.
func messageWalkExamples() map[string]walkExample {
	const msg = `{"channel":"email","to":"jane@example.test","subject":"Order 42","text":"Thanks"}`
	return map[string]walkExample{
		"POST /api/v1/messages": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/messages", msg)
			c.personal = []string{"jane@example.test"}
			return c
		},
		"POST /api/v1/messages/batch": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/messages/batch", "["+msg+","+msg+"]")
		},
		"POST /api/v1/connectors": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/connectors", w.smtpConnector(fmt.Sprintf("mail-%d", w.next())))
		},
		"PUT /api/v1/routes/{channel}": func(w *walkEnv) auditCall {
			id := w.newID("POST", "/api/v1/connectors", w.smtpConnector(fmt.Sprintf("mail-%d", w.next())))
			return w.asAdmin("PUT", "/api/v1/routes/email", admJSON(map[string]string{"primary": id}))
		},
	}
}

// smtpConnector is a connector's creation body (no connection is made).
func (w *walkEnv) smtpConnector(name string) string {
	return admJSON(map[string]any{"name": name, "kind": "smtp",
		"config": map[string]any{"host": "127.0.0.1", "port": 2525, "tls": "starttls", "from": "news@acme.example"}})
}

// contactWalkExamples: contacts, attributes, blocklist, lists, segments.
func contactWalkExamples() map[string]walkExample {
	contact := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/contacts", fmt.Sprintf(`{"email":"c%d@example.com"}`, w.next()))
	}
	list := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/lists", fmt.Sprintf(`{"name":"List %d"}`, w.next()))
	}
	segment := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/segments", fmt.Sprintf(`{"name":"Segment %d","filter":"status = \"active\""}`, w.next()))
	}
	return map[string]walkExample{
		"POST /api/v1/contacts": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/contacts", `{"email":"new@example.com","first_name":"Annabel","phone":"+33612345678"}`)
			c.personal = []string{"new@example.com", "Annabel", "612345678"}
			return c
		},
		"PATCH /api/v1/contacts/{id}": func(w *walkEnv) auditCall {
			c := w.asAdmin("PATCH", "/api/v1/contacts/"+contact(w), `{"first_name":"Janetta","email":"patched@example.com"}`)
			c.personal = []string{"Janetta", "patched@example.com"}
			return c
		},
		"DELETE /api/v1/contacts/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/contacts/"+contact(w), "")
		},
		"POST /api/v1/contacts/{id}/consents": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/contacts/"+contact(w)+"/consents", `{"channel":"email","status":"granted","wording":"Newsletter","source_ip":"198.51.100.23"}`)
			c.personal = []string{"198.51.100.23"}
			return c
		},
		"POST /api/v1/contacts/imports": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/contacts/imports", "email\nimported@example.com\n")
			c.ctype, c.personal = "text/csv", []string{"imported@example.com"}
			return c
		},
		"PUT /api/v1/contact-attributes/{key}": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/contact-attributes/points", `{"type":"number","description":"Loyalty points"}`)
		},
		"DELETE /api/v1/contact-attributes/{key}": func(w *walkEnv) auditCall {
			w.api("PUT", "/api/v1/contact-attributes/gone", `{"type":"string"}`)
			return w.asAdmin("DELETE", "/api/v1/contact-attributes/gone", "")
		},
		"POST /api/v1/blocklist": func(w *walkEnv) auditCall {
			c := w.asAdmin("POST", "/api/v1/blocklist", `{"kind":"email","value":"spam@example.com","reason":"complaint"}`)
			c.personal = []string{"spam@example.com"}
			return c
		},
		"DELETE /api/v1/blocklist": func(w *walkEnv) auditCall {
			w.api("POST", "/api/v1/blocklist", `{"kind":"email","value":"unblock@example.com"}`)
			c := w.asAdmin("DELETE", "/api/v1/blocklist", `{"kind":"email","value":"unblock@example.com"}`)
			c.personal = []string{"unblock@example.com"}
			return c
		},
		"POST /api/v1/lists": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/lists", `{"name":"Newsletter","description":"Monthly"}`)
		},
		"PATCH /api/v1/lists/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("PATCH", "/api/v1/lists/"+list(w), `{"description":"Weekly"}`)
		},
		"DELETE /api/v1/lists/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/lists/"+list(w), "")
		},
		"POST /api/v1/lists/{id}/members": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/lists/"+list(w)+"/members", admJSON(map[string]any{"contact_ids": []string{contact(w)}}))
		},
		"DELETE /api/v1/lists/{id}/members": func(w *walkEnv) auditCall {
			l, c := list(w), contact(w)
			body := admJSON(map[string]any{"contact_ids": []string{c}})
			w.api("POST", "/api/v1/lists/"+l+"/members", body)
			return w.asAdmin("DELETE", "/api/v1/lists/"+l+"/members", body)
		},
		"POST /api/v1/segments": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/segments", `{"name":"Active","filter":"status = \"active\""}`)
		},
		"PATCH /api/v1/segments/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("PATCH", "/api/v1/segments/"+segment(w), `{"filter":"status = \"unsubscribed\""}`)
		},
		"DELETE /api/v1/segments/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/segments/"+segment(w), "")
		},
	}
}

// campaignWalkExamples: campaigns, their settings and templates.
func campaignWalkExamples() map[string]walkExample {
	template := func(w *walkEnv) string {
		return w.newID("POST", "/api/v1/templates", fmt.Sprintf(`{"name":"News %d","channel":"email","variants":{"en":{"subject":"Hi","text":"Hello"}}}`, w.next()))
	}
	campaign := func(w *walkEnv) string {
		// An audience of one contact who consented to email.
		l := w.newID("POST", "/api/v1/lists", fmt.Sprintf(`{"name":"Audience %d"}`, w.next()))
		c := w.newID("POST", "/api/v1/contacts", fmt.Sprintf(`{"email":"reader%d@example.com","consents":[{"channel":"email","status":"granted","wording":"News"}]}`, w.next()))
		w.api("POST", "/api/v1/lists/"+l+"/members", admJSON(map[string]any{"contact_ids": []string{c}}))
		return w.newID("POST", "/api/v1/campaigns", admJSON(map[string]any{"name": fmt.Sprintf("Campaign %d", w.next()), "channel": "email",
			"template_id": template(w), "audience": map[string]any{"list_ids": []string{l}}}))
	}
	future := `{"schedule":{"kind":"at","send_at":"` + time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339) + `"}}`
	scheduled := func(w *walkEnv) string {
		id := campaign(w)
		w.api("POST", "/api/v1/campaigns/"+id+"/schedule", future)
		return id
	}
	return map[string]walkExample{
		"POST /api/v1/campaigns": func(w *walkEnv) auditCall {
			l := w.newID("POST", "/api/v1/lists", `{"name":"Launch audience"}`)
			return w.asAdmin("POST", "/api/v1/campaigns", admJSON(map[string]any{"name": "Launch", "channel": "email",
				"template_id": template(w), "audience": map[string]any{"list_ids": []string{l}}}))
		},
		"PUT /api/v1/campaigns/{id}": func(w *walkEnv) auditCall {
			id := campaign(w)
			c := w.api("GET", "/api/v1/campaigns/"+id, "")
			return w.asAdmin("PUT", "/api/v1/campaigns/"+id, admJSON(map[string]any{"name": fmt.Sprintf("Renamed %d", w.next()),
				"channel": c["channel"], "template_id": c["template_id"], "audience": c["audience"], "throttle_per_second": 25}))
		},
		"DELETE /api/v1/campaigns/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/campaigns/"+campaign(w), "")
		},
		"POST /api/v1/campaigns/{id}/schedule": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/campaigns/"+campaign(w)+"/schedule", future)
		},
		"POST /api/v1/campaigns/{id}/pause": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/campaigns/"+scheduled(w)+"/pause", "")
		},
		"POST /api/v1/campaigns/{id}/resume": func(w *walkEnv) auditCall {
			id := scheduled(w)
			w.api("POST", "/api/v1/campaigns/"+id+"/pause", "")
			return w.asAdmin("POST", "/api/v1/campaigns/"+id+"/resume", "")
		},
		"POST /api/v1/campaigns/{id}/cancel": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/campaigns/"+scheduled(w)+"/cancel", "")
		},
		"PUT /api/v1/campaign-settings": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/campaign-settings", `{"quiet_start":"21:00","quiet_end":"08:00","timezone":"Europe/Paris"}`)
		},
		"POST /api/v1/templates": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/templates", `{"name":"Welcome","channel":"email","variants":{"en":{"subject":"Welcome","text":"Hello"}}}`)
		},
		"PUT /api/v1/templates/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/templates/"+template(w), `{"variants":{"en":{"subject":"Hi again","text":"Hello"}},"base_version":1}`)
		},
		"DELETE /api/v1/templates/{id}": func(w *walkEnv) auditCall {
			return w.asAdmin("DELETE", "/api/v1/templates/"+template(w), "")
		},
	}
}

// sftpWalkExamples: SFTP accounts.
func sftpWalkExamples() map[string]walkExample {
	account := func(name string) string {
		return admJSON(map[string]any{"name": name, "keys": []string{sftpTestKey}, "allow": []string{"203.0.113.0/24"}, "permissions": []string{"upload"}})
	}
	return map[string]walkExample{
		"POST /api/v1/sftp/accounts": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/sftp/accounts", account("crm"))
		},
		"DELETE /api/v1/sftp/accounts/{ref}": func(w *walkEnv) auditCall {
			name := fmt.Sprintf("gone%d", w.next())
			w.api("POST", "/api/v1/sftp/accounts", account(name))
			return w.asAdmin("DELETE", "/api/v1/sftp/accounts/"+name, "")
		},
	}
}

// ssoWalkExamples: single sign-on administration.
func ssoWalkExamples() map[string]walkExample {
	provider := func(w *walkEnv) string {
		name := fmt.Sprintf("corp%d", w.next())
		_, err := w.sso.CreateProvider(w.ctx, w.a.ID, sso.NewProvider{Name: name, Kind: sso.KindOIDC, ClientSecret: "idp-client-secret",
			Config: sso.Config{BaseURL: "https://relais.example", Issuer: "https://idp.example", ClientID: "relais"}}, false)
		w.must(err)
		return name
	}
	rule := func(w *walkEnv, p string) string {
		return admJSON(map[string]string{"provider": p, "claim": "groups", "value": "readers", "role": "viewer"})
	}
	return map[string]walkExample{
		"POST /api/v1/sso/rules": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/sso/rules", rule(w, provider(w)))
		},
		"DELETE /api/v1/sso/rules/{id}": func(w *walkEnv) auditCall {
			id := w.newID("POST", "/api/v1/sso/rules", rule(w, provider(w)))
			return w.asAdmin("DELETE", "/api/v1/sso/rules/"+id, "")
		},
		"PUT /api/v1/sso/settings": func(w *walkEnv) auditCall {
			return w.asAdmin("PUT", "/api/v1/sso/settings", `{"password_login":true}`)
		},
		"POST /api/v1/sso/scim-tokens": func(w *walkEnv) auditCall {
			return w.asAdmin("POST", "/api/v1/sso/scim-tokens", `{"name":"okta"}`)
		},
		"DELETE /api/v1/sso/scim-tokens/{id}": func(w *walkEnv) auditCall {
			tok, _, err := w.sso.CreateSCIMToken(w.ctx, w.a.ID, fmt.Sprintf("idp-%d", w.next()))
			w.must(err)
			return w.asAdmin("DELETE", "/api/v1/sso/scim-tokens/"+tok.ID, "")
		},
	}
}

// scimWalkExamples: SCIM provisioning, as the identity provider's token.
func scimWalkExamples() map[string]walkExample {
	call := func(w *walkEnv, method, path, body string) auditCall {
		tok, secret, err := w.sso.CreateSCIMToken(w.ctx, w.a.ID, fmt.Sprintf("scim-%d", w.next()))
		w.must(err)
		return auditCall{bearer: secret, method: method, path: path, body: body, ctype: "application/scim+json", actor: "scim:" + tok.ID}
	}
	user := func(w *walkEnv) string {
		c := call(w, "POST", "/scim/v2/Users", fmt.Sprintf(`{"userName":"scim%d@example.com","active":true}`, w.next()))
		res, b := w.send(c)
		if res.StatusCode != 201 {
			w.t.Fatalf("SCIM user: %d %s", res.StatusCode, b)
		}
		var u struct{ ID string }
		admDecode(w.t, b, &u)
		return u.ID
	}
	group := func(w *walkEnv) string {
		c := call(w, "POST", "/scim/v2/Groups", fmt.Sprintf(`{"displayName":"SCIM group %d"}`, w.next()))
		res, b := w.send(c)
		if res.StatusCode != 201 {
			w.t.Fatalf("SCIM group: %d %s", res.StatusCode, b)
		}
		var g struct{ ID string }
		admDecode(w.t, b, &g)
		return g.ID
	}
	return map[string]walkExample{
		"POST /scim/v2/Users": func(w *walkEnv) auditCall {
			c := call(w, "POST", "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jane.doe@example.com","active":true}`)
			c.personal = []string{"jane.doe@example.com"}
			return c
		},
		"PUT /scim/v2/Users/{id}": func(w *walkEnv) auditCall {
			id := user(w)
			return call(w, "PUT", "/scim/v2/Users/"+id, `{"userName":"renamed@example.com","active":true,"externalId":"ext-7"}`)
		},
		"PATCH /scim/v2/Users/{id}": func(w *walkEnv) auditCall {
			id := user(w)
			return call(w, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"active","value":false}]}`)
		},
		"DELETE /scim/v2/Users/{id}": func(w *walkEnv) auditCall {
			id := user(w)
			return call(w, "DELETE", "/scim/v2/Users/"+id, "")
		},
		"POST /scim/v2/Groups": func(w *walkEnv) auditCall {
			return call(w, "POST", "/scim/v2/Groups", `{"displayName":"Provisioned","externalId":"g1"}`)
		},
		"PATCH /scim/v2/Groups/{id}": func(w *walkEnv) auditCall {
			g, u := group(w), user(w)
			return call(w, "PATCH", "/scim/v2/Groups/"+g, `{"Operations":[{"op":"add","path":"members","value":[{"value":"`+u+`"}]}]}`)
		},
		"DELETE /scim/v2/Groups/{id}": func(w *walkEnv) auditCall {
			return call(w, "DELETE", "/scim/v2/Groups/"+group(w), "")
		},
	}
}

// pageWalkExamples: the browser pages' forms that change the account.
func pageWalkExamples() map[string]walkExample {
	page := func(s *adminSession, path string, v url.Values, actor string) auditCall {
		v.Set("csrf_token", s.csrf)
		return auditCall{s: s, method: "POST", path: path, body: v.Encode(), ctype: formType, actor: actor}
	}
	return map[string]walkExample{
		"POST /account/password": func(w *walkEnv) auditCall {
			u, s := w.member()
			return page(s, "/account/password", url.Values{"current_password": {adminPassword}, "new_password": {"Another-Lantern-Quartz-88!"}}, u.ID)
		},
		"POST /account/totp": func(w *walkEnv) auditCall {
			u, s := w.member()
			return page(s, "/account/totp", url.Values{}, u.ID)
		},
		"POST /account/totp/confirm": func(w *walkEnv) auditCall {
			u, s := w.member()
			return page(s, "/account/totp/confirm", url.Values{"code": {w.beginTOTP(s)}}, u.ID)
		},
	}
}

package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func (e *ssoEnv) scim(t *testing.T, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	res, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, res)
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
	}
	return res.StatusCode, out
}

// TestSCIMProvisioningAndDeprovisioning (ACC-5): an IdP creates a user
// and a group over SCIM, the user signs in through OIDC, then the IdP
// deactivates it: its live session stops working at once, and single
// sign-on refuses it. Tokens are per tenant and revocable.
func TestSCIMProvisioningAndDeprovisioning(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		_, tokA, err := e.sso.CreateSCIMToken(ctx, e.a.ID, "okta")
		if err != nil {
			t.Fatal(err)
		}
		tokB0, tokB, err := e.sso.CreateSCIMToken(ctx, e.b.ID, "beta idp")
		if err != nil {
			t.Fatal(err)
		}

		code, u := e.scim(t, tokA, "POST", "/scim/v2/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
			"userName":"jane.doe@example.com","externalId":"00u1","name":{"givenName":"Jane","familyName":"Doe"},"active":true}`)
		if code != 201 || u["active"] != true || u["externalId"] != "00u1" {
			t.Fatalf("create: %d %v", code, u)
		}
		id := u["id"].(string)
		if code, dup := e.scim(t, tokA, "POST", "/scim/v2/Users", `{"userName":"jane.doe@example.com"}`); code != 409 || dup["scimType"] != "uniqueness" {
			t.Fatalf("duplicate: %d %v", code, dup)
		}
		if code, l := e.scim(t, tokA, "GET", `/scim/v2/Users?filter=userName%20eq%20%22jane.doe@example.com%22`, ""); code != 200 || l["totalResults"] != float64(1) {
			t.Fatalf("filter: %d %v", code, l)
		}
		// Another tenant's token sees nothing of this tenant.
		if code, _ := e.scim(t, tokB, "GET", "/scim/v2/Users/"+id, ""); code != 404 {
			t.Fatalf("cross-tenant read: %d", code)
		}
		if code, _ := e.scim(t, tokB, "PATCH", "/scim/v2/Users/"+id, `{"Operations":[{"op":"replace","path":"active","value":false}]}`); code != 404 {
			t.Fatalf("cross-tenant deactivation: %d", code)
		}
		if code, _ := e.scim(t, "", "GET", "/scim/v2/Users", ""); code != 401 {
			t.Fatalf("no token: %d", code)
		}
		if code, _ := e.scim(t, "rst_"+e.a.ID+"."+strings.Repeat("A", 43), "GET", "/scim/v2/Users", ""); code != 401 {
			t.Fatalf("forged token: %d", code)
		}
		if err := e.sso.RevokeSCIMToken(ctx, e.b.ID, tokB0.ID); err != nil {
			t.Fatal(err)
		}
		if code, _ := e.scim(t, tokB, "GET", "/scim/v2/Users", ""); code != 401 {
			t.Fatalf("revoked token: %d", code)
		}

		// A group with the user; it holds a role given by an administrator.
		code, g := e.scim(t, tokA, "POST", "/scim/v2/Groups", `{"displayName":"Marketing","externalId":"g1","members":[{"value":"`+id+`"}]}`)
		if code != 201 {
			t.Fatalf("group: %d %v", code, g)
		}
		gid := g["id"].(string)
		if err := e.acc.AddGroupRole(ctx, e.a.ID, admOperator, gid, access.RoleEditor); err != nil {
			t.Fatal(err)
		}

		// SCIM cannot touch a group an administrator made (one holding the
		// admin role, say), nor see it.
		adm, err := e.acc.CreateGroup(ctx, e.a.ID, admOperator, "Admins", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.acc.AddGroupRole(ctx, e.a.ID, admOperator, adm.ID, access.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if code, _ := e.scim(t, tokA, "PATCH", "/scim/v2/Groups/"+adm.ID, `{"Operations":[{"op":"add","path":"members","value":[{"value":"`+id+`"}]}]}`); code != 404 {
			t.Fatalf("SCIM added a member to an administrator's group: %d", code)
		}
		if code, l := e.scim(t, tokA, "GET", "/scim/v2/Groups", ""); code != 200 || l["totalResults"] != float64(1) {
			t.Fatalf("SCIM group list: %d %v", code, l)
		}
		if m, _ := e.acc.GroupMembers(ctx, e.a.ID, adm.ID); len(m) != 0 {
			t.Fatalf("admin group members: %v", m)
		}

		// The user signs in through the tenant's OIDC provider (linked by
		// email; no JIT needed).
		idp := startIdP(t)
		e.addOIDC(t, e.a.ID, "corp", idp, sso.Config{})
		c := e.browser(t)
		if res, body := e.oidcLogin(t, c, "acme", "corp"); res.StatusCode != 200 {
			t.Fatalf("sign-in: %d %s", res.StatusCode, body)
		}
		res, err := c.Get(e.ts.URL + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode != 200 || !strings.Contains(string(b), "campaigns:write") {
			t.Fatalf("me: %d %s", res.StatusCode, b)
		}

		// Removing the member takes the group's roles away at once.
		if code, g := e.scim(t, tokA, "PATCH", "/scim/v2/Groups/"+gid, `{"Operations":[{"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`); code != 200 || len(g["members"].([]any)) != 0 {
			t.Fatalf("remove member: %d %v", code, g)
		}
		perms, err := e.acc.UserPermissions(ctx, e.a.ID, id)
		if err != nil || perms.Has(access.CampaignsWrite) {
			t.Fatalf("after removal: %v %v", perms.List(), err)
		}

		// Deactivation: the live session is refused at once.
		if code, u := e.scim(t, tokA, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
			"Operations":[{"op":"replace","value":{"active":false}}]}`); code != 200 || u["active"] != false {
			t.Fatalf("deactivate: %d %v", code, u)
		}
		res, err = c.Get(e.ts.URL + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode != 401 {
			t.Fatalf("session after deactivation: %d %s", res.StatusCode, b)
		}
		var live int
		err = db.Tenant(e.a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL`, id).Scan(&live)
		})
		if err != nil || live != 0 {
			t.Fatalf("live sessions after deactivation: %d %v", live, err)
		}
		// And single sign-on refuses the deactivated user.
		if res, body := e.oidcLogin(t, e.browser(t), "acme", "corp"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("sign-in after deactivation: %d %s", res.StatusCode, body)
		}
		if ev := lastSSOLogin(t, db, e.a.ID); ev["reason"] != "user_disabled" {
			t.Fatalf("audit: %v", ev)
		}
		// The deactivation is in the audit trail, by the SCIM token.
		found := false
		for _, r := range admAudit(t, db, e.a.ID) {
			if r.Action == "user.disable" && r.ObjectID == id && strings.HasPrefix(r.ActorID, "scim:") {
				found = true
			}
		}
		if !found {
			t.Fatal("no user.disable event by the SCIM token")
		}
		if code, _ := e.scim(t, tokA, "DELETE", "/scim/v2/Groups/"+gid, ""); code != 204 {
			t.Fatalf("delete group: %d", code)
		}
	})
}

// TestSCIMPaging (RFC 7644 section 3.4.2.4): an IdP pages through a
// tenant's users with startIndex and count; every user appears exactly
// once across the pages, in a stable order; out-of-range values are read
// as the RFC says, and a value that is not an integer is refused.
func TestSCIMPaging(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newSSOEnv(t, db)
		ctx := context.Background()
		_, tok, err := e.sso.CreateSCIMToken(ctx, e.a.ID, "okta")
		if err != nil {
			t.Fatal(err)
		}
		_, all := e.scim(t, tok, "GET", "/scim/v2/Users", "")
		before := int(all["totalResults"].(float64))
		for i := range 5 {
			if code, u := e.scim(t, tok, "POST", "/scim/v2/Users", fmt.Sprintf(`{"userName":"page%d@example.com"}`, i)); code != 201 {
				t.Fatalf("create: %d %v", code, u)
			}
		}
		total := before + 5
		seen := map[string]bool{}
		for start := 1; start <= total; start += 2 {
			code, l := e.scim(t, tok, "GET", fmt.Sprintf("/scim/v2/Users?startIndex=%d&count=2", start), "")
			res, _ := l["Resources"].([]any)
			want := min(2, total-start+1)
			if code != 200 || int(l["totalResults"].(float64)) != total || int(l["startIndex"].(float64)) != start ||
				int(l["itemsPerPage"].(float64)) != want || len(res) != want {
				t.Fatalf("page at %d: %d %v", start, code, l)
			}
			for _, r := range res {
				id := r.(map[string]any)["id"].(string)
				if seen[id] {
					t.Fatalf("user %s on two pages", id)
				}
				seen[id] = true
			}
		}
		if len(seen) != total {
			t.Fatalf("%d users over the pages, want %d", len(seen), total)
		}
		for _, c := range []struct {
			query             string
			start, items, got int
		}{
			{"count=0", 1, 0, 0},                                     // the total only
			{"count=-3", 1, 0, 0},                                    // negative: 0
			{"startIndex=0&count=1", 1, 1, 1},                        // below 1: 1
			{"startIndex=-7", 1, total, total},                       // and the default page
			{fmt.Sprintf("startIndex=%d", total+1), total + 1, 0, 0}, // past the end: empty
		} {
			code, l := e.scim(t, tok, "GET", "/scim/v2/Users?"+c.query, "")
			res, _ := l["Resources"].([]any)
			if code != 200 || int(l["totalResults"].(float64)) != total || int(l["startIndex"].(float64)) != c.start ||
				int(l["itemsPerPage"].(float64)) != c.items || len(res) != c.got {
				t.Fatalf("%s: %d %v", c.query, code, l)
			}
		}
		for _, q := range []string{"startIndex=one", "count=2.5", "count=99999999999999999999"} {
			if code, l := e.scim(t, tok, "GET", "/scim/v2/Users?"+q, ""); code != 400 || l["scimType"] != "invalidValue" {
				t.Fatalf("%s: %d %v", q, code, l)
			}
			if code, l := e.scim(t, tok, "GET", "/scim/v2/Groups?"+q, ""); code != 400 || l["scimType"] != "invalidValue" {
				t.Fatalf("groups %s: %d %v", q, code, l)
			}
		}
		// Groups page the same way.
		if code, l := e.scim(t, tok, "GET", "/scim/v2/Groups?count=0", ""); code != 200 || l["itemsPerPage"] != float64(0) {
			t.Fatalf("groups count=0: %d %v", code, l)
		}
	})
}

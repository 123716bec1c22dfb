package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
)

// TestInviteSeveralPeople: an administrator pastes a list of people; a
// list with any bad line (bad address, missing name, unknown role, the
// same address twice, an existing user, a broken CSV line, too many
// fields) invites nobody and names each problem's line; a good list
// creates everyone with their role and a one-time link each, which lets
// them choose a password once. Someone without roles:admin cannot grant
// roles this way; a viewer cannot invite at all.
func TestInviteSeveralPeople(t *testing.T) {
	e := newUIStack(t)
	ctx := context.Background()
	admin := e.user(t, "root@acme.example", "Root", "admin")
	sec := e.session(t, admin)
	count := func() int {
		us, err := e.id.ListUsers(ctx, e.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(us)
	}
	before := count()

	bad := strings.Join([]string{
		"email,name,role",
		"ana@acme.example,Ana Lima,viewer",
		"not-an-address,Bob",
		"carla@acme.example,",
		"dan@acme.example,Dan,no-such-role",
		"ANA@acme.example,Ana again",
		"root@acme.example,Root again",
		"eve@acme.example,Eve,viewer,extra",
	}, "\n")
	res, body := e.post(t, sec, "/admin/users/invite", url.Values{"people": {bad}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Nobody was invited") || !strings.Contains(body, `id="invite-problems"`) {
		t.Fatalf("bad list: %d\n%s", res.StatusCode, body)
	}
	for line, want := range map[string]string{"3": "email", "4": "name is missing", "5": "no role", "6": "same address as line 2", "7": "already a user", "8": "give email,name"} {
		if !strings.Contains(body, `<td class="num">`+line+`</td><td>`) || !strings.Contains(body, want) {
			t.Errorf("line %s: no problem saying %q", line, want)
		}
	}
	if strings.Contains(body, `<td class="num">2</td>`) {
		t.Error("a good line is reported as a problem")
	}
	if !strings.Contains(body, "carla@acme.example") {
		t.Error("the list is not given back to correct")
	}
	if count() != before {
		t.Fatal("a refused list created users")
	}
	for _, text := range []string{"", "\"ana@acme.example,Ana", "email,name"} {
		if res, _ := e.post(t, sec, "/admin/users/invite", url.Values{"people": {text}}); res.StatusCode != http.StatusUnprocessableEntity || count() != before {
			t.Errorf("list %q: %d", text, res.StatusCode)
		}
	}

	good := "ana@acme.example, Ana Lima, viewer\nbruno@acme.example,Bruno Costa,editor\n\"Silva, Carla\" <x>@acme.example,Carla\nchen@acme.example,Chen Wei\n"
	res, _ = e.post(t, sec, "/admin/users/invite", url.Values{"people": {good}})
	if res.StatusCode != http.StatusUnprocessableEntity || count() != before {
		t.Fatalf("a list with a quoted bad address: %d", res.StatusCode)
	}
	good = "ana@acme.example, Ana Lima, viewer\nbruno@acme.example,Bruno Costa,editor\nchen@acme.example,\"Wei, Chen\"\n"
	res, body = e.post(t, sec, "/admin/users/invite", url.Values{"people": {good}})
	if res.StatusCode != 200 || !strings.Contains(body, "3 people invited") || strings.Count(body, "/enrol?token=") != 3 {
		t.Fatalf("good list: %d\n%s", res.StatusCode, body)
	}
	if count() != before+3 {
		t.Fatalf("%d users, want %d", count(), before+3)
	}
	chen, err := e.id.FindUserByEmail(ctx, e.tenant.ID, "chen@acme.example")
	if err != nil || chen.Name != "Wei, Chen" {
		t.Fatalf("chen: %+v %v", chen, err)
	}
	bruno, err := e.id.FindUserByEmail(ctx, e.tenant.ID, "bruno@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if perms, _ := e.acc.UserPermissions(ctx, e.tenant.ID, bruno.ID); !perms.Has(access.CampaignsSend) {
		t.Error("bruno lacks the editor role")
	}
	if perms, _ := e.acc.UserPermissions(ctx, e.tenant.ID, chen.ID); perms.Len() != 0 {
		t.Errorf("chen has permissions without a role: %v", perms)
	}
	// Ana's link lets her choose a password, once.
	i := strings.Index(body, "/enrol?token=")
	link := body[i : i+strings.IndexByte(body[i:], '<')]
	tokv, err := url.ParseQuery(strings.TrimPrefix(link, "/enrol?"))
	if err != nil {
		t.Fatal(err)
	}
	tok := tokv.Get("token")
	if _, err := e.id.Enrol(ctx, tok, "correct horse battery staple 42"); err != nil {
		t.Fatalf("enrol with the link: %v", err)
	}
	if _, err := e.id.Enrol(ctx, tok, "correct horse battery staple 43"); !errors.Is(err, identity.ErrInvalidCredentials) {
		t.Fatal("the link worked twice")
	}

	// A users:admin without roles:admin: plain invitations only.
	if _, err := e.acc.CreateRole(ctx, e.tenant.ID, access.Actor{Operator: true}, "people", "", []access.Permission{access.UsersAdmin, access.UsersRead}); err != nil {
		t.Fatal(err)
	}
	hr := e.user(t, "hr@acme.example", "HR", "people")
	hs := e.session(t, hr)
	if res, body := e.post(t, hs, "/admin/users/invite", url.Values{"people": {"dora@acme.example,Dora,admin"}}); res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "roles:admin") {
		t.Errorf("grant without roles:admin: %d", res.StatusCode)
	}
	if res, _ := e.post(t, hs, "/admin/users/invite", url.Values{"people": {"dora@acme.example,Dora"}}); res.StatusCode != 200 || count() != before+5 { // three invited, HR, Dora
		t.Errorf("plain invitation by HR: %d", res.StatusCode)
	}
	vs := e.session(t, e.user(t, "victor@acme.example", "Victor", "viewer"))
	refused(t, e, vs, "POST", "/admin/users/invite")
}

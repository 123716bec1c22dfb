package access_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

var editorPerms = []string{"contacts:read", "contacts:write", "contacts:import", "contacts:export", "lists:read", "lists:write",
	"templates:read", "templates:write", "campaigns:read", "campaigns:write", "campaigns:send", "messages:send", "messages:read", "reports:read"}

// TestBuiltinRoles: the five built-in roles hold exactly their specified
// permissions, EnsureBuiltinRoles is idempotent and repairs a drifted role,
// and built-in roles cannot be updated, deleted or impersonated by name.
func TestBuiltinRoles(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		if n := e.seq("acme"); n != 5 {
			t.Fatalf("EnsureBuiltinRoles wrote %d events, want 5", n)
		}
		e.tx("acme", func(tx *store.Tx) error { return access.EnsureBuiltinRoles(e.ctx, tx) })
		if n := e.seq("acme"); n != 5 {
			t.Fatalf("a second EnsureBuiltinRoles wrote events: %d", n)
		}
		var nonAdmin []string
		for _, p := range wantCatalogue {
			if !slices.Contains(wantAdministrative, p) {
				nonAdmin = append(nonAdmin, p)
			}
		}
		want := map[string]access.Set{
			"admin":   set(wantCatalogue...),
			"manager": set(nonAdmin...),
			"editor":  set(editorPerms...),
			"viewer":  set("contacts:read", "lists:read", "templates:read", "campaigns:read", "messages:read", "settings:read", "reports:read"),
			"auditor": set("audit:read", "audit:export", "users:read", "settings:read", "reports:read"),
		}
		roles := must[[]access.Role](t)(e.svc.ListRoles(e.ctx, "acme"))
		if len(roles) != len(want) {
			t.Fatalf("%d roles, want %d", len(roles), len(want))
		}
		for _, r := range roles {
			if !r.Builtin || !r.Set().Equal(want[r.Name]) {
				t.Errorf("role %s (builtin %v): %v, want %v", r.Name, r.Builtin, r.Permissions, want[r.Name].List())
			}
		}
		if m := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", "manager")); !m.Set().Has(access.UsersRead) || m.Set().HasAdministrative() {
			t.Fatalf("manager: %v", m.Permissions)
		}

		admin := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", "admin"))
		_, err := e.svc.UpdateRole(e.ctx, "acme", operator, admin.ID, "admin", "mine now", []access.Permission{access.ContactsRead})
		wantErr(t, err, access.ErrBuiltinRole)
		wantErr(t, err, access.ErrForbidden)
		wantErr(t, e.svc.DeleteRole(e.ctx, "acme", operator, "viewer"), access.ErrBuiltinRole)
		_, err = e.svc.CreateRole(e.ctx, "acme", operator, "Admin", "", nil)
		wantErr(t, err, access.ErrConflict)
		if got := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", admin.ID)); !got.Set().Equal(want["admin"]) || got.Description != admin.Description {
			t.Fatalf("admin changed: %+v", got)
		}
		if n := e.seq("acme"); n != 5 {
			t.Fatalf("refused changes wrote events: %d", n)
		}

		// A drifted built-in role (an older release, or tampering) is put back.
		e.exec("acme", `UPDATE roles SET permissions = '["contacts:read"]' WHERE tenant_id = $1 AND name = 'viewer'`)
		e.tx("acme", func(tx *store.Tx) error { return access.EnsureBuiltinRoles(e.ctx, tx) })
		if v := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", "viewer")); !v.Set().Equal(want["viewer"]) {
			t.Fatalf("viewer not repaired: %v", v.Permissions)
		}
		if recs := e.events("acme", 5); len(recs) != 1 || recs[0].Action != "role.update" {
			t.Fatalf("repair events: %+v", recs)
		}
	})
}

// TestDefaultDeny: a user or client with no role, an unknown user and a
// disabled user (even an admin) hold nothing, and a disabled admin cannot act.
func TestDefaultDeny(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		e.user("acme", "u-none")
		e.client("acme", "c-none")
		if s := e.perms("acme", "u-none"); s.Len() != 0 || s.Has(access.ContactsRead) {
			t.Fatalf("user without role holds %v", s.List())
		}
		if s := e.perms("acme", "u-ghost"); s.Len() != 0 {
			t.Fatalf("unknown user holds %v", s.List())
		}
		if s := must[access.Set](t)(e.svc.ClientPermissions(e.ctx, "acme", "c-none")); s.Len() != 0 {
			t.Fatalf("client without role holds %v", s.List())
		}
		e.user("acme", "u-admin")
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "u-admin", "admin"))
		act := e.actor("acme", "u-admin")
		e.exec("acme", `UPDATE users SET status = 'disabled' WHERE tenant_id = $1 AND id = $2`, "u-admin")
		if s := e.perms("acme", "u-admin"); s.Len() != 0 {
			t.Fatalf("disabled admin holds %v", s.List())
		}
		_, err := e.svc.CreateGroup(e.ctx, "acme", act, "team", "")
		wantErr(t, err, access.ErrForbidden)
		// No identity at all.
		_, err = e.svc.CreateGroup(e.ctx, "acme", access.Actor{Permissions: access.AllPermissions()}, "team", "")
		wantErr(t, err, access.ErrForbidden)
	})
}

// TestPermissionsViaRoleAndGroup: permissions come from direct roles and
// from the roles of a user's groups; removing a member, a group's role, a
// direct grant or the role itself takes the permissions away at once.
func TestPermissionsViaRoleAndGroup(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		viewer := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", "viewer"))
		editor := must[access.Role](t)(e.svc.GetRole(e.ctx, "acme", "editor"))
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			e.user("acme", u)
		}

		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "u1", "viewer"))
		if s := e.perms("acme", "u1"); !s.Equal(viewer.Set()) {
			t.Fatalf("direct: %v", s.List())
		}

		g := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "Marketing", "the marketing team"))
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", operator, g.ID, "editor"))
		ok(t, e.svc.AddMember(e.ctx, "acme", operator, g.ID, "u2"))
		if s := e.perms("acme", "u2"); !s.Equal(editor.Set()) {
			t.Fatalf("via group: %v", s.List())
		}
		ok(t, e.svc.RemoveMember(e.ctx, "acme", operator, "Marketing", "u2"))
		if s := e.perms("acme", "u2"); s.Len() != 0 {
			t.Fatalf("after removal from the group: %v", s.List())
		}

		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "u3", viewer.ID))
		ok(t, e.svc.AddMember(e.ctx, "acme", operator, g.ID, "u3"))
		if s := e.perms("acme", "u3"); !s.Equal(viewer.Set().Union(editor.Set())) {
			t.Fatalf("direct and group: %v", s.List())
		}
		if gg := must[access.Group](t)(e.svc.GetGroup(e.ctx, "acme", "Marketing")); gg.MemberCount != 1 || len(gg.Roles) != 1 || gg.Roles[0].Name != "editor" {
			t.Fatalf("group: %+v", gg)
		}
		if m := must[[]string](t)(e.svc.GroupMembers(e.ctx, "acme", g.ID)); !slices.Equal(m, []string{"u3"}) {
			t.Fatalf("members: %v", m)
		}
		ok(t, e.svc.RemoveGroupRole(e.ctx, "acme", operator, g.ID, "editor"))
		if s := e.perms("acme", "u3"); !s.Equal(viewer.Set()) {
			t.Fatalf("after the group lost its role: %v", s.List())
		}
		ok(t, e.svc.RevokeUserRole(e.ctx, "acme", operator, "u1", "viewer"))
		if s := e.perms("acme", "u1"); s.Len() != 0 {
			t.Fatalf("after revoke: %v", s.List())
		}

		e.client("acme", "c1")
		ok(t, e.svc.GrantClientRole(e.ctx, "acme", operator, "c1", "editor"))
		if s := must[access.Set](t)(e.svc.ClientPermissions(e.ctx, "acme", "c1")); !s.Equal(editor.Set()) {
			t.Fatalf("client: %v", s.List())
		}
		ok(t, e.svc.RevokeClientRole(e.ctx, "acme", operator, "c1", "editor"))
		if s := must[access.Set](t)(e.svc.ClientPermissions(e.ctx, "acme", "c1")); s.Len() != 0 {
			t.Fatalf("client after revoke: %v", s.List())
		}

		// Deleting a role removes every grant of it; deleting a group its members' access.
		custom := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "exporters", "", []access.Permission{access.ContactsExport}))
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "u4", custom.ID))
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", operator, g.ID, custom.ID))
		ok(t, e.svc.GrantClientRole(e.ctx, "acme", operator, "c1", custom.ID))
		ok(t, e.svc.DeleteRole(e.ctx, "acme", operator, "exporters"))
		if s := e.perms("acme", "u4"); s.Len() != 0 {
			t.Fatalf("after role deletion: %v", s.List())
		}
		if s := e.perms("acme", "u3"); s.Has(access.ContactsExport) {
			t.Fatalf("group member kept a deleted role: %v", s.List())
		}
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", operator, g.ID, "editor"))
		ok(t, e.svc.DeleteGroup(e.ctx, "acme", operator, g.ID))
		if s := e.perms("acme", "u3"); !s.Equal(viewer.Set()) {
			t.Fatalf("after group deletion: %v", s.List())
		}
		_, err := e.svc.GetGroup(e.ctx, "acme", g.ID)
		wantErr(t, err, access.ErrNotFound)
	})
}

// TestAntiEscalation: an actor with roles:admin but without audit:read can
// neither create nor widen a role with audit:read, nor grant, attach or
// revoke the auditor role by any path; claiming more permissions than its
// roles give does not help; it can act within its own permissions; an actor
// without roles:admin can do nothing; the operator can do all of it.
func TestAntiEscalation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		perms := append(set(editorPerms...).List(), access.RolesAdmin)
		campaignAdmin := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "campaign admin", "", perms))
		e.user("acme", "boss")
		e.user("acme", "target")
		e.user("acme", "plain")
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "boss", campaignAdmin.ID))
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "plain", "editor"))
		auditors := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "auditors", ""))
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", operator, auditors.ID, "auditor"))
		boss := e.actor("acme", "boss")
		if boss.Permissions.Has(access.AuditRead) || !boss.Permissions.Has(access.RolesAdmin) {
			t.Fatalf("boss: %v", boss.Permissions.List())
		}

		refused := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, access.ErrForbidden) {
				t.Fatalf("%s: got %v, want ErrForbidden", what, err)
			}
		}
		n := e.seq("acme")
		_, err := e.svc.CreateRole(e.ctx, "acme", boss, "readers", "", []access.Permission{access.ContactsRead, access.AuditRead})
		refused("create a role with audit:read", err)
		if !strings.Contains(err.Error(), "audit:read") {
			t.Errorf("the error does not say what is missing: %v", err)
		}
		refused("grant auditor", e.svc.GrantUserRole(e.ctx, "acme", boss, "target", "auditor"))
		refused("grant auditor to self", e.svc.GrantUserRole(e.ctx, "acme", boss, "boss", "auditor"))
		_, err = e.svc.UpdateRole(e.ctx, "acme", boss, campaignAdmin.ID, campaignAdmin.Name, "", append(perms, access.AuditRead))
		refused("widen own role with audit:read", err)
		refused("add a member to a group holding auditor", e.svc.AddMember(e.ctx, "acme", boss, auditors.ID, "target"))
		refused("add self to a group holding auditor", e.svc.AddMember(e.ctx, "acme", boss, auditors.ID, "boss"))
		refused("delete a group holding auditor", e.svc.DeleteGroup(e.ctx, "acme", boss, auditors.ID))
		_, err = e.svc.CreateRole(e.ctx, "acme", access.Actor{UserID: "boss", Permissions: access.AllPermissions()},
			"readers", "", []access.Permission{access.AuditRead})
		refused("claiming permissions the roles do not give", err)
		_, err = e.svc.CreateRole(e.ctx, "acme", access.Actor{UserID: "plain", Permissions: access.AllPermissions()}, "x", "", nil)
		refused("without roles:admin", err)
		refused("grant without roles:admin", e.svc.GrantUserRole(e.ctx, "acme", e.actor("acme", "plain"), "target", "viewer"))
		if got := e.seq("acme"); got != n {
			t.Fatalf("refused mutations wrote %d events", got-n)
		}
		if s := e.perms("acme", "target"); s.Len() != 0 {
			t.Fatalf("target gained %v", s.List())
		}
		if s := e.perms("acme", "boss"); s.Has(access.AuditRead) {
			t.Fatalf("boss gained %v", s.List())
		}

		// Within its own permissions the boss may act, roles:admin included.
		team := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", boss, "team", ""))
		_ = must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", boss, "senders", "", []access.Permission{access.CampaignsSend, access.MessagesSend}))
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", boss, team.ID, "senders"))
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", boss, "target", "editor"))

		// The operator may do what the boss may not.
		_ = must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "readers", "", []access.Permission{access.AuditRead}))
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "target", "auditor"))
		if s := e.perms("acme", "target"); !s.Has(access.AuditRead) {
			t.Fatalf("operator grant: %v", s.List())
		}
		// ...and the boss cannot take it back either.
		refused("revoke auditor", e.svc.RevokeUserRole(e.ctx, "acme", boss, "target", "auditor"))
	})
}

// TestCrossTenant: ids of another tenant's roles, groups, users and clients
// are not found through this tenant's handle, and nothing changes in either.
func TestCrossTenant(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "tenant-a", "tenant-b")
		e.user("tenant-a", "ua")
		e.user("tenant-b", "ub")
		e.client("tenant-b", "cb")
		roleB := must[access.Role](t)(e.svc.CreateRole(e.ctx, "tenant-b", operator, "b-role", "", []access.Permission{access.ContactsRead}))
		groupB := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "tenant-b", operator, "b-group", ""))
		ok(t, e.svc.AddGroupRole(e.ctx, "tenant-b", operator, groupB.ID, roleB.ID))
		groupA := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "tenant-a", operator, "a-group", ""))
		adminB := must[access.Role](t)(e.svc.GetRole(e.ctx, "tenant-b", "admin"))
		na, nb := e.seq("tenant-a"), e.seq("tenant-b")

		const a = "tenant-a"
		for name, fn := range map[string]func() error{
			"grant B's role":            func() error { return e.svc.GrantUserRole(e.ctx, a, operator, "ua", roleB.ID) },
			"grant B's admin role":      func() error { return e.svc.GrantUserRole(e.ctx, a, operator, "ua", adminB.ID) },
			"grant to B's user":         func() error { return e.svc.GrantUserRole(e.ctx, a, operator, "ub", "admin") },
			"grant to B's client":       func() error { return e.svc.GrantClientRole(e.ctx, a, operator, "cb", "admin") },
			"revoke B's role":           func() error { return e.svc.RevokeUserRole(e.ctx, a, operator, "ua", roleB.ID) },
			"update B's role":           func() error { _, err := e.svc.UpdateRole(e.ctx, a, operator, roleB.ID, "x", "", nil); return err },
			"delete B's role":           func() error { return e.svc.DeleteRole(e.ctx, a, operator, roleB.ID) },
			"delete B's group":          func() error { return e.svc.DeleteGroup(e.ctx, a, operator, groupB.ID) },
			"join B's group":            func() error { return e.svc.AddMember(e.ctx, a, operator, groupB.ID, "ua") },
			"put B's user in A's group": func() error { return e.svc.AddMember(e.ctx, a, operator, groupA.ID, "ub") },
			"give B's role to A group":  func() error { return e.svc.AddGroupRole(e.ctx, a, operator, groupA.ID, roleB.ID) },
			"remove B's group role":     func() error { return e.svc.RemoveGroupRole(e.ctx, a, operator, groupB.ID, roleB.ID) },
			"get B's role":              func() error { _, err := e.svc.GetRole(e.ctx, a, roleB.ID); return err },
			"get B's group":             func() error { _, err := e.svc.GetGroup(e.ctx, a, groupB.ID); return err },
		} {
			if err := fn(); !errors.Is(err, access.ErrNotFound) {
				t.Errorf("%s: got %v, want ErrNotFound", name, err)
			}
		}
		// A user of B acting on A holds nothing there.
		ubAdmin := access.Actor{UserID: "ub", Permissions: access.AllPermissions()}
		ok(t, e.svc.GrantUserRole(e.ctx, "tenant-b", operator, "ub", "admin"))
		_, err := e.svc.CreateGroup(e.ctx, a, ubAdmin, "intruders", "")
		wantErr(t, err, access.ErrForbidden)
		nb++ // the grant just above

		if got := e.seq("tenant-a"); got != na {
			t.Errorf("tenant A log grew by %d", got-na)
		}
		if got := e.seq("tenant-b"); got != nb {
			t.Errorf("tenant B log grew by %d", got-nb)
		}
		if s := e.perms("tenant-a", "ua"); s.Len() != 0 {
			t.Errorf("ua holds %v", s.List())
		}
		if s := e.perms("tenant-a", "ub"); s.Len() != 0 {
			t.Errorf("ub holds %v in tenant A", s.List())
		}
		if r := must[access.Role](t)(e.svc.GetRole(e.ctx, "tenant-b", roleB.ID)); r.Name != "b-role" || !r.Set().Equal(roleB.Set()) {
			t.Errorf("B's role changed: %+v", r)
		}
		if g := must[access.Group](t)(e.svc.GetGroup(e.ctx, "tenant-b", groupB.ID)); len(g.Roles) != 1 {
			t.Errorf("B's group changed: %+v", g)
		}
		for _, entry := range must[[]access.ReviewEntry](t)(e.svc.Review(e.ctx, "tenant-a")) {
			if entry.ID != "ua" {
				t.Errorf("tenant A's review lists %s %s", entry.Kind, entry.ID)
			}
		}
	})
}

// TestValidation: bad names, descriptions and unknown permissions are
// *ValidationErrors naming the field, and write nothing.
func TestValidation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		n := e.seq("acme")
		field := func(what, want string, err error) {
			t.Helper()
			var ve *access.ValidationError
			if !errors.As(err, &ve) || ve.Field != want {
				t.Errorf("%s: got %v, want a ValidationError on %s", what, err, want)
			}
		}
		badNames := []string{"", strings.Repeat("a", 65), "bad/name", "semi;colon", " lead", "trail ", "new\nline", "<b>", "tab\there", "a'b"}
		for _, name := range badNames {
			_, err := e.svc.CreateRole(e.ctx, "acme", operator, name, "", nil)
			field("role "+name, "name", err)
			_, err = e.svc.CreateGroup(e.ctx, "acme", operator, name, "")
			field("group "+name, "name", err)
			_, err = e.svc.UpdateRole(e.ctx, "acme", operator, "viewer", name, "", nil)
			field("rename "+name, "name", err)
		}
		_, err := e.svc.CreateRole(e.ctx, "acme", operator, "r", "", []access.Permission{access.ContactsRead, "contacts:delete"})
		field("unknown permission", "permissions", err)
		_, err = e.svc.CreateRole(e.ctx, "acme", operator, "r", "line\x00", nil)
		field("control character", "description", err)
		_, err = e.svc.CreateGroup(e.ctx, "acme", operator, "g", strings.Repeat("d", 501))
		field("long description", "description", err)
		if got := e.seq("acme"); got != n {
			t.Fatalf("invalid input wrote %d events", got-n)
		}
		for _, name := range []string{"a", strings.Repeat("é", 64), "Ops team-1_v2.0", "Équipe marketing"} {
			if _, err := e.svc.CreateRole(e.ctx, "acme", operator, name, "", nil); err != nil {
				t.Errorf("role %q: %v", name, err)
			}
		}
	})
}

// TestConflicts: duplicate role and group names, compared without regard
// to case, and built-in names are ErrConflict.
func TestConflicts(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		senders := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "Senders", "", []access.Permission{access.MessagesSend}))
		other := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "Readers", "", []access.Permission{access.ContactsRead}))
		_ = must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "Ops", ""))
		n := e.seq("acme")
		for _, name := range []string{"Senders", "senders", "AUDITOR", "viewer"} {
			_, err := e.svc.CreateRole(e.ctx, "acme", operator, name, "", nil)
			wantErr(t, err, access.ErrConflict)
		}
		_, err := e.svc.UpdateRole(e.ctx, "acme", operator, other.ID, "SENDERS", "", other.Permissions)
		wantErr(t, err, access.ErrConflict)
		_, err = e.svc.UpdateRole(e.ctx, "acme", operator, other.ID, "Editor", "", other.Permissions)
		wantErr(t, err, access.ErrConflict)
		for _, name := range []string{"Ops", "ops"} {
			_, err := e.svc.CreateGroup(e.ctx, "acme", operator, name, "")
			wantErr(t, err, access.ErrConflict)
		}
		if got := e.seq("acme"); got != n {
			t.Fatalf("conflicts wrote %d events", got-n)
		}
		// A role may change the case of its own name.
		if r, err := e.svc.UpdateRole(e.ctx, "acme", operator, senders.ID, "senders", "", senders.Permissions); err != nil || r.Name != "senders" {
			t.Fatalf("rename own case: %+v %v", r, err)
		}
	})
}

// TestAuditTrail: every mutation writes exactly one admin event in the
// tenant's log, naming the action, object and acting user; a mutation that
// changes nothing writes none; the chain verifies.
func TestAuditTrail(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		e.user("acme", "chief")
		e.user("acme", "u1")
		e.client("acme", "c1")
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "chief", "admin"))
		if r := e.events("acme", e.seq("acme")-1)[0]; r.ActorType != audit.ActorOperator || r.ActorID != "cli" {
			t.Fatalf("operator actor: %+v", r)
		}
		chief := e.actor("acme", "chief")
		var role access.Role
		var group access.Group
		steps := []struct {
			action, objectType string
			objectID           func() string
			fn                 func() error
		}{
			{"role.create", "role", func() string { return role.ID }, func() (err error) {
				role, err = e.svc.CreateRole(e.ctx, "acme", chief, "exporters", "", []access.Permission{access.ContactsExport})
				return err
			}},
			{"role.update", "role", func() string { return role.ID }, func() (err error) {
				_, err = e.svc.UpdateRole(e.ctx, "acme", chief, role.ID, "exporters", "export", []access.Permission{access.ContactsExport, access.ContactsRead})
				return err
			}},
			{"group.create", "group", func() string { return group.ID }, func() (err error) {
				group, err = e.svc.CreateGroup(e.ctx, "acme", chief, "team", "")
				return err
			}},
			{"group.member.add", "group", func() string { return group.ID }, func() error { return e.svc.AddMember(e.ctx, "acme", chief, group.ID, "u1") }},
			{"group.role.add", "group", func() string { return group.ID }, func() error { return e.svc.AddGroupRole(e.ctx, "acme", chief, group.ID, role.ID) }},
			{"user.role.grant", "user", func() string { return "u1" }, func() error { return e.svc.GrantUserRole(e.ctx, "acme", chief, "u1", role.ID) }},
			{"client.role.grant", "client", func() string { return "c1" }, func() error { return e.svc.GrantClientRole(e.ctx, "acme", chief, "c1", role.ID) }},
			{"client.role.revoke", "client", func() string { return "c1" }, func() error { return e.svc.RevokeClientRole(e.ctx, "acme", chief, "c1", role.ID) }},
			{"user.role.revoke", "user", func() string { return "u1" }, func() error { return e.svc.RevokeUserRole(e.ctx, "acme", chief, "u1", role.ID) }},
			{"group.role.remove", "group", func() string { return group.ID }, func() error { return e.svc.RemoveGroupRole(e.ctx, "acme", chief, group.ID, role.ID) }},
			{"group.member.remove", "group", func() string { return group.ID }, func() error { return e.svc.RemoveMember(e.ctx, "acme", chief, group.ID, "u1") }},
			{"group.delete", "group", func() string { return group.ID }, func() error { return e.svc.DeleteGroup(e.ctx, "acme", chief, group.ID) }},
			{"role.delete", "role", func() string { return role.ID }, func() error { return e.svc.DeleteRole(e.ctx, "acme", chief, role.ID) }},
		}
		for _, st := range steps {
			n := e.seq("acme")
			if err := st.fn(); err != nil {
				t.Fatalf("%s: %v", st.action, err)
			}
			recs := e.events("acme", n)
			if len(recs) != 1 {
				t.Fatalf("%s wrote %d events", st.action, len(recs))
			}
			r := recs[0]
			if r.Action != st.action || r.Category != audit.CategoryAdmin || r.ObjectType != st.objectType || r.ObjectID != st.objectID() ||
				r.ActorType != audit.ActorUser || r.ActorID != "chief" {
				t.Errorf("%s: event %+v", st.action, r)
			}
			if st.action == "role.update" {
				d := string(r.Details)
				if !strings.Contains(d, `{"field":"description","after":"export"}`) ||
					!strings.Contains(d, `{"field":"permissions","before":["contacts:export"],"after":["contacts:export","contacts:read"]}`) {
					t.Errorf("role.update changes: %s", d)
				}
			}
		}

		// Mutations that change nothing record nothing.
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", chief, "u1", "viewer"))
		n := e.seq("acme")
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", chief, "u1", "viewer"))
		ok(t, e.svc.RevokeUserRole(e.ctx, "acme", chief, "u1", "editor"))
		g := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", chief, "g2", ""))
		ok(t, e.svc.RemoveMember(e.ctx, "acme", chief, g.ID, "u1"))
		r := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", chief, "same", "d", []access.Permission{access.ListsRead}))
		_ = must[access.Role](t)(e.svc.UpdateRole(e.ctx, "acme", chief, r.ID, "same", "d", []access.Permission{access.ListsRead}))
		if got := e.seq("acme"); got != n+2 { // g2 and "same" only
			t.Fatalf("no-op mutations wrote %d events", got-n-2)
		}
	})
}

// TestAdminGrantAlert: a grant that gives a user or client an
// administrative permission it did not hold (directly, through a group
// membership, through a role added to its group, or by widening a role it
// holds) carries {"alert":"admin_grant","permissions":[the new ones]}; other
// grants do not.
func TestAdminGrantAlert(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			e.user("acme", u)
		}
		e.client("acme", "c1")
		last := func(fn func() error) map[string]any {
			t.Helper()
			n := e.seq("acme")
			ok(t, fn())
			recs := e.events("acme", n)
			if len(recs) != 1 {
				t.Fatalf("%d events", len(recs))
			}
			return details(t, recs[0])
		}
		alert := func(d map[string]any, perms []string, key string, who ...string) {
			t.Helper()
			if d["alert"] != "admin_grant" {
				t.Fatalf("no admin_grant alert: %v", d)
			}
			if got := strs(d["permissions"]); !slices.Equal(got, perms) {
				t.Errorf("alert permissions %v, want %v", got, perms)
			}
			if got := strs(d[key]); !slices.Equal(got, who) {
				t.Errorf("alert %s %v, want %v", key, got, who)
			}
		}
		noAlert := func(d map[string]any) {
			t.Helper()
			if _, ok := d["alert"]; ok {
				t.Fatalf("unexpected alert: %v", d)
			}
		}
		noAlert(last(func() error { return e.svc.GrantUserRole(e.ctx, "acme", operator, "u1", "editor") }))
		alert(last(func() error { return e.svc.GrantUserRole(e.ctx, "acme", operator, "u1", "auditor") }), []string{"audit:export"}, "users", "u1")
		_ = must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "key auditors", "",
			[]access.Permission{access.AuditExport, access.KeysAdmin}))
		alert(last(func() error { return e.svc.GrantUserRole(e.ctx, "acme", operator, "u1", "key auditors") }), []string{"keys:admin"}, "users", "u1")

		admins := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "admins", ""))
		noAlert(last(func() error { return e.svc.AddGroupRole(e.ctx, "acme", operator, admins.ID, "admin") })) // no members yet
		alert(last(func() error { return e.svc.AddMember(e.ctx, "acme", operator, admins.ID, "u2") }), wantAdminSorted(), "users", "u2")
		noAlert(last(func() error { return e.svc.GrantUserRole(e.ctx, "acme", operator, "u2", "admin") })) // already held via the group

		team := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "team", ""))
		noAlert(last(func() error { return e.svc.AddMember(e.ctx, "acme", operator, team.ID, "u3") }))
		alert(last(func() error { return e.svc.AddGroupRole(e.ctx, "acme", operator, team.ID, "auditor") }), []string{"audit:export"}, "users", "u3")

		ops := must[access.Role](t)(e.svc.CreateRole(e.ctx, "acme", operator, "ops", "", []access.Permission{access.ContactsRead}))
		noAlert(last(func() error { return e.svc.GrantUserRole(e.ctx, "acme", operator, "u4", ops.ID) }))
		alert(last(func() error {
			_, err := e.svc.UpdateRole(e.ctx, "acme", operator, ops.ID, "ops", "", []access.Permission{access.ContactsRead, access.BackupsAdmin})
			return err
		}), []string{"backups:admin"}, "users", "u4")

		alert(last(func() error { return e.svc.GrantClientRole(e.ctx, "acme", operator, "c1", "auditor") }), []string{"audit:export"}, "clients", "c1")
		e.seq("acme") // the chain verifies
	})
}

func wantAdminSorted() []string {
	out := slices.Clone(wantAdministrative)
	slices.Sort(out)
	return out
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestReview: the review lists every user and client by id with status,
// TOTP, last login, and each permission with every path that grants it.
func TestReview(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, "acme")
		e.user("acme", "u-a")
		e.user("acme", "u-b")
		e.client("acme", "c-1")
		e.exec("acme", `UPDATE users SET totp_enabled = TRUE, last_login_at = $2 WHERE tenant_id = $1 AND id = 'u-a'`, int64(1_700_000_000_000_000))
		e.exec("acme", `UPDATE users SET status = 'disabled' WHERE tenant_id = $1 AND id = 'u-b'`)
		ok(t, e.svc.GrantUserRole(e.ctx, "acme", operator, "u-a", "viewer"))
		g := must[access.Group](t)(e.svc.CreateGroup(e.ctx, "acme", operator, "writers", ""))
		ok(t, e.svc.AddGroupRole(e.ctx, "acme", operator, g.ID, "editor"))
		ok(t, e.svc.AddMember(e.ctx, "acme", operator, g.ID, "u-a"))
		ok(t, e.svc.GrantClientRole(e.ctx, "acme", operator, "c-1", "auditor"))

		rev := must[[]access.ReviewEntry](t)(e.svc.Review(e.ctx, "acme"))
		if len(rev) != 3 || rev[0].ID != "u-a" || rev[1].ID != "u-b" || rev[2].ID != "c-1" {
			t.Fatalf("review order: %+v", rev)
		}
		a := rev[0]
		if a.Kind != access.KindUser || a.Status != "active" || !a.TOTPEnabled || a.LastLoginAt == nil ||
			a.LastLoginAt.UnixMicro() != 1_700_000_000_000_000 || a.Administrative {
			t.Errorf("u-a: %+v", a)
		}
		wantPerms := set(editorPerms...).Union(set("messages:read", "settings:read")).List()
		var got []access.Permission
		paths := map[access.Permission][]string{}
		for _, pg := range a.Permissions {
			got = append(got, pg.Permission)
			for _, p := range pg.Paths {
				paths[pg.Permission] = append(paths[pg.Permission], p.String())
			}
		}
		if !slices.Equal(got, wantPerms) {
			t.Errorf("u-a permissions %v, want %v", got, wantPerms)
		}
		if want := []string{"role viewer", "group writers -> role editor"}; !slices.Equal(paths[access.ContactsRead], want) {
			t.Errorf("contacts:read paths %v, want %v", paths[access.ContactsRead], want)
		}
		if want := []string{"group writers -> role editor"}; !slices.Equal(paths[access.ContactsWrite], want) {
			t.Errorf("contacts:write paths %v, want %v", paths[access.ContactsWrite], want)
		}
		if want := []string{"role viewer"}; !slices.Equal(paths[access.SettingsRead], want) {
			t.Errorf("settings:read paths %v, want %v", paths[access.SettingsRead], want)
		}
		if b := rev[1]; b.Status != "disabled" || b.TOTPEnabled || b.LastLoginAt != nil || len(b.Permissions) != 0 {
			t.Errorf("u-b: %+v", b)
		}
		c := rev[2]
		if c.Kind != access.KindClient || c.Name != "client c-1" || c.Status != "active" || !c.Administrative || len(c.Permissions) != 5 {
			t.Errorf("c-1: %+v", c)
		}
		for _, pg := range c.Permissions {
			if pg.Administrative != (pg.Permission == access.AuditExport) || len(pg.Paths) != 1 || pg.Paths[0].String() != "role auditor" {
				t.Errorf("c-1 %s: %+v", pg.Permission, pg)
			}
		}
	})
}

package access_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/relais-dev/relais/internal/access"
)

// The permissions the product needs, written out independently of the code.
var wantCatalogue = []string{
	"contacts:read", "contacts:write", "contacts:export", "contacts:import", "lists:read", "lists:write",
	"templates:read", "templates:write", "campaigns:read", "campaigns:write", "campaigns:send",
	"messages:send", "messages:read", "audit:read", "audit:export", "users:read", "users:admin",
	"roles:admin", "clients:admin", "settings:read", "settings:admin", "privacy:requests",
	"privacy:admin", "backups:admin", "keys:admin", "sftp:admin", "sso:admin", "reports:read",
}

var wantAdministrative = []string{
	"users:admin", "roles:admin", "clients:admin", "settings:admin", "privacy:admin",
	"backups:admin", "keys:admin", "sftp:admin", "sso:admin", "audit:export",
}

// TestCatalogue: every required permission is there exactly once with a
// description, the administrative ones are exactly the expected ones, and
// the returned slice is a copy.
func TestCatalogue(t *testing.T) {
	cat := access.Catalogue()
	seen := map[access.Permission]bool{}
	for _, info := range cat {
		if seen[info.Permission] {
			t.Errorf("%s listed twice", info.Permission)
		}
		seen[info.Permission] = true
		if info.Description == "" {
			t.Errorf("%s has no description", info.Permission)
		}
		if info.Administrative != slices.Contains(wantAdministrative, string(info.Permission)) {
			t.Errorf("%s: administrative = %v", info.Permission, info.Administrative)
		}
		if access.IsAdministrative(info.Permission) != info.Administrative {
			t.Errorf("IsAdministrative(%s) disagrees with the catalogue", info.Permission)
		}
	}
	for _, name := range wantCatalogue {
		if !seen[access.Permission(name)] {
			t.Errorf("missing permission %s", name)
		}
	}
	if len(cat) != len(wantCatalogue) {
		t.Errorf("catalogue has %d permissions, want %d", len(cat), len(wantCatalogue))
	}
	cat[0].Permission, cat[0].Administrative = "x:y", true
	if again := access.Catalogue(); again[0].Permission == "x:y" {
		t.Fatal("Catalogue returned shared storage")
	}
	if access.IsAdministrative("x:y") {
		t.Fatal("an unknown permission counts as administrative")
	}
}

// TestParsePermission: known names parse, unknown ones are validation errors.
func TestParsePermission(t *testing.T) {
	for _, name := range wantCatalogue {
		p, err := access.ParsePermission(name)
		if err != nil || string(p) != name {
			t.Errorf("ParsePermission(%q) = %q, %v", name, p, err)
		}
	}
	for _, bad := range []string{"", "contacts", "contacts:delete", "CONTACTS:READ", " contacts:read", "*"} {
		_, err := access.ParsePermission(bad)
		var ve *access.ValidationError
		if !errors.As(err, &ve) || ve.Field != "permissions" {
			t.Errorf("ParsePermission(%q): %v, want a permissions ValidationError", bad, err)
		}
	}
}

// TestSet: the zero set is empty; membership, sorted listing, inclusion,
// administrative detection and JSON form.
func TestSet(t *testing.T) {
	var zero access.Set
	if zero.Has(access.ContactsRead) || zero.Len() != 0 || len(zero.List()) != 0 || zero.HasAdministrative() {
		t.Fatal("zero Set is not empty")
	}
	s := access.NewSet(access.ListsRead, access.ContactsRead, access.ContactsRead)
	if !s.Has(access.ContactsRead) || s.Has(access.ContactsWrite) || s.Len() != 2 {
		t.Fatalf("set: %v", s.List())
	}
	if got := s.List(); !slices.Equal(got, []access.Permission{access.ContactsRead, access.ListsRead}) {
		t.Fatalf("List not sorted: %v", got)
	}
	if !s.ContainsAll(access.NewSet(access.ListsRead)) || !s.ContainsAll(zero) || s.ContainsAll(access.NewSet(access.ListsWrite)) {
		t.Fatal("ContainsAll")
	}
	if s.HasAdministrative() || !access.NewSet(access.AuditExport).HasAdministrative() {
		t.Fatal("HasAdministrative")
	}
	if !access.AllPermissions().ContainsAll(s) || access.AllPermissions().Len() != len(wantCatalogue) {
		t.Fatal("AllPermissions")
	}
	b, err := json.Marshal(s)
	if err != nil || string(b) != `["contacts:read","lists:read"]` {
		t.Fatalf("JSON: %s %v", b, err)
	}
}

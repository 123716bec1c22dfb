package access

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Permission is one right in the fixed catalogue, written resource:action
// ("contacts:read"). Every action of the product checks exactly one of them;
// a principal holds a permission only through a role (default deny).
type Permission string

// The catalogue. It is fixed in code: tenants combine these permissions into
// roles but cannot invent new ones. Each one's description, and whether it
// is administrative, is in permissionCatalogue below, served by Catalogue:
// that table is the one place that documents them (the API and the CLI
// list it). A permission must appear in both this list and the table.
const (
	ContactsRead    Permission = "contacts:read"
	ContactsWrite   Permission = "contacts:write"
	ContactsExport  Permission = "contacts:export"
	ContactsImport  Permission = "contacts:import"
	ListsRead       Permission = "lists:read"
	ListsWrite      Permission = "lists:write"
	TemplatesRead   Permission = "templates:read"
	TemplatesWrite  Permission = "templates:write"
	CampaignsRead   Permission = "campaigns:read"
	CampaignsWrite  Permission = "campaigns:write"
	CampaignsSend   Permission = "campaigns:send"
	MessagesSend    Permission = "messages:send"
	MessagesRead    Permission = "messages:read"
	AuditRead       Permission = "audit:read"
	AuditExport     Permission = "audit:export"
	UsersRead       Permission = "users:read"
	UsersAdmin      Permission = "users:admin"
	RolesAdmin      Permission = "roles:admin"
	ClientsAdmin    Permission = "clients:admin"
	SettingsRead    Permission = "settings:read"
	SettingsAdmin   Permission = "settings:admin"
	PrivacyRequests Permission = "privacy:requests"
	PrivacyAdmin    Permission = "privacy:admin"
	BackupsAdmin    Permission = "backups:admin"
	KeysAdmin       Permission = "keys:admin"
	SFTPAdmin       Permission = "sftp:admin"
	SSOAdmin        Permission = "sso:admin"
	ReportsRead     Permission = "reports:read"
)

// PermissionInfo documents one permission of the catalogue.
type PermissionInfo struct {
	Permission  Permission `json:"permission"`
	Description string     `json:"description"`
	// Administrative permissions change who can do what, or reach the
	// tenant's keys, backups, security settings or whole audit trail.
	// Holding one requires the privileged password length, and granting
	// one raises an alert (ACC-4).
	Administrative bool `json:"administrative"`
}

// permissionCatalogue is read only: Catalogue hands out copies.
var permissionCatalogue = [...]PermissionInfo{
	{ContactsRead, "Read contacts, their consents and subscriptions", false},
	{ContactsWrite, "Create, update and delete contacts and their consents", false},
	{ContactsExport, "Export contacts to a file", false},
	{ContactsImport, "Import contacts from a file", false},
	{ListsRead, "Read lists and segments", false},
	{ListsWrite, "Create, update and delete lists and segments", false},
	{TemplatesRead, "Read message templates", false},
	{TemplatesWrite, "Create, update and delete message templates", false},
	{CampaignsRead, "Read campaigns and their audiences", false},
	{CampaignsWrite, "Create, update and delete campaigns", false},
	{CampaignsSend, "Schedule, send, pause and cancel campaigns", false},
	{MessagesSend, "Send transactional messages through the API", false},
	{MessagesRead, "Read sent messages, their status and traces", false},
	{AuditRead, "Read the tenant's audit trail", false},
	{AuditExport, "Export the tenant's audit trail and its proofs", true},
	{UsersRead, "Read users, groups, roles and the access review", false},
	{UsersAdmin, "Create, update, disable and delete users; reset their credentials", true},
	{RolesAdmin, "Create, update and delete roles and groups; grant and revoke roles", true},
	{ClientsAdmin, "Create, rotate and revoke API credentials", true},
	{SettingsRead, "Read the tenant's settings and security policy", false},
	{SettingsAdmin, "Change the tenant's settings and security policy", true},
	{PrivacyRequests, "Handle data subject requests (access, rectification, erasure)", false},
	{PrivacyAdmin, "Set retention, pseudonymise, anonymise and export the tenant's data", true},
	{BackupsAdmin, "Run, download and restore the tenant's backups", true},
	{KeysAdmin, "Rotate the tenant's data keys", true},
	{SFTPAdmin, "Manage SFTP accounts and their keys", true},
	{SSOAdmin, "Configure single sign-on and attribute mappings", true},
	{ReportsRead, "Read reports and statistics", false},
}

// Catalogue returns every permission with its description, in a fixed
// order. The slice is fresh: callers may modify it.
func Catalogue() []PermissionInfo {
	return slices.Clone(permissionCatalogue[:])
}

func lookup(p Permission) (PermissionInfo, bool) {
	for _, info := range permissionCatalogue {
		if info.Permission == p {
			return info, true
		}
	}
	return PermissionInfo{}, false
}

// Known reports whether p is in the catalogue.
func (p Permission) Known() bool {
	_, ok := lookup(p)
	return ok
}

// String returns the permission's name.
func (p Permission) String() string { return string(p) }

// IsAdministrative reports whether p is an administrative permission (see
// PermissionInfo.Administrative). Unknown permissions are not.
func IsAdministrative(p Permission) bool {
	info, ok := lookup(p)
	return ok && info.Administrative
}

// ParsePermission returns the catalogue permission named s, or a
// *ValidationError for a name that is not in the catalogue.
func ParsePermission(s string) (Permission, error) {
	p := Permission(s)
	if !p.Known() {
		return "", &ValidationError{Field: "permissions", Message: fmt.Sprintf("unknown permission %q", truncate(s, 64))}
	}
	return p, nil
}

// Set is an immutable set of permissions. The zero value is the empty set.
// Build one with NewSet.
type Set struct {
	m map[Permission]struct{}
}

// NewSet returns the set of the given permissions. It does not check them
// against the catalogue.
func NewSet(perms ...Permission) Set {
	if len(perms) == 0 {
		return Set{}
	}
	m := make(map[Permission]struct{}, len(perms))
	for _, p := range perms {
		m[p] = struct{}{}
	}
	return Set{m: m}
}

// AllPermissions returns the set of every permission in the catalogue.
func AllPermissions() Set {
	s := Set{m: make(map[Permission]struct{}, len(permissionCatalogue))}
	for _, info := range permissionCatalogue {
		s.m[info.Permission] = struct{}{}
	}
	return s
}

// Has reports whether p is in the set.
func (s Set) Has(p Permission) bool {
	_, ok := s.m[p]
	return ok
}

// Len is the number of permissions in the set.
func (s Set) Len() int { return len(s.m) }

// List returns the permissions, sorted.
func (s Set) List() []Permission {
	out := make([]Permission, 0, len(s.m))
	for p := range s.m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// ContainsAll reports whether every permission of other is in s.
func (s Set) ContainsAll(other Set) bool {
	for p := range other.m {
		if !s.Has(p) {
			return false
		}
	}
	return true
}

// Missing returns the permissions of other that s lacks, sorted.
func (s Set) Missing(other Set) []Permission {
	var out []Permission
	for p := range other.m {
		if !s.Has(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// HasAdministrative reports whether the set holds at least one
// administrative permission.
func (s Set) HasAdministrative() bool {
	for p := range s.m {
		if IsAdministrative(p) {
			return true
		}
	}
	return false
}

// Administrative returns the subset of administrative permissions.
func (s Set) Administrative() Set {
	var out []Permission
	for p := range s.m {
		if IsAdministrative(p) {
			out = append(out, p)
		}
	}
	return NewSet(out...)
}

// Union returns a new set holding the permissions of s and other.
func (s Set) Union(other Set) Set {
	m := make(map[Permission]struct{}, len(s.m)+len(other.m))
	for p := range s.m {
		m[p] = struct{}{}
	}
	for p := range other.m {
		m[p] = struct{}{}
	}
	return Set{m: m}
}

// Intersect returns a new set holding the permissions both s and other hold.
func (s Set) Intersect(other Set) Set {
	var out []Permission
	for p := range s.m {
		if other.Has(p) {
			out = append(out, p)
		}
	}
	return NewSet(out...)
}

// Equal reports whether s and other hold the same permissions.
func (s Set) Equal(other Set) bool {
	return len(s.m) == len(other.m) && s.ContainsAll(other)
}

// MarshalJSON encodes the set as a sorted array of permission names.
func (s Set) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.List())
}

// parsePermissions validates a caller's permission list and returns it as a
// set (duplicates merged).
func parsePermissions(perms []Permission) (Set, error) {
	for _, p := range perms {
		if _, err := ParsePermission(string(p)); err != nil {
			return Set{}, err
		}
	}
	return NewSet(perms...), nil
}

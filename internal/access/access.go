// Package access is Relais's authorisation core (ACC-1, ACC-4): the fixed
// catalogue of permissions, roles (named sets of permissions), groups
// (users who share roles), direct grants to users and API clients, the
// evaluation of what a principal may do, and the access review.
//
// Most callers need three things:
//
//   - UserPermissions or ClientPermissions, to learn what an authenticated
//     principal holds, then Set.Has to check the one permission an action
//     needs. Anything not granted through a role is denied, and a disabled
//     user or client holds nothing.
//   - The Service's mutations (CreateRole, GrantUserRole, AddMember...), each
//     taking the Actor who asks. Every mutation needs roles:admin, and no one
//     but the operator can hand out, take away or redefine a permission they
//     do not hold themselves (anti-escalation). Each mutation is one
//     transaction with its audit event.
//   - Review, the access review: who holds which permission, and by which
//     path (a direct role, or a group and its role).
//
// The built-in roles (admin, manager, editor, viewer, auditor) are created
// in each tenant by EnsureBuiltinRoles and cannot be changed or deleted.
//
// A grant that gives a user or client an administrative permission it did not
// hold before (directly, through a group, or by adding the permission to a
// role it holds) is recorded with the audit details
// {"alert": "admin_grant", "permissions": [...]} so that supervision can
// raise an alert (ACC-4).
package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Errors. Test with errors.Is; the returned errors carry context.
var (
	// ErrForbidden: the actor lacks the permission the action needs, or
	// would hand out or take away a permission it does not hold.
	ErrForbidden = errors.New("access: forbidden")
	// ErrNotFound: no such role, group, user or client in the tenant.
	ErrNotFound = errors.New("access: not found")
	// ErrConflict: a role or group of that name already exists (names are
	// compared without regard to case), or the name is a built-in role's.
	ErrConflict = errors.New("access: conflict")
	// ErrBuiltinRole: built-in roles cannot be modified or deleted. It
	// matches ErrForbidden too.
	ErrBuiltinRole = fmt.Errorf("%w: built-in roles cannot be modified or deleted", ErrForbidden)
)

// ValidationError names the input field that is wrong.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Service manages roles, groups and grants, and evaluates permissions.
// Every method runs in one tenant-scoped transaction of DB; timestamps come
// from the store's clock.
type Service struct {
	DB *store.DB
}

// Actor is who asks for a mutation: a user, an API client, or the operator
// (the CLI, or an operator token). Set exactly one of UserID, ClientID or
// Operator.
type Actor struct {
	// UserID is the acting user of the tenant.
	UserID string
	// ClientID is the acting API client of the tenant.
	ClientID string
	// Permissions is what the caller authenticated the actor with (for a
	// token, possibly narrower than its roles). The service uses the
	// intersection of this set with what the actor's roles grant at the
	// time of the mutation, so a grant revoked a moment ago no longer counts.
	Permissions Set
	// Operator marks the platform operator, who is not bound by the
	// tenant's roles: it needs no permission and may grant anything.
	Operator bool
}

// auditActor returns the audit actor for a. For the operator, the context's
// operator identity (an operator token) is kept when there is one.
func (a Actor) auditActor(ctx context.Context) audit.Actor {
	switch {
	case a.Operator:
		if m := audit.MetaFrom(ctx).Actor; m.Type == audit.ActorOperator {
			return m
		}
		return audit.Actor{Type: audit.ActorOperator, ID: "cli"}
	case a.UserID != "":
		return audit.Actor{Type: audit.ActorUser, ID: a.UserID}
	default:
		return audit.Actor{Type: audit.ActorAPI, ID: a.ClientID}
	}
}

// authority is an actor's checked standing inside one transaction.
type authority struct {
	operator bool
	perms    Set
}

// authorise checks that the actor holds need and returns its effective
// permissions: for a user or client, the intersection of what the caller
// passed and what its roles grant now (nothing when it is disabled).
func authorise(ctx context.Context, tx *store.Tx, a Actor, need Permission) (authority, error) {
	if a.Operator {
		return authority{operator: true, perms: AllPermissions()}, nil
	}
	var held Set
	var err error
	switch {
	case a.UserID != "" && a.ClientID == "":
		held, err = userPermissions(ctx, tx, a.UserID, true)
	case a.ClientID != "" && a.UserID == "":
		held, err = clientPermissions(ctx, tx, a.ClientID, true)
	default:
		return authority{}, fmt.Errorf("%w: the actor must be one user, one API client or the operator", ErrForbidden)
	}
	if err != nil {
		return authority{}, err
	}
	eff := a.Permissions.Intersect(held)
	if !eff.Has(need) {
		return authority{}, fmt.Errorf("%w: this needs the %s permission", ErrForbidden, need)
	}
	return authority{perms: eff}, nil
}

// mayHandle checks the anti-escalation rule: a non-operator actor may only
// grant, revoke or redefine permissions it holds itself.
func (au authority) mayHandle(perms Set, what string) error {
	if au.operator {
		return nil
	}
	if missing := au.perms.Missing(perms); len(missing) > 0 {
		return fmt.Errorf("%w: %s involves %s, which you do not hold", ErrForbidden, what, joinPerms(missing))
	}
	return nil
}

func joinPerms(ps []Permission) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// Limits on names and descriptions.
const (
	maxNameLen        = 64
	maxDescriptionLen = 500
)

// validateName checks a role or group name: 1 to 64 characters, letters,
// digits, spaces, '-', '_' and '.', not starting or ending with a space.
func validateName(field, name string) error {
	n := utf8.RuneCountInString(name)
	if !utf8.ValidString(name) || n < 1 || n > maxNameLen {
		return &ValidationError{Field: field, Message: fmt.Sprintf("must be 1 to %d characters", maxNameLen)}
	}
	if strings.TrimSpace(name) != name {
		return &ValidationError{Field: field, Message: "must not start or end with a space"}
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ' && r != '-' && r != '_' && r != '.' {
			return &ValidationError{Field: field, Message: "may contain only letters, digits, spaces, '-', '_' and '.'"}
		}
	}
	return nil
}

// validateDescription checks a free-text description: at most 500
// characters, no control characters.
func validateDescription(d string) error {
	if !utf8.ValidString(d) || utf8.RuneCountInString(d) > maxDescriptionLen {
		return &ValidationError{Field: "description", Message: fmt.Sprintf("must be at most %d characters", maxDescriptionLen)}
	}
	for _, r := range d {
		if unicode.IsControl(r) {
			return &ValidationError{Field: "description", Message: "must not contain control characters"}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// record appends a mutation's audit event in tx.
func record(ctx context.Context, tx *store.Tx, a Actor, ev audit.Event) error {
	ev.Category = audit.CategoryAdmin
	ev.Actor = a.auditActor(ctx)
	if _, err := audit.Append(ctx, tx, ev); err != nil {
		return fmt.Errorf("access: record %s: %w", ev.Action, err)
	}
	return nil
}

package main

// The operator's commands for what lives inside a tenant: users (AUTH-9,
// AUTH-10, AUTH-4 unlock, AUTH-7 reset, ACC-5 deprovisioning), bulk
// provisioning from CSV (ACC-3), API clients (AUTH-8), roles and groups
// (ACC-1) and the access review (ACC-4). The CLI acts as the operator:
// access.Actor{Operator: true}, recorded as "operator cli" in the audit log.

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/tenants"
)

// operatorActor is the CLI's standing in the tenant's access rules.
var operatorActor = access.Actor{Operator: true}

// enrolHint says what to do with an enrolment secret.
const enrolHint = `the user sets a first password with it: POST /api/v1/auth/enrol {"token": "...", "password": "..."} (or the /enrol page)`

// need returns a usage error naming the flags that are missing or empty.
func need(cmd *cobra.Command, names ...string) error {
	var missing []string
	for _, n := range names {
		f := cmd.Flag(n)
		if f == nil || strings.TrimSpace(f.Value.String()) == "" || f.Value.String() == "[]" {
			missing = append(missing, "--"+n)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return usageError{fmt.Errorf("%s is required; see `%s --help`", missing[0], cmd.CommandPath())}
	}
	return usageError{fmt.Errorf("%s and %s are required; see `%s --help`",
		strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1], cmd.CommandPath())}
}

// tenantCtx is an opened app and the tenant a command works on.
type tenantCtx struct {
	ctx context.Context
	a   *app.App
	t   tenants.Tenant
}

// operatorContext marks the CLI as who acts, for the audit events that
// services record without an explicit actor.
func operatorContext(ctx context.Context) context.Context {
	return audit.WithMeta(ctx, audit.Meta{Actor: audit.Actor{Type: audit.ActorOperator, ID: "cli"}})
}

// openTenant opens the app and finds --tenant (slug or id). Check the other
// flags first, so that a usage error touches nothing.
func (c *cli) openTenant(cmd *cobra.Command) (*tenantCtx, error) {
	ref, _ := cmd.Flags().GetString("tenant")
	a, err := c.open(cmd)
	if err != nil {
		return nil, err
	}
	ctx := operatorContext(cmd.Context())
	t, err := a.Tenants.Get(ctx, ref)
	if err != nil {
		_ = a.Close()
		return nil, tenantErr(err)
	}
	return &tenantCtx{ctx: ctx, a: a, t: t}, nil
}

func (tc *tenantCtx) close() { _ = tc.a.Close() }

// inTenant opens the store and the --tenant's context, runs run in it and
// closes the store after.
func (c *cli) inTenant(cmd *cobra.Command, run func(tc *tenantCtx) error) error {
	tc, err := c.openTenant(cmd)
	if err != nil {
		return err
	}
	defer tc.close()
	return run(tc)
}

// see names a command to run next, with this tenant.
func (tc *tenantCtx) see(what string) string {
	return fmt.Sprintf("see `relais %s --tenant %s`", what, tc.t.Slug)
}

// userErr turns identity errors into what-to-do messages; flagPrefix is
// "" for user commands and "admin-" for tenant create.
func (tc *tenantCtx) userErr(err error, email, flagPrefix string) error {
	var pe *identity.PolicyError
	var ve *identity.ValidationError
	switch {
	case errors.As(err, &pe):
		return fmt.Errorf("%v: choose a password that meets the tenant's policy (see `relais tenant show %s`)", err, tc.t.Slug)
	case errors.As(err, &ve):
		return fmt.Errorf("--%s%s: %s", flagPrefix, ve.Field, ve.Message)
	case errors.Is(err, identity.ErrNotFound):
		return fmt.Errorf("no user %s in tenant %s; %s", email, tc.t.Slug, tc.see("user list"))
	case errors.Is(err, identity.ErrConflict):
		return fmt.Errorf("a user %s already exists in tenant %s; %s", email, tc.t.Slug, tc.see("user list"))
	}
	return err
}

// accessErr turns access errors into what-to-do messages; list is the
// command that shows what exists ("role list", "group list"...).
func (tc *tenantCtx) accessErr(err error, list string) error {
	var ve *access.ValidationError
	switch {
	case errors.As(err, &ve):
		field := ve.Field
		if field == "permissions" {
			return fmt.Errorf("--permission: %s; see `relais role permissions`", ve.Message)
		}
		return fmt.Errorf("--%s: %s", field, ve.Message)
	case errors.Is(err, access.ErrNotFound), errors.Is(err, access.ErrConflict):
		return fmt.Errorf("%v; %s", err, tc.see(list))
	}
	return err
}

// findUser finds a user of the tenant by email.
func (tc *tenantCtx) findUser(email string) (identity.User, error) {
	u, err := tc.a.Identity.FindUserByEmail(tc.ctx, tc.t.ID, email)
	if err != nil {
		return identity.User{}, tc.userErr(err, email, "")
	}
	return u, nil
}

// resolveRoles finds every role (by id or exact name) before anything is
// created, and reports an unknown one with the names that exist.
func (tc *tenantCtx) resolveRoles(refs []string) ([]access.Role, error) {
	all, err := tc.a.Access.ListRoles(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, err
	}
	var out []access.Role
	for _, ref := range refs {
		ref = strings.TrimSpace(ref)
		r, ok := findRoleIn(all, ref)
		if !ok {
			return nil, fmt.Errorf("unknown role %q in tenant %s (roles: %s); nothing was created; %s",
				truncateText(ref, 64), tc.t.Slug, roleNames(all), tc.see("role list"))
		}
		if !slices.ContainsFunc(out, func(x access.Role) bool { return x.ID == r.ID }) {
			out = append(out, r)
		}
	}
	return out, nil
}

func findRoleIn(roles []access.Role, ref string) (access.Role, bool) {
	for _, r := range roles {
		if r.ID == ref || r.Name == ref {
			return r, true
		}
	}
	return access.Role{}, false
}

func roleNames(roles []access.Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// privileged reports whether the roles give an administrative permission,
// so that the privileged password length applies (AUTH-10).
func privileged(roles []access.Role) bool {
	for _, r := range roles {
		if r.Set().HasAdministrative() {
			return true
		}
	}
	return false
}

func truncateText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "..."
}

// readPassword reads one password from standard input: one line, the
// trailing newline dropped, bounded.
func readPassword(r io.Reader, flag string) (string, error) {
	if r == nil {
		r = strings.NewReader("")
	}
	const limit = 4096
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return "", fmt.Errorf("%s: cannot read standard input: %w", flag, err)
	}
	if len(b) > limit {
		return "", fmt.Errorf("%s: standard input holds more than %d bytes: give only the password", flag, limit)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s: standard input is empty: pipe the initial password in, e.g. `printf '%%s' \"$PW\" | relais ...`", flag)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s: standard input holds more than one line: give only the password", flag)
	}
	return s, nil
}

// validateUserName mirrors identity's rule for a user's name (at most 200
// characters, no control characters), so that an import can report it
// before creating anyone.
func validateUserName(name string) error {
	n := strings.TrimSpace(name)
	if !utf8.ValidString(n) || utf8.RuneCountInString(n) > 200 {
		return errors.New("must be at most 200 characters")
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters")
		}
	}
	return nil
}

// validateGroupName mirrors access's rule for role and group names.
func validateGroupName(name string) error {
	n := utf8.RuneCountInString(name)
	if !utf8.ValidString(name) || n < 1 || n > 64 {
		return errors.New("a group name must be 1 to 64 characters")
	}
	if strings.TrimSpace(name) != name {
		return errors.New("a group name must not start or end with a space")
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ' && r != '-' && r != '_' && r != '.' {
			return errors.New("a group name may contain only letters, digits, spaces, '-', '_' and '.'")
		}
	}
	return nil
}

// checkPassword applies the policy a password will meet in CreateUser
// (length, classes, identity, breach corpus), for a tenant that does not
// exist yet: `tenant create` checks the first administrator's password
// before it creates anything. It mirrors identity's unexported check.
func checkPassword(ctx context.Context, a *app.App, pp config.PasswordPolicy, pw string, priv bool, who []string) error {
	pol := password.Seed()
	if pp.Preset == password.PresetNIST {
		pol = password.NIST()
	}
	pol.MinLength, pol.MinClasses = pp.MinLength, pp.MinClasses
	if pp.Preset == password.PresetNIST {
		pol.MinClasses = 0
	}
	if v := pol.Check(pw, priv, pp.PrivilegedMinLength, who); len(v) > 0 {
		return &identity.PolicyError{Violations: v}
	}
	if pp.BreachCheck && a.Identity.Breach != nil {
		n, err := a.Identity.Breach.Breached(ctx, pw)
		if err != nil {
			return fmt.Errorf("breached-password check unavailable: %w", err)
		}
		if n > 0 {
			return &identity.PolicyError{Violations: []password.Violation{{Code: "breached", Message: "appears in a list of breached passwords; choose another"}}}
		}
	}
	return nil
}

// provisioned is a user being created, and what it was given so far, so
// that a failure can undo it.
type provisioned struct {
	user   identity.User
	token  string
	roles  []access.Role
	groups []string
}

// provision creates a user, grants its roles and puts it in its groups.
// When a step after the creation fails, the returned value holds the user
// (user.ID set) and what was done, for undo.
func (tc *tenantCtx) provision(nu identity.NewUser, roles []access.Role, groups []string) (provisioned, error) {
	var p provisioned
	u, token, err := tc.a.Identity.CreateUser(tc.ctx, tc.t.ID, nu)
	if err != nil {
		return p, err
	}
	p.user, p.token = u, token
	for _, r := range roles {
		if err := tc.a.Access.GrantUserRole(tc.ctx, tc.t.ID, operatorActor, u.ID, r.ID); err != nil {
			return p, fmt.Errorf("grant role %s: %w", r.Name, err)
		}
		p.roles = append(p.roles, r)
	}
	for _, g := range groups {
		if err := tc.a.Access.AddMember(tc.ctx, tc.t.ID, operatorActor, g, u.ID); err != nil {
			return p, fmt.Errorf("add to group %s: %w", g, err)
		}
		p.groups = append(p.groups, g)
	}
	return p, nil
}

// undo disables a partly provisioned user (identity cannot delete one),
// which revokes its sessions and tokens at once, then takes back its groups
// and roles. It runs even when the command was interrupted.
func (tc *tenantCtx) undo(p provisioned) error {
	ctx := context.WithoutCancel(tc.ctx)
	var errs []error
	if err := tc.a.Identity.SetUserStatus(ctx, tc.t.ID, p.user.ID, identity.StatusDisabled); err != nil {
		errs = append(errs, fmt.Errorf("disable: %w", err))
	}
	for _, g := range p.groups {
		if err := tc.a.Access.RemoveMember(ctx, tc.t.ID, operatorActor, g, p.user.ID); err != nil {
			errs = append(errs, fmt.Errorf("leave group %s: %w", g, err))
		}
	}
	for _, r := range p.roles {
		if err := tc.a.Access.RevokeUserRole(ctx, tc.t.ID, operatorActor, p.user.ID, r.ID); err != nil {
			errs = append(errs, fmt.Errorf("revoke role %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// createdUser is the output of user create (and of tenant create's
// administrator).
type createdUser struct {
	identity.User
	Roles              []string   `json:"roles"`
	EnrolmentToken     string     `json:"enrolment_token,omitempty"`
	EnrolmentExpiresAt *time.Time `json:"enrolment_expires_at,omitempty"`
}

func newCreatedUser(p provisioned, roles []access.Role) createdUser {
	out := createdUser{User: p.user, Roles: []string{}}
	for _, r := range roles {
		out.Roles = append(out.Roles, r.Name)
	}
	if p.token != "" {
		out.EnrolmentToken = p.token
		exp := p.user.CreatedAt.Add(identity.EnrolmentTTL)
		out.EnrolmentExpiresAt = &exp
	}
	return out
}

func printCreatedUser(w io.Writer, tenantSlug string, u createdUser) {
	fmt.Fprintf(w, "created user %s in tenant %s\nid:     %s\nroles:  %s\n", u.Email, tenantSlug, u.ID, strings.Join(u.Roles, ", "))
	if u.EnrolmentToken != "" {
		fmt.Fprintf(w, "enrolment secret (shown once, valid until %s):\n%s\n%s\n",
			u.EnrolmentExpiresAt.Format(time.RFC3339), u.EnrolmentToken, enrolHint)
	} else {
		fmt.Fprintln(w, "initial password set: the user must change it at first sign-in")
	}
}

// createUserWithRoles is user create and tenant create's administrator:
// the roles are already resolved; a failed grant disables the new user.
func (tc *tenantCtx) createUserWithRoles(nu identity.NewUser, roles []access.Role, flagPrefix string) (createdUser, error) {
	nu.Privileged = privileged(roles)
	p, err := tc.provision(nu, roles, nil)
	if err != nil {
		if p.user.ID == "" {
			return createdUser{}, tc.userErr(err, nu.Email, flagPrefix)
		}
		if uerr := tc.undo(p); uerr != nil {
			return createdUser{}, fmt.Errorf("user %s was created but %v; disabling it failed too (%v): disable it with `relais user disable --tenant %s --email %s`",
				p.user.Email, err, uerr, tc.t.Slug, p.user.Email)
		}
		return createdUser{}, fmt.Errorf("user %s was created but %v; it was disabled and its roles taken back (users cannot be deleted): fix the cause, then `relais user enable` and `relais role grant`",
			p.user.Email, err)
	}
	return newCreatedUser(p, roles), nil
}

// userGrants is what a principal holds, by path, for listings.
type userGrants struct {
	roles      []string // roles granted directly
	groups     []string // groups it belongs to
	groupRoles []string // "group -> role"
}

// grantsByID gathers, from the access review and the group memberships,
// each principal's direct roles, groups and group roles.
func (tc *tenantCtx) grantsByID() ([]access.ReviewEntry, map[string]*userGrants, error) {
	review, err := tc.a.Access.Review(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]*userGrants{}
	get := func(id string) *userGrants {
		if out[id] == nil {
			out[id] = &userGrants{}
		}
		return out[id]
	}
	addUnique := func(s *[]string, v string) {
		if !slices.Contains(*s, v) {
			*s = append(*s, v)
		}
	}
	for _, e := range review {
		g := get(e.ID)
		for _, pg := range e.Permissions {
			for _, p := range pg.Paths {
				if p.GroupID == "" {
					addUnique(&g.roles, p.RoleName)
				} else {
					addUnique(&g.groupRoles, p.GroupName+" -> "+p.RoleName)
				}
			}
		}
	}
	groups, err := tc.a.Access.ListGroups(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, nil, err
	}
	for _, gr := range groups {
		if gr.MemberCount == 0 {
			continue
		}
		members, err := tc.a.Access.GroupMembers(tc.ctx, tc.t.ID, gr.ID)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range members {
			addUnique(&get(m).groups, gr.Name)
		}
	}
	for _, g := range out {
		slices.Sort(g.roles)
		slices.Sort(g.groups)
		slices.Sort(g.groupRoles)
	}
	return review, out, nil
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

func whenOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func lockState(u identity.User) string {
	switch {
	case !u.Locked:
		return "no"
	case u.LockedUntil != nil:
		return "until " + u.LockedUntil.UTC().Format(time.RFC3339)
	default:
		return "yes (until an administrator unlocks it)"
	}
}

// userView is a user with what it holds, for list and show.
type userView struct {
	identity.User
	Roles      []string `json:"roles"`
	Groups     []string `json:"groups"`
	GroupRoles []string `json:"group_roles"`
}

func (c *cli) userCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Create, list, disable, unlock and import a tenant's users"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")

	create := &cobra.Command{
		Use:   "create --tenant T --email E --role R [--role R...] [--name N] [--password-stdin]",
		Short: "Create a user with its roles; prints a one-time enrolment secret",
		Long: `Create a user of a tenant and grant it roles (checked before anything is
created). Without --password-stdin a one-time enrolment secret is printed
(valid 72 hours): the user sets a first password with it through
POST /api/v1/auth/enrol (or the /enrol page). With --password-stdin the
initial password is read from standard input; it must meet the tenant's
policy (20 characters for a user with an administrative permission), and
the user must change it at first sign-in.`,
		Example: `  relais user create --tenant acme --email alice@acme.example --name "Alice" --role admin
  printf '%s' "$PW" | relais user create --tenant acme --email bob@acme.example --role editor --password-stdin --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "email", "role"); err != nil {
				return err
			}
			email, _ := cmd.Flags().GetString("email")
			name, _ := cmd.Flags().GetString("name")
			roleRefs, _ := cmd.Flags().GetStringSlice("role")
			if _, err := identity.NormaliseEmail(email); err != nil {
				var ve *identity.ValidationError
				if errors.As(err, &ve) {
					return fmt.Errorf("--email: %s", ve.Message)
				}
				return err
			}
			if err := validateUserName(name); err != nil {
				return fmt.Errorf("--name: %v", err)
			}
			var pw string
			if stdin, _ := cmd.Flags().GetBool("password-stdin"); stdin {
				var err error
				if pw, err = readPassword(c.stdin, "--password-stdin"); err != nil {
					return err
				}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				roles, err := tc.resolveRoles(roleRefs)
				if err != nil {
					return err
				}
				out, err := tc.createUserWithRoles(identity.NewUser{Email: email, Name: name, Password: pw}, roles, "")
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, out)
				}
				printCreatedUser(c.stdout, tc.t.Slug, out)
				return nil
			})
		},
	}
	create.Flags().String("email", "", "the user's email address (their sign-in name)")
	create.Flags().String("name", "", "the user's display name")
	create.Flags().StringSlice("role", nil, "a role to grant (repeatable; see `relais role list`)")
	create.Flags().Bool("password-stdin", false, "read the initial password from standard input instead of printing an enrolment secret")

	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's users: status, lock, second factor, last sign-in, roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				users, err := tc.a.Identity.ListUsers(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				_, grants, err := tc.grantsByID()
				if err != nil {
					return err
				}
				views := make([]userView, 0, len(users))
				for _, u := range users {
					views = append(views, viewOf(u, grants[u.ID]))
				}
				if asJSON {
					return printJSON(c.stdout, views)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "EMAIL\tNAME\tSTATUS\tLOCKED\t2FA\tLAST LOGIN\tROLES\tGROUPS")
				for _, v := range views {
					roles := append(slices.Clone(v.Roles), v.GroupRoles...)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Email, orDash(v.Name), v.Status, yesNo(v.Locked),
						onOff(v.TOTPEnabled), whenOr(v.LastLoginAt, "never"), dash(roles), dash(v.Groups))
				}
				return tw.Flush()
			})
		},
	}

	show := &cobra.Command{
		Use:   "show --tenant T --email E",
		Short: "Show one user: state, roles, groups and permissions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "email"); err != nil {
				return err
			}
			email, _ := cmd.Flags().GetString("email")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				u, err := tc.findUser(email)
				if err != nil {
					return err
				}
				review, grants, err := tc.grantsByID()
				if err != nil {
					return err
				}
				v := viewOf(u, grants[u.ID])
				var perms []access.PermissionGrant
				for _, e := range review {
					if e.Kind == access.KindUser && e.ID == u.ID {
						perms = e.Permissions
					}
				}
				if asJSON {
					return printJSON(c.stdout, struct {
						userView
						Permissions []access.PermissionGrant `json:"permissions"`
					}{v, orNoGrants(perms)})
				}
				pw := "not set (enrolment pending)" // #nosec G101 -- a status label, not a credential
				if u.HasPassword {
					pw = "set, changed " + whenOr(u.PasswordChangedAt, "?")
					if u.MustChangePassword {
						pw += " (must be changed at next sign-in)"
					}
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 1, ' ', 0)
				for _, kv := range [][2]string{
					{"email", u.Email}, {"name", orDash(u.Name)}, {"id", u.ID}, {"status", u.Status}, {"source", u.Source},
					{"locked", lockState(u)}, {"2FA (TOTP)", onOff(u.TOTPEnabled)}, {"password", pw},
					{"last login", whenOr(u.LastLoginAt, "never")}, {"created", u.CreatedAt.UTC().Format(time.RFC3339)},
					{"roles", dash(v.Roles)}, {"groups", dash(v.Groups)}, {"group roles", dash(v.GroupRoles)},
					{"permissions", fmt.Sprint(len(perms))},
				} {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
				return tw.Flush()
			})
		},
	}
	show.Flags().String("email", "", "the user's email address")

	status := func(use, short, long, st string) *cobra.Command {
		sc := &cobra.Command{
			Use:   use + " --tenant T --email E",
			Short: short,
			Long:  long,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := need(cmd, "tenant", "email"); err != nil {
					return err
				}
				email, _ := cmd.Flags().GetString("email")
				return c.inTenant(cmd, func(tc *tenantCtx) error {
					u, err := tc.findUser(email)
					if err != nil {
						return err
					}
					if err := tc.a.Identity.SetUserStatus(tc.ctx, tc.t.ID, u.ID, st); err != nil {
						return tc.userErr(err, email, "")
					}
					if asJSON {
						return printJSON(c.stdout, map[string]any{"id": u.ID, "email": u.Email, "status": st})
					}
					if st == identity.StatusDisabled {
						fmt.Fprintf(c.stdout, "user %s is disabled: its sessions and API tokens are revoked\n", u.Email)
					} else {
						fmt.Fprintf(c.stdout, "user %s is active\n", u.Email)
					}
					return nil
				})
			},
		}
		sc.Flags().String("email", "", "the user's email address")
		return sc
	}

	unlock := &cobra.Command{
		Use:   "unlock --tenant T --email E",
		Short: "Unlock a user locked after failed sign-ins, and reset its failure count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "email"); err != nil {
				return err
			}
			email, _ := cmd.Flags().GetString("email")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				u, err := tc.findUser(email)
				if err != nil {
					return err
				}
				if err := tc.a.Identity.Unlock(tc.ctx, tc.t.ID, u.ID); err != nil {
					return tc.userErr(err, email, "")
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"id": u.ID, "email": u.Email, "was_locked": u.Locked})
				}
				if u.Locked {
					fmt.Fprintf(c.stdout, "user %s is unlocked\n", u.Email)
				} else {
					fmt.Fprintf(c.stdout, "user %s was not locked; its failure count is reset\n", u.Email)
				}
				return nil
			})
		},
	}
	unlock.Flags().String("email", "", "the user's email address")

	resetTOTP := &cobra.Command{
		Use:   "reset-totp --tenant T --email E",
		Short: "Remove a user's authenticator app and recovery codes (lost device)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "email"); err != nil {
				return err
			}
			email, _ := cmd.Flags().GetString("email")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				u, err := tc.findUser(email)
				if err != nil {
					return err
				}
				if err := tc.a.Identity.ResetTOTP(tc.ctx, tc.t.ID, u.ID); err != nil {
					return err
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"id": u.ID, "email": u.Email, "totp_enabled": false})
				}
				fmt.Fprintf(c.stdout, "second factor of %s removed: it sets up a new one at its next sign-in if the tenant requires one\n", u.Email)
				return nil
			})
		},
	}
	resetTOTP.Flags().String("email", "", "the user's email address")

	cmd.AddCommand(create, list, show,
		status("disable", "Disable a user: its sessions and API tokens are revoked at once",
			"Disable a user (deprovisioning, ACC-5): it can no longer sign in, and every\nsession and token it holds is revoked at once. Its data and grants are kept.",
			identity.StatusDisabled),
		status("enable", "Enable a disabled user", "Enable a disabled user: it can sign in again with its password.", identity.StatusActive),
		unlock, resetTOTP, c.userImportCmd(&asJSON))
	return cmd
}

func viewOf(u identity.User, g *userGrants) userView {
	v := userView{User: u, Roles: []string{}, Groups: []string{}, GroupRoles: []string{}}
	if g != nil {
		v.Roles, v.Groups, v.GroupRoles = orNone(g.roles), orNone(g.groups), orNone(g.groupRoles)
	}
	return v
}

func orNoGrants(p []access.PermissionGrant) []access.PermissionGrant {
	if p == nil {
		return []access.PermissionGrant{}
	}
	return p
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Bulk provisioning (ACC-3).

// Import bounds: hostile or careless files are refused whole.
const (
	maxImportBytes = 10 << 20
	maxImportRows  = 10_000
)

var importColumns = []string{"email", "name", "groups", "roles"}

// importIssue is one thing wrong with an import file.
type importIssue struct {
	Line int `json:"line"`
	// Column is the 1-based field number and Field its header name; for a
	// CSV syntax error, Char is the character position instead.
	Column int    `json:"column,omitempty"`
	Field  string `json:"field,omitempty"`
	Char   int    `json:"character,omitempty"`
	Reason string `json:"reason"`
}

func (i importIssue) String() string {
	switch {
	case i.Field != "":
		return fmt.Sprintf("line %d, column %d (%s): %s", i.Line, i.Column, i.Field, i.Reason)
	case i.Char > 0:
		return fmt.Sprintf("line %d, character %d: %s", i.Line, i.Char, i.Reason)
	}
	return fmt.Sprintf("line %d: %s", i.Line, i.Reason)
}

// importFile is a parsed file: the column of each header name, and the
// records with their line numbers.
type importFile struct {
	name string
	sep  rune
	cols map[string]int
	rows []importRecord
}

type importRecord struct {
	line   int
	fields []string
}

// field returns a record's value for a column, and the column's number.
func (f *importFile) field(r importRecord, col string) (string, int, bool) {
	i, ok := f.cols[col]
	if !ok {
		return "", 0, false
	}
	return strings.TrimSpace(r.fields[i]), i + 1, true
}

// readImport reads a file (or "-" for standard input), bounded.
func readImport(path string, stdin io.Reader) ([]byte, string, error) {
	tooBig := func(name string) error {
		return fmt.Errorf("%s is larger than 10 MB: split it into files of at most 10 MB and %d users each", name, maxImportRows)
	}
	if path == "-" {
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		data, err := io.ReadAll(io.LimitReader(stdin, maxImportBytes+1))
		if err != nil {
			return nil, "", fmt.Errorf("cannot read standard input: %w", err)
		}
		if len(data) > maxImportBytes {
			return nil, "", tooBig("standard input")
		}
		return data, "standard input", nil
	}
	f, err := os.Open(path) // #nosec G304 -- the operator names the file to import
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", fmt.Errorf("cannot open %s: %v; check the path", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, "", fmt.Errorf("%s is a directory: give a CSV file", path)
	}
	if st.Mode().IsRegular() && st.Size() > maxImportBytes {
		return nil, "", tooBig(path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxImportBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(data) > maxImportBytes {
		return nil, "", tooBig(path)
	}
	return data, path, nil
}

// parseImport checks the file's encoding and header, and splits it into
// records. Problems with the file as a whole are errors; problems with a
// line are issues.
func parseImport(name string, data []byte) (*importFile, []importIssue, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, nil, fmt.Errorf("%s: line %d is not valid UTF-8 text: save the file as UTF-8 (with or without BOM)",
			name, 1+bytes.Count(data[:off], []byte("\n")))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, fmt.Errorf("%s is empty: its first line must be the header email,name,groups,roles", name)
	}
	header, _, _ := bytes.Cut(data, []byte("\n"))
	commas, semis := bytes.Count(header, []byte(",")), bytes.Count(header, []byte(";"))
	sep := ','
	switch {
	case commas > 0 && semis > 0:
		return nil, nil, fmt.Errorf("%s: the header mixes ',' and ';': separate the column names with one of them (email,name,groups,roles)", name)
	case semis > 0:
		sep = ';'
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma, r.FieldsPerRecord, r.TrimLeadingSpace = sep, -1, true
	hdr, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: line 1 (the header): %v", name, csvReason(err))
	}
	f := &importFile{name: name, sep: sep, cols: map[string]int{}}
	for i, h := range hdr {
		k := strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(importColumns, k) {
			return nil, nil, fmt.Errorf("%s: line 1, column %d: unknown column %q: the header names the columns email, name, groups and roles (email is required)",
				name, i+1, truncateText(h, 40))
		}
		if _, dup := f.cols[k]; dup {
			return nil, nil, fmt.Errorf("%s: line 1, column %d: the column %q appears twice in the header", name, i+1, k)
		}
		f.cols[k] = i
	}
	if _, ok := f.cols["email"]; !ok {
		return nil, nil, fmt.Errorf("%s: the header has no email column: its first line must name the columns, e.g. email,name,groups,roles", name)
	}
	var issues []importIssue
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, nil, fmt.Errorf("%s: %v", name, err)
			}
			issues = append(issues, importIssue{Line: pe.StartLine, Char: pe.Column, Reason: csvReason(err)})
			continue
		}
		line, _ := r.FieldPos(0)
		if blankRecord(rec) {
			continue
		}
		if len(f.rows)+len(issues) >= maxImportRows {
			return nil, nil, fmt.Errorf("%s has more than %d users (lines after the header): split it into files of at most %d", name, maxImportRows, maxImportRows)
		}
		if len(rec) != len(hdr) {
			reason := fmt.Sprintf("has %d fields, the header has %d", len(rec), len(hdr))
			if sep == ';' {
				reason += ": separate groups and roles with | (';' separates the columns), or quote the value"
			} else {
				reason += ": quote values that contain ','"
			}
			issues = append(issues, importIssue{Line: line, Reason: reason})
			continue
		}
		f.rows = append(f.rows, importRecord{line: line, fields: rec})
	}
	return f, issues, nil
}

func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error() + " (quote a value that contains the separator or a quote, and double its quotes)"
	}
	return err.Error()
}

func blankRecord(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// splitList splits a groups or roles value at ';' or '|'.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == '|' }) {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// importPlan is one user to create.
type importPlan struct {
	Line   int           `json:"line"`
	Email  string        `json:"email"`
	Name   string        `json:"name"`
	roles  []access.Role // resolved
	Roles  []string      `json:"roles"`
	Groups []string      `json:"groups"` // names as stored (or to be created)
}

// validateImport checks every record against the tenant: email syntax,
// duplicates in the file and in the tenant, names, roles, groups. It
// returns the plan, the groups to create (with createGroups) and the issues.
func (tc *tenantCtx) validateImport(f *importFile, createGroups bool) ([]importPlan, []string, []importIssue, error) {
	users, err := tc.a.Identity.ListUsers(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	existing := make(map[string]bool, len(users))
	for _, u := range users {
		existing[strings.ToLower(u.Email)] = true
	}
	roles, err := tc.a.Access.ListRoles(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	groups, err := tc.a.Access.ListGroups(tc.ctx, tc.t.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	type newGroup struct {
		name string
		line int
	}
	newGroups := map[string]newGroup{} // lower-case name -> first spelling
	var newOrder []string
	seen := map[string]int{}
	var plans []importPlan
	var issues []importIssue
	for _, rec := range f.rows {
		bad := false
		issue := func(col int, field, reason string) {
			issues = append(issues, importIssue{Line: rec.line, Column: col, Field: field, Reason: reason})
			bad = true
		}
		p := importPlan{Line: rec.line, Roles: []string{}, Groups: []string{}}
		v, col, _ := f.field(rec, "email")
		switch e, err := identity.NormaliseEmail(v); {
		case v == "":
			issue(col, "email", "the email is empty")
		case err != nil:
			var ve *identity.ValidationError
			if errors.As(err, &ve) {
				issue(col, "email", ve.Message)
			} else {
				issue(col, "email", err.Error())
			}
		case seen[e] != 0:
			issue(col, "email", fmt.Sprintf("duplicate: the same email is on line %d", seen[e]))
		case existing[e]:
			issue(col, "email", fmt.Sprintf("a user with this email already exists in tenant %s", tc.t.Slug))
			seen[e] = rec.line
		default:
			p.Email = e
			seen[e] = rec.line
		}
		if v, col, ok := f.field(rec, "name"); ok {
			if err := validateUserName(v); err != nil {
				issue(col, "name", "the name "+err.Error())
			}
			p.Name = v
		}
		if v, col, ok := f.field(rec, "roles"); ok {
			for _, ref := range splitList(v) {
				r, found := findRoleIn(roles, ref)
				if !found {
					msg := fmt.Sprintf("unknown role %q (roles: %s)", truncateText(ref, 64), roleNames(roles))
					for _, x := range roles {
						if strings.EqualFold(x.Name, ref) {
							msg = fmt.Sprintf("unknown role %q: did you mean %q?", truncateText(ref, 64), x.Name)
						}
					}
					issue(col, "roles", msg)
					continue
				}
				p.roles = append(p.roles, r)
				p.Roles = append(p.Roles, r.Name)
			}
		}
		if v, col, ok := f.field(rec, "groups"); ok {
			for _, ref := range splitList(v) {
				if i := slices.IndexFunc(groups, func(g access.Group) bool { return g.ID == ref || g.Name == ref }); i >= 0 {
					p.Groups = append(p.Groups, groups[i].Name)
					continue
				}
				if i := slices.IndexFunc(groups, func(g access.Group) bool { return strings.EqualFold(g.Name, ref) }); i >= 0 {
					issue(col, "groups", fmt.Sprintf("no group %q: did you mean %q?", truncateText(ref, 64), groups[i].Name))
					continue
				}
				if !createGroups {
					issue(col, "groups", fmt.Sprintf("no group %q: create it first (`relais group create --tenant %s --name ...`) or pass --create-groups",
						truncateText(ref, 64), tc.t.Slug))
					continue
				}
				if err := validateGroupName(ref); err != nil {
					issue(col, "groups", fmt.Sprintf("%q: %v", truncateText(ref, 64), err))
					continue
				}
				key := strings.ToLower(ref)
				if ng, ok := newGroups[key]; ok {
					if ng.name != ref {
						issue(col, "groups", fmt.Sprintf("group %q is spelled %q on line %d: use one spelling", ref, ng.name, ng.line))
						continue
					}
				} else {
					newGroups[key] = newGroup{name: ref, line: rec.line}
					newOrder = append(newOrder, ref)
				}
				p.Groups = append(p.Groups, ref)
			}
		}
		if !bad {
			plans = append(plans, p)
		}
	}
	slices.SortStableFunc(issues, func(a, b importIssue) int { return a.Line - b.Line })
	return plans, newOrder, issues, nil
}

// importedUser is one created user in the import's output.
type importedUser struct {
	Line           int      `json:"line"`
	Email          string   `json:"email"`
	UserID         string   `json:"user_id"`
	EnrolmentToken string   `json:"enrolment_token"`
	Roles          []string `json:"roles"`
	Groups         []string `json:"groups"`
}

// importFailure reports an import that stopped midway and what was undone.
type importFailure struct {
	line     int
	cause    error
	undone   []provisioned // disabled, grants taken back
	stuck    []string      // what could not be undone
	groupsRm []string      // created groups deleted
}

func (e *importFailure) Error() string {
	msg := fmt.Sprintf("import stopped at line %d: %v; nothing was kept active: ", e.line, e.cause)
	if len(e.undone) > 0 {
		msg += fmt.Sprintf("the %d user(s) created before it were disabled and their roles and groups taken back (users cannot be deleted: remove their lines from the file before importing again)", len(e.undone))
	} else {
		msg += "no user had been created"
	}
	if len(e.groupsRm) > 0 {
		msg += fmt.Sprintf(", the %d new group(s) deleted", len(e.groupsRm))
	}
	if len(e.stuck) > 0 {
		msg += fmt.Sprintf("; BUT %d undo step(s) failed: %s", len(e.stuck), strings.Join(e.stuck, "; "))
	}
	return msg
}

// runImport creates the groups, then each user with its roles and groups.
// On a failure (a concurrent change, the store going away) it undoes what
// it did: the users created so far are disabled and their grants taken
// back, and the groups it created are deleted.
func (tc *tenantCtx) runImport(plans []importPlan, newGroups []string, progress io.Writer) ([]importedUser, error) {
	var createdGroups []string
	var done []provisioned
	fail := func(line int, cause error) error {
		e := &importFailure{line: line, cause: cause}
		for i := len(done) - 1; i >= 0; i-- {
			if err := tc.undo(done[i]); err != nil {
				e.stuck = append(e.stuck, fmt.Sprintf("user %s: %v", done[i].user.Email, err))
			}
		}
		e.undone = done
		ctx := context.WithoutCancel(tc.ctx)
		for i := len(createdGroups) - 1; i >= 0; i-- {
			if err := tc.a.Access.DeleteGroup(ctx, tc.t.ID, operatorActor, createdGroups[i]); err != nil {
				e.stuck = append(e.stuck, fmt.Sprintf("group %s: %v", createdGroups[i], err))
			} else {
				e.groupsRm = append(e.groupsRm, createdGroups[i])
			}
		}
		return e
	}
	for _, g := range newGroups {
		if _, err := tc.a.Access.CreateGroup(tc.ctx, tc.t.ID, operatorActor, g, "created by user import"); err != nil {
			return nil, fail(0, fmt.Errorf("create group %s: %w", g, err))
		}
		createdGroups = append(createdGroups, g)
	}
	out := make([]importedUser, 0, len(plans))
	for i, p := range plans {
		// No password is set here (enrolment secrets only): the privileged
		// length applies when the user enrols, from the roles it holds then.
		pv, err := tc.provision(identity.NewUser{Email: p.Email, Name: p.Name}, p.roles, p.Groups)
		if pv.user.ID != "" {
			done = append(done, pv)
		}
		if err != nil {
			return nil, fail(p.Line, err)
		}
		out = append(out, importedUser{Line: p.Line, Email: pv.user.Email, UserID: pv.user.ID, EnrolmentToken: pv.token,
			Roles: p.Roles, Groups: p.Groups})
		if progress != nil && len(plans) >= 2000 && (i+1)%1000 == 0 {
			fmt.Fprintf(progress, "created %d of %d users\n", i+1, len(plans))
		}
	}
	return out, nil
}

func (c *cli) userImportCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --tenant T FILE.csv",
		Short: "Create users with their groups and roles from a CSV file, all or nothing",
		Long: `Create users in bulk (ACC-3) from a CSV file whose header names the columns
email, name, groups and roles (email required, any order). Groups and roles
are separated by ';' or '|'. The separator between columns, ',' or ';', is
taken from the header; the file is UTF-8, with or without BOM. Use - to read
standard input. Blank lines are skipped. At most 10 MB and 10,000 users.

All or nothing: every line is checked first (email syntax, duplicates in the
file and in the tenant, names, roles, groups); if any is wrong, every
problem is reported with its line and column and nothing is created.
--dry-run stops there. Groups that do not exist are an error unless
--create-groups is given.

Each new user gets a one-time enrolment secret (valid 72 hours), printed as
CSV (email,enrolment_token) or JSON: hand each one to its user, who sets a
first password with POST /api/v1/auth/enrol (or the /enrol page).`,
		Example: `  relais user import --tenant acme users.csv --dry-run
  relais user import --tenant acme users.csv --create-groups > enrolment.csv`,
		Args: exactArgs(1, "give the CSV file (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			dryRun, _ := cmd.Flags().GetBool("dry-run")
			createGroups, _ := cmd.Flags().GetBool("create-groups")
			data, name, err := readImport(args[0], c.stdin)
			if err != nil {
				return err
			}
			f, issues, err := parseImport(name, data)
			if err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				plans, newGroups, more, err := tc.validateImport(f, createGroups)
				if err != nil {
					return err
				}
				issues = append(issues, more...)
				slices.SortStableFunc(issues, func(a, b importIssue) int { return a.Line - b.Line })
				if len(issues) > 0 {
					lines := map[int]bool{}
					for _, i := range issues {
						lines[i.Line] = true
					}
					if *asJSON {
						if err := printJSON(c.stdout, map[string]any{"valid": false, "errors": issues}); err != nil {
							return err
						}
					} else {
						const show = 100
						for i, is := range issues {
							if i == show {
								fmt.Fprintf(c.stderr, "%s: ... and %d more problems (--json lists them all)\n", name, len(issues)-show)
								break
							}
							fmt.Fprintf(c.stderr, "%s: %s\n", name, is)
						}
					}
					return fmt.Errorf("%s: %d line(s) are wrong (%d problem(s)); nothing was created: fix them and run the import again",
						name, len(lines), len(issues))
				}
				if len(plans) == 0 {
					return fmt.Errorf("%s has no user lines after the header: nothing to import", name)
				}
				if dryRun {
					if *asJSON {
						return printJSON(c.stdout, map[string]any{"valid": true, "dry_run": true, "users": plans, "groups_to_create": orNone(newGroups)})
					}
					fmt.Fprintf(c.stdout, "%s is valid: %d user(s) would be created in tenant %s (dry run: nothing was created)\n", name, len(plans), tc.t.Slug)
					if len(newGroups) > 0 {
						fmt.Fprintf(c.stdout, "groups that would be created: %s\n", strings.Join(newGroups, ", "))
					}
					tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "LINE\tEMAIL\tNAME\tROLES\tGROUPS")
					for _, p := range plans {
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p.Line, p.Email, orDash(p.Name), dash(p.Roles), dash(p.Groups))
					}
					return tw.Flush()
				}
				created, err := tc.runImport(plans, newGroups, c.stderr)
				if err != nil {
					var fe *importFailure
					if errors.As(err, &fe) {
						for _, p := range fe.undone {
							fmt.Fprintf(c.stderr, "disabled: %s (user id %s)\n", p.user.Email, p.user.ID)
						}
					}
					return err
				}
				exp := time.Now().Add(identity.EnrolmentTTL).UTC().Truncate(time.Second)
				if *asJSON {
					return printJSON(c.stdout, map[string]any{"tenant": tc.t.Slug, "created": created, "groups_created": orNone(newGroups),
						"enrolment_expires_at": exp, "enrol": "POST /api/v1/auth/enrol"})
				}
				w := csv.NewWriter(c.stdout)
				_ = w.Write([]string{"email", "enrolment_token"})
				for _, u := range created {
					_ = w.Write([]string{u.Email, u.EnrolmentToken})
				}
				w.Flush()
				if err := w.Error(); err != nil {
					return err
				}
				groupsNote := ""
				if len(newGroups) > 0 {
					groupsNote = fmt.Sprintf(" and %d group(s) (%s)", len(newGroups), strings.Join(newGroups, ", "))
				}
				fmt.Fprintf(c.stderr, "created %d user(s)%s in tenant %s; hand each enrolment secret to its user (valid until %s), who sets a first password with it: POST /api/v1/auth/enrol (or the /enrol page)\n",
					len(created), groupsNote, tc.t.Slug, exp.Format(time.RFC3339))
				return nil
			})
		},
	}
	cmd.Flags().Bool("dry-run", false, "check the file against the tenant and report what would be created, without creating anything")
	cmd.Flags().Bool("create-groups", false, "create the groups the file names that do not exist (otherwise they are an error)")
	return cmd
}

// API clients (AUTH-8).

// clientView is an API client with its roles.
type clientView struct {
	identity.APIClient
	Roles []string `json:"roles"`
}

func (c *cli) clientCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "API clients (service accounts): create, list, disable, enable"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")

	create := &cobra.Command{
		Use:   "create --tenant T --name N --role R [--role R...] [--allow CIDR...]",
		Short: "Create an API client with its roles; its secret is printed once",
		Long: `Create an API client (a service account) and grant it roles (checked
before anything is created). It exchanges its id and secret for short-lived
JWT access tokens at POST /oauth2/token (client credentials). The secret is
printed once and only its hash is stored. --allow restricts the addresses
it may be used from (CIDR, repeatable), on top of the tenant's allow-list.`,
		Example: `  relais client create --tenant acme --name ci --role editor --allow 203.0.113.0/24 --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "name", "role"); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			roleRefs, _ := cmd.Flags().GetStringSlice("role")
			allow, _ := cmd.Flags().GetStringSlice("allow")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				roles, err := tc.resolveRoles(roleRefs)
				if err != nil {
					return err
				}
				cl, secret, err := tc.a.Identity.CreateClient(tc.ctx, tc.t.ID, name, allow)
				if err != nil {
					var ve *identity.ValidationError
					switch {
					case errors.As(err, &ve) && ve.Field == "allow_cidrs":
						return fmt.Errorf("--allow: %s (e.g. 203.0.113.0/24 or 2001:db8::/32)", ve.Message)
					case errors.As(err, &ve):
						return fmt.Errorf("--%s: %s", ve.Field, ve.Message)
					case errors.Is(err, identity.ErrConflict):
						return fmt.Errorf("%v: choose another --name; %s", err, tc.see("client list"))
					}
					return err
				}
				for _, r := range roles {
					if err := tc.a.Access.GrantClientRole(tc.ctx, tc.t.ID, operatorActor, cl.ID, r.ID); err != nil {
						if derr := tc.a.Identity.SetClientStatus(context.WithoutCancel(tc.ctx), tc.t.ID, cl.ID, identity.StatusDisabled); derr != nil {
							return fmt.Errorf("client %s was created but granting role %s failed (%v), and disabling it failed too (%v): disable it with `relais client disable --tenant %s --id %s`",
								cl.ID, r.Name, err, derr, tc.t.Slug, cl.ID)
						}
						return fmt.Errorf("client %s was created but granting role %s failed (%v); it was disabled: create another one", cl.ID, r.Name, err)
					}
				}
				names := make([]string, len(roles))
				for i, r := range roles {
					names[i] = r.Name
				}
				if asJSON {
					// #nosec G101 -- the freshly created secret is shown to the operator once, by design
					return printJSON(c.stdout, map[string]any{"client_id": cl.ID, "client_secret": secret, "name": cl.Name,
						"tenant_id": cl.TenantID, "roles": names, "allow_cidrs": cl.AllowCIDRs, "token_endpoint": "/oauth2/token"})
				}
				fmt.Fprintf(c.stdout, "created API client %s in tenant %s with roles %s\nclient_id:     %s\nclient_secret: %s\nkeep the secret now: it is not shown again; exchange both for an access token at POST /oauth2/token\n",
					cl.Name, tc.t.Slug, strings.Join(names, ", "), cl.ID, secret)
				return nil
			})
		},
	}
	create.Flags().String("name", "", "what the client is for (unique in the tenant)")
	create.Flags().StringSlice("role", nil, "a role to grant (repeatable; see `relais role list`)")
	create.Flags().StringSlice("allow", nil, "a source address range allowed to use the client, CIDR (repeatable; default: any)")

	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's API clients (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				cls, err := tc.a.Identity.ListClients(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				_, grants, err := tc.grantsByID()
				if err != nil {
					return err
				}
				views := make([]clientView, 0, len(cls))
				for _, cl := range cls {
					v := clientView{APIClient: cl, Roles: []string{}}
					if g := grants[cl.ID]; g != nil {
						v.Roles = orNone(g.roles)
					}
					if v.AllowCIDRs == nil {
						v.AllowCIDRs = []string{}
					}
					views = append(views, v)
				}
				if asJSON {
					return printJSON(c.stdout, views)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CLIENT ID\tNAME\tSTATUS\tROLES\tALLOW\tLAST USED\tCREATED")
				for _, v := range views {
					allow := dash(v.AllowCIDRs)
					if len(v.AllowCIDRs) == 0 {
						allow = "any"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Name, v.Status, dash(v.Roles), allow,
						whenOr(v.LastUsedAt, "never"), v.CreatedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}

	status := func(use, short, st string) *cobra.Command {
		sc := &cobra.Command{
			Use:   use + " --tenant T --id CLIENT_ID",
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := need(cmd, "tenant", "id"); err != nil {
					return err
				}
				id, _ := cmd.Flags().GetString("id")
				return c.inTenant(cmd, func(tc *tenantCtx) error {
					if err := tc.a.Identity.SetClientStatus(tc.ctx, tc.t.ID, id, st); err != nil {
						if errors.Is(err, identity.ErrNotFound) {
							return fmt.Errorf("no API client %q in tenant %s; %s", truncateText(id, 120), tc.t.Slug, tc.see("client list"))
						}
						return err
					}
					if asJSON {
						return printJSON(c.stdout, map[string]any{"client_id": id, "status": st})
					}
					if st == identity.StatusDisabled {
						fmt.Fprintf(c.stdout, "API client %s is disabled: its access tokens are revoked\n", id)
					} else {
						fmt.Fprintf(c.stdout, "API client %s is active\n", id)
					}
					return nil
				})
			},
		}
		sc.Flags().String("id", "", "the client id (see `relais client list`)")
		return sc
	}
	cmd.AddCommand(create, list,
		status("disable", "Disable an API client: its access tokens are revoked at once", identity.StatusDisabled),
		status("enable", "Enable a disabled API client", identity.StatusActive))
	return cmd
}

// Roles and groups (ACC-1).

func (c *cli) roleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Roles (sets of permissions): list, create, grant, revoke"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")

	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's roles and their permissions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				roles, err := tc.a.Access.ListRoles(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					if roles == nil {
						roles = []access.Role{}
					}
					return printJSON(c.stdout, roles)
				}
				all := access.AllPermissions()
				for _, r := range roles {
					kind := "custom"
					if r.Builtin {
						kind = "built-in"
					}
					fmt.Fprintf(c.stdout, "%s (%s): %s\n", r.Name, kind, orDash(r.Description))
					perms := make([]string, len(r.Permissions))
					for i, p := range r.Permissions {
						perms[i] = string(p)
					}
					if r.Set().Equal(all) {
						fmt.Fprintf(c.stdout, "  permissions: all %d\n", len(perms))
					} else {
						fmt.Fprintf(c.stdout, "  permissions: %s\n", dash(perms))
					}
				}
				return nil
			})
		},
	}

	perms := &cobra.Command{
		Use:   "permissions",
		Short: "List every permission a role can hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat := access.Catalogue()
			if asJSON {
				return printJSON(c.stdout, cat)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PERMISSION\tADMINISTRATIVE\tDESCRIPTION")
			for _, p := range cat {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Permission, yesNo(p.Administrative), p.Description)
			}
			return tw.Flush()
		},
	}

	create := &cobra.Command{
		Use:     "create --tenant T --name N --permission P [--permission P...]",
		Short:   "Create a custom role",
		Example: `  relais role create --tenant acme --name "list keeper" --permission lists:read --permission lists:write`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "name", "permission"); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			desc, _ := cmd.Flags().GetString("description")
			raw, _ := cmd.Flags().GetStringSlice("permission")
			var ps []access.Permission
			for _, s := range raw {
				p, err := access.ParsePermission(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("--permission: unknown permission %q; see `relais role permissions`", truncateText(s, 64))
				}
				ps = append(ps, p)
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				r, err := tc.a.Access.CreateRole(tc.ctx, tc.t.ID, operatorActor, name, desc, ps)
				if err != nil {
					return tc.accessErr(err, "role list")
				}
				if asJSON {
					return printJSON(c.stdout, r)
				}
				fmt.Fprintf(c.stdout, "created role %s in tenant %s with %d permission(s)\n", r.Name, tc.t.Slug, len(r.Permissions))
				return nil
			})
		},
	}
	create.Flags().String("name", "", "the role's name")
	create.Flags().String("description", "", "what the role is for")
	create.Flags().StringSlice("permission", nil, "a permission of the role (repeatable; see `relais role permissions`)")

	grant := func(use, short string, add bool) *cobra.Command {
		gc := &cobra.Command{
			Use:   use + " --tenant T (--email E | --client ID) --role R",
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				email, _ := cmd.Flags().GetString("email")
				clientID, _ := cmd.Flags().GetString("client")
				if (email == "") == (clientID == "") {
					return usageError{fmt.Errorf("give either --email or --client; see `%s --help`", cmd.CommandPath())}
				}
				if err := need(cmd, "tenant", "role"); err != nil {
					return err
				}
				roleRef, _ := cmd.Flags().GetString("role")
				return c.inTenant(cmd, func(tc *tenantCtx) error {
					roles, err := tc.resolveRoles([]string{roleRef})
					if err != nil {
						return err
					}
					r := roles[0]
					who, id := clientID, clientID
					if email != "" {
						u, err := tc.findUser(email)
						if err != nil {
							return err
						}
						who, id = u.Email, u.ID
					}
					switch {
					case email != "" && add:
						err = tc.a.Access.GrantUserRole(tc.ctx, tc.t.ID, operatorActor, id, r.ID)
					case email != "":
						err = tc.a.Access.RevokeUserRole(tc.ctx, tc.t.ID, operatorActor, id, r.ID)
					case add:
						err = tc.a.Access.GrantClientRole(tc.ctx, tc.t.ID, operatorActor, id, r.ID)
					default:
						if err = tc.a.Access.RevokeClientRole(tc.ctx, tc.t.ID, operatorActor, id, r.ID); err == nil {
							// Tokens issued with the role's scopes die now.
							err = tc.a.Identity.BumpClientVersion(tc.ctx, tc.t.ID, id)
						}
					}
					if err != nil {
						if email == "" && errors.Is(err, access.ErrNotFound) {
							return fmt.Errorf("%v; %s", err, tc.see("client list"))
						}
						return tc.accessErr(err, "role list")
					}
					if asJSON {
						return printJSON(c.stdout, map[string]any{"principal": who, "role": r.Name, "granted": add})
					}
					if add {
						fmt.Fprintf(c.stdout, "%s holds role %s\n", who, r.Name)
					} else {
						fmt.Fprintf(c.stdout, "%s no longer holds role %s directly (a group may still give it)\n", who, r.Name)
					}
					return nil
				})
			},
		}
		gc.Flags().String("email", "", "the user's email address")
		gc.Flags().String("client", "", "an API client id, instead of a user")
		gc.Flags().String("role", "", "the role's name or id")
		return gc
	}
	cmd.AddCommand(list, perms, create,
		grant("grant", "Grant a role to a user or an API client", true),
		grant("revoke", "Take a directly granted role from a user or an API client, at once", false))
	return cmd
}

func (c *cli) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Groups (users who share roles): create, list, add members and roles"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")

	create := &cobra.Command{
		Use:   "create --tenant T --name N",
		Short: "Create an empty group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "name"); err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("name")
			desc, _ := cmd.Flags().GetString("description")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				g, err := tc.a.Access.CreateGroup(tc.ctx, tc.t.ID, operatorActor, name, desc)
				if err != nil {
					return tc.accessErr(err, "group list")
				}
				if asJSON {
					return printJSON(c.stdout, g)
				}
				fmt.Fprintf(c.stdout, "created group %s in tenant %s\n", g.Name, tc.t.Slug)
				return nil
			})
		},
	}
	create.Flags().String("name", "", "the group's name")
	create.Flags().String("description", "", "what the group is for")

	list := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's groups, their roles and member counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				gs, err := tc.a.Access.ListGroups(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if asJSON {
					if gs == nil {
						gs = []access.Group{}
					}
					return printJSON(c.stdout, gs)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tROLES\tMEMBERS\tSOURCE")
				for _, g := range gs {
					names := make([]string, len(g.Roles))
					for i, r := range g.Roles {
						names[i] = r.Name
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", g.Name, dash(names), g.MemberCount, g.Source)
				}
				return tw.Flush()
			})
		},
	}

	addMember := &cobra.Command{
		Use:   "add-member --tenant T --group G --email E",
		Short: "Put a user in a group (it gains the group's roles)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "group", "email"); err != nil {
				return err
			}
			group, _ := cmd.Flags().GetString("group")
			email, _ := cmd.Flags().GetString("email")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				u, err := tc.findUser(email)
				if err != nil {
					return err
				}
				if err := tc.a.Access.AddMember(tc.ctx, tc.t.ID, operatorActor, group, u.ID); err != nil {
					return tc.accessErr(err, "group list")
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"group": group, "email": u.Email, "member": true})
				}
				fmt.Fprintf(c.stdout, "%s is a member of group %s\n", u.Email, group)
				return nil
			})
		},
	}
	addMember.Flags().String("group", "", "the group's name or id")
	addMember.Flags().String("email", "", "the user's email address")

	addRole := &cobra.Command{
		Use:   "add-role --tenant T --group G --role R",
		Short: "Give a role to a group (and so to its members)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "group", "role"); err != nil {
				return err
			}
			group, _ := cmd.Flags().GetString("group")
			role, _ := cmd.Flags().GetString("role")
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				roles, err := tc.resolveRoles([]string{role})
				if err != nil {
					return err
				}
				if err := tc.a.Access.AddGroupRole(tc.ctx, tc.t.ID, operatorActor, group, roles[0].ID); err != nil {
					return tc.accessErr(err, "group list")
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"group": group, "role": roles[0].Name})
				}
				fmt.Fprintf(c.stdout, "group %s holds role %s\n", group, roles[0].Name)
				return nil
			})
		},
	}
	addRole.Flags().String("group", "", "the group's name or id")
	addRole.Flags().String("role", "", "the role's name or id")

	cmd.AddCommand(create, list, addMember, addRole)
	return cmd
}

// The access review (ACC-4).

// reviewGrant is one path (a direct role, or a group's role) and the
// permissions it gives.
type reviewGrant struct {
	Path        string              `json:"path"`
	GroupID     string              `json:"group_id,omitempty"`
	GroupName   string              `json:"group_name,omitempty"`
	RoleID      string              `json:"role_id"`
	RoleName    string              `json:"role_name"`
	Permissions []access.Permission `json:"permissions"`
}

// reviewLine is one principal of the review, decrypted.
type reviewLine struct {
	Kind           string                   `json:"kind"`
	ID             string                   `json:"id"`
	Email          string                   `json:"email,omitempty"`
	Name           string                   `json:"name,omitempty"`
	Status         string                   `json:"status"`
	Source         string                   `json:"source,omitempty"`
	TOTPEnabled    *bool                    `json:"totp_enabled,omitempty"`
	LastLoginAt    *time.Time               `json:"last_login_at,omitempty"`
	LastUsedAt     *time.Time               `json:"last_used_at,omitempty"`
	Administrative bool                     `json:"administrative"`
	Grants         []reviewGrant            `json:"grants"`
	Permissions    []access.PermissionGrant `json:"permissions"`
}

func (c *cli) accessCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "Access review: who holds what, and through which path"}
	var asJSON bool
	review := &cobra.Command{
		Use:   "review --tenant T",
		Short: "Report every user and API client, what it holds and through which role or group",
		Long: `The access review (ACC-4): every user (email and name decrypted) and every
API client of a tenant, its status, second factor and last sign-in or use,
and each path that gives it permissions: "role R" for a role granted
directly, "group G -> role R" for a group's role. Principals holding an
administrative permission are marked. A disabled principal is listed with
the grants it would have; its status says it holds nothing now.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				entries, err := tc.a.Access.Review(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				users, err := tc.a.Identity.ListUsers(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				byID := make(map[string]identity.User, len(users))
				for _, u := range users {
					byID[u.ID] = u
				}
				lines := make([]reviewLine, 0, len(entries))
				for _, e := range entries {
					l := reviewLine{Kind: e.Kind, ID: e.ID, Name: e.Name, Status: e.Status, Source: e.Source, LastLoginAt: e.LastLoginAt,
						LastUsedAt: e.LastUsedAt, Administrative: e.Administrative, Grants: []reviewGrant{}, Permissions: orNoGrants(e.Permissions)}
					if e.Kind == access.KindUser {
						u := byID[e.ID]
						l.Email, l.Name = u.Email, u.Name
						totp := e.TOTPEnabled
						l.TOTPEnabled = &totp
					}
					byPath := map[string]*reviewGrant{}
					for _, pg := range e.Permissions {
						for _, p := range pg.Paths {
							key := p.String()
							g := byPath[key]
							if g == nil {
								g = &reviewGrant{Path: key, GroupID: p.GroupID, GroupName: p.GroupName, RoleID: p.RoleID, RoleName: p.RoleName}
								byPath[key] = g
							}
							g.Permissions = append(g.Permissions, pg.Permission)
						}
					}
					for _, g := range byPath {
						l.Grants = append(l.Grants, *g)
					}
					slices.SortFunc(l.Grants, func(a, b reviewGrant) int { return strings.Compare(a.Path, b.Path) })
					lines = append(lines, l)
				}
				// Users by email, then clients by name: easier to read.
				slices.SortStableFunc(lines, func(a, b reviewLine) int {
					if a.Kind != b.Kind {
						return strings.Compare(b.Kind, a.Kind) // user before client
					}
					return strings.Compare(a.Email+a.Name, b.Email+b.Name)
				})
				if asJSON {
					return printJSON(c.stdout, map[string]any{"tenant": tc.t.Slug, "generated_at": time.Now().UTC().Truncate(time.Second), "principals": lines})
				}
				fmt.Fprintf(c.stdout, "access review of tenant %s (%s), %s\n", tc.t.Slug, tc.t.Name, time.Now().UTC().Format(time.RFC3339))
				for _, l := range lines {
					admin := ""
					if l.Administrative {
						admin = "  ADMINISTRATIVE"
					}
					if l.Kind == access.KindUser {
						name := ""
						if l.Name != "" {
							name = fmt.Sprintf(" (%s)", l.Name)
						}
						fmt.Fprintf(c.stdout, "\nuser %s%s  status=%s  2fa=%s  last_login=%s%s\n", l.Email, name, l.Status,
							onOff(*l.TOTPEnabled), whenOr(l.LastLoginAt, "never"), admin)
					} else {
						fmt.Fprintf(c.stdout, "\nclient %s (%s)  status=%s  last_used=%s%s\n", l.Name, l.ID, l.Status, whenOr(l.LastUsedAt, "never"), admin)
					}
					if len(l.Grants) == 0 {
						fmt.Fprintln(c.stdout, "  no permissions")
					}
					for _, g := range l.Grants {
						ps := make([]string, len(g.Permissions))
						for i, p := range g.Permissions {
							ps[i] = string(p)
						}
						fmt.Fprintf(c.stdout, "  %s: %s\n", g.Path, strings.Join(ps, " "))
					}
				}
				return nil
			})
		},
	}
	review.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	review.Flags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")
	cmd.AddCommand(review)
	return cmd
}

// Tenant creation with its first administrator.

// adminSpec is the first administrator `tenant create` makes.
type adminSpec struct {
	email, name, password string
}

// prepareAdmin reads and checks the administrator flags before anything is
// created: a bad email or name creates no tenant.
func (c *cli) prepareAdmin(cmd *cobra.Command) (*adminSpec, error) {
	email, _ := cmd.Flags().GetString("admin-email")
	name, _ := cmd.Flags().GetString("admin-name")
	pwStdin, _ := cmd.Flags().GetBool("admin-password-stdin")
	if email == "" {
		if name != "" || pwStdin {
			return nil, usageError{fmt.Errorf("--admin-name and --admin-password-stdin need --admin-email; see `relais tenant create --help`")}
		}
		return nil, nil
	}
	e, err := identity.NormaliseEmail(email)
	if err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("--admin-email: %s; no tenant was created", ve.Message)
		}
		return nil, err
	}
	if err := validateUserName(name); err != nil {
		return nil, fmt.Errorf("--admin-name: %v; no tenant was created", err)
	}
	spec := &adminSpec{email: e, name: strings.TrimSpace(name)}
	if pwStdin {
		if spec.password, err = readPassword(c.stdin, "--admin-password-stdin"); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// check applies the platform's password policy (the one a new tenant
// starts with) to the administrator's password, before the tenant exists.
func (s *adminSpec) check(ctx context.Context, a *app.App) error {
	if s == nil || s.password == "" {
		return nil
	}
	if err := checkPassword(ctx, a, a.Config.Policy.Password, s.password, true, []string{s.email, s.name}); err != nil {
		var pe *identity.PolicyError
		if errors.As(err, &pe) {
			return fmt.Errorf("--admin-password-stdin: %v; no tenant was created: choose a password of at least %d characters that meets the policy (`relais config print` shows it)",
				err, max(a.Config.Policy.Password.PrivilegedMinLength, a.Config.Policy.Password.MinLength))
		}
		return fmt.Errorf("%w; no tenant was created", err)
	}
	return nil
}

// createAdmin makes the tenant's first administrator (role admin).
func (c *cli) createAdmin(ctx context.Context, a *app.App, t tenants.Tenant, s *adminSpec) (createdUser, error) {
	tc := &tenantCtx{ctx: operatorContext(ctx), a: a, t: t}
	roles, err := tc.resolveRoles([]string{access.RoleAdmin})
	if err == nil {
		var out createdUser
		out, err = tc.createUserWithRoles(identity.NewUser{Email: s.email, Name: s.name, Password: s.password}, roles, "admin-")
		if err == nil {
			return out, nil
		}
	}
	return createdUser{}, fmt.Errorf("tenant %s was created but its administrator was not: %v; create one with `relais user create --tenant %s --email %s --role admin`",
		t.Slug, err, t.Slug, s.email)
}

package sso

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// Rule maps a claim (OIDC) or attribute (SAML) value to a relais group
// and/or role (ACC-2). Value "*" matches any value of the claim.
type Rule struct {
	ID         string    `json:"id"`
	ProviderID string    `json:"provider_id"`
	Claim      string    `json:"claim"`
	Value      string    `json:"value"`
	GroupID    string    `json:"group_id,omitempty"`
	GroupName  string    `json:"group,omitempty"`
	RoleID     string    `json:"role_id,omitempty"`
	RoleName   string    `json:"role,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// NewRule is the input of AddRule: group and role by id or name.
type NewRule struct {
	Provider, Claim, Value, Group, Role string
}

// AddRule adds a mapping rule to a provider.
func (s *Service) AddRule(ctx context.Context, tenantID string, nr NewRule) (Rule, error) {
	nr.Claim, nr.Value = strings.TrimSpace(nr.Claim), strings.TrimSpace(nr.Value)
	if nr.Claim == "" || len(nr.Claim) > 200 {
		return Rule{}, &ValidationError{Field: "claim", Message: "is required (at most 200 characters)"}
	}
	if nr.Value == "" || len(nr.Value) > 500 {
		return Rule{}, &ValidationError{Field: "value", Message: "is required (at most 500 characters; * for any value)"}
	}
	if nr.Group == "" && nr.Role == "" {
		return Rule{}, &ValidationError{Field: "group", Message: "a rule gives a group, a role, or both"}
	}
	var r Rule
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		p, err := getProvider(ctx, tx, nr.Provider)
		if err != nil {
			return err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		r = Rule{ID: id.String(), ProviderID: p.ID, Claim: nr.Claim, Value: nr.Value, CreatedAt: s.now().Truncate(time.Microsecond)}
		var group, role any
		if nr.Group != "" {
			if err := tx.QueryRow(ctx, `SELECT id, name FROM groups WHERE tenant_id = $1 AND (id = $2 OR name = $2)`, nr.Group).Scan(&r.GroupID, &r.GroupName); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%w: group %q", ErrNotFound, truncate(nr.Group, 60))
				}
				return err
			}
			group = r.GroupID
		}
		if nr.Role != "" {
			if err := tx.QueryRow(ctx, `SELECT id, name FROM roles WHERE tenant_id = $1 AND (id = $2 OR name = $2)`, nr.Role).Scan(&r.RoleID, &r.RoleName); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%w: role %q", ErrNotFound, truncate(nr.Role, 60))
				}
				return err
			}
			role = r.RoleID
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sso_rules (tenant_id, id, provider_id, claim, value, group_id, role_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			r.ID, r.ProviderID, r.Claim, r.Value, group, role, micros(r.CreatedAt)); err != nil {
			return fmt.Errorf("insert rule: %w", err)
		}
		return recordAdmin(ctx, tx, "sso.rule.create", "sso_rule", r.ID, map[string]any{"provider": p.Name, "claim": r.Claim, "value": r.Value,
			"group": r.GroupName, "role": r.RoleName})
	})
	return r, err
}

// ListRules returns a provider's rules ("" lists every provider's).
func (s *Service) ListRules(ctx context.Context, tenantID, provider string) ([]Rule, error) {
	var out []Rule
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		pid := ""
		if provider != "" {
			p, err := getProvider(ctx, tx, provider)
			if err != nil {
				return err
			}
			pid = p.ID
		}
		var err error
		out, err = listRules(ctx, tx, pid)
		return err
	})
	return out, err
}

func listRules(ctx context.Context, tx *store.Tx, providerID string) ([]Rule, error) {
	rows, err := tx.Query(ctx, `SELECT r.id, r.provider_id, r.claim, r.value, COALESCE(r.group_id, ''), COALESCE(g.name, ''), COALESCE(r.role_id, ''), COALESCE(ro.name, ''), r.created_at
		FROM sso_rules r
		LEFT JOIN groups g ON g.tenant_id = r.tenant_id AND g.id = r.group_id
		LEFT JOIN roles ro ON ro.tenant_id = r.tenant_id AND ro.id = r.role_id
		WHERE r.tenant_id = $1 AND (r.provider_id = $2 OR $2 = '') ORDER BY r.created_at, r.id`, providerID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []Rule
	for rows.Next() {
		var r Rule
		var created int64
		if err := rows.Scan(&r.ID, &r.ProviderID, &r.Claim, &r.Value, &r.GroupID, &r.GroupName, &r.RoleID, &r.RoleName, &created); err != nil {
			return nil, err
		}
		r.CreatedAt = store.FromMicros(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteRule removes a rule. Memberships it gave are taken away at the
// user's next sign-in.
func (s *Service) DeleteRule(ctx context.Context, tenantID, ruleID string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM sso_rules WHERE tenant_id = $1 AND id = $2`, ruleID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: rule %q", ErrNotFound, truncate(ruleID, 60))
		}
		return recordAdmin(ctx, tx, "sso.rule.delete", "sso_rule", ruleID, nil)
	})
}

// Claims are the values an IdP asserted, by claim or attribute name; every
// value is a string (numbers and booleans are formatted).
type Claims map[string][]string

func (c Claims) first(name string) string {
	if v := c[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// matches reports whether a rule applies to the claims.
func (r Rule) matches(c Claims) bool {
	vals, ok := c[r.Claim]
	if !ok || len(vals) == 0 {
		return false
	}
	return r.Value == "*" || slices.Contains(vals, r.Value)
}

// mapped is the outcome of the rules for one sign-in.
type mapped struct {
	groups, roles         map[string]string // id -> name
	groupNames, roleNames []string
	// newAdmin: administrative permissions the user holds after this
	// sign-in's mapping and did not hold before (ACC-4 alert).
	newAdmin []string
}

func evaluate(rules []Rule, c Claims) mapped {
	m := mapped{groups: map[string]string{}, roles: map[string]string{}}
	for _, r := range rules {
		if !r.matches(c) {
			continue
		}
		if r.GroupID != "" {
			m.groups[r.GroupID] = r.GroupName
		}
		if r.RoleID != "" {
			m.roles[r.RoleID] = r.RoleName
		}
	}
	for _, n := range m.groups {
		m.groupNames = append(m.groupNames, n)
	}
	for _, n := range m.roles {
		m.roleNames = append(m.roleNames, n)
	}
	sort.Strings(m.groupNames)
	sort.Strings(m.roleNames)
	return m
}

// syncGrants makes the user's rule-given memberships and roles equal to m:
// it adds what the rules give now, and takes away what they gave before
// and no longer give; memberships and roles granted by hand are left alone
// (a grant that already existed is not recorded as the rules' own).
func syncGrants(ctx context.Context, tx *store.Tx, userID string, m mapped) error {
	type grant struct{ kind, id string }
	rows, err := tx.Query(ctx, `SELECT kind, target_id FROM sso_grants WHERE tenant_id = $1 AND user_id = $2`, userID)
	if err != nil {
		return err
	}
	var have []grant
	for rows.Next() {
		var g grant
		if err := rows.Scan(&g.kind, &g.id); err != nil {
			_ = rows.Close()
			return err
		}
		have = append(have, g)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	want := map[grant]string{}
	for id, n := range m.groups {
		want[grant{"group", id}] = n
	}
	for id, n := range m.roles {
		want[grant{"role", id}] = n
	}
	stmts := map[string][2]string{
		"group": {`INSERT INTO group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			`DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3`},
		"role": {`INSERT INTO user_roles (tenant_id, role_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			`DELETE FROM user_roles WHERE tenant_id = $1 AND role_id = $2 AND user_id = $3`},
	}
	for _, g := range have {
		if _, keep := want[g]; keep {
			delete(want, g)
			continue
		}
		if _, err := tx.Exec(ctx, stmts[g.kind][1], g.id, userID); err != nil {
			return fmt.Errorf("sso: take away %s: %w", g.kind, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sso_grants WHERE tenant_id = $1 AND user_id = $2 AND kind = $3 AND target_id = $4`, userID, g.kind, g.id); err != nil {
			return err
		}
		action := map[string]string{"group": "group.member.remove", "role": "user.role.revoke"}[g.kind]
		if err := recordSync(ctx, tx, action, g.kind, g.id, userID, false); err != nil {
			return err
		}
	}
	for g := range want {
		res, err := tx.Exec(ctx, stmts[g.kind][0], g.id, userID)
		if err != nil {
			return fmt.Errorf("sso: give %s: %w", g.kind, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // granted by hand already: not the rules' to take away
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sso_grants (tenant_id, user_id, kind, target_id) VALUES ($1, $2, $3, $4)`, userID, g.kind, g.id); err != nil {
			return err
		}
		action := map[string]string{"group": "group.member.add", "role": "user.role.grant"}[g.kind]
		if err := recordSync(ctx, tx, action, g.kind, g.id, userID, true); err != nil {
			return err
		}
	}
	return nil
}

func recordSync(ctx context.Context, tx *store.Tx, action, kind, targetID, userID string, add bool) error {
	ev := audit.Event{Category: audit.CategoryAdmin, Action: action, Actor: audit.Actor{Type: audit.ActorSystem, ID: "sso"},
		Details: map[string]any{"source": "sso_mapping"}}
	if kind == "group" {
		ev.ObjectType, ev.ObjectID = "group", targetID
		ev.Changes = []audit.Change{{Field: "member", After: userID}}
		if !add {
			ev.Changes = []audit.Change{{Field: "member", Before: userID}}
		}
	} else {
		ev.ObjectType, ev.ObjectID = "user", userID
		ev.Changes = []audit.Change{{Field: "role", After: targetID}}
		if !add {
			ev.Changes = []audit.Change{{Field: "role", Before: targetID}}
		}
	}
	_, err := audit.Append(ctx, tx, ev)
	return err
}

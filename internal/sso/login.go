package sso

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// loginProvider resolves the tenant and an enabled provider of the given
// kind for a returning browser. An unknown tenant is recorded in the
// operator's log, an unknown provider in the tenant's.
func (s *Service) loginProvider(ctx context.Context, tenantRef, providerName, kind string, c identity.Client) (tenants.Tenant, Provider, error) {
	t, err := s.tenant(ctx, tenantRef)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			_ = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
				return recordLogin(ctx, p.Tenant(""), Provider{Name: truncate(providerName, 60)}, "", nil, "", "failure", "unknown_tenant", c)
			})
		}
		return tenants.Tenant{}, Provider{}, err
	}
	p, err := s.GetProvider(ctx, t.ID, providerName)
	if err == nil && (!p.Enabled || p.Kind != kind || p.Name != providerName) {
		err = fmt.Errorf("%w: provider %q", ErrNotFound, truncate(providerName, 60))
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			_ = s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
				return recordLogin(ctx, tx, Provider{Name: truncate(providerName, 60)}, "", nil, "", "failure", "unknown_or_disabled_provider", c)
			})
		}
		return tenants.Tenant{}, Provider{}, err
	}
	return t, p, nil
}

// attempt is one sign-in being checked.
type attempt struct {
	s       *Service
	t       tenants.Tenant
	p       Provider
	c       identity.Client
	subject string
	claims  Claims
	idpMFA  bool
}

// recordLogin appends the "sso.login" event (item 5): provider, subject,
// mapped groups and roles, outcome and reason.
func recordLogin(ctx context.Context, tx *store.Tx, p Provider, subject string, m *mapped, userID, outcome, reason string, c identity.Client) error {
	details := map[string]any{"provider": p.Name, "kind": p.Kind, "subject": truncate(subject, 256), "outcome": outcome, "reason": reason,
		"source_port": c.Port}
	if m != nil {
		details["groups"], details["roles"] = nonNil(m.groupNames), nonNil(m.roleNames)
		if len(m.newAdmin) > 0 {
			// ACC-4: an administrative right arrived through the mapping.
			details["alert"], details["permissions"] = "admin_grant", m.newAdmin
		}
	}
	_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "sso.login", ObjectType: "user", ObjectID: userID,
		Actor: audit.Actor{Type: audit.ActorUser, ID: userID}, IP: c.IP, UserAgent: c.UserAgent, Details: details})
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// refuse records a refused attempt and returns ErrRefused with the reason.
func (a *attempt) refuse(ctx context.Context, reason string) error {
	err := a.s.DB.Tenant(a.t.ID).Tx(ctx, func(tx *store.Tx) error {
		return recordLogin(ctx, tx, a.p, a.subject, nil, "", "failure", reason, a.c)
	})
	if err != nil {
		return fmt.Errorf("record refused sign-in: %w", err)
	}
	return fmt.Errorf("%w: %s", ErrRefused, reason)
}

// finish turns a verified assertion into a user and a session: it finds
// the user (by the IdP subject, then by email), provisions one when the
// provider allows it, applies the mapping rules, and asks identity for a
// session or a second-factor challenge.
func (a *attempt) finish(ctx context.Context, returnTo string) (Result, error) {
	s, p := a.s, a.p
	if a.subject == "" || len(a.subject) > 1024 {
		return Result{}, a.refuse(ctx, "no_subject")
	}
	crypto, err := s.Keyring.Crypto(ctx, a.t.ID)
	if err != nil {
		return Result{}, err
	}
	subj := crypto.Index("sso.subject", p.ID+"\x00"+a.subject)
	email := strings.TrimSpace(a.claims.first(p.Config.EmailClaim))
	name := a.claims.first(p.Config.NameClaim)

	var userID string
	err = s.DB.Tenant(a.t.ID).Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT user_id FROM sso_links WHERE tenant_id = $1 AND provider_id = $2 AND subject_bidx = $3`, p.ID, subj).Scan(&userID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return Result{}, err
	}
	jit := false
	if userID == "" {
		if email == "" {
			return Result{}, a.refuse(ctx, "no_email_claim")
		}
		u, err := s.Identity.FindUserByEmail(ctx, a.t.ID, email)
		switch {
		case err == nil:
			userID = u.ID
		case errors.Is(err, identity.ErrNotFound) && p.Config.JIT:
			if len([]rune(name)) > 200 {
				name = string([]rune(name)[:200])
			}
			nu, _, err := s.Identity.CreateUser(ctx, a.t.ID, identity.NewUser{Email: email, Name: name, Source: p.Kind})
			if err != nil {
				var ve *identity.ValidationError
				if errors.As(err, &ve) {
					return Result{}, a.refuse(ctx, "bad_claim: "+ve.Field)
				}
				return Result{}, err
			}
			userID, jit = nu.ID, true
		case errors.Is(err, identity.ErrNotFound):
			if rerr := a.refuse(ctx, "not_provisioned"); !errors.Is(rerr, ErrRefused) {
				return Result{}, rerr
			}
			return Result{}, fmt.Errorf("%w", ErrNotProvisioned)
		default:
			var ve *identity.ValidationError
			if errors.As(err, &ve) {
				return Result{}, a.refuse(ctx, "bad_claim: email")
			}
			return Result{}, err
		}
	}
	u, err := s.Identity.GetUser(ctx, a.t.ID, userID)
	if err != nil {
		return Result{}, err
	}
	if u.Status != identity.StatusActive {
		return Result{}, a.refuse(ctx, "user_disabled")
	}
	var m mapped
	var before access.Set
	if s.Access != nil {
		if before, err = s.Access.UserPermissions(ctx, a.t.ID, userID); err != nil {
			return Result{}, err
		}
	}
	now := s.now()
	err = s.DB.Tenant(a.t.ID).Tx(ctx, func(tx *store.Tx) error {
		rules, err := listRules(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		m = evaluate(rules, a.claims)
		if _, err := tx.Exec(ctx, `INSERT INTO sso_links (tenant_id, provider_id, subject_bidx, user_id, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (tenant_id, provider_id, subject_bidx) DO UPDATE SET last_login_at = $5`, p.ID, subj, userID, micros(now)); err != nil {
			return fmt.Errorf("link subject: %w", err)
		}
		return syncGrants(ctx, tx, userID, m)
	})
	if err != nil {
		return Result{}, err
	}
	if s.Access != nil {
		after, err := s.Access.UserPermissions(ctx, a.t.ID, userID)
		if err != nil {
			return Result{}, err
		}
		for _, perm := range before.Missing(after.Administrative()) {
			m.newAdmin = append(m.newAdmin, string(perm))
		}
	}
	method := map[string]string{KindOIDC: identity.MethodOIDC, KindSAML: identity.MethodSAML}[p.Kind]
	mfaOK := a.idpMFA && p.Config.AcceptIdPMFA
	lr, err := s.Identity.ExternalLogin(ctx, a.t.ID, userID, method, mfaOK, a.c)
	outcome, reason := "success", "ok"
	switch {
	case errors.Is(err, identity.ErrIPNotAllowed):
		outcome, reason = "failure", "ip_not_allowed"
	case errors.Is(err, identity.ErrMFAUnavailable):
		outcome, reason = "failure", "mfa_unavailable"
	case errors.Is(err, identity.ErrInvalidCredentials):
		outcome, reason = "failure", "user_disabled"
	case err != nil:
		return Result{}, err
	case lr.MFAToken != "":
		reason = "mfa_required"
	}
	if jit && outcome == "success" {
		reason += "; provisioned"
	}
	if a.idpMFA {
		reason += map[bool]string{true: "; idp_mfa_accepted", false: "; idp_mfa_not_accepted"}[p.Config.AcceptIdPMFA]
	}
	rerr := s.DB.Tenant(a.t.ID).Tx(ctx, func(tx *store.Tx) error {
		return recordLogin(ctx, tx, p, a.subject, &m, userID, outcome, reason, a.c)
	})
	if rerr != nil {
		return Result{}, rerr
	}
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return Result{LoginResult: lr, ReturnTo: SafeReturnTo(returnTo)}, nil
}

// Refuse records a sign-in refused before it reached this package (an
// oversized request, say) and returns ErrRefused.
func (s *Service) Refuse(ctx context.Context, tenantRef, providerName, kind, reason string, c identity.Client) error {
	t, p, err := s.loginProvider(ctx, tenantRef, providerName, kind, c)
	if err != nil {
		return err
	}
	a := attempt{s: s, t: t, p: p, c: c}
	return a.refuse(ctx, reason)
}

package identity

import (
	"context"
	"errors"
	"fmt"

	"github.com/relais-dev/relais/internal/store"
)

// ErrPasswordLoginDisabled: the tenant signs its users in through single
// sign-on only (AUTH-5); local passwords are refused.
var ErrPasswordLoginDisabled = errors.New("password sign-in is disabled for this tenant; use single sign-on")

// ErrMFAUnavailable: the tenant requires its own second factor after single
// sign-on, and the user has none that can be used (no TOTP app, no mailer).
var ErrMFAUnavailable = errors.New("a second factor is required but none is set up")

// ExternalLogin finishes a sign-in that an identity provider proved (OIDC,
// SAML: method is MethodOIDC or MethodSAML) for an existing user. It starts a
// session, or a second-factor challenge when the tenant's policy requires a
// second factor and the provider's own multi-factor authentication does not
// count (idpMFA false: the IdP did not assert it, or the tenant does not
// accept it). The user must be active and the address allowed.
func (s *Service) ExternalLogin(ctx context.Context, tenantID, userID, method string, idpMFA bool, c Client) (LoginResult, error) {
	const action = "auth.login"
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return LoginResult{}, err
	}
	if !allowed(pol.Network.UIAllow, c.IP) {
		_ = s.recordIn(ctx, tenantID, action, outcomeFailure, "ip_not_allowed", method, "", userID, c)
		return LoginResult{}, ErrIPNotAllowed
	}
	u, err := s.GetUser(ctx, tenantID, userID)
	if err != nil {
		return LoginResult{}, err
	}
	if u.Status != StatusActive {
		_ = s.recordIn(ctx, tenantID, action, outcomeFailure, "user_disabled", method, "", userID, c)
		return LoginResult{}, ErrInvalidCredentials
	}
	var due bool
	var methods []string
	if !idpMFA {
		if due, methods, err = s.mfaDue(ctx, tenantID, u, pol); err != nil {
			return LoginResult{}, err
		}
		if !due && pol.TwoFactor.Required != "none" {
			// Required by the policy, but nothing to challenge with.
			p := &Principal{TenantID: tenantID, UserID: userID}
			if err := s.loadPermissions(ctx, p); err != nil {
				return LoginResult{}, err
			}
			if mfaRequiredBy(pol, p.Permissions, s.Perms) {
				_ = s.recordIn(ctx, tenantID, action, outcomeFailure, "mfa_unavailable", method, "", userID, c)
				return LoginResult{}, ErrMFAUnavailable
			}
		}
	}
	now := s.now()
	res := LoginResult{TenantID: tenantID, UserID: userID}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if due {
			tok, err := newChallenge(ctx, tx, userID, now)
			if err != nil {
				return err
			}
			res.MFAToken, res.MFAMethods = tok, methods
			return recordAttempt(ctx, tx, action, outcomeSuccess, "mfa_required", method, "", userID, c)
		}
		ns, err := startSession(ctx, tx, userID, method, c, pol.Session, now)
		if err != nil {
			return err
		}
		res.Session = &ns
		return recordAttempt(ctx, tx, action, outcomeSuccess, "ok", method, "", userID, c)
	})
	if err != nil {
		return LoginResult{}, fmt.Errorf("external login: %w", err)
	}
	return res, nil
}

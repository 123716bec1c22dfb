package identity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Methods of authentication, recorded with each attempt and session.
const (
	MethodPassword = "password"
	MethodTOTP     = "totp"
	MethodEmail    = "email_code"
	MethodRecovery = "recovery_code"
	MethodToken    = "token"
	MethodOIDC     = "oidc"
	MethodSAML     = "saml"
)

// Client describes where an attempt comes from (AUTH-3).
type Client struct {
	IP        string
	Port      string
	UserAgent string
}

// LoginRequest is a password sign-in.
type LoginRequest struct {
	Tenant   string // slug or id
	Email    string
	Password string
	Client   Client
}

// LoginResult is a successful first step: either a session, or a pending
// second factor.
type LoginResult struct {
	TenantID string
	UserID   string
	// Session is set when no second factor is due.
	Session *NewSession
	// MFAToken is set when a second factor is due; MFAMethods lists the
	// factors the user can use.
	MFAToken   string
	MFAMethods []string
}

// Attempt outcomes and reasons recorded in the audit trail.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

// recordAttempt appends an authentication event (AUTH-3): outcome, reason,
// method, username as typed, source address and port, user agent.
func recordAttempt(ctx context.Context, tx *store.Tx, action, outcome, reason, method, username, userID string, c Client) error {
	if len(username) > 256 {
		username = username[:256]
	}
	_, err := audit.Append(ctx, tx, audit.Event{
		Category: audit.CategoryAuth, Action: action, ObjectType: "user", ObjectID: userID,
		Actor: audit.Actor{Type: audit.ActorUser, ID: userID},
		IP:    c.IP, UserAgent: c.UserAgent,
		Details: map[string]any{"outcome": outcome, "reason": reason, "method": method, "username": username, "source_port": c.Port},
	})
	return err
}

// recordIn writes an attempt in the tenant's log (or the operator's log
// when the tenant is unknown) in its own transaction.
func (s *Service) recordIn(ctx context.Context, tenantID, action, outcome, reason, method, username, userID string, c Client) error {
	if tenantID == "" {
		return s.DB.Platform(ctx, func(p *store.PlatformTx) error {
			return recordAttempt(ctx, p.Tenant(""), action, outcome, reason, method, username, userID, c)
		})
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return recordAttempt(ctx, tx, action, outcome, reason, method, username, userID, c)
	})
}

// lockDuration is the n-th lock's duration: base * growth^(n-1), capped.
func lockDuration(lp config.LockoutPolicy, n int) time.Duration {
	d := float64(lp.LockDuration.D()) * math.Pow(float64(lp.LockGrowth), float64(max(n-1, 0)))
	if d > float64(lp.MaxLockDuration.D()) || math.IsInf(d, 0) {
		return lp.MaxLockDuration.D()
	}
	return time.Duration(d)
}

// reserveIP counts an attempt against the source address before the
// password is checked, atomically, so a parallel burst cannot exceed the
// limit. It reports false when the address is over its limit.
func reserveIP(ctx context.Context, tx *store.Tx, ip string, lp config.LockoutPolicy, now time.Time) (bool, error) {
	cutoff := micros(now.Add(-lp.Window.D()))
	var count int
	err := tx.QueryRow(ctx, `INSERT INTO ip_failures (tenant_id, ip, window_start, count) VALUES ($1, $2, $3, 1)
		ON CONFLICT (tenant_id, ip) DO UPDATE SET
			count = CASE WHEN ip_failures.window_start < $4 THEN 1 ELSE ip_failures.count + 1 END,
			window_start = CASE WHEN ip_failures.window_start < $4 THEN $3 ELSE ip_failures.window_start END
		RETURNING count`, ip, micros(now), cutoff).Scan(&count)
	if err != nil {
		return false, fmt.Errorf("count attempt from address: %w", err)
	}
	return count <= lp.MaxFailuresPerIP, nil
}

// releaseIP gives back the reservation of a successful attempt.
func releaseIP(ctx context.Context, tx *store.Tx, ip string) error {
	_, err := tx.Exec(ctx, `UPDATE ip_failures SET count = count - 1 WHERE tenant_id = $1 AND ip = $2 AND count > 0`, ip)
	return err
}

// Login checks a password. Attempts are limited per account and per
// source address; the counters are reserved atomically before the (slow)
// password check, so that N parallel attempts are never more than the
// limit. Unknown accounts cost the same time as known ones.
func (s *Service) Login(ctx context.Context, req LoginRequest) (LoginResult, error) {
	const action = "auth.login"
	dummy := password.DefaultPBKDF2()
	if len(req.Password) > password.MaxPasswordBytes || len(req.Email) > 320 || len(req.Tenant) > 100 {
		password.DummyVerify(dummy)
		_ = s.recordIn(ctx, "", action, outcomeFailure, "oversized_input", MethodPassword, "", "", req.Client)
		return LoginResult{}, ErrInvalidCredentials
	}
	t, err := s.Tenants.Get(ctx, req.Tenant)
	if err != nil || t.Status != tenants.StatusActive {
		if err != nil && !errors.Is(err, tenants.ErrNotFound) {
			return LoginResult{}, err
		}
		password.DummyVerify(dummy)
		if rerr := s.recordIn(ctx, "", action, outcomeFailure, "unknown_or_disabled_tenant", MethodPassword, req.Email, "", req.Client); rerr != nil {
			return LoginResult{}, rerr
		}
		return LoginResult{}, ErrInvalidCredentials
	}
	pol, err := s.policy(ctx, t.ID)
	if err != nil {
		return LoginResult{}, err
	}
	if !allowed(pol.Network.UIAllow, req.Client.IP) {
		_ = s.recordIn(ctx, t.ID, action, outcomeFailure, "ip_not_allowed", MethodPassword, req.Email, "", req.Client)
		return LoginResult{}, ErrIPNotAllowed
	}
	if s.PasswordLogin != nil {
		ok, err := s.PasswordLogin(ctx, t.ID)
		if err != nil {
			return LoginResult{}, err
		}
		if !ok {
			password.DummyVerify(dummy)
			_ = s.recordIn(ctx, t.ID, action, outcomeFailure, "password_login_disabled", MethodPassword, req.Email, "", req.Client)
			return LoginResult{}, ErrPasswordLoginDisabled
		}
	}
	params := hashParams(pol.Password)
	now := s.now()
	c, err := s.Keyring.Crypto(ctx, t.ID)
	if err != nil {
		return LoginResult{}, err
	}
	email, verr := NormaliseEmail(req.Email)

	// Step 1, one transaction: count the attempt for the address and the
	// account, and read what the password check needs.
	var (
		userID, hash, status string
		found, reserved      bool
		ipOK                 bool
		failed               int
	)
	err = s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		if ipOK, err = reserveIP(ctx, tx, req.Client.IP, pol.Lockout, now); err != nil || !ipOK {
			return err
		}
		if verr != nil {
			return nil
		}
		var h *string
		err = tx.QueryRow(ctx, `SELECT id, status, password_hash FROM users WHERE tenant_id = $1 AND email_bidx = $2`,
			c.Index("user.email", email)).Scan(&userID, &status, &h)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		if h != nil {
			hash = *h
		}
		if status != StatusActive {
			return nil
		}
		cutoff := micros(now.Add(-pol.Lockout.Window.D()))
		err = tx.QueryRow(ctx, `UPDATE users SET
				failed_count = CASE WHEN failed_window_start < $3 THEN 1 ELSE failed_count + 1 END,
				failed_window_start = CASE WHEN failed_window_start < $3 THEN $4 ELSE failed_window_start END
			WHERE tenant_id = $1 AND id = $2 AND NOT locked_permanent AND locked_until <= $4
				AND (failed_window_start < $3 OR failed_count < $5)
			RETURNING failed_count`, userID, cutoff, micros(now), pol.Lockout.MaxFailures).Scan(&failed)
		if errors.Is(err, store.ErrNotFound) {
			return nil // locked, or over the limit
		}
		if err != nil {
			return err
		}
		reserved = true
		return nil
	})
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	if !ipOK {
		password.DummyVerify(params)
		_ = s.recordIn(ctx, t.ID, action, outcomeFailure, "ip_throttled", MethodPassword, req.Email, "", req.Client)
		return LoginResult{}, ErrThrottled
	}
	if !found || status != StatusActive || hash == "" {
		password.DummyVerify(params)
		reason := "unknown_user"
		if found {
			reason = map[bool]string{true: "no_password", false: "user_disabled"}[status == StatusActive]
		}
		if err := s.recordIn(ctx, t.ID, action, outcomeFailure, reason, MethodPassword, req.Email, userID, req.Client); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCredentials
	}
	if !reserved {
		// Locked, or its last allowed attempts are being checked right
		// now: do not check this password at all.
		if err := s.recordIn(ctx, t.ID, action, outcomeFailure, "locked", MethodPassword, req.Email, userID, req.Client); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrLocked
	}

	ok, verifyErr := password.Verify(req.Password, hash)
	if verifyErr != nil || !ok {
		err := s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
			if failed >= pol.Lockout.MaxFailures {
				if err := lockTx(ctx, tx, userID, pol.Lockout, now); err != nil {
					return err
				}
			}
			reason := "bad_password"
			if verifyErr != nil {
				reason = "unreadable_hash"
			}
			return recordAttempt(ctx, tx, action, outcomeFailure, reason, MethodPassword, req.Email, userID, req.Client)
		})
		if err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCredentials
	}

	// Success of the first factor.
	var rehash string
	if password.NeedsRehash(hash, params) {
		if h, err := password.Hash(req.Password, params); err == nil {
			rehash = h
		}
	}
	u, err := s.GetUser(ctx, t.ID, userID)
	if err != nil {
		return LoginResult{}, err
	}
	mfaDue, methods, err := s.mfaDue(ctx, t.ID, u, pol)
	if err != nil {
		return LoginResult{}, err
	}
	res := LoginResult{TenantID: t.ID, UserID: userID}
	err = s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET failed_count = 0, failed_window_start = 0, lock_count = 0 WHERE tenant_id = $1 AND id = $2`, userID); err != nil {
			return err
		}
		if err := releaseIP(ctx, tx, req.Client.IP); err != nil {
			return err
		}
		if rehash != "" {
			if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $3 WHERE tenant_id = $1 AND id = $2`, userID, rehash); err != nil {
				return err
			}
		}
		if mfaDue {
			tok, err := newChallenge(ctx, tx, userID, now)
			if err != nil {
				return err
			}
			res.MFAToken, res.MFAMethods = tok, methods
			return recordAttempt(ctx, tx, action, outcomeSuccess, "mfa_required", MethodPassword, req.Email, userID, req.Client)
		}
		ns, err := startSession(ctx, tx, userID, MethodPassword, req.Client, pol.Session, now)
		if err != nil {
			return err
		}
		res.Session = &ns
		return recordAttempt(ctx, tx, action, outcomeSuccess, "ok", MethodPassword, req.Email, userID, req.Client)
	})
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	return res, nil
}

// lockTx locks an account that reached the failure limit: temporarily with
// a growing duration, or permanently when the policy says so.
func lockTx(ctx context.Context, tx *store.Tx, userID string, lp config.LockoutPolicy, now time.Time) error {
	var lockCount int
	if err := tx.QueryRow(ctx, `UPDATE users SET lock_count = lock_count + 1, failed_count = 0, failed_window_start = 0
		WHERE tenant_id = $1 AND id = $2 RETURNING lock_count`, userID).Scan(&lockCount); err != nil {
		return fmt.Errorf("lock account: %w", err)
	}
	until := now.Add(lockDuration(lp, lockCount))
	if _, err := tx.Exec(ctx, `UPDATE users SET locked_until = $3, locked_permanent = $4 WHERE tenant_id = $1 AND id = $2`,
		userID, micros(until), lp.Permanent); err != nil {
		return fmt.Errorf("lock account: %w", err)
	}
	details := map[string]any{"lock_count": lockCount, "permanent": lp.Permanent}
	if !lp.Permanent {
		details["until"] = until.Format(time.RFC3339)
	}
	_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "user.lock", ObjectType: "user", ObjectID: userID,
		Actor: audit.Actor{Type: audit.ActorSystem, ID: "lockout"}, Details: details})
	return err
}

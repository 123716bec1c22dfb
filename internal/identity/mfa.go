package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/otp"
	"github.com/relais-dev/relais/internal/store"
)

// Second-factor limits.
const (
	challengeTTL         = 5 * time.Minute
	challengeMaxAttempts = 5
	emailCodeTTL         = 10 * time.Minute
	emailCodeMaxSends    = 3
	emailCodeResendAfter = 30 * time.Second
	recoveryCodeCount    = 10
)

// mfaRequiredBy reports whether the policy requires a second factor of a
// holder of these permissions.
func mfaRequiredBy(pol config.Policy, perms map[string]bool, src PermissionSource) bool {
	switch pol.TwoFactor.Required {
	case "all":
		return true
	case "admins":
		if src == nil {
			return false
		}
		for p := range perms {
			if src.IsAdministrative(p) {
				return true
			}
		}
	}
	return false
}

// mfaDue decides whether a user who gave a correct password must now give
// a second factor, and which ones they can use.
func (s *Service) mfaDue(ctx context.Context, tenantID string, u User, pol config.Policy) (bool, []string, error) {
	var methods []string
	if u.TOTPEnabled {
		methods = append(methods, MethodTOTP, MethodRecovery)
	}
	required := u.TOTPEnabled
	if !required && pol.TwoFactor.Required != "none" {
		p := &Principal{TenantID: tenantID, UserID: u.ID}
		if err := s.loadPermissions(ctx, p); err != nil {
			return false, nil, err
		}
		required = mfaRequiredBy(pol, p.Permissions, s.Perms)
	}
	if !required {
		return false, nil, nil
	}
	if s.Mailer != nil {
		methods = append(methods, MethodEmail)
	}
	if len(methods) == 0 {
		// Required, but nothing set up and no mailer: sign in restricted
		// to enrolment (Principal.MFAEnrolmentRequired).
		return false, nil, nil
	}
	return true, methods, nil
}

func newChallenge(ctx context.Context, tx *store.Tx, userID string, now time.Time) (string, error) {
	tok := newSecret(prefixMFA, tx.TenantID())
	if _, err := tx.Exec(ctx, `INSERT INTO mfa_challenges (token_hash, tenant_id, user_id, created_at, expires_at) VALUES ($2, $1, $3, $4, $5)`,
		hashSecret(tok), userID, micros(now), micros(now.Add(challengeTTL))); err != nil {
		return "", fmt.Errorf("second-factor challenge: %w", err)
	}
	return tok, nil
}

type challenge struct {
	tenantID, userID string
	emailHash        []byte
	emailSentAt      int64
	emailSends       int
}

// useChallenge counts an attempt on a live challenge (atomically, so a burst
// cannot exceed challengeMaxAttempts) and returns it.
func useChallenge(ctx context.Context, tx *store.Tx, token string, now time.Time) (challenge, error) {
	c := challenge{tenantID: tx.TenantID()}
	err := tx.QueryRow(ctx, `UPDATE mfa_challenges SET attempts = attempts + 1
		WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > $3 AND attempts < $4
		RETURNING user_id, email_code_hash, email_sent_at, email_sends`, hashSecret(token), micros(now), challengeMaxAttempts).
		Scan(&c.userID, &c.emailHash, &c.emailSentAt, &c.emailSends)
	if errors.Is(err, store.ErrNotFound) {
		return c, ErrInvalidCode
	}
	return c, err
}

// SendEmailCode mails a one-time code for a pending challenge (rate-limited:
// at most 3 per challenge, 30 s apart).
func (s *Service) SendEmailCode(ctx context.Context, token string) error {
	if s.Mailer == nil {
		return ErrUnavailable
	}
	tenantID, ok := splitSecret(prefixMFA, token)
	if !ok {
		return ErrInvalidCode
	}
	now := s.now()
	code, hash, err := otp.NewEmailCode()
	if err != nil {
		return err
	}
	var userID string
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE mfa_challenges SET email_code_hash = $3, email_sent_at = $4, email_sends = email_sends + 1
			WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > $4 AND email_sends < $5 AND email_sent_at < $6
			RETURNING user_id`, hashSecret(token), hash, micros(now), emailCodeMaxSends, micros(now.Add(-emailCodeResendAfter))).Scan(&userID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrThrottled
		}
		return err
	})
	if err != nil {
		return err
	}
	u, err := s.GetUser(ctx, tenantID, userID)
	if err != nil {
		return err
	}
	if err := s.Mailer.SendCode(ctx, tenantID, u.Email, code); err != nil {
		return fmt.Errorf("send the code: %w", err)
	}
	return s.recordIn(ctx, tenantID, "auth.mfa.email_sent", outcomeSuccess, "ok", MethodEmail, "", userID, Client{})
}

// VerifyMFA completes a sign-in with a second factor and starts the session.
// A TOTP code is accepted once (its time step is remembered); email and
// recovery codes are single use; at most 5 attempts per challenge.
func (s *Service) VerifyMFA(ctx context.Context, token, code string, c Client) (NewSession, error) {
	tenantID, ok := splitSecret(prefixMFA, token)
	if !ok || len(code) > 64 {
		return NewSession{}, ErrInvalidCode
	}
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return NewSession{}, ErrInvalidCode
	}
	now := s.now()
	var ns NewSession
	var failure error
	crypto, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return NewSession{}, err
	}
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		ch, err := useChallenge(ctx, tx, token, now)
		if err != nil {
			if errors.Is(err, ErrInvalidCode) {
				failure = err
				return recordAttempt(ctx, tx, "auth.mfa", outcomeFailure, "no_live_challenge", "", "", "", c)
			}
			return err
		}
		method, ok, err := s.checkFactor(ctx, tx, crypto, ch, code, now)
		if err != nil {
			return err
		}
		if !ok {
			failure = ErrInvalidCode
			return recordAttempt(ctx, tx, "auth.mfa", outcomeFailure, "bad_code", method, "", ch.userID, c)
		}
		if _, err := tx.Exec(ctx, `UPDATE mfa_challenges SET used_at = $3 WHERE tenant_id = $1 AND token_hash = $2`, hashSecret(token), micros(now)); err != nil {
			return err
		}
		if ns, err = startSession(ctx, tx, ch.userID, method, c, pol.Session, now); err != nil {
			return err
		}
		return recordAttempt(ctx, tx, "auth.mfa", outcomeSuccess, "ok", method, "", ch.userID, c)
	})
	if err != nil {
		return NewSession{}, fmt.Errorf("second factor: %w", err)
	}
	if failure != nil {
		return NewSession{}, failure
	}
	return ns, nil
}

// checkFactor tries the code as a TOTP code, an email code, then a
// recovery code, and consumes what it matched.
func (s *Service) checkFactor(ctx context.Context, tx *store.Tx, crypto interface {
	Open(string, []byte) ([]byte, error)
}, ch challenge, code string, now time.Time) (string, bool, error) {
	var secretEnc []byte
	var enabled bool
	var lastStep int64
	if err := tx.QueryRow(ctx, `SELECT totp_secret_enc, totp_enabled, totp_last_step FROM users WHERE tenant_id = $1 AND id = $2 AND status = 'active'`,
		ch.userID).Scan(&secretEnc, &enabled, &lastStep); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", false, nil
		}
		return "", false, err
	}
	if enabled && len(secretEnc) > 0 && len(code) == 6 {
		secret, err := crypto.Open("user.totp", secretEnc)
		if err != nil {
			return "", false, fmt.Errorf("decrypt TOTP secret: %w", err)
		}
		if step, ok := otp.Check(string(secret), code, now, lastStep); ok {
			// Remember the step: the same code (or an older one) is refused.
			res, err := tx.Exec(ctx, `UPDATE users SET totp_last_step = $3 WHERE tenant_id = $1 AND id = $2 AND totp_last_step < $3`, ch.userID, step)
			if err != nil {
				return "", false, err
			}
			n, _ := res.RowsAffected()
			return MethodTOTP, n == 1, nil
		}
	}
	if len(ch.emailHash) > 0 && now.Sub(store.FromMicros(ch.emailSentAt)) < emailCodeTTL && otp.CheckEmailCode(code, ch.emailHash) {
		// Single use: the whole challenge is consumed on success.
		return MethodEmail, true, nil
	}
	if enabled {
		rows, err := tx.Query(ctx, `SELECT code_hash FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL`, ch.userID)
		if err != nil {
			return "", false, err
		}
		var hashes [][]byte
		for rows.Next() {
			var h []byte
			if err := rows.Scan(&h); err != nil {
				_ = rows.Close()
				return "", false, err
			}
			hashes = append(hashes, h)
		}
		_ = rows.Close()
		if i, ok := otp.MatchRecoveryCode(code, hashes); ok {
			res, err := tx.Exec(ctx, `UPDATE recovery_codes SET used_at = $4 WHERE tenant_id = $1 AND user_id = $2 AND code_hash = $3 AND used_at IS NULL`,
				ch.userID, hashes[i], micros(now))
			if err != nil {
				return "", false, err
			}
			n, _ := res.RowsAffected()
			return MethodRecovery, n == 1, nil
		}
	}
	return MethodTOTP, false, nil
}

// TOTPEnrolment is a started TOTP enrolment: show URL (as a QR code) and
// Secret to the user, then confirm with a code.
type TOTPEnrolment struct {
	Secret string
	URL    string
	key    otp.Key
}

// PNG renders the enrolment QR code.
func (e TOTPEnrolment) PNG(size int) ([]byte, error) { return e.key.PNG(size) }

// BeginTOTP creates a new TOTP secret for the user (stored encrypted, not
// yet enabled). Needs a recent sign-in when a factor is already enabled.
func (s *Service) BeginTOTP(ctx context.Context, p *Principal) (TOTPEnrolment, error) {
	u, err := s.GetUser(ctx, p.TenantID, p.UserID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	if u.TOTPEnabled {
		if err := s.RequireRecentAuth(p); err != nil {
			return TOTPEnrolment{}, err
		}
	}
	issuer := s.Issuer
	if issuer == "" {
		issuer = "Relais"
	}
	key, err := otp.NewSecret(issuer, u.Email)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	c, err := s.Keyring.Crypto(ctx, p.TenantID)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	enc, err := c.SealString("user.totp", key.Secret)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	err = s.DB.Tenant(p.TenantID).Tx(ctx, func(tx *store.Tx) error {
		// Re-enrolment replaces the old secret: the user proved a recent
		// sign-in above, and confirms the new one with a code.
		_, err := tx.Exec(ctx, `UPDATE users SET totp_secret_enc = $3, totp_enabled = FALSE, totp_last_step = 0 WHERE tenant_id = $1 AND id = $2`, p.UserID, enc)
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "user.totp.begin", ObjectType: "user", ObjectID: p.UserID})
		return err
	})
	if err != nil {
		return TOTPEnrolment{}, wrap("begin TOTP enrolment", err)
	}
	return TOTPEnrolment{Secret: key.Secret, URL: key.URL, key: key}, nil
}

// ConfirmTOTP enables TOTP after the user typed a valid code, and returns
// 10 fresh recovery codes (shown once, stored hashed).
func (s *Service) ConfirmTOTP(ctx context.Context, p *Principal, code string) ([]string, error) {
	c, err := s.Keyring.Crypto(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	codes, hashes, err := otp.NewRecoveryCodes(recoveryCodeCount)
	if err != nil {
		return nil, err
	}
	now := s.now()
	err = s.DB.Tenant(p.TenantID).Tx(ctx, func(tx *store.Tx) error {
		var enc []byte
		var enabled bool
		if err := tx.QueryRow(ctx, `SELECT totp_secret_enc, totp_enabled FROM users WHERE tenant_id = $1 AND id = $2`, p.UserID).Scan(&enc, &enabled); err != nil {
			return err
		}
		if len(enc) == 0 || enabled {
			return ErrInvalidCode
		}
		secret, err := c.Open("user.totp", enc)
		if err != nil {
			return err
		}
		step, ok := otp.Check(string(secret), code, now, 0)
		if !ok {
			return ErrInvalidCode
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET totp_enabled = TRUE, totp_last_step = $3 WHERE tenant_id = $1 AND id = $2`, p.UserID, step); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2`, p.UserID); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.Exec(ctx, `INSERT INTO recovery_codes (tenant_id, user_id, code_hash) VALUES ($1, $2, $3)`, p.UserID, h); err != nil {
				return err
			}
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "user.totp.enable", ObjectType: "user", ObjectID: p.UserID,
			Changes: []audit.Change{{Field: "totp_enabled", Before: false, After: true}}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP turns the second factor off (recent sign-in required; an
// administrator resets it for another user with ResetTOTP).
func (s *Service) DisableTOTP(ctx context.Context, p *Principal) error {
	if err := s.RequireRecentAuth(p); err != nil {
		return err
	}
	return s.ResetTOTP(ctx, p.TenantID, p.UserID)
}

// ResetTOTP removes a user's TOTP secret and recovery codes.
func (s *Service) ResetTOTP(ctx context.Context, tenantID, userID string) error {
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE users SET totp_secret_enc = NULL, totp_enabled = FALSE, totp_last_step = 0 WHERE tenant_id = $1 AND id = $2`, userID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: user %q", ErrNotFound, userID)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE tenant_id = $1 AND user_id = $2`, userID); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "user.totp.disable", ObjectType: "user", ObjectID: userID,
			Changes: []audit.Change{{Field: "totp_enabled", After: false}}})
		return err
	})
}

package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/store"
)

// NewSession is a session just started: Secret goes in the cookie, once.
type NewSession struct {
	Secret    string
	ExpiresAt time.Time
}

// Session describes a stored session (never its secret).
type Session struct {
	ID         string    `json:"id"` // base64url of the stored hash: safe to show and to revoke by
	UserID     string    `json:"user_id"`
	Method     string    `json:"method"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
}

// Principal is an authenticated caller: a user (session) or an API client
// (token).
type Principal struct {
	TenantID    string
	UserID      string
	ClientID    string
	Method      string
	SessionHash []byte
	// AuthTime is the last time the user proved a factor (for re-auth).
	AuthTime    time.Time
	Permissions map[string]bool
	// PasswordChangeRequired: first login with an initial password, or
	// the password is older than the policy's maximum age.
	PasswordChangeRequired bool
	// MFAEnrolmentRequired: the policy requires a second factor the user
	// has not set up yet.
	MFAEnrolmentRequired bool
}

// Has reports whether the principal holds a permission.
func (p *Principal) Has(perm string) bool { return p != nil && p.Permissions[perm] }

// PermissionList returns the permissions, sorted.
func (p *Principal) PermissionList() []string {
	out := make([]string, 0, len(p.Permissions))
	for k := range p.Permissions {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Restricted reports whether the principal may only finish its set-up
// (change password, enrol a second factor, sign out).
func (p *Principal) Restricted() bool { return p.PasswordChangeRequired || p.MFAEnrolmentRequired }

// CSRFToken returns the synchronizer token of the session (AUTH-2):
// HMAC-SHA256 keyed by the session secret, so it needs no storage, differs
// per session, and reveals nothing about the secret.
func CSRFToken(sessionSecret string) string {
	m := hmac.New(sha256.New, []byte(sessionSecret))
	m.Write([]byte("relais/csrf/v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF compares a submitted token with the session's, in constant time.
func CheckCSRF(sessionSecret, submitted string) bool {
	if submitted == "" || len(submitted) > 100 {
		return false
	}
	return hmac.Equal([]byte(CSRFToken(sessionSecret)), []byte(submitted))
}

func startSession(ctx context.Context, tx *store.Tx, userID, method string, c Client, sp config.SessionPolicy, now time.Time) (NewSession, error) {
	secret := newSecret(prefixSession, tx.TenantID())
	exp := now.Add(sp.AbsoluteLifetime.D())
	ua := c.UserAgent
	if len(ua) > 512 {
		ua = ua[:512]
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (id_hash, tenant_id, user_id, method, created_at, last_seen_at, expires_at, reauth_at, ip, user_agent)
		VALUES ($2, $1, $3, $4, $5, $5, $6, $5, $7, $8)`, hashSecret(secret), userID, method, micros(now), micros(exp), c.IP, ua); err != nil {
		return NewSession{}, fmt.Errorf("start session: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET last_login_at = $3 WHERE tenant_id = $1 AND id = $2`, userID, micros(now)); err != nil {
		return NewSession{}, fmt.Errorf("start session: %w", err)
	}
	return NewSession{Secret: secret, ExpiresAt: exp}, nil
}

// StartSession opens a session for a user authenticated elsewhere (SSO).
func (s *Service) StartSession(ctx context.Context, tenantID, userID, method string, c Client) (NewSession, error) {
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return NewSession{}, err
	}
	var ns NewSession
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var err error
		if ns, err = startSession(ctx, tx, userID, method, c, pol.Session, s.now()); err != nil {
			return err
		}
		return recordAttempt(ctx, tx, "auth.login", outcomeSuccess, "ok", method, "", userID, c)
	})
	return ns, err
}

// touchEvery bounds session writes: last_seen_at is updated at most this
// often, which is far below any sensible idle timeout.
const touchEvery = 30 * time.Second

// Authenticate resolves a session cookie into a principal. It enforces the
// idle timeout and the absolute lifetime of the tenant's policy (AUTH-6),
// revocation, the user's status and the network allow-list.
func (s *Service) Authenticate(ctx context.Context, secret string, c Client) (*Principal, error) {
	tenantID, ok := splitSecret(prefixSession, secret)
	if !ok {
		return nil, ErrNoSession
	}
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return nil, ErrNoSession
	}
	now := s.now()
	p := &Principal{TenantID: tenantID, SessionHash: hashSecret(secret)}
	var mustChange, totp bool
	var pwChanged *int64
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var lastSeen, expires, reauth int64
		var revoked *int64
		var status string
		err := tx.QueryRow(ctx, `SELECT s.user_id, s.method, s.last_seen_at, s.expires_at, s.reauth_at, s.revoked_at, u.status,
				u.must_change_password, u.password_changed_at, u.totp_enabled
			FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
			WHERE s.tenant_id = $1 AND s.id_hash = $2`, p.SessionHash).Scan(&p.UserID, &p.Method, &lastSeen, &expires, &reauth, &revoked,
			&status, &mustChange, &pwChanged, &totp)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoSession
		}
		if err != nil {
			return err
		}
		if revoked != nil || status != StatusActive || micros(now) >= expires || now.Sub(store.FromMicros(lastSeen)) >= pol.Session.IdleTimeout.D() {
			return ErrNoSession
		}
		p.AuthTime = store.FromMicros(reauth)
		if now.Sub(store.FromMicros(lastSeen)) >= touchEvery {
			if _, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = $3 WHERE tenant_id = $1 AND id_hash = $2`, p.SessionHash, micros(now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			return nil, ErrNoSession
		}
		return nil, fmt.Errorf("authenticate session: %w", err)
	}
	if !allowed(pol.Network.UIAllow, c.IP) {
		return nil, ErrIPNotAllowed
	}
	if err := s.loadPermissions(ctx, p); err != nil {
		return nil, err
	}
	p.PasswordChangeRequired = mustChange
	if pol.Password.Preset == "seed" && pol.Password.MaxAgeDays > 0 && pwChanged != nil &&
		now.Sub(store.FromMicros(*pwChanged)) > time.Duration(pol.Password.MaxAgeDays)*24*time.Hour && p.Method == MethodPassword {
		p.PasswordChangeRequired = true
	}
	if !totp && p.Method != MethodOIDC && p.Method != MethodSAML {
		p.MFAEnrolmentRequired = mfaRequiredBy(pol, p.Permissions, s.Perms)
	}
	return p, nil
}

func (s *Service) loadPermissions(ctx context.Context, p *Principal) error {
	p.Permissions = map[string]bool{}
	if s.Perms == nil {
		return nil
	}
	var list []string
	var err error
	if p.ClientID != "" {
		list, err = s.Perms.ClientPermissionList(ctx, p.TenantID, p.ClientID)
	} else {
		list, err = s.Perms.UserPermissionList(ctx, p.TenantID, p.UserID)
	}
	if err != nil {
		return fmt.Errorf("load permissions: %w", err)
	}
	for _, perm := range list {
		p.Permissions[perm] = true
	}
	return nil
}

// ListSessions returns a user's live sessions, newest first.
func (s *Service) ListSessions(ctx context.Context, tenantID, userID string, current []byte) ([]Session, error) {
	pol, err := s.policy(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []Session
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id_hash, user_id, method, created_at, last_seen_at, expires_at, ip, user_agent FROM sessions
			WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3 AND last_seen_at > $4 ORDER BY created_at DESC`,
			userID, micros(now), micros(now.Add(-pol.Session.IdleTimeout.D())))
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var ss Session
			var h []byte
			var c, l, e int64
			if err := rows.Scan(&h, &ss.UserID, &ss.Method, &c, &l, &e, &ss.IP, &ss.UserAgent); err != nil {
				return err
			}
			ss.ID = base64.RawURLEncoding.EncodeToString(h)
			ss.CreatedAt, ss.LastSeenAt, ss.ExpiresAt = store.FromMicros(c), store.FromMicros(l), store.FromMicros(e)
			ss.Current = hmac.Equal(h, current)
			out = append(out, ss)
		}
		return rows.Err()
	})
	return out, wrap("list sessions", err)
}

// RevokeSession revokes one session by its id (from ListSessions). When
// userID is not empty the session must belong to that user (self-service);
// administrators pass "".
func (s *Service) RevokeSession(ctx context.Context, tenantID, sessionID, userID string) error {
	h, err := base64.RawURLEncoding.DecodeString(sessionID)
	if err != nil || len(h) != sha256.Size {
		return fmt.Errorf("%w: session", ErrNotFound)
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var owner string
		if err := tx.QueryRow(ctx, `SELECT user_id FROM sessions WHERE tenant_id = $1 AND id_hash = $2 AND revoked_at IS NULL`, h).Scan(&owner); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: session", ErrNotFound)
			}
			return err
		}
		if userID != "" && owner != userID {
			return fmt.Errorf("%w: session", ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id_hash = $2`, h, micros(s.now())); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "session.revoke", ObjectType: "user", ObjectID: owner,
			Details: map[string]any{"session": sessionID[:8]}})
		return err
	})
}

// Logout revokes the session of a cookie.
func (s *Service) Logout(ctx context.Context, secret string) error {
	tenantID, ok := splitSecret(prefixSession, secret)
	if !ok {
		return nil
	}
	return s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id_hash = $2 AND revoked_at IS NULL RETURNING user_id`,
			hashSecret(secret), micros(s.now())).Scan(&owner)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAuth, Action: "auth.logout", ObjectType: "user", ObjectID: owner,
			Actor: audit.Actor{Type: audit.ActorUser, ID: owner}})
		return err
	})
}

// Reauthenticate records that the user of a session proved their password
// again (before a sensitive change).
func (s *Service) Reauthenticate(ctx context.Context, p *Principal, pw string) error {
	var hash *string
	err := s.DB.Tenant(p.TenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2`, p.UserID).Scan(&hash)
	})
	if err != nil || hash == nil {
		return ErrInvalidCredentials
	}
	if ok, err := password.Verify(pw, *hash); err != nil || !ok {
		_ = s.recordIn(ctx, p.TenantID, "auth.reauth", outcomeFailure, "bad_password", MethodPassword, "", p.UserID, Client{})
		return ErrInvalidCredentials
	}
	now := s.now()
	return s.DB.Tenant(p.TenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sessions SET reauth_at = $3 WHERE tenant_id = $1 AND id_hash = $2`, p.SessionHash, micros(now)); err != nil {
			return err
		}
		p.AuthTime = now
		return recordAttempt(ctx, tx, "auth.reauth", outcomeSuccess, "ok", MethodPassword, "", p.UserID, Client{})
	})
}

// RecentAuthWindow is how recent a sign-in must be for sensitive changes.
const RecentAuthWindow = 10 * time.Minute

// RequireRecentAuth returns ErrReauthRequired unless the principal proved
// a factor within RecentAuthWindow.
func (s *Service) RequireRecentAuth(p *Principal) error {
	if p.ClientID != "" {
		return nil
	}
	if s.now().Sub(p.AuthTime) > RecentAuthWindow {
		return ErrReauthRequired
	}
	return nil
}

// allowed reports whether ip is inside one of the CIDR prefixes (an empty
// list allows all). Malformed addresses are refused when a list is set.
func allowed(cidrs []string, ip string) bool {
	if len(cidrs) == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, c := range cidrs {
		if pfx, err := netip.ParsePrefix(c); err == nil && pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// Allowed is the exported allow-list check (ACC-6), for the HTTP layer.
func Allowed(cidrs []string, ip string) bool { return allowed(cidrs, ip) }

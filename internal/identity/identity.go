// Package identity holds who may use a tenant and how they prove it: users
// (AUTH-9..11 passwords, AUTH-4 lockout), sessions (AUTH-6), the second
// factor (AUTH-7), API clients (AUTH-8), and the record of every
// authentication attempt (AUTH-3).
//
// Personal fields of users (email, name) are encrypted with the tenant's
// data key; a user is found at login by the blind index of the normalised
// email. Every secret handed to a client (session id, MFA token, enrolment
// link, client secret) is 256 random bits, carries its tenant id in clear so
// the lookup stays tenant-scoped, and is stored only as a SHA-256: there is
// nothing to brute-force, and a copy of the database grants nothing.
//
// An identity may come from a password (this package), or later from OIDC
// or SAML: sessions record the method, and StartSession is the common door.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Errors. The HTTP layer maps them to problem documents.
var (
	// ErrInvalidCredentials: wrong tenant, email or password, unknown or
	// disabled account: deliberately one error (no enumeration).
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrLocked: the account is locked (the policy allows saying so).
	ErrLocked = errors.New("account locked")
	// ErrThrottled: too many failures from this address.
	ErrThrottled = errors.New("too many attempts from this address")
	// ErrMFARequired: a correct password, a second factor is due.
	ErrMFARequired = errors.New("second factor required")
	// ErrInvalidCode: a wrong, expired or replayed second-factor code.
	ErrInvalidCode = errors.New("invalid code")
	// ErrPasswordExpired: the password is older than the policy allows, or
	// the account must set a new one (first login).
	ErrPasswordExpired = errors.New("password change required")
	// ErrNoSession: missing, unknown, expired or revoked session.
	ErrNoSession = errors.New("no valid session")
	// ErrNotFound: no such user, client or session in this tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the email or name is already used in this tenant.
	ErrConflict = errors.New("already exists")
	// ErrReauthRequired: a sensitive change needs a recent sign-in.
	ErrReauthRequired = errors.New("recent authentication required")
	// ErrIPNotAllowed: the source address is outside the allow-list.
	ErrIPNotAllowed = errors.New("source address not allowed")
	// ErrUnavailable: a needed component (mailer) is not configured.
	ErrUnavailable = errors.New("not available")
)

// PolicyError lists what a new password breaks.
type PolicyError struct {
	Violations []password.Violation
}

func (e *PolicyError) Error() string {
	msgs := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		msgs[i] = v.Message
	}
	return "password rejected: " + strings.Join(msgs, "; ")
}

// ValidationError names a bad input field.
type ValidationError struct{ Field, Message string }

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Mailer sends one-time codes and enrolment links by email. The SMTP
// connector provides it; without one, email codes are unavailable.
type Mailer interface {
	SendCode(ctx context.Context, tenantID, to, code string) error
}

// PermissionSource evaluates what a user or client may do (internal/access).
type PermissionSource interface {
	UserPermissionList(ctx context.Context, tenantID, userID string) ([]string, error)
	ClientPermissionList(ctx context.Context, tenantID, clientID string) ([]string, error)
	// IsAdministrative reports whether a permission is administrative.
	IsAdministrative(perm string) bool
}

// Service is the identity service.
type Service struct {
	DB      *store.DB
	Tenants *tenants.Service
	Keyring *tenants.Keyring
	Perms   PermissionSource
	Breach  password.BreachChecker // nil: no breach check
	Mailer  Mailer                 // nil: email codes unavailable
	// PasswordLogin, when set, reports whether the tenant still accepts
	// local passwords (single sign-on may turn them off: internal/sso).
	PasswordLogin func(ctx context.Context, tenantID string) (bool, error)
	// Issuer is the TOTP issuer shown in authenticator apps.
	Issuer string
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// policy returns the tenant's effective policy.
func (s *Service) policy(ctx context.Context, tenantID string) (config.Policy, error) {
	return s.Tenants.Policy(ctx, tenantID)
}

// hashParams returns the password hashing parameters of a policy.
func hashParams(p config.PasswordPolicy) password.Params {
	if p.Algorithm == password.AlgArgon2id {
		return password.DefaultArgon2id()
	}
	prm := password.DefaultPBKDF2()
	if p.PBKDF2Iterations > prm.Iterations {
		prm.Iterations = p.PBKDF2Iterations
	}
	return prm
}

// NormaliseEmail validates an email address and returns its canonical
// form (trimmed, lower-case), used for the blind index.
func NormaliseEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" || len(e) > 254 || !utf8.ValidString(e) {
		return "", &ValidationError{Field: "email", Message: "must be an email address of at most 254 characters"}
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" || !strings.Contains(e[strings.LastIndex(e, "@")+1:], ".") {
		return "", &ValidationError{Field: "email", Message: "must be a plain email address such as name@example.com"}
	}
	return e, nil
}

// Secrets: 256-bit random values, "<prefix><tenant id>.<base64url>".

func newSecret(prefix, tenantID string) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + tenantID + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// splitSecret returns the tenant id of a secret, or false when malformed.
func splitSecret(prefix, secret string) (tenantID string, ok bool) {
	if len(secret) > 200 || !strings.HasPrefix(secret, prefix) {
		return "", false
	}
	rest := secret[len(prefix):]
	t, r, ok := strings.Cut(rest, ".")
	if !ok || t == "" || len(r) != 43 {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(r); err != nil {
		return "", false
	}
	return t, true
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Secret prefixes, so that scanners can recognise a leaked one.
const (
	prefixSession = "rss_"
	prefixMFA     = "rsm_"
	prefixEnrol   = "rse_"
	prefixClient  = "rlc_"
	prefixSecret  = "rlk_"
)

func micros(t time.Time) int64 { return store.Micros(t) }

func fromMicrosPtr(v *int64) *time.Time {
	if v == nil || *v == 0 {
		return nil
	}
	t := store.FromMicros(*v)
	return &t
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Package sso signs a tenant's users in through the tenant's own identity
// providers (AUTH-5): an OpenID Connect relying party (authorization code
// flow with PKCE, state and nonce, ID tokens checked for issuer, audience,
// expiry, signature and a pinned list of algorithms) and a SAML 2.0 service
// provider (signed assertions required, audience and recipient checked,
// replayed assertions refused until they expire, a bounded clock skew,
// responses size-capped, IdP-initiated sign-in off unless enabled). It maps
// the provider's claims and attributes to relais groups and roles at every
// sign-in (ACC-2), provisions users just in time when the provider allows
// it, and serves the domain side of SCIM 2.0 provisioning and
// deprovisioning (ACC-5).
//
// Most callers need:
//
//   - Begin, to start a sign-in: it returns the URL to send the browser to
//     and a flow secret to keep in a cookie;
//   - OIDCCallback and SAMLResponse, to finish it: they return an
//     identity.LoginResult (a session, or a second-factor challenge);
//   - CreateProvider, AddRule and SetPasswordLogin, to configure a tenant.
//
// Every attempt, accepted or refused, is recorded in the tenant's audit
// trail (action "sso.login") with the provider, the subject, the mapped
// groups and roles, and the outcome; a refused one starts no session.
//
// Secrets: the OIDC client secret and the SAML SP private key are encrypted
// with the tenant's data key; a flow secret (OIDC state, flow cookie) is
// stored as a SHA-256, and the PKCE verifier and the nonce are derived from
// it, so a copy of the database cannot finish anyone's sign-in.
package sso

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Errors. The HTTP layer maps them to problem documents or pages.
var (
	// ErrNotFound: no such tenant, provider, rule or token.
	ErrNotFound = errors.New("sso: not found")
	// ErrConflict: a provider of that name exists in the tenant.
	ErrConflict = errors.New("sso: already exists")
	// ErrRefused: the identity provider's answer was refused (bad
	// signature, wrong audience, replay, wrong state...). The reason is in
	// the audit trail, not in the error shown to the browser.
	ErrRefused = errors.New("sso: sign-in refused")
	// ErrUnavailable: the identity provider could not be reached (OIDC
	// discovery), so a sign-in cannot start.
	ErrUnavailable = errors.New("sso: identity provider unavailable")
	// ErrNotProvisioned: the IdP vouched for a person who has no account
	// here, and just-in-time provisioning is off.
	ErrNotProvisioned = errors.New("sso: no account for this person and provisioning is off")
)

// ValidationError names a bad input field.
type ValidationError struct{ Field, Message string }

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Kinds of provider.
const (
	KindOIDC = "oidc"
	KindSAML = "saml"
)

// Service is the single sign-on service.
type Service struct {
	DB       *store.DB
	Tenants  *tenants.Service
	Keyring  *tenants.Keyring
	Identity *identity.Service
	// Access, when set, lets a sign-in whose mapping gives an
	// administrative permission carry the ACC-4 alert.
	Access *access.Service
	// HTTPClient reaches identity providers (discovery, token endpoint,
	// metadata). Nil: a client with a 10-second timeout.
	HTTPClient *http.Client
	Now        func() time.Time

	mu        sync.Mutex
	discovery map[string]cachedProvider
}

// FlowTTL is how long a started sign-in may take at the identity provider.
const FlowTTL = 10 * time.Minute

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) httpClient() *http.Client {
	if s.HTTPClient != nil {
		return s.HTTPClient
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// tenant resolves an active tenant by slug or id.
func (s *Service) tenant(ctx context.Context, ref string) (tenants.Tenant, error) {
	if len(ref) > 100 {
		return tenants.Tenant{}, fmt.Errorf("%w: tenant", ErrNotFound)
	}
	t, err := s.Tenants.Get(ctx, ref)
	if errors.Is(err, tenants.ErrNotFound) || (err == nil && t.Status != tenants.StatusActive) {
		return tenants.Tenant{}, fmt.Errorf("%w: tenant", ErrNotFound)
	}
	return t, err
}

// Flow secrets: "rsf_<tenant id>.<256 random bits>", like identity's.
const prefixFlow = "rsf_"

func newSecret(prefix, tenantID string) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + tenantID + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// splitSecret returns the tenant id of a secret, or false when malformed.
func splitSecret(prefix, secret string) (string, bool) {
	if len(secret) > 200 || !strings.HasPrefix(secret, prefix) {
		return "", false
	}
	t, r, ok := strings.Cut(secret[len(prefix):], ".")
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

// derive returns a value bound to a flow secret (PKCE verifier, nonce):
// base64url(HMAC-SHA256(secret, label)), 43 characters.
func derive(secret, label string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("relais/sso/" + label))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func micros(t time.Time) int64 { return store.Micros(t) }

// SafeReturnTo keeps a post-sign-in destination only when it is a local
// path ("/..." but not "//" or "/\"), so that sign-in cannot be used as an
// open redirect.
func SafeReturnTo(p string) string {
	if p == "" || len(p) > 512 || p[0] != '/' || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "/"
		}
	}
	return p
}

package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Token lifetimes, sizes and names.
const (
	// DefaultLifetime is a token's lifetime when the request names none.
	DefaultLifetime = 15 * time.Minute
	// MaxLifetime is the longest lifetime a token can have.
	MaxLifetime = time.Hour
	// MaxTokenBytes bounds a token: longer ones are neither issued nor parsed.
	MaxTokenBytes = 4096
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway = 30 * time.Second
	// TokenType is the JOSE "typ" of an access token (RFC 9068 §2.1).
	TokenType = "at+jwt"
	// DefaultIssuer is the "iss" when Config.Issuer is empty.
	DefaultIssuer = "relais"
	// DefaultAudience is the "aud" when Config.Audience is empty.
	DefaultAudience = "relais-api"
	// VerifiedCacheSize bounds a Verifier's cache of verified tokens.
	VerifiedCacheSize = 10000
	// verifiedTTL is the longest a verification result is reused.
	verifiedTTL = 60 * time.Second
	// maxClaimLen bounds the tenant, subject and client id of a token.
	maxClaimLen = 256
)

// Errors of [Verifier.Verify]. Every refused token yields an error wrapping
// exactly one of them; its text adds details for logs, not for clients. Any
// other error is a server-side failure (the signing keys could not be read)
// and not the client's fault.
var (
	// ErrMalformed: not a JWT at all (empty, too long, wrong segments, bad
	// base64 or JSON).
	ErrMalformed = errors.New("jwtauth: malformed token")
	// ErrExpired: a genuine token whose exp has passed (beyond Leeway); the
	// client should obtain a new one.
	ErrExpired = errors.New("jwtauth: expired token")
	// ErrInvalid: any other refusal (signature, algorithm, type, key,
	// issuer, audience, not yet valid, missing claims).
	ErrInvalid = errors.New("jwtauth: invalid token")
)

// Claims are the claims of an access token (RFC 9068 §2.2). Verify returns
// them only for a token that passed every check; the caller must still check
// Version against the credential's current token version (see the package
// documentation).
type Claims struct {
	// Tenant is the tenant the credential belongs to.
	Tenant string `json:"tenant"`
	// Scope is the space-separated list of granted scopes (RFC 6749 §3.3).
	Scope string `json:"scope"`
	// Version is the issuing credential's token version at issue time.
	Version int `json:"ver"`
	// ClientID is the OAuth client (API credential) the token was issued to.
	ClientID string `json:"client_id"`
	jwt.RegisteredClaims
}

// Scopes returns the granted scopes as a list.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// clone returns a deep copy, so that callers cannot alter a cached result.
// The copy and its dates are one allocation (this is on every request).
func (c *Claims) clone() *Claims {
	box := &struct {
		c             Claims
		exp, nbf, iat jwt.NumericDate
	}{c: *c}
	box.c.Audience = slices.Clone(c.Audience)
	box.c.ExpiresAt = cloneDate(c.ExpiresAt, &box.exp)
	box.c.NotBefore = cloneDate(c.NotBefore, &box.nbf)
	box.c.IssuedAt = cloneDate(c.IssuedAt, &box.iat)
	return &box.c
}

// cloneDate copies *d into dst and returns dst, or nil when d is nil.
func cloneDate(d, dst *jwt.NumericDate) *jwt.NumericDate {
	if d == nil {
		return nil
	}
	*dst = *d
	return dst
}

// Config names who issues tokens and for whom. The zero value uses
// DefaultIssuer and DefaultAudience. Issuer and Verifier must agree.
type Config struct {
	// Issuer is the "iss" claim.
	Issuer string
	// Audience is the "aud" claim.
	Audience string
}

func (c Config) withDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	return c
}

// Issuer signs access tokens with the KeyStore's current key.
type Issuer struct {
	ks  *KeyStore
	cfg Config
}

// NewIssuer returns an Issuer signing with ks's keys.
func NewIssuer(ks *KeyStore, cfg Config) *Issuer {
	return &Issuer{ks: ks, cfg: cfg.withDefaults()}
}

// IssueRequest describes a token to issue for an authenticated credential.
type IssueRequest struct {
	// Tenant is the credential's tenant (required).
	Tenant string
	// Subject is the "sub": the service account or user the token acts for
	// (required).
	Subject string
	// ClientID is the OAuth client id of the credential (required).
	ClientID string
	// Scopes are the granted scopes, each an RFC 6749 scope-token.
	Scopes []string
	// Version is the credential's current token version (at least 1).
	Version int
	// Lifetime is DefaultLifetime when zero, at most MaxLifetime.
	Lifetime time.Duration
}

func (r IssueRequest) validate() error {
	for _, f := range []struct{ name, v string }{{"tenant", r.Tenant}, {"subject", r.Subject}, {"client id", r.ClientID}} {
		if f.v == "" || len(f.v) > maxClaimLen || !utf8.ValidString(f.v) {
			return fmt.Errorf("%s must be 1 to %d bytes of UTF-8", f.name, maxClaimLen)
		}
	}
	if r.Version < 1 || r.Version > math.MaxInt32 {
		return fmt.Errorf("token version %d out of range [1, %d]", r.Version, math.MaxInt32)
	}
	if r.Lifetime < 0 || r.Lifetime > MaxLifetime {
		return fmt.Errorf("lifetime %v out of range (0, %v]", r.Lifetime, MaxLifetime)
	}
	for i, s := range r.Scopes {
		if !validScopeToken(s) {
			return fmt.Errorf("scope %d is not an RFC 6749 scope-token (printable ASCII without space, quote or backslash)", i)
		}
		if slices.Contains(r.Scopes[:i], s) {
			return fmt.Errorf("scope %q is repeated", s)
		}
	}
	return nil
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Issue signs a token for req and returns it with its expiry. The token
// carries iss, sub, aud, exp, nbf, iat, a random jti, the tenant, scope,
// client_id and ver, and a header with alg EdDSA, typ at+jwt and the kid.
// When no key can sign, Issue creates one (as EnsureCurrent does).
func (is *Issuer) Issue(ctx context.Context, req IssueRequest) (token string, exp time.Time, err error) {
	if err := req.validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("jwtauth: issue: %w", err)
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	k, err := is.ks.signer(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtauth: issue: %w", err)
	}
	now := is.ks.clock().UTC().Truncate(time.Second) // NumericDate resolution
	exp = now.Add(lifetime)
	if exp.After(k.expires) { // cannot happen with Overlap >= MaxLifetime
		return "", time.Time{}, fmt.Errorf("jwtauth: issue: the token would outlive signing key %s", k.kid)
	}
	claims := Claims{
		Tenant:   req.Tenant,
		Scope:    strings.Join(req.Scopes, " "),
		Version:  req.Version,
		ClientID: req.ClientID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    is.cfg.Issuer,
			Subject:   req.Subject,
			Audience:  jwt.ClaimStrings{is.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomID(),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = k.kid
	t.Header["typ"] = TokenType
	token, err = t.SignedString(k.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("jwtauth: issue: sign with key %s: %w", k.kid, err)
	}
	if len(token) > MaxTokenBytes {
		return "", time.Time{}, fmt.Errorf("jwtauth: issue: token of %d bytes exceeds %d (too many or too long scopes)", len(token), MaxTokenBytes)
	}
	return token, exp, nil
}

// Verifier checks access tokens against the KeyStore's keys and caches the
// tokens it has verified. It is safe for concurrent use; create one per
// process with [NewVerifier].
type Verifier struct {
	ks     *KeyStore
	cfg    Config
	parser *jwt.Parser
	cache  *verifiedCache
}

// NewVerifier returns a Verifier that accepts the tokens of an Issuer with
// the same Config over the same keys.
func NewVerifier(ks *KeyStore, cfg Config) *Verifier {
	cfg = cfg.withDefaults()
	return &Verifier{
		ks:  ks,
		cfg: cfg,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Alg}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(Leeway),
			jwt.WithTimeFunc(ks.clock),
			jwt.WithStrictDecoding(),
		),
		cache: newVerifiedCache(VerifiedCacheSize),
	}
}

// Verify checks token and returns its claims. It refuses, with an error
// wrapping ErrMalformed, ErrExpired or ErrInvalid, a token that is longer than
// MaxTokenBytes; not signed with EdDSA (alg "none", HS256 and the like are
// refused before any key is used); not of type at+jwt; with an unknown kid
// (after one reload of the keys, at most one per second) or a key past its
// expiry; with a bad signature; without exp, iat, jti, sub, tenant,
// client_id or ver; with another issuer or audience; expired, not yet
// valid or issued in the future (with Leeway); or valid for longer than
// MaxLifetime.
//
// A verified token is remembered until it expires or for 60 seconds at
// most, so repeated calls cost a keyed hash, a map lookup and a comparison
// with the remembered token.
//
// Verify does not know about revocation: the caller must compare the
// returned Version with the credential's current token version.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	c, err := v.verified(ctx, token)
	if err != nil {
		return nil, err
	}
	return c.clone(), nil
}

// Access is what a verified token grants, as a value: the claims an API
// request checks (tenant, client, subject, scope and the credential's token
// version, which the caller must still compare, see Verify) and the expiry.
type Access struct {
	Tenant, ClientID, Subject, Scope string
	Version                          int
	ExpiresAt                        time.Time
}

// VerifyAccess is Verify returning the Access instead of a copy of the
// claims: the same checks and cache, without an allocation per call.
func (v *Verifier) VerifyAccess(ctx context.Context, token string) (Access, error) {
	c, err := v.verified(ctx, token)
	if err != nil {
		return Access{}, err
	}
	return Access{Tenant: c.Tenant, ClientID: c.ClientID, Subject: c.Subject, Scope: c.Scope, Version: c.Version,
		ExpiresAt: c.ExpiresAt.Time}, nil
}

// verified is Verify's work: it returns the cached claims, which the
// caller must not modify.
func (v *Verifier) verified(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(token), MaxTokenBytes)
	}
	now := v.ks.clock()
	if c := v.cache.get(token, now); c != nil {
		return c, nil
	}
	c, until, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	v.cache.put(token, c, until, now)
	return c, nil
}

// errBadType, errCrit and errNoKid are header problems.
var (
	errBadType = errors.New(`header "typ" is not ` + TokenType)
	errCrit    = errors.New(`header "crit" names extensions this verifier does not understand`)
	errNoKid   = errors.New(`header "kid" missing or too long`)
)

// verify checks token without the cache and returns its claims and how long
// the result may be reused.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Claims, time.Time, error) {
	var key *signingKey
	var storeErr error
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// The parser has checked alg is EdDSA before calling this.
		typ, _ := t.Header["typ"].(string)
		if !strings.EqualFold(typ, TokenType) && !strings.EqualFold(typ, "application/"+TokenType) {
			return nil, errBadType
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errCrit
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" || len(kid) > maxKidLen {
			return nil, errNoKid
		}
		k, err := v.ks.verificationKey(ctx, kid, now)
		if err != nil {
			if !errors.Is(err, errUnknownKid) && !errors.Is(err, errKeyExpired) {
				storeErr = err
			}
			return nil, fmt.Errorf("kid %q: %w", kid, err)
		}
		key = k
		return k.pub, nil
	})
	if storeErr != nil {
		return nil, time.Time{}, storeErr
	}
	if err != nil {
		return nil, time.Time{}, classify(err)
	}
	if err := v.checkClaims(claims); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	until := earliest(earliest(claims.ExpiresAt.Time, now.Add(verifiedTTL)), key.expires)
	return claims, until, nil
}

// checkClaims requires what the parser does not: the claims every token of
// ours has, and a lifetime within MaxLifetime.
func (v *Verifier) checkClaims(c *Claims) error {
	switch {
	case c.IssuedAt == nil:
		return errors.New("no iat")
	case c.ID == "":
		return errors.New("no jti")
	case c.Subject == "":
		return errors.New("no sub")
	case c.Tenant == "":
		return errors.New("no tenant")
	case c.ClientID == "":
		return errors.New("no client_id")
	case c.Version < 1:
		return errors.New("no ver")
	case c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxLifetime:
		return fmt.Errorf("lifetime beyond %v", MaxLifetime)
	}
	return nil
}

// classify maps a parser error to one of the package's sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	case errors.Is(err, jwt.ErrTokenExpired) && !anyIs(err,
		jwt.ErrTokenSignatureInvalid, jwt.ErrTokenUnverifiable, jwt.ErrTokenInvalidAudience,
		jwt.ErrTokenInvalidIssuer, jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenRequiredClaimMissing, jwt.ErrInvalidType):
		// Only expired: the signature and every other claim were good.
		return fmt.Errorf("%w: %w", ErrExpired, err)
	default:
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
}

func anyIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

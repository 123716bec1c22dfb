package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/web/problem"
)

// SessionCookie is the session cookie's name. The __Host- prefix makes the
// browser refuse it unless it is Secure, host-only and Path=/.
const SessionCookie = "__Host-relais_session"

// CSRFHeader carries the synchronizer token on cookie-authenticated API
// calls; forms send the csrf_token field.
const CSRFHeader = "X-CSRF-Token"

// Route permissions beyond the catalogue.
const (
	// PermAuthenticated: any signed-in user or API client.
	PermAuthenticated = "authenticated"
	// PermSetup: any signed-in user, even one who must first change the
	// password or enrol a second factor.
	PermSetup = "setup"
)

type principalKey struct{}

// PrincipalFrom returns the authenticated caller of a request.
func PrincipalFrom(ctx context.Context) *identity.Principal {
	p, _ := ctx.Value(principalKey{}).(*identity.Principal)
	return p
}

// ttlCache is a small map with expiry, for per-request lookups that may be
// a few seconds stale (client token versions, tenant policies); local
// changes call forget so this node sees them at once. A lookup takes no
// lock and writes nothing shared (a sync.Map of entries never modified
// once stored).
type ttlCache[K comparable, V any] struct {
	ttl time.Duration
	m   sync.Map // K -> *ttlEntry[V]
	// n counts the keys stored (approximately, under concurrent stores):
	// past maxTTLEntries the map is emptied.
	n atomic.Int64
}

// maxTTLEntries bounds a ttlCache.
const maxTTLEntries = 100_000

type ttlEntry[V any] struct {
	v  V
	at time.Time
}

func newTTLCache[K comparable, V any](ttl time.Duration) *ttlCache[K, V] {
	return &ttlCache[K, V]{ttl: ttl}
}

// lookup returns the value cached for key if it is still fresh at now.
func (c *ttlCache[K, V]) lookup(key K, now time.Time) (V, bool) {
	if v, ok := c.m.Load(key); ok {
		if e := v.(*ttlEntry[V]); now.Sub(e.at) < c.ttl {
			return e.v, true
		}
	}
	var zero V
	return zero, false
}

// store caches v for key, loaded at now.
func (c *ttlCache[K, V]) store(key K, v V, now time.Time) {
	if c.n.Load() > maxTTLEntries {
		c.m.Clear()
		c.n.Store(0)
	}
	if _, loaded := c.m.Swap(key, &ttlEntry[V]{v: v, at: now}); !loaded {
		c.n.Add(1)
	}
}

func (c *ttlCache[K, V]) forget(key K) {
	if _, loaded := c.m.LoadAndDelete(key); loaded {
		c.n.Add(-1)
	}
}

// clientKey names an API client in the client cache.
type clientKey struct{ tenant, client string }

type clientState struct {
	active  bool
	version int
}

// authCaches are the web layer's short-lived caches.
type authCaches struct {
	clients  *ttlCache[clientKey, clientState]
	policies *ttlCache[string, config.Policy]
}

// ClientCacheTTL bounds how long a revoked or changed API client's tokens
// can still be accepted by a node that did not make the change (a change
// made through this node's API is seen at once).
const ClientCacheTTL = time.Second

// PolicyCacheTTL bounds how long a node uses a tenant policy for bearer
// requests (allow-lists) after a change made elsewhere.
const PolicyCacheTTL = 5 * time.Second

func newAuthCaches() *authCaches {
	return &authCaches{clients: newTTLCache[clientKey, clientState](ClientCacheTTL), policies: newTTLCache[string, config.Policy](PolicyCacheTTL)}
}

func (s *Server) tenantPolicy(ctx context.Context, tenantID string) (config.Policy, error) {
	return s.tenantPolicyAt(ctx, tenantID, s.now())
}

// tenantPolicyAt is tenantPolicy with the clock already read.
func (s *Server) tenantPolicyAt(ctx context.Context, tenantID string, now time.Time) (config.Policy, error) {
	if pol, ok := s.caches.policies.lookup(tenantID, now); ok {
		return pol, nil
	}
	pol, err := s.opts.Tenants.Policy(ctx, tenantID)
	if err != nil {
		return pol, err
	}
	s.caches.policies.store(tenantID, pol, now)
	return pol, nil
}

// clientState returns the API client's state, from the cache unless it is
// stale or older than a token of version minVersion (a token newer than
// the cached state: the client changed since).
func (s *Server) clientState(ctx context.Context, key clientKey, minVersion int, now time.Time) (clientState, error) {
	if st, ok := s.caches.clients.lookup(key, now); ok && st.version >= minVersion {
		return st, nil
	}
	active, v, err := s.opts.Identity.ClientVersion(ctx, key.tenant, key.client)
	if err != nil {
		return clientState{}, err
	}
	st := clientState{active, v}
	s.caches.clients.store(key, st, now)
	return st, nil
}

// authenticate finds the caller: a bearer JWT (API clients) or the session
// cookie (users). It returns nil and no error when the request carries
// neither.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*identity.Principal, *problem.Problem) {
	client := clientOf(r)
	if tok, ok := bearer(r); ok {
		return s.authenticateBearer(r, tok, client)
	}
	if headerValue(r.Header, "Authorization") != "" {
		return nil, &problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized, Title: "Unsupported authorization",
			Detail: "Use Authorization: Bearer with an access token from POST /oauth2/token."}
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	p, err := s.opts.Identity.Authenticate(r.Context(), c.Value, client)
	switch {
	case errors.Is(err, identity.ErrNoSession):
		clearSessionCookie(w)
		return nil, &problem.Problem{Status: http.StatusUnauthorized, Code: "session_expired", Title: "Session expired",
			Detail: "Your session has ended (inactivity, lifetime or sign-out); sign in again."}
	case errors.Is(err, identity.ErrIPNotAllowed):
		return nil, &problem.Problem{Status: http.StatusForbidden, Code: "ip_not_allowed", Title: "Address not allowed",
			Detail: "Your network address is not in the tenant's allow-list."}
	case err != nil:
		s.log.ErrorContext(r.Context(), "session lookup failed", "error", err)
		return nil, &problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable", Detail: "Try again shortly."}
	}
	// AUTH-2: a state-changing request authenticated by cookie must carry
	// the session's synchronizer token.
	if !safeMethod(r.Method) {
		tok := r.Header.Get(CSRFHeader)
		if tok == "" && isForm(r) {
			tok = r.PostFormValue("csrf_token")
		}
		if !identity.CheckCSRF(c.Value, tok) {
			return nil, &problem.Problem{Status: http.StatusForbidden, Code: "csrf_failed", Title: "Missing or wrong CSRF token",
				Detail: "Send the session's CSRF token in the X-CSRF-Token header (or the csrf_token form field)."}
		}
	}
	return p, nil
}

// clientOf is the request's client address and user agent: those
// instrument has already read into the request's context node when it is
// there (nothing between changes a request's peer address or headers),
// else read again.
func clientOf(r *http.Request) identity.Client {
	if rc, ok := r.Context().(*requestContext); ok {
		return identity.Client{IP: rc.info.meta.IP, Port: rc.info.sourcePort, UserAgent: rc.info.meta.UserAgent}
	}
	ip, port := clientAddr(r)
	return identity.Client{IP: ip, Port: port, UserAgent: r.UserAgent()}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data")
}

func (s *Server) authenticateBearer(r *http.Request, tok string, client identity.Client) (*identity.Principal, *problem.Problem) {
	ctx := r.Context()
	unauth := func(code, detail string) *problem.Problem {
		return &problem.Problem{Status: http.StatusUnauthorized, Code: code, Title: "Invalid token", Detail: detail}
	}
	if s.opts.Verifier == nil {
		return nil, unauth("invalid_token", "Access tokens are not accepted by this server.")
	}
	claims, err := s.opts.Verifier.VerifyAccess(ctx, tok) // the cached claims' fields, without a copy
	if err != nil {
		switch {
		case errors.Is(err, jwtauth.ErrExpired):
			return nil, unauth("token_expired", "The access token has expired; request a new one from POST /oauth2/token.")
		case errors.Is(err, jwtauth.ErrInvalid), errors.Is(err, jwtauth.ErrMalformed):
			return nil, unauth("invalid_token", "The access token is not valid.")
		}
		// The signing keys could not be read: not the caller's fault.
		s.log.ErrorContext(ctx, "token verification unavailable", "error", err)
		return nil, &problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable", Detail: "Try again shortly."}
	}
	now := s.authTime(ctx)
	st, err := s.clientState(ctx, clientKey{claims.Tenant, claims.ClientID}, claims.Version, now)
	if err != nil {
		s.log.ErrorContext(ctx, "client lookup failed", "error", err)
		return nil, &problem.Problem{Status: http.StatusServiceUnavailable, Code: problem.CodeUnavailable, Title: "Unavailable", Detail: "Try again shortly."}
	}
	if !st.active || st.version != claims.Version {
		return nil, unauth("token_revoked", "The access token was revoked (its client was disabled or changed).")
	}
	// NET-4: certificate-bound API clients when the tenant requires mTLS.
	if s.opts.ClientCerts != nil {
		if prob := s.opts.ClientCerts.Check(ctx, claims.Tenant, claims.ClientID); prob != nil {
			return nil, prob
		}
	}
	pol, err := s.tenantPolicyAt(ctx, claims.Tenant, now)
	if err != nil {
		return nil, unauth("invalid_token", "The access token is not valid.")
	}
	if !identity.Allowed(pol.Network.APIAllow, client.IP) {
		return nil, &problem.Problem{Status: http.StatusForbidden, Code: "ip_not_allowed", Title: "Address not allowed",
			Detail: "Your network address is not in the tenant's API allow-list."}
	}
	p := principalSlot(ctx)
	*p = identity.Principal{TenantID: claims.Tenant, ClientID: claims.ClientID, Method: identity.MethodToken,
		Permissions: s.scopeSets.get(claims.Scope)}
	return p, nil
}

// authTime is the time authentication checks its caches against: the
// request's arrival (read once by instrument) when authentication runs
// on instrument's context node, as it does at the start of every
// request, else the clock.
func (s *Server) authTime(ctx context.Context) time.Time {
	if rc, ok := ctx.(*requestContext); ok && !rc.start.IsZero() {
		return rc.start
	}
	return s.now()
}

// principalSlot is where a request's principal is built: the slot in
// instrument's context node while the request has no principal yet (no
// allocation of its own), a new one otherwise.
func principalSlot(ctx context.Context) *identity.Principal {
	if rc, ok := ctx.(*requestContext); ok && rc.info.principal == nil {
		return &rc.principal
	}
	return new(identity.Principal)
}

// maxScopeSets bounds the permission sets kept by scope string: a few per
// role and client kind in practice; past it, sets are built per request.
const maxScopeSets = 4096

// scopeSets keeps the permission set of each access-token scope string
// seen, so that a bearer request does not build the same map again: the
// scope string comes from a verified token (the issuer signs it), the sets
// are never written once stored (principals only read their Permissions),
// and their number is bounded.
type scopeSets struct {
	m sync.Map // scope string -> map[string]bool, read-only
	n atomic.Int64
}

// get returns the permission set of scope (space-separated permissions).
func (c *scopeSets) get(scope string) map[string]bool {
	if v, ok := c.m.Load(scope); ok {
		return v.(map[string]bool)
	}
	set := make(map[string]bool, strings.Count(scope, " ")+1)
	for sc := range strings.FieldsSeq(scope) { // as claims.Scopes(), without the slice
		set[sc] = true
	}
	if c.n.Load() < maxScopeSets {
		if _, loaded := c.m.LoadOrStore(scope, set); !loaded {
			c.n.Add(1)
		}
	}
	return set
}

// require wraps a handler with authentication and the route's permission.
// Failures answer 401 or 403 problem documents; a refused permission is
// recorded in the audit trail.
func (s *Server) require(perm string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, prob := s.authenticate(w, r)
		if prob != nil {
			problem.Write(w, r, *prob)
			return
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relais"`)
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: problem.CodeUnauthorized, Title: "Authentication required",
				Detail: "Sign in (POST /api/v1/auth/login) or send an access token (Authorization: Bearer)."})
			return
		}
		actor := actorOf(p)
		SetPrincipal(r.Context(), p.TenantID, actor)
		var ctx context.Context
		if rc, ok := r.Context().(*requestContext); ok && rc.info.principal == nil {
			// The request's context is instrument's node itself (no
			// middleware derived another in between, so none can shadow
			// the metadata): record the caller in it, without copying
			// the request. Nothing has read it on another goroutine yet.
			rc.info.principal = p
			rc.info.meta.Actor = actor
			ctx = rc
		} else {
			meta := audit.MetaFrom(r.Context())
			meta.Actor = actor
			ctx = audit.WithMeta(context.WithValue(r.Context(), principalKey{}, p), meta)
			r = r.WithContext(ctx)
		}
		if perm != PermSetup && p.Restricted() {
			code, detail := "password_change_required", "Change your password first (POST /api/v1/me/password)."
			if !p.PasswordChangeRequired {
				code, detail = "mfa_enrolment_required", "Set up a second factor first (POST /api/v1/me/totp)."
			}
			problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: code, Title: "Set-up required", Detail: detail})
			return
		}
		if perm != PermSetup && perm != PermAuthenticated && !p.Has(perm) {
			s.recordDenied(ctx, p, perm, r)
			problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: problem.CodeForbidden, Title: "Forbidden",
				Detail: "This needs the " + perm + " permission."})
			return
		}
		next(w, r)
	}
}

func (s *Server) recordDenied(ctx context.Context, p *identity.Principal, perm string, r *http.Request) {
	err := s.opts.DB.Tenant(p.TenantID).Tx(ctx, func(tx *store.Tx) error {
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAccess, Action: "access.denied",
			ObjectType: "route", ObjectID: r.Pattern, Details: map[string]any{"permission": perm, "method": r.Method}})
		return err
	})
	if err != nil {
		s.log.WarnContext(ctx, "could not record a denied access", "error", err)
	}
}

func setSessionCookie(w http.ResponseWriter, ns identity.NewSession) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: ns.Secret, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: ns.ExpiresAt})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// actorOf is the audit actor of a principal.
func actorOf(p *identity.Principal) audit.Actor {
	if p.ClientID != "" {
		return audit.Actor{Type: audit.ActorAPI, ID: p.ClientID}
	}
	return audit.Actor{Type: audit.ActorUser, ID: p.UserID}
}

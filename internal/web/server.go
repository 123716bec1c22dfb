// Package web is Relais's HTTPS front: the TLS listener (policy in
// tlsconf), the middleware every request passes (request id, security
// headers, body limit, metrics, access log, panic recovery), the JSON API
// under /api/v1 with RFC 9457 problem documents, health and readiness, and
// the optional plain-HTTP listener that only redirects.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/monitor/supervise"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web/accesslog"
	"github.com/relais-dev/relais/internal/web/mtls"
	"github.com/relais-dev/relais/internal/web/problem"
	"github.com/relais-dev/relais/internal/web/ratelimit"
	"github.com/relais-dev/relais/internal/web/secheaders"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// Options configure a Server.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	DB       *store.DB
	Tenants  *tenants.Service
	// Identity signs users in and checks sessions; Verifier checks API
	// access tokens, Issuer issues them, Keys publishes the JWKS.
	Identity *identity.Service
	Access   *access.Service
	// Router accepts messages; Connectors manages connectors and routes.
	Router     *router.Service
	Connectors *router.Connectors
	Verifier   *jwtauth.Verifier
	Issuer     *jwtauth.Issuer
	Keys       *jwtauth.KeyStore
	// Contacts serves the contacts, consent, lists, segments, import and
	// export API and the public unsubscribe and confirmation links.
	Contacts *contacts.Service
	// Campaigns serves the campaigns API; Templates the templates API
	// (mounted with Campaigns, which knows the attribute schema).
	Campaigns *campaigns.Service
	Templates *templates.Service
	// SFTP serves the SFTP accounts API (nil: not mounted).
	SFTP *sftpd.Service
	// SSO serves single sign-on (OIDC, SAML) and SCIM provisioning; nil
	// turns those endpoints off.
	SSO *sso.Service
	// Privacy serves the subject requests, retention and purge API.
	Privacy *privacy.Service
	// Monitor serves the supervision API (indicators, alerts, flags,
	// incidents, compliance report) and records each request's latency.
	Monitor *supervise.Supervisor
	// TLS is the server's TLS configuration (tlsconf.ServerConfig).
	TLS *tls.Config
	// MaxBodyBytes bounds every request body, except contact imports,
	// bounded by MaxImportBytes (default 1 GiB).
	MaxBodyBytes      int64
	MaxImportBytes    int64
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	// MaxHeaderBytes bounds the request line and headers (default 64 KiB).
	MaxHeaderBytes int
	// RateLimit, when set, refuses requests over its per-IP and
	// per-credential rates with 429 before any handler runs.
	RateLimit *ratelimit.Limiter
	// ClientCerts, when set, identifies TLS client certificates (NET-4);
	// the TLS config must then request them (mtls.TLSClientAuth).
	ClientCerts *mtls.Verifier
	// HTTPChallenge, when set, wraps the plain-HTTP redirect handler to
	// answer ACME http-01 challenges (acme.Manager.HTTPHandler).
	HTTPChallenge func(http.Handler) http.Handler
	Version       string
	Now           func() time.Time
}

// Server serves the UI, the API, health and metrics.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	maxBody int64
	now     func() time.Time
	// realClock: now is time.Now (see since).
	realClock bool
	handler   http.Handler
	caches    *authCaches
	pages     pages
	// accessLog is the logger's handler when it can write access lines
	// directly (accesslog.NewHandler), else nil: lines go through slog.
	accessLog *accesslog.Handler
	ids       idSource

	catalogueOnce sync.Once
	catalogueJSON []byte
	// scopeSets are the permission sets of access tokens, by scope
	// string (see permissionSet).
	scopeSets scopeSets
	// importSlots holds one token per running API import: a few at once,
	// so that uploads cannot take the machine.
	importSlots chan struct{}
}

// New builds a server and its routes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	realClock := reflect.ValueOf(opts.Now).Pointer() == reflect.ValueOf(time.Now).Pointer()
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	if opts.MaxImportBytes <= 0 {
		opts.MaxImportBytes = ImportMaxBytes
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registry), maxBody: opts.MaxBodyBytes, now: opts.Now, realClock: realClock, caches: newAuthCaches(),
		importSlots: make(chan struct{}, maxConcurrentImports)}
	pg, err := loadPages()
	if err != nil { // embedded templates: a build defect, caught by the tests
		panic(fmt.Sprintf("web: templates: %v", err))
	}
	s.pages = pg
	s.accessLog, _ = opts.Logger.Handler().(*accesslog.Handler)
	mux := http.NewServeMux()
	s.routes(mux)
	// AUTH-2: cross-origin state-changing browser requests are refused
	// (Sec-Fetch-Site / Origin), before any handler runs.
	cop := http.NewCrossOriginProtection()
	// The SAML ACS receives the IdP's cross-site POST by design; the
	// signed response and the flow cookie protect it.
	cop.AddInsecureBypassPattern(ssoACSPattern)
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isPage(r.Method + " " + r.URL.Path) {
			s.errorPage(w, r, http.StatusForbidden, "Form refused", "This form was posted from another site, so it was refused. If you meant to do this, open the page in Relais and send the form again.")
			return
		}
		problem.Write(w, r, problem.Problem{Status: http.StatusForbidden, Code: "cross_origin_refused", Title: "Cross-origin request refused",
			Detail: "State-changing requests must come from this site."})
	}))
	var h http.Handler = cop.Handler(problemFallback(mux))
	if opts.ClientCerts != nil {
		h = opts.ClientCerts.Middleware(h)
	}
	if opts.RateLimit != nil {
		h = opts.RateLimit.Middleware(h)
	}
	s.handler = s.instrument(secheaders.Split(isAPIRequest, h))
	return s
}

// isAPIRequest tells the machine endpoints (JSON API, token endpoint, JWKS,
// SCIM), which get secheaders.APIHeaders, from the pages, which get the
// full set.
func isAPIRequest(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/oauth2/") || strings.HasPrefix(p, "/.well-known/") ||
		strings.HasPrefix(p, "/scim/")
}

// Handler is the whole HTTPS handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// problemFallback turns the mux's own plain-text 404 and 405 answers into
// problem documents.
func problemFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			if r.RequestURI != "*" && strings.IndexByte(pattern, '{') < 0 {
				// A pattern without wildcards (most API routes): what
				// mux.ServeHTTP does, without matching the path again.
				r.Pattern = pattern
				h.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r) // it records the wildcards' values for PathValue
			return
		}
		// Let the mux decide 404, 405 or a redirect (trailing slash,
		// cleaned path), but keep its plain-text body out.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			problem.Write(w, r, problem.Problem{Status: http.StatusMethodNotAllowed, Code: problem.CodeMethodNotAllowed,
				Title: "Method not allowed", Detail: "This resource does not accept " + r.Method + "."})
		case http.StatusNotFound, 0:
			problem.Write(w, r, problem.Problem{Status: http.StatusNotFound, Code: problem.CodeNotFound,
				Title: "Not found", Detail: "No resource at this path."})
		default:
			for k, v := range rec.header {
				if k == "Location" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.status)
		}
	})
}

type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

// Listen opens a TCP listener with an error that tells the operator what
// to do when the port is taken.
func Listen(ctx context.Context, addr, flag string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen on %s: the address is already in use; stop the other process or choose another address with %s", addr, flag)
		}
		return nil, fmt.Errorf("listen on %s: %w; check the address given with %s", addr, err, flag)
	}
	return ln, nil
}

// Listeners are the sockets a Server runs on. Only HTTPS is required.
type Listeners struct {
	HTTPS    net.Listener
	Redirect net.Listener // plain HTTP, redirects only
	Metrics  net.Listener // plain HTTP, Prometheus
}

// Run serves until ctx is cancelled, then shuts down gracefully: listeners
// close at once and in-flight requests get ShutdownTimeout to finish.
func (s *Server) Run(ctx context.Context, ls Listeners) error {
	if s.opts.TLS == nil {
		return errors.New("web: no TLS configuration: Relais serves HTTPS only")
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	var servers []*http.Server
	mk := func(h http.Handler) *http.Server {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
			ReadTimeout:       s.opts.ReadTimeout,
			WriteTimeout:      s.opts.WriteTimeout,
			IdleTimeout:       s.opts.IdleTimeout,
			MaxHeaderBytes:    s.opts.MaxHeaderBytes,
			ErrorLog:          errLog,
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
		servers = append(servers, srv)
		return srv
	}
	type served struct {
		srv *http.Server
		ln  net.Listener
	}
	var all []served
	main := mk(s.handler)
	main.TLSConfig = s.opts.TLS
	all = append(all, served{main, tls.NewListener(ls.HTTPS, s.opts.TLS)})
	if ls.Redirect != nil {
		_, port, err := net.SplitHostPort(ls.HTTPS.Addr().String())
		if err != nil {
			return fmt.Errorf("web: https address: %w", err)
		}
		redirect := tlsconf.RedirectHandler(port)
		if s.opts.HTTPChallenge != nil {
			redirect = s.opts.HTTPChallenge(redirect)
		}
		all = append(all, served{mk(redirect), ls.Redirect})
	}
	if ls.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{ErrorLog: errLog}))
		all = append(all, served{mk(mux), ls.Metrics})
	}
	errc := make(chan error, len(all))
	var wg sync.WaitGroup
	for _, sv := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sv.srv.Serve(sv.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("web: serve %s: %w", sv.ln.Addr(), err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			s.log.Warn("shutdown: requests still running when the grace period ended", "error", err)
			_ = srv.Close()
		}
	}
	wg.Wait()
	return runErr
}

// Package secheaders sets the browser security headers of Relais on every
// HTTPS response: HSTS (control NET-1), a strict Content Security Policy,
// and the anti-sniffing, anti-framing, referrer and permissions headers.
//
// Wrap the whole HTTPS handler, outermost or just inside the panic
// recovery, so that error responses carry the headers too:
//
//	srv.Handler = secheaders.Middleware(mux)
//
// Machine endpoints (the JSON API) get the shorter set of [APIHeaders]
// through [Split]: HSTS, a policy that lets nothing load or frame the
// response, nosniff, no referrer and no framing, as the OWASP REST
// Security Cheat Sheet recommends for APIs. The headers that only act on
// documents a browser renders and scripts (the page policy's sources,
// Cross-Origin-Opener-Policy, Permissions-Policy) stay on the pages.
//
// Do not wrap the plain-HTTP redirect handler: HSTS must not be sent over
// plain HTTP (RFC 6797 section 7.2).
package secheaders

import "net/http"

// Header values set by [Middleware].
const (
	// StrictTransportSecurity makes browsers use HTTPS only, for two years,
	// on this host and its subdomains.
	StrictTransportSecurity = "max-age=63072000; includeSubDomains"
	// ContentSecurityPolicy allows scripts, styles and other resources only
	// from the same origin (images also as data: URLs), no plugins, no
	// <base>, forms posting only to the same origin, and no framing.
	ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	// ContentTypeOptions stops browsers from guessing content types.
	ContentTypeOptions = "nosniff"
	// ReferrerPolicy sends no Referer header from Relais pages.
	ReferrerPolicy = "no-referrer"
	// FrameOptions forbids framing, for browsers without frame-ancestors.
	FrameOptions = "DENY"
	// CrossOriginOpenerPolicy isolates Relais windows from cross-origin
	// openers and popups.
	CrossOriginOpenerPolicy = "same-origin"
	// PermissionsPolicy denies the camera, microphone and geolocation.
	PermissionsPolicy = "camera=(), microphone=(), geolocation=()"
	// APIContentSecurityPolicy is the policy of API responses: nothing may
	// load from them (no script, style, image or frame even if a browser
	// renders one), and no page may frame them.
	APIContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'"
)

// Header is one header name and value set by [Middleware].
type Header struct {
	Name, Value string
}

// Headers returns the headers [Middleware] sets, in a fresh slice (for
// tests and the compliance report).
func Headers() []Header {
	return []Header{
		{"Strict-Transport-Security", StrictTransportSecurity},
		{"Content-Security-Policy", ContentSecurityPolicy},
		{"X-Content-Type-Options", ContentTypeOptions},
		{"Referrer-Policy", ReferrerPolicy},
		{"X-Frame-Options", FrameOptions},
		{"Cross-Origin-Opener-Policy", CrossOriginOpenerPolicy},
		{"Permissions-Policy", PermissionsPolicy},
	}
}

// APIHeaders returns the headers [Split] sets on API responses, in a fresh
// slice: HSTS, the API policy, nosniff, no referrer and no framing (the
// OWASP REST Security Cheat Sheet's set). Five headers keep a JSON
// response's header map (with X-Request-Id, Content-Type and
// Cache-Control) within eight entries, the size Go keeps in one small
// map group, and each response shorter by about 260 bytes to write and
// parse.
func APIHeaders() []Header {
	return []Header{
		{"Strict-Transport-Security", StrictTransportSecurity},
		{"Content-Security-Policy", APIContentSecurityPolicy},
		{"X-Content-Type-Options", ContentTypeOptions},
		{"Referrer-Policy", ReferrerPolicy},
		{"X-Frame-Options", FrameOptions},
	}
}

// Middleware returns a handler that sets the security [Headers] on the
// response and then calls next. The headers are set before next runs, so
// they are on every response next writes, error pages included, and on the
// response a recovery handler around Middleware writes after a panic in
// next. A handler may still replace one for its own response (for example a
// looser Content-Security-Policy on one page): that is a deliberate,
// reviewable choice in that handler.
func Middleware(next http.Handler) http.Handler {
	return Split(func(*http.Request) bool { return false }, next)
}

// Split is [Middleware] with the [APIHeaders] instead of [Headers] on the
// responses to requests for which isAPI returns true. isAPI must decide
// from the request alone (its path), before next runs.
func Split(isAPI func(*http.Request) bool, next http.Handler) http.Handler {
	page, api := newSetter(Headers()), newSetter(APIHeaders())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isAPI(r) {
			api.set(w.Header())
		} else {
			page.set(w.Header())
		}
		next.ServeHTTP(w, r)
	})
}

// maxHeaders bounds a header set's length.
const maxHeaders = 8

// setter assigns one header set. The names are already canonical: it
// assigns them directly (Set would canonicalise each name on every
// response). Each response gets its own values, in one array of the set's
// length allocated per response; each header's slice has capacity 1, so a
// handler that adds to a header gets a new array and cannot touch another
// header's or another response's values.
type setter struct {
	names []string
	tmpl  [maxHeaders]string
}

func newSetter(hs []Header) *setter {
	if len(hs) > maxHeaders {
		panic("secheaders: more headers than maxHeaders")
	}
	s := &setter{}
	for i, kv := range hs {
		s.names = append(s.names, kv.Name)
		s.tmpl[i] = kv.Value
	}
	return s
}

func (s *setter) set(h http.Header) {
	vals := make([]string, len(s.names)) // 80 bytes for the API set, not maxHeaders' 128
	copy(vals, s.tmpl[:])
	for i, name := range s.names {
		h[name] = vals[i : i+1 : i+1]
	}
}

// Package secheaders sets the browser security headers of Relais on every
// HTTPS response: HSTS (control NET-1), a strict Content Security Policy,
// and the anti-sniffing, anti-framing, referrer and permissions headers.
//
// Wrap the whole HTTPS handler, outermost or just inside the panic
// recovery, so that error responses carry the headers too:
//
//	srv.Handler = secheaders.Middleware(mux)
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

// Middleware returns a handler that sets the security [Headers] on the
// response and then calls next. The headers are set before next runs, so
// they are on every response next writes, error pages included, and on the
// response a recovery handler around Middleware writes after a panic in
// next. A handler may still replace one for its own response (for example a
// looser Content-Security-Policy on one page): that is a deliberate,
// reviewable choice in that handler.
func Middleware(next http.Handler) http.Handler {
	// The names are already canonical: assign them directly (Set would
	// canonicalise each name on every response). Each response gets its
	// own values, in one array allocated per response; each header's slice
	// has capacity 1, so a handler that adds to a header gets a new array
	// and cannot touch another header's or another response's values.
	hs := Headers()
	var tmpl [nHeaders]string
	if len(hs) != nHeaders {
		panic("secheaders: nHeaders does not match Headers")
	}
	for i, kv := range hs {
		tmpl[i] = kv.Value
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		vals := new([nHeaders]string)
		*vals = tmpl
		for i := range hs {
			h[hs[i].Name] = vals[i : i+1 : i+1]
		}
		next.ServeHTTP(w, r)
	})
}

// nHeaders is len(Headers()).
const nHeaders = 7

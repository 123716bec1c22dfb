// Package netx holds the network policy shared by the connectors: which
// hosts count as loopback (the only ones reachable without TLS), which URLs
// are acceptable, the TLS configuration of outgoing links (controls NET-2,
// NET-5), the classification of HTTP answers into temporary and permanent
// errors, strict JSON decoding and the masking of secrets (DATA-3).
//
// It is internal to internal/connectors so that its helpers do not become
// part of the connectors' public API.
package netx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
)

// Mask replaces secrets shown back to users (DATA-3).
const Mask = "********"

// IsLoopbackHost reports whether host (a name or an IP literal, with or
// without brackets) is a loopback host: 127.0.0.0/8, ::1 (or an IPv4-mapped
// loopback address) or the name "localhost". Names are not resolved: a name
// that merely resolves to a loopback address does not count, so that DNS
// cannot turn a plaintext link on.
func IsLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == "localhost" {
		return true
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// CheckURL parses raw as the URL of a remote HTTP endpoint and applies the
// policy: https, or http only to a loopback host (tests); a host; no
// credentials in the URL (they would be logged and shown back: use the
// connector's token or secret fields); no fragment. field names the setting
// in errors.
func CheckURL(field, raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, connectors.ConfigError(field, "required (an https:// URL)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, connectors.ConfigError(field, "not a URL: %v", err)
	}
	if u.User != nil {
		return nil, connectors.ConfigError(field, "credentials in the URL are refused (they would be logged and shown back); use the token or secret settings")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, connectors.ConfigError(field, "%q has no host", SafeURL(u))
	}
	if u.Fragment != "" {
		return nil, connectors.ConfigError(field, "a fragment (#...) is never sent; remove it")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopbackHost(u.Hostname()) {
			return nil, connectors.ConfigError(field, "plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); %q is not one: use https", u.Hostname())
		}
	default:
		return nil, connectors.ConfigError(field, "scheme %q refused: use https", u.Scheme)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, connectors.ConfigError(field, "port %q is not in 1..65535", p)
		}
	}
	return u, nil
}

// SafeURL prints u without its query string, which some operators use for
// API keys: it is what errors and logs may show.
func SafeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = ""
		return c.String() + "?..."
	}
	return c.String()
}

// CipherSuites are the TLS 1.2 suites allowed on outgoing links: ECDHE key
// exchange with an AEAD cipher only, as in the server policy of
// internal/web/tlsconf (ANSSI SDE-NT-35), with the ECDHE_RSA twins since
// remote ends often have RSA certificates. TLS 1.3 suites are all AEAD.
func CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// TLSConfig returns the client TLS configuration of outgoing links:
// certificates verified against roots (nil: the system pool) for
// serverName (a name or an IP address), TLS 1.2 minimum, ECDHE + AEAD
// suites. There is deliberately no way to skip verification: tests pass the
// pool of their own CA.
func TLSConfig(serverName string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		ServerName:       serverName,
		RootCAs:          roots,
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     CipherSuites(),
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384},
		Renegotiation:    tls.RenegotiateNever,
	}
}

// Roots returns pool when it is set, otherwise the certificates of pemText
// (a PEM bundle) when it is set, otherwise nil (the system pool).
func Roots(field string, pool *x509.CertPool, pemText string) (*x509.CertPool, error) {
	if pool != nil {
		return pool, nil
	}
	if strings.TrimSpace(pemText) == "" {
		return nil, nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(pemText)) {
		return nil, connectors.ConfigError(field, "no PEM certificate found")
	}
	return p, nil
}

// CheckTimeout applies a default and bounds to a connector timeout.
func CheckTimeout(field string, d connectors.Duration, def time.Duration) (time.Duration, error) {
	v := d.D()
	if v == 0 {
		return def, nil
	}
	if v < 10*time.Millisecond || v > 10*time.Minute {
		return 0, connectors.ConfigError(field, "%s is outside 10ms..10m", v)
	}
	return v, nil
}

// CheckRate validates a rate limit setting (0: none).
func CheckRate(field string, r float64) error {
	if r < 0 || r != r || r > 1e6 {
		return connectors.ConfigError(field, "must be between 0 (no limit) and 1000000")
	}
	return nil
}

// NewHTTPClient returns an HTTP client for one connector: its own
// transport (so Close can drop its idle connections) with the TLS policy,
// timeout as the overall deadline of one request, the environment's proxy
// settings, and redirects refused (a redirect would carry the request, and
// possibly a custom credential header, to another URL).
func NewHTTPClient(timeout time.Duration, roots *x509.CertPool) (*http.Client, *http.Transport) {
	tlsConf := TLSConfig("", roots)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, tr
}

// MaxResponse bounds how much of a remote answer is read.
const MaxResponse = 1 << 20

// ReadBody reads at most MaxResponse bytes of resp.Body and closes it.
func ReadBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxResponse {
		return nil, fmt.Errorf("answer larger than %d bytes", MaxResponse)
	}
	return b, nil
}

// ClassifyStatus turns an HTTP answer that is not 2xx into a classified
// error: 408, 425, 429 and 5xx are temporary (429 and 503 name the
// Retry-After delay when given); 401, 403 and 407 are temporary too, since
// they concern the connector's credentials rather than the message, and a
// whole campaign should not fail permanently because a token expired (the
// router retries, fails over, then dead-letters); 3xx are permanent
// (redirects are not followed: configure the final URL); any other 4xx is
// permanent for the message. what names the request ("POST
// https://host/path"). It returns nil for 2xx.
func ClassifyStatus(what string, resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	snippet := Snippet(body)
	msg := fmt.Sprintf("%s: %s", what, resp.Status)
	if snippet != "" {
		msg += ": " + snippet
	}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += " (Retry-After: " + Snippet([]byte(ra)) + ")"
		}
		return connectors.Temporary(errors.New(msg))
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooEarly:
		return connectors.Temporary(errors.New(msg))
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired:
		return connectors.Temporary(fmt.Errorf("%s (the remote end refused the connector's credentials: check the token)", msg))
	case code >= 300 && code < 400:
		loc := ""
		if l, err := resp.Location(); err == nil {
			loc = " to " + SafeURL(l)
		}
		return connectors.Permanent(fmt.Errorf("%s: redirect%s not followed; configure the final URL", msg, loc))
	default:
		return connectors.Permanent(errors.New(msg))
	}
}

// TransportError classifies an error of http.Client.Do: always temporary,
// with the *url.Error's URL (which may carry a query string) replaced by
// what.
func TransportError(what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return connectors.Temporary(fmt.Errorf("%s: timed out: %w", what, err))
	}
	return connectors.Temporary(fmt.Errorf("%s: %w", what, err))
}

// Snippet returns the start of a remote answer, printable, for errors.
func Snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	cut := len(s) > max
	if cut {
		s = s[:max]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return ' '
		}
		return r
	}, s)
	if cut {
		s += "..."
	}
	return s
}

// MaskSecret returns the value to show back for a secret (DATA-3): empty
// stays empty; otherwise the mask, followed by the last 4 characters only
// when the secret is long enough (16 characters or more) for them to give
// little away. Values that are already masked are returned unchanged.
func MaskSecret(s string) string {
	if s == "" || strings.HasPrefix(s, Mask) {
		return s
	}
	r := []rune(s)
	if len(r) >= 16 {
		return Mask + string(r[len(r)-4:])
	}
	return Mask
}

// IsMasked reports whether s is a masked secret, as returned by MaskSecret.
func IsMasked(s string) bool { return strings.HasPrefix(s, Mask) }

// DecodeStrict decodes one JSON object from raw into v: unknown fields are
// errors that name the field (with its path, "dkim.selektor") and list the
// accepted ones, field names must match exactly (encoding/json alone would
// accept "HOST" for "host"), type mismatches name the field, and anything
// after the object is refused. Errors wrap connectors.ErrConfig.
func DecodeStrict(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return connectors.ConfigError("config", "empty; a JSON object is required")
	}
	if err := checkKeys(reflect.TypeOf(v), raw, ""); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return connectors.ConfigError("config", "unexpected data after the JSON object")
	}
	return nil
}

// checkKeys walks the JSON objects of raw that map onto structs of t and
// refuses keys that are not exactly the JSON name of a field.
func checkKeys(t reflect.Type, raw json.RawMessage, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil // not an object: the decoder reports the type error
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil // the decoder reports the syntax error
	}
	fields := structFields(t)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			sort.Strings(names)
			return connectors.ConfigError(path+k, "unknown field (accepted here: %s)", strings.Join(names, ", "))
		}
		if err := checkText(f.Type, obj[k], path+k); err != nil {
			return err
		}
		if err := checkKeys(f.Type, obj[k], path+k+"."); err != nil {
			return err
		}
	}
	return nil
}

// checkText runs the UnmarshalText of a text-decoded field type (such as
// connectors.Duration) on a JSON string, so that its error names the field.
func checkText(t reflect.Type, raw json.RawMessage, path string) error {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return nil
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return connectors.ConfigError(path, "a string is expected")
	}
	u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(s)); err != nil {
		return connectors.ConfigError(path, "%v", err)
	}
	return nil
}

func structFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f
	}
	return m
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "config"
		}
		return connectors.ConfigError(field, "wrong type: %s given, %s expected", te.Value, te.Type)
	case errors.As(err, &se):
		return connectors.ConfigError("config", "invalid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return connectors.ConfigError("config", "invalid JSON: truncated")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return connectors.ConfigError(strings.Trim(name, `"`), "unknown field")
	}
	return connectors.ConfigError("config", "%v", err)
}

// ContextDeadline returns the earlier of now+timeout and ctx's deadline.
func ContextDeadline(now time.Time, timeout time.Duration, dl time.Time, hasDL bool) time.Time {
	d := now.Add(timeout)
	if hasDL && dl.Before(d) {
		return dl
	}
	return d
}

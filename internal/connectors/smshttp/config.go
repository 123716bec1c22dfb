package smshttp

import (
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/signature"
)

// Formats of Config.Format.
const (
	FormatJSON = "json"
	FormatForm = "form"
)

// Keys of Config.Fields: the parts of a message that are mapped onto the
// operator's request fields.
const (
	FieldTo   = "to"
	FieldText = "text"
	FieldFrom = "from"
	FieldRef  = "ref"
)

// Defaults and limits.
const (
	DefaultTimeout = 10 * time.Second
	// MaxCallbackBody bounds a delivery receipt request.
	MaxCallbackBody = 64 << 10
	// MaxReceipts bounds the receipts of one callback.
	MaxReceipts = 1000
)

// Config configures an SMS operator connector. Token, SecretStatic values
// and CallbackSecret are secrets (DATA-3), masked by Redacted.
//
// Example, an operator taking JSON with a bearer token:
//
//	{"url": "https://api.operator.example/v1/sms", "format": "json",
//	 "fields": {"to": "destination", "text": "body", "from": "sender", "ref": "client_ref"},
//	 "static": {"route": "premium"},
//	 "auth_header": "Authorization", "token": "Bearer 7f3c...",
//	 "response_id_path": "messages.0.id",
//	 "callback_secret": "...", "callback": {"id_path": "message_id", "ref_path": "client_ref",
//	   "status_path": "status", "reason_path": "error",
//	   "statuses": {"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "failed", "REJECTD": "bounced"}}}
type Config struct {
	// URL of the send endpoint: https, or http to a loopback host (tests).
	URL string `json:"url"`
	// Method is POST (the default and only value).
	Method string `json:"method,omitempty"`
	// Format of the request body: "json" (default) or "form".
	Format string `json:"format,omitempty"`
	// Fields maps "to", "text", "from" and "ref" onto the operator's field
	// names; "to", "text" and "ref" are required. In JSON a dotted name
	// ("message.to") builds nested objects. The ref field carries
	// Message.Ref: the operator must deduplicate on it (see the package
	// documentation).
	Fields map[string]string `json:"fields"`
	// Static are fixed fields added to every request ({"route": "premium"}).
	Static map[string]string `json:"static,omitempty"`
	// SecretStatic are fixed fields that are credentials (an api_secret
	// form field): sent like Static, masked by Redacted.
	SecretStatic map[string]string `json:"secret_static,omitempty"`
	// AuthHeader is the header carrying Token (default "Authorization").
	AuthHeader string `json:"auth_header,omitempty"`
	// Token is the header's whole value ("Bearer 7f3c..."). A secret.
	Token string `json:"token,omitempty"`
	// From is the sender id used when a Message has none.
	From string `json:"from,omitempty"`
	// ResponseIDPath is the dotted path of the operator's message id in
	// its JSON answer ("messages.0.id"); empty when the answer has none.
	ResponseIDPath string `json:"response_id_path,omitempty"`
	// CallbackSecret is the HMAC-SHA256 key of delivery receipts (see
	// ParseCallback); at least 16 characters. A secret.
	CallbackSecret string `json:"callback_secret,omitempty"`
	// Callback maps the operator's receipt JSON onto receipts.
	Callback CallbackMapping `json:"callback,omitzero"`
	// Timeout bounds one request (default 10s).
	Timeout connectors.Duration `json:"timeout,omitempty"`
	// RatePerSecond is the operator's limit, reported in Capabilities for
	// the router to enforce (0: none known).
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// RootCAsPEM is a PEM bundle of the CAs trusted for the operator's
	// certificate; empty means the system's roots.
	RootCAsPEM string `json:"root_cas_pem,omitempty"`
	// RootCAs, when set, is used instead of RootCAsPEM (tests).
	RootCAs *x509.CertPool `json:"-"`
}

// CallbackMapping says where a delivery receipt's parts are in the
// operator's JSON. Paths are dotted ("data.status", "results.0.id").
type CallbackMapping struct {
	// ItemsPath is the path of an array of receipts ("results"); empty
	// when the body is one receipt object or a top-level array.
	ItemsPath string `json:"items_path,omitempty"`
	// IDPath is the operator's message id (matches Outcome.ProviderRef);
	// RefPath the echoed client reference (Message.Ref). At least one is
	// required; a receipt with neither is refused.
	IDPath  string `json:"id_path,omitempty"`
	RefPath string `json:"ref_path,omitempty"`
	// StatusPath is the operator's status; Statuses maps its values onto
	// "delivered", "failed" or "bounced". Values not in Statuses
	// (intermediate states such as "ENROUTE") are skipped.
	StatusPath string            `json:"status_path,omitempty"`
	Statuses   map[string]string `json:"statuses,omitempty"`
	// ReasonPath is the operator's error text or code, if any.
	ReasonPath string `json:"reason_path,omitempty"`
	// TimePath is the time of the event, RFC 3339 or Unix seconds; when
	// empty or absent the time of the callback is used.
	TimePath string `json:"time_path,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	c.Format = strings.ToLower(strings.TrimSpace(c.Format))
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.Token != "" && c.AuthHeader == "" {
		c.AuthHeader = "Authorization"
	}
	if c.Timeout == 0 {
		c.Timeout = connectors.Duration(DefaultTimeout)
	}
	return c
}

// Validate reports the first setting that cannot work, as an error
// wrapping connectors.ErrConfig that names it; it never quotes a secret.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

type compiled struct {
	cfg     Config
	url     *url.URL
	timeout time.Duration
	roots   *x509.CertPool
	idPath  []string
	cb      compiledCallback
}

type compiledCallback struct {
	items, id, ref, status, reason, at []string
	statuses                           map[string]string
}

func (c Config) compile() (*compiled, error) {
	c = c.withDefaults()
	out := &compiled{cfg: c}
	var err error
	if out.url, err = netx.CheckURL("url", c.URL); err != nil {
		return nil, err
	}
	if c.Method != http.MethodPost {
		return nil, connectors.ConfigError("method", "%q: only POST is supported", c.Method)
	}
	if c.Format != FormatJSON && c.Format != FormatForm {
		return nil, connectors.ConfigError("format", `%q: use "json" or "form"`, c.Format)
	}
	used := map[string]string{} // operator field name -> setting that uses it
	for _, k := range sortedKeys(c.Fields) {
		switch k {
		case FieldTo, FieldText, FieldFrom, FieldRef:
		default:
			return nil, connectors.ConfigError("fields."+k, `unknown message part: the keys are "to", "text", "from" and "ref"`)
		}
	}
	for _, k := range []string{FieldTo, FieldText, FieldFrom, FieldRef} {
		name, ok := c.Fields[k]
		if !ok || (name == "" && k == FieldFrom) {
			continue
		}
		if err := checkFieldName("fields."+k, name, c.Format); err != nil {
			return nil, err
		}
		if prev, dup := used[name]; dup {
			return nil, connectors.ConfigError("fields."+k, "field %q is already used by %s", name, prev)
		}
		used[name] = "fields." + k
	}
	for _, k := range []string{FieldTo, FieldText, FieldRef} {
		if c.Fields[k] == "" {
			return nil, connectors.ConfigError("fields."+k, "required (the operator's name for the %s; the ref field carries the idempotency reference)", k)
		}
	}
	for _, set := range []string{"static", "secret_static"} {
		m := c.Static
		if set == "secret_static" {
			m = c.SecretStatic
		}
		for _, name := range sortedKeys(m) {
			v := m[name]
			if err := checkFieldName(set+"."+name, name, c.Format); err != nil {
				return nil, err
			}
			if prev, dup := used[name]; dup {
				return nil, connectors.ConfigError(set+"."+name, "field %q is already used by %s", name, prev)
			}
			used[name] = set + "." + name
			if strings.ContainsAny(v, "\x00") {
				return nil, connectors.ConfigError(set+"."+name, "contains a NUL character")
			}
		}
	}
	if c.Format == FormatJSON {
		for _, a := range sortedKeys(used) {
			for _, b := range sortedKeys(used) {
				if strings.HasPrefix(b, a+".") {
					return nil, connectors.ConfigError(used[b], "field %q is inside field %q (%s)", b, a, used[a])
				}
			}
		}
	}
	if c.Token != "" {
		if !validHeaderName(c.AuthHeader) {
			return nil, connectors.ConfigError("auth_header", "%q is not a header name", c.AuthHeader)
		}
		switch strings.ToLower(c.AuthHeader) {
		case "content-type", "content-length", "host", "idempotency-key", "user-agent", "accept":
			return nil, connectors.ConfigError("auth_header", "%q cannot carry the token", c.AuthHeader)
		}
		if strings.ContainsAny(c.Token, "\r\n\x00") {
			return nil, connectors.ConfigError("token", "contains a line break or NUL")
		}
	} else if c.AuthHeader != "" {
		return nil, connectors.ConfigError("token", "auth_header is set but token is empty")
	}
	if strings.ContainsAny(c.From, "\r\n\x00") {
		return nil, connectors.ConfigError("from", "contains a control character")
	}
	if out.idPath, err = parsePath("response_id_path", c.ResponseIDPath); err != nil {
		return nil, err
	}
	if c.CallbackSecret != "" && len(c.CallbackSecret) < signature.MinSecretLen {
		return nil, connectors.ConfigError("callback_secret", "at least %d characters are required", signature.MinSecretLen)
	}
	if out.cb, err = compileCallback(c.Callback); err != nil {
		return nil, err
	}
	if out.timeout, err = netx.CheckTimeout("timeout", c.Timeout, DefaultTimeout); err != nil {
		return nil, err
	}
	if err := netx.CheckRate("rate_per_second", c.RatePerSecond); err != nil {
		return nil, err
	}
	if out.roots, err = netx.Roots("root_cas_pem", c.RootCAs, c.RootCAsPEM); err != nil {
		return nil, err
	}
	return out, nil
}

func compileCallback(m CallbackMapping) (compiledCallback, error) {
	var cb compiledCallback
	var err error
	for _, p := range []struct {
		field string
		raw   string
		dst   *[]string
	}{
		{"callback.items_path", m.ItemsPath, &cb.items},
		{"callback.id_path", m.IDPath, &cb.id},
		{"callback.ref_path", m.RefPath, &cb.ref},
		{"callback.status_path", m.StatusPath, &cb.status},
		{"callback.reason_path", m.ReasonPath, &cb.reason},
		{"callback.time_path", m.TimePath, &cb.at},
	} {
		if *p.dst, err = parsePath(p.field, p.raw); err != nil {
			return cb, err
		}
	}
	cb.statuses = make(map[string]string, len(m.Statuses))
	for _, k := range sortedKeys(m.Statuses) {
		v := m.Statuses[k]
		switch v {
		case connectors.StatusDelivered, connectors.StatusFailed, connectors.StatusBounced:
		default:
			return cb, connectors.ConfigError("callback.statuses."+k, `%q: use "delivered", "failed" or "bounced"`, v)
		}
		cb.statuses[k] = v
	}
	return cb, nil
}

// configured reports whether a callback mapping was given.
func (cb compiledCallback) configured() bool {
	return cb.status != nil && (cb.id != nil || cb.ref != nil) && len(cb.statuses) > 0
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func checkFieldName(field, name, format string) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "\x00\r\n") {
		return connectors.ConfigError(field, "%q is not a field name", name)
	}
	if format == FormatJSON {
		for part := range strings.SplitSeq(name, ".") {
			if part == "" {
				return connectors.ConfigError(field, "%q has an empty path element", name)
			}
		}
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Redacted returns a copy of c with its secrets masked (DATA-3): Token,
// CallbackSecret and SecretStatic values as "********" plus at most their
// last 4 characters.
func (c Config) Redacted() Config {
	c.Token = netx.MaskSecret(c.Token)
	c.CallbackSecret = netx.MaskSecret(c.CallbackSecret)
	if c.SecretStatic != nil {
		m := make(map[string]string, len(c.SecretStatic))
		for k, v := range c.SecretStatic {
			m[k] = netx.MaskSecret(v)
		}
		c.SecretStatic = m
	}
	return c
}

// String prints the redacted configuration as JSON.
func (c Config) String() string {
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		return "smshttp.Config{?}"
	}
	return string(b)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the redacted configuration.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

package smtp

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/smtp/bouncebox"
)

// TLS modes of Config.TLS.
const (
	// TLSStartTLS connects in clear and upgrades with STARTTLS before
	// anything else; a server that does not offer STARTTLS is refused
	// (never a silent fall-back to plaintext). The default; port 587.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS); port 465.
	TLSImplicit = "implicit"
	// TLSNone is plaintext, accepted only to a loopback host (a local
	// relay or a test sink); port 25.
	TLSNone = "none"
)

// Defaults.
const (
	DefaultPoolSize = 4
	DefaultTimeout  = 30 * time.Second
	// MaxPoolSize bounds Config.PoolSize.
	MaxPoolSize = 64
	// MaxBatch is the largest batch Send takes (Capabilities.MaxBatch).
	MaxBatch = 1000
)

// Config configures an SMTP connector. The JSON form is what the registry
// decodes (strictly) and stores encrypted; Password and DKIM.PrivateKeyPEM
// are secrets (DATA-3), masked by Redacted.
type Config struct {
	// Host is the relay's name or IP address; certificates are verified
	// for it.
	Host string `json:"host"`
	// Port defaults to 587 (starttls), 465 (implicit) or 25 (none).
	Port int `json:"port,omitempty"`
	// TLS is "starttls" (default), "implicit" or "none" (loopback only).
	TLS string `json:"tls,omitempty"`
	// Username and Password enable SMTP AUTH (PLAIN, else LOGIN), only
	// over TLS or to a loopback host. Both or neither.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// From is the From address used when a Message has none
	// ("News <news@acme.example>").
	From string `json:"from,omitempty"`
	// EnvelopeFrom is the MAIL FROM address, where bounces go (a bounce
	// mailbox); empty means the message's From address.
	EnvelopeFrom string `json:"envelope_from,omitempty"`
	// HeloName is the name given in EHLO; empty means the host name.
	HeloName string `json:"helo_name,omitempty"`
	// PoolSize is the number of connections kept to the relay (default 4).
	PoolSize int `json:"pool_size,omitempty"`
	// Timeout bounds connecting and each step of a transaction, including
	// the wait for the relay's answer to the end of a message (default 30s).
	Timeout connectors.Duration `json:"timeout,omitempty"`
	// RootCAsPEM is a PEM bundle of the CAs trusted for the relay's
	// certificate (a private CA); empty means the system's roots.
	RootCAsPEM string `json:"root_cas_pem,omitempty"`
	// RootCAs, when set, is used instead of RootCAsPEM (tests).
	RootCAs *x509.CertPool `json:"-"`
	// DKIM, when set, signs every message.
	DKIM *DKIMConfig `json:"dkim,omitempty"`
	// RatePerSecond is the relay's limit, reported in Capabilities for the
	// router to enforce (0: none known).
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// BounceMailbox, when set, is the IMAP mailbox EnvelopeFrom delivers
	// to: the server reads the delivery status notifications there and
	// marks the messages they name bounced (its password is a secret).
	BounceMailbox *bouncebox.Config `json:"bounce_mailbox,omitempty"`
}

// DKIMConfig is the DKIM signing key of a tenant domain (RFC 6376,
// RFC 8463): messages are signed with rsa-sha256 or ed25519-sha256,
// relaxed/relaxed canonicalisation, over From, To, Subject, Date,
// Message-ID, MIME-Version, Content-Type, Reply-To and every extra header
// (List-Unsubscribe, List-Unsubscribe-Post...), From, Subject and the
// List-Unsubscribe headers being over-signed so that none can be added.
type DKIMConfig struct {
	// Domain is the signing domain (d=); the public key is published at
	// Selector._domainkey.Domain.
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// PrivateKeyPEM is an Ed25519 (PKCS#8) or RSA (PKCS#8 or PKCS#1, at
	// least 2048 bits) private key. A secret.
	PrivateKeyPEM string `json:"private_key_pem"`
}

// String prints the DKIM settings without the key, so that a DKIMConfig
// printed by mistake shows no secret.
func (d DKIMConfig) String() string {
	return fmt.Sprintf("{domain:%s selector:%s private_key_pem:%s}", d.Domain, d.Selector, netx.Mask)
}

// GoString is String, for %#v.
func (d DKIMConfig) GoString() string { return d.String() }

// LogValue implements slog.LogValuer without the key.
func (d DKIMConfig) LogValue() slog.Value { return slog.StringValue(d.String()) }

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	c.Host = strings.TrimSpace(c.Host)
	c.TLS = strings.ToLower(strings.TrimSpace(c.TLS))
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Port == 0 {
		switch c.TLS {
		case TLSImplicit:
			c.Port = 465
		case TLSNone:
			c.Port = 25
		default:
			c.Port = 587
		}
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.Timeout == 0 {
		c.Timeout = connectors.Duration(DefaultTimeout)
	}
	return c
}

// Validate reports the first setting that cannot work, as an error
// wrapping connectors.ErrConfig that names it. Plaintext ("none") is
// refused unless Host is a loopback host; there is no option to skip
// certificate verification. Validate never puts a secret in its errors.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a validated configuration with its parsed parts.
type compiled struct {
	cfg      Config
	timeout  time.Duration
	roots    *x509.CertPool
	from     *mail.Address
	envFrom  string
	dkimKey  crypto.Signer
	dkimDom  string
	dkimSel  string
	heloName string
}

func (c Config) compile() (*compiled, error) {
	c = c.withDefaults()
	out := &compiled{cfg: c}
	if c.Host == "" {
		return nil, connectors.ConfigError("host", "required (the relay's name or IP address)")
	}
	if !validHost(c.Host) {
		return nil, connectors.ConfigError("host", "%q is not a host name or IP address (no scheme, port or path)", c.Host)
	}
	if c.Port < 1 || c.Port > 65535 {
		return nil, connectors.ConfigError("port", "%d is not in 1..65535", c.Port)
	}
	switch c.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !netx.IsLoopbackHost(c.Host) {
			return nil, connectors.ConfigError("tls", `plaintext ("none") is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); %q is not one: use "starttls" or "implicit"`, c.Host)
		}
	default:
		return nil, connectors.ConfigError("tls", `%q is not a TLS mode: use "starttls", "implicit" or "none" (loopback only)`, c.TLS)
	}
	if (c.Username == "") != (c.Password == "") {
		return nil, connectors.ConfigError("username", "username and password go together: give both or neither")
	}
	if strings.ContainsAny(c.Username, "\x00\r\n") {
		return nil, connectors.ConfigError("username", "contains a control character")
	}
	if strings.ContainsAny(c.Password, "\x00\r\n") {
		return nil, connectors.ConfigError("password", "contains a control character")
	}
	if c.BounceMailbox != nil {
		if err := c.BounceMailbox.Validate(); err != nil {
			return nil, connectors.ConfigError("bounce_mailbox", "%v", err)
		}
		if c.EnvelopeFrom == "" {
			return nil, connectors.ConfigError("bounce_mailbox", "needs envelope_from: the address whose mail arrives in that mailbox")
		}
	}
	if c.From != "" {
		a, err := parseAddress(c.From)
		if err != nil {
			return nil, connectors.ConfigError("from", "%v", err)
		}
		out.from = a
	}
	if c.EnvelopeFrom != "" {
		a, err := parseAddress(c.EnvelopeFrom)
		if err != nil {
			return nil, connectors.ConfigError("envelope_from", "%v", err)
		}
		if a.Name != "" {
			return nil, connectors.ConfigError("envelope_from", "a bare address is expected, without a display name")
		}
		out.envFrom = a.Address
	}
	out.heloName = c.HeloName
	if c.HeloName != "" && !validHost(c.HeloName) {
		return nil, connectors.ConfigError("helo_name", "%q is not a host name", c.HeloName)
	}
	if c.PoolSize < 1 || c.PoolSize > MaxPoolSize {
		return nil, connectors.ConfigError("pool_size", "%d is not in 1..%d", c.PoolSize, MaxPoolSize)
	}
	t, err := netx.CheckTimeout("timeout", c.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	out.timeout = t
	if out.roots, err = netx.Roots("root_cas_pem", c.RootCAs, c.RootCAsPEM); err != nil {
		return nil, err
	}
	if err := netx.CheckRate("rate_per_second", c.RatePerSecond); err != nil {
		return nil, err
	}
	if c.DKIM != nil {
		d := c.DKIM
		out.dkimDom = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d.Domain)), ".")
		out.dkimSel = strings.ToLower(strings.TrimSpace(d.Selector))
		if !validDNSName(out.dkimDom) || !strings.Contains(out.dkimDom, ".") {
			return nil, connectors.ConfigError("dkim.domain", "%q is not a domain name", d.Domain)
		}
		if !validDNSName(out.dkimSel) {
			return nil, connectors.ConfigError("dkim.selector", "%q is not a DNS label", d.Selector)
		}
		if out.dkimKey, err = parseDKIMKey(d.PrivateKeyPEM); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseDKIMKey reads an Ed25519 or RSA (>= 2048 bits) private key. Its
// errors never quote the key.
func parseDKIMKey(pemText string) (crypto.Signer, error) {
	const field = "dkim.private_key_pem"
	if strings.TrimSpace(pemText) == "" {
		return nil, connectors.ConfigError(field, "required (an Ed25519 or RSA private key, PEM)")
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, connectors.ConfigError(field, "no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, connectors.ConfigError(field, "PEM block %q is not a private key (PRIVATE KEY or RSA PRIVATE KEY expected)", block.Type)
	}
	if err != nil {
		return nil, connectors.ConfigError(field, "cannot parse the private key")
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return nil, connectors.ConfigError(field, "RSA key of %d bits: at least 2048 are required", bits)
		}
		return k, nil
	default:
		return nil, connectors.ConfigError(field, "%T keys cannot sign DKIM: use Ed25519 or RSA", key)
	}
}

// parseAddress parses one RFC 5322 address (with or without display name)
// and requires an ASCII address: internationalised addresses (SMTPUTF8)
// are not supported.
func parseAddress(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return nil, fmt.Errorf("address contains a line break")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an email address: %v", s, err)
	}
	for i := 0; i < len(a.Address); i++ {
		if a.Address[i] >= 0x80 {
			return nil, fmt.Errorf("%q: internationalised addresses are not supported", a.Address)
		}
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return nil, fmt.Errorf("%q has no domain", a.Address)
	}
	return a, nil
}

func validHost(h string) bool {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
		return ip.IsValid()
	}
	return validDNSName(strings.TrimSuffix(h, "."))
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

// Redacted returns a copy of c with its secrets masked (DATA-3): the
// password as "********" plus at most its last 4 characters, the DKIM key
// entirely.
func (c Config) Redacted() Config {
	c.Password = netx.MaskSecret(c.Password)
	if c.DKIM != nil {
		d := *c.DKIM
		if d.PrivateKeyPEM != "" {
			d.PrivateKeyPEM = netx.Mask
		}
		c.DKIM = &d
	}
	if c.BounceMailbox != nil {
		b := *c.BounceMailbox
		b.Password = netx.MaskSecret(b.Password)
		c.BounceMailbox = &b
	}
	return c
}

// String prints the redacted configuration as JSON, so that a Config
// printed by mistake shows no secret.
func (c Config) String() string {
	b, err := json.Marshal(c.Redacted()) // #nosec G117 -- the Redacted copy: secrets are masked
	if err != nil {
		return "smtp.Config{?}"
	}
	return string(b)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the redacted configuration.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

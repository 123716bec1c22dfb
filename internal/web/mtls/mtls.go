// Package mtls authenticates TLS client certificates issued by private CAs
// (control NET-4): a certificate authority per tenant, or one for the
// platform, maps certificates (by subject common name, subject alternative
// name or SHA-256 fingerprint) to service accounts (API clients), with
// revocation by fingerprint list and by CRL file.
//
// Most callers need [Load] (the authorities file), [Verifier.Middleware]
// on the HTTPS handler, and [Verifier.Check] where an API client's access
// token is accepted: a tenant (or the platform) that requires mTLS gets
// certificate-bound API clients, in the manner of RFC 8705: the token is
// accepted only over a connection whose client certificate maps to the
// token's own service account.
//
// The HTTPS server asks for a certificate without checking it during the
// handshake (tls.RequestClientCert: Go still checks that the client holds
// the certificate's private key); this package then verifies the chain
// against the CA of the authority, so each tenant's CA only vouches for its
// own tenant's accounts. [Verifier.TLSClientAuth] gives the setting.
//
// The authorities file (TOML):
//
//	[[authority]]
//	name = "acme-corp"          # for logs and errors
//	tenant = "<tenant id>"      # empty: a platform authority
//	ca_file = "/etc/relais/acme-corp-ca.pem"
//	crl_file = "/etc/relais/acme-corp.crl"   # optional, PEM or DER
//	revoked = ["<sha256 hex>"]               # optional
//	require = true   # the tenant's (platform: every) API tokens need a certificate
//
//	[[authority.client]]
//	match = "cn:billing-bot"    # or dns:, email:, uri:, sha256:
//	tenant = "<tenant id>"      # platform authorities only
//	service_account = "<API client id>"
package mtls

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/relais-dev/relais/internal/web/problem"
)

// Problem codes of this package.
const (
	CodeRequired = "client_certificate_required"
	CodeRefused  = "client_certificate_refused"
	CodeMismatch = "client_certificate_mismatch"
)

// File is the authorities file.
type File struct {
	Authority []AuthorityConfig `toml:"authority"`
}

// AuthorityConfig is one [[authority]] of the file.
type AuthorityConfig struct {
	Name    string         `toml:"name"`
	Tenant  string         `toml:"tenant"`
	CAFile  string         `toml:"ca_file"`
	CRLFile string         `toml:"crl_file"`
	Revoked []string       `toml:"revoked"`
	Require bool           `toml:"require"`
	Client  []ClientConfig `toml:"client"`
}

// ClientConfig maps certificates to a service account.
type ClientConfig struct {
	Match          string `toml:"match"`
	Tenant         string `toml:"tenant"`
	ServiceAccount string `toml:"service_account"`
}

// Identity is an accepted client certificate.
type Identity struct {
	Authority      string
	Tenant         string
	ServiceAccount string
	// Fingerprint is the SHA-256 of the certificate (hex).
	Fingerprint string
	Subject     string
}

type rule struct {
	kind, value     string
	tenant, account string
}

type authority struct {
	name    string
	tenant  string
	require bool
	roots   *x509.CertPool
	cas     []*x509.Certificate
	crl     *x509.RevocationList
	revoked map[string]bool
	rules   []rule
}

type state struct {
	auths []*authority
}

// Verifier checks client certificates against the authorities. It is safe
// for concurrent use; [Verifier.Reload] replaces the authorities atomically.
type Verifier struct {
	path string
	now  func() time.Time
	cur  atomic.Pointer[state]
}

// Load reads the authorities file at path. now is the clock (nil:
// time.Now).
func Load(path string, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{path: path, now: now}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the authorities file and the CA and CRL files it names
// (after a revocation, or a new CRL). On error the previous authorities stay.
func (v *Verifier) Reload() error {
	data, err := os.ReadFile(v.path) // #nosec G304 -- the operator names the file.
	if err != nil {
		return fmt.Errorf("client certificate authorities: %w", err)
	}
	var f File
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return fmt.Errorf("client certificate authorities %s: %w", v.path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return fmt.Errorf("client certificate authorities %s: unknown key %q", v.path, u[0].String())
	}
	st, err := build(f, v.now())
	if err != nil {
		return fmt.Errorf("client certificate authorities %s: %w", v.path, err)
	}
	v.cur.Store(st)
	return nil
}

// Run reloads the file every period until ctx ends. A failed reload keeps
// the previous authorities and is logged (log may be nil) once per change
// of the error.
func (v *Verifier) Run(ctx context.Context, period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := v.Reload()
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if msg != last && log != nil {
				if err != nil {
					log.Error("client certificate authorities not reloaded; the previous ones stay in force", "error", err)
				} else {
					log.Info("client certificate authorities reloaded")
				}
			}
			last = msg
		}
	}
}

func build(f File, now time.Time) (*state, error) {
	if len(f.Authority) == 0 {
		return nil, errors.New("no [[authority]]")
	}
	st := &state{}
	for i, a := range f.Authority {
		name := a.Name
		if name == "" {
			name = fmt.Sprintf("authority %d", i+1)
		}
		au := &authority{name: name, tenant: a.Tenant, require: a.Require, roots: x509.NewCertPool(), revoked: map[string]bool{}}
		pemData, err := os.ReadFile(a.CAFile) // #nosec G304 -- the operator names the file.
		if err != nil {
			return nil, fmt.Errorf("%s: ca_file: %w", name, err)
		}
		for rest := pemData; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: ca_file: %w", name, err)
			}
			if !c.IsCA {
				return nil, fmt.Errorf("%s: ca_file holds a certificate that is not a CA (%s)", name, c.Subject)
			}
			au.roots.AddCert(c)
			au.cas = append(au.cas, c)
		}
		if len(au.cas) == 0 {
			return nil, fmt.Errorf("%s: ca_file %s holds no PEM certificate", name, a.CAFile)
		}
		if a.CRLFile != "" {
			if au.crl, err = loadCRL(a.CRLFile, au.cas); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		for _, fp := range a.Revoked {
			fp = normFingerprint(fp)
			if len(fp) != 64 {
				return nil, fmt.Errorf("%s: revoked %q is not a SHA-256 fingerprint (64 hex digits)", name, fp)
			}
			au.revoked[fp] = true
		}
		for _, c := range a.Client {
			kind, value, ok := strings.Cut(c.Match, ":")
			switch kind {
			case "cn", "dns", "email", "uri":
			case "sha256":
				value = normFingerprint(value)
			default:
				ok = false
			}
			if !ok || value == "" {
				return nil, fmt.Errorf("%s: client match %q: use cn:, dns:, email:, uri: or sha256: followed by a value", name, c.Match)
			}
			tenant := c.Tenant
			if a.Tenant != "" {
				if tenant != "" && tenant != a.Tenant {
					return nil, fmt.Errorf("%s: a tenant authority maps only to its own tenant's accounts", name)
				}
				tenant = a.Tenant
			}
			if tenant == "" || c.ServiceAccount == "" {
				return nil, fmt.Errorf("%s: client %q needs tenant and service_account", name, c.Match)
			}
			au.rules = append(au.rules, rule{kind: kind, value: value, tenant: tenant, account: c.ServiceAccount})
		}
		// The first authority whose CA verifies a certificate decides
		// its mapping: a CA (or a CA under it) shared by two authorities
		// would let one tenant's certificates map to another's accounts.
		for _, other := range st.auths {
			for _, c := range au.cas {
				if vouches(other, c, now) {
					return nil, fmt.Errorf("%s: the CA %s is already trusted by authority %s; a CA vouches for one authority only "+
						"(a platform authority can map certificates to several tenants)", name, c.Subject, other.name)
				}
			}
			for _, c := range other.cas {
				if vouches(au, c, now) {
					return nil, fmt.Errorf("%s: the CA of authority %s (%s) is under this authority's CA; a CA vouches for one authority only",
						name, other.name, c.Subject)
				}
			}
		}
		st.auths = append(st.auths, au)
	}
	return st, nil
}

// vouches reports whether a's CAs would verify a certificate issued by ca:
// the same key, or a chain from ca up to one of a's CAs.
func vouches(a *authority, ca *x509.Certificate, now time.Time) bool {
	for _, c := range a.cas {
		if string(c.RawSubjectPublicKeyInfo) == string(ca.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	_, err := ca.Verify(x509.VerifyOptions{Roots: a.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func loadCRL(path string, cas []*x509.Certificate) (*x509.RevocationList, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator names the file.
	if err != nil {
		return nil, fmt.Errorf("crl_file: %w", err)
	}
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("crl_file %s: %w", path, err)
	}
	for _, ca := range cas {
		if crl.CheckSignatureFrom(ca) == nil {
			return crl, nil
		}
	}
	return nil, fmt.Errorf("crl_file %s is not signed by the authority's CA", path)
}

func normFingerprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
}

// Fingerprint is the SHA-256 of a certificate, lower-case hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// TLSClientAuth is the tls.Config.ClientAuth the HTTPS server needs when a
// Verifier is in use: request a certificate, verify it here.
const TLSClientAuth = tls.RequestClientCert

// ErrRefused wraps every reason a presented certificate is refused.
var ErrRefused = errors.New("client certificate refused")

// Identify checks the peer certificates of a connection (leaf first, as
// tls.ConnectionState.PeerCertificates). It returns nil and no error when
// there is none.
func (v *Verifier) Identify(peer []*x509.Certificate) (*Identity, error) {
	if len(peer) == 0 {
		return nil, nil
	}
	leaf := peer[0]
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	fp := Fingerprint(leaf)
	now := v.now()
	st := v.cur.Load()
	for _, a := range st.auths {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			continue
		}
		if slices.ContainsFunc(fingerprints(leaf, chains), func(f string) bool { return a.revoked[f] }) {
			return nil, fmt.Errorf("%w: revoked by fingerprint (authority %s)", ErrRefused, a.name)
		}
		if a.crl != nil {
			if now.After(a.crl.NextUpdate) && !a.crl.NextUpdate.IsZero() {
				return nil, fmt.Errorf("%w: the CRL of authority %s is out of date; publish a new one", ErrRefused, a.name)
			}
			for _, chain := range chains {
				for _, c := range chain[:len(chain)-1] {
					for _, e := range a.crl.RevokedCertificateEntries {
						if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
							return nil, fmt.Errorf("%w: revoked by the CRL of authority %s", ErrRefused, a.name)
						}
					}
				}
			}
		}
		for _, r := range a.rules {
			if matches(r, leaf, fp) {
				return &Identity{Authority: a.name, Tenant: r.tenant, ServiceAccount: r.account, Fingerprint: fp, Subject: leaf.Subject.String()}, nil
			}
		}
		return nil, fmt.Errorf("%w: not mapped to a service account (authority %s)", ErrRefused, a.name)
	}
	return nil, fmt.Errorf("%w: not issued by a known authority, expired, or not for client authentication", ErrRefused)
}

// fingerprints returns the SHA-256 of leaf as presented and, when an ECDSA
// key signed it, of its twin with the signature (r, n-s): ECDSA signatures
// are malleable, both forms verify, so a certificate revoked by its
// fingerprint is refused in either form.
func fingerprints(leaf *x509.Certificate, chains [][]*x509.Certificate) []string {
	fps := []string{Fingerprint(leaf)}
	var c struct {
		TBS, Alg asn1.RawValue
		Sig      asn1.BitString
	}
	if rest, err := asn1.Unmarshal(leaf.Raw, &c); err != nil || len(rest) > 0 {
		return fps
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(c.Sig.Bytes, &sig); err != nil || len(rest) > 0 {
		return fps
	}
	for _, chain := range chains {
		issuer := chain[min(1, len(chain)-1)]
		pub, ok := issuer.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			continue
		}
		twin := struct{ R, S *big.Int }{sig.R, new(big.Int).Sub(pub.Params().N, sig.S)}
		sb, err := asn1.Marshal(twin)
		if err != nil {
			continue
		}
		tc := c
		tc.Sig = asn1.BitString{Bytes: sb, BitLength: 8 * len(sb)}
		raw, err := asn1.Marshal(tc)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(raw)
		if f := hex.EncodeToString(sum[:]); !slices.Contains(fps, f) {
			fps = append(fps, f)
		}
	}
	return fps
}

func matches(r rule, c *x509.Certificate, fp string) bool {
	switch r.kind {
	case "sha256":
		return r.value == fp
	case "cn":
		return c.Subject.CommonName == r.value
	case "dns":
		for _, d := range c.DNSNames {
			if strings.EqualFold(d, r.value) {
				return true
			}
		}
	case "email":
		for _, e := range c.EmailAddresses {
			if strings.EqualFold(e, r.value) {
				return true
			}
		}
	case "uri":
		for _, u := range c.URIs {
			if u.String() == r.value {
				return true
			}
		}
	}
	return false
}

type identityKey struct{}

// FromContext returns the accepted client certificate of a request that
// passed [Verifier.Middleware], or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// RequiredFor reports whether access tokens of tenant need a client
// certificate (a tenant authority, or a platform one, with require = true).
func (v *Verifier) RequiredFor(tenant string) bool {
	for _, a := range v.cur.Load().auths {
		if a.require && (a.tenant == "" || a.tenant == tenant) {
			return true
		}
	}
	return false
}

func (v *Verifier) platformRequired() bool {
	for _, a := range v.cur.Load().auths {
		if a.require && a.tenant == "" {
			return true
		}
	}
	return false
}

// Middleware identifies the client certificate of each request. A
// presented certificate that is refused gets 401 (whatever the route: a
// client offering a revoked certificate is told so); under /api/ and
// /oauth2/, a request without one gets 401 when a platform authority
// requires certificates. Accepted identities are in the request context
// ([FromContext]).
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var peer []*x509.Certificate
		if r.TLS != nil {
			peer = r.TLS.PeerCertificates
		}
		id, err := v.Identify(peer)
		if err != nil {
			problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: CodeRefused, Title: "Client certificate refused",
				Detail: strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ") + "."})
			return
		}
		if id == nil {
			if v.platformRequired() && (strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/oauth2/")) {
				problem.Write(w, r, problem.Problem{Status: http.StatusUnauthorized, Code: CodeRequired, Title: "Client certificate required",
					Detail: "This API requires a TLS client certificate issued by the platform's client CA."})
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// Check decides whether an API access token of (tenant, account) is
// accepted on this request: when the tenant requires certificates, the
// request's certificate must map to that same account; a certificate
// mapped to another account is refused in every case. It returns nil or a
// 401 problem.
func (v *Verifier) Check(ctx context.Context, tenant, account string) *problem.Problem {
	id := FromContext(ctx)
	if id == nil {
		if v.RequiredFor(tenant) {
			return &problem.Problem{Status: http.StatusUnauthorized, Code: CodeRequired, Title: "Client certificate required",
				Detail: "This tenant's API clients must present their TLS client certificate."}
		}
		return nil
	}
	if id.Tenant != tenant || id.ServiceAccount != account {
		return &problem.Problem{Status: http.StatusUnauthorized, Code: CodeMismatch, Title: "Client certificate mismatch",
			Detail: "The client certificate belongs to another service account than the access token."}
	}
	return nil
}

// Package acme obtains and renews the HTTPS certificate from an ACME
// certificate authority (RFC 8555), for control NET-3.
//
// Most callers need [New], then [Manager.Ensure] once at start-up (it
// loads the certificate from the store, or orders one), [Manager.Run] for
// the lifetime of the server (renewal), and the Manager itself as the
// tlsconf.CertSource of the HTTPS server. [Manager.HTTPHandler] answers
// http-01 challenges on the plain-HTTP port when there is one; tls-alpn-01
// challenges are answered on the HTTPS port by GetCertificate.
//
// The policy, in short:
//   - keys are ECDSA P-256, always: there is no RSA fallback for clients
//     that cannot do ECDSA (golang.org/x/crypto/acme/autocert would order
//     and serve an RSA certificate to them; this package never does);
//   - a certificate is renewed once two thirds of its lifetime have passed
//     (30 days before the end of a 90-day certificate, 15 days before the
//     end of a 45-day one, 2 days before the end of a 6-day one), or when
//     the operator forces it with [Manager.Renew];
//   - the account key, the certificate and its key, and pending challenges
//     live in the store (table acme_state, private keys wrapped by the
//     master key), so several nodes share one certificate; a lease in the
//     same table lets one node at a time order, the others pick the result
//     up at their next check;
//   - orders never start from a TLS handshake: a client cannot make the
//     server talk to the CA;
//   - with Options.Registerer, the certificate's expiry is the metric
//     relais_certificate_expiry_timestamp_seconds{source="acme"} (the name
//     internal/monitor uses; relais serve reports it through monitor).
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	xacme "golang.org/x/crypto/acme"
	"golang.org/x/time/rate"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
)

// LetsEncrypt is the production directory of Let's Encrypt.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Defaults of [Options].
const (
	DefaultCheckInterval = 10 * time.Minute
	DefaultLease         = 10 * time.Minute
	// RenewFraction is the part of a certificate's lifetime after which it
	// is renewed.
	RenewFraction = 2.0 / 3.0
)

// Options configure a [Manager].
type Options struct {
	// Domains are the DNS names of the certificate (at least one).
	Domains []string
	// DirectoryURL is the CA's ACME directory; empty means [LetsEncrypt].
	DirectoryURL string
	// Email is the account contact (optional, recommended).
	Email string
	// DB holds the shared state; Master wraps its private keys.
	DB     *store.DB
	Master keys.MasterKey
	// HTTPClient talks to the CA (nil: http.DefaultClient). Tests set one
	// that trusts the test CA.
	HTTPClient *http.Client
	// Node names this process in the renewal lease (a random id is fine).
	Node string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// CheckInterval is how often Run checks for a renewal or a certificate
	// renewed by another node; zero means DefaultCheckInterval.
	CheckInterval time.Duration
	// Lease bounds how long one node may hold the renewal lease; zero
	// means DefaultLease.
	Lease time.Duration
	// Challenge restricts validation to one type: "tls-alpn-01" (on the
	// HTTPS port) or "http-01" (on port 80, through HTTPHandler). Empty
	// means tls-alpn-01 when the CA offers it, else http-01.
	Challenge string
	// Logger and Registerer are optional.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Manager obtains, stores, renews and serves the certificate. It is safe for
// concurrent use.
type Manager struct {
	opts   Options
	name   string // "<domains>" key of the rows
	log    *slog.Logger
	now    func() time.Time
	cur    atomic.Pointer[tls.Certificate]
	mu     sync.Mutex // serialises Ensure/Renew in this process
	chMu   sync.Mutex
	alpn   map[string]*tls.Certificate // domain -> tls-alpn-01 certificate
	http01 map[string]string           // token -> key authorisation
	// lookups bounds the store reads for challenges this node does not
	// hold (accepted by another node): they come from unauthenticated
	// requests, and on SQLite every transaction takes the write lock.
	lookups *rate.Limiter

	// Issued counts the certificates this Manager obtained from the CA.
	issued atomic.Int64
}

// New checks the options and returns a Manager holding no certificate yet:
// call Ensure before serving.
func New(opts Options) (*Manager, error) {
	if len(opts.Domains) == 0 {
		return nil, errors.New("acme: no domain; give at least one DNS name (--acme-domain)")
	}
	ds := make([]string, 0, len(opts.Domains))
	for _, d := range opts.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || strings.ContainsAny(d, " /:*") || strings.HasSuffix(d, ".") {
			return nil, fmt.Errorf("acme: %q is not a DNS name the CA can validate; give a plain name such as relais.example.com", d)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	opts.Domains = slices.Compact(ds)
	switch opts.Challenge {
	case "", "tls-alpn-01", "http-01":
	default:
		return nil, fmt.Errorf("acme: challenge %q: use tls-alpn-01 or http-01", opts.Challenge)
	}
	if opts.DB == nil || opts.Master == nil {
		return nil, errors.New("acme: the store and the master key are required")
	}
	if opts.DirectoryURL == "" {
		opts.DirectoryURL = LetsEncrypt
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.Lease < 2*time.Minute {
		return nil, errors.New("acme: the renewal lease must be at least 2 minutes (an order must fit in it)")
	}
	if opts.Node == "" {
		opts.Node = randomToken()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts, name: strings.Join(opts.Domains, ","), log: opts.Logger, now: opts.Now,
		alpn: map[string]*tls.Certificate{}, http01: map[string]string{},
		lookups: rate.NewLimiter(rate.Limit(challengeLookupsPerSecond), challengeLookupBurst)}
	if opts.Registerer != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "relais_certificate_expiry_timestamp_seconds",
			Help:        "When the serving certificate expires.",
			ConstLabels: prometheus.Labels{"source": "acme"},
		}, func() float64 {
			if l := m.Leaf(); l != nil {
				return float64(l.NotAfter.Unix())
			}
			return 0
		})
		if err := opts.Registerer.Register(g); err != nil {
			return nil, fmt.Errorf("acme: register metric: %w", err)
		}
	}
	return m, nil
}

// Domains returns the certificate's names, sorted.
func (m *Manager) Domains() []string { return slices.Clone(m.opts.Domains) }

// Issued reports how many certificates this Manager obtained from the CA
// (not those loaded from the store).
func (m *Manager) Issued() int64 { return m.issued.Load() }

// Leaf returns the served certificate, or nil.
func (m *Manager) Leaf() *x509.Certificate {
	if c := m.cur.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// RenewAt is when a certificate is due for renewal: after RenewFraction of
// its lifetime.
func RenewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(time.Duration(float64(life) * RenewFraction))
}

// GetCertificate implements tlsconf.CertSource: the challenge certificate
// for a tls-alpn-01 validation from the CA, otherwise the current
// certificate. It never contacts the CA.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == xacme.ALPNProto {
		return m.challengeCert(hello)
	}
	c := m.cur.Load()
	if c == nil {
		return nil, errors.New("no ACME certificate obtained yet; check the logs for the order's error")
	}
	return c, nil
}

// ALPNProto is the protocol the HTTPS server must also advertise (append it
// to tls.Config.NextProtos) for tls-alpn-01 challenges to work.
const ALPNProto = xacme.ALPNProto

// Limits of the store look-ups for challenges held by another node: a CA
// validates from a few vantage points at once and retries, so a handful per
// second is plenty; a flood of unauthenticated probes is answered from
// memory only.
const (
	challengeLookupsPerSecond = 5
	challengeLookupBurst      = 20
)

// lookupAllowed reports whether a store look-up for an unknown challenge
// may run now.
func (m *Manager) lookupAllowed() bool { return m.lookups.Allow() }

func (m *Manager) challengeCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	m.chMu.Lock()
	c := m.alpn[name]
	m.chMu.Unlock()
	if c != nil {
		return c, nil
	}
	// Only the configured names are ever validated; anything else is a
	// probe and never reaches the store.
	if !slices.Contains(m.opts.Domains, name) || !m.lookupAllowed() {
		return nil, fmt.Errorf("acme: no pending tls-alpn-01 challenge for %q", name)
	}
	// Another node may have accepted the challenge: the CA can reach any.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := m.load(ctx, "alpn:"+name)
	if err != nil || r == nil || r.notAfter.Before(m.now()) {
		return nil, fmt.Errorf("acme: no pending tls-alpn-01 challenge for %q", name)
	}
	cert, err := tls.X509KeyPair(r.public, r.secret)
	if err != nil {
		return nil, fmt.Errorf("acme: stored challenge for %q: %w", name, err)
	}
	return &cert, nil
}

// HTTPHandler answers http-01 challenges under /.well-known/acme-challenge/
// and passes every other request to fallback.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	const prefix = "/.well-known/acme-challenge/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			fallback.ServeHTTP(w, r)
			return
		}
		token := strings.TrimPrefix(r.URL.Path, prefix)
		m.chMu.Lock()
		v, ok := m.http01[token]
		m.chMu.Unlock()
		if !ok && token != "" && len(token) < 200 && m.lookupAllowed() {
			if rec, err := m.load(r.Context(), "http01:"+token); err == nil && rec != nil && rec.notAfter.After(m.now()) {
				v, ok = string(rec.public), true
			}
		}
		if !ok {
			http.Error(w, "no such challenge", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(v))
	})
}

// Load installs the certificate stored by any node, without contacting the
// CA (for status reports, and for nodes that must not order).
func (m *Manager) Load(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadCert(ctx)
}

// Ensure makes a valid certificate available: it loads the stored one,
// and orders a new one when there is none or it is due for renewal (and no
// other node holds the renewal lease). It returns an error only when no
// usable certificate is loaded afterwards.
func (m *Manager) Ensure(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ensure(ctx, false)
}

// Renew orders a new certificate now, whatever the current one's dates
// (an operator's forced renewal, or after a key compromise). It fails when
// another node holds the renewal lease.
func (m *Manager) Renew(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ensure(ctx, true)
}

func (m *Manager) ensure(ctx context.Context, force bool) error {
	if err := m.loadCert(ctx); err != nil {
		m.log.Warn("acme: stored certificate unusable", "error", err)
	}
	now := m.now()
	leaf := m.Leaf()
	if !force && leaf != nil && now.Before(RenewAt(leaf)) {
		return nil
	}
	got, err := m.lease(ctx, now)
	if err != nil {
		return err
	}
	if !got {
		if force {
			return errors.New("acme: another node is renewing the certificate now; try again in a few minutes")
		}
		if leaf == nil || now.After(leaf.NotAfter) {
			return errors.New("acme: no valid certificate yet and another node is ordering one; it is picked up at the next check")
		}
		return nil
	}
	defer m.release(context.WithoutCancel(ctx))
	// The order must end while this node holds the lease.
	octx, cancel := context.WithTimeout(ctx, m.opts.Lease-time.Minute/2)
	defer cancel()
	if err := m.obtain(octx); err != nil {
		if leaf != nil && now.Before(leaf.NotAfter) {
			m.log.Error("acme: renewal failed; still serving the current certificate", "error", err, "not_after", leaf.NotAfter)
			if force {
				return err
			}
			return nil
		}
		return err
	}
	return nil
}

// Run checks at once, then every CheckInterval (every 5 minutes after a
// failure) until ctx ends, obtaining the first certificate, renewing it when
// due and loading one renewed by another node. The HTTPS listener must be
// serving meanwhile: the CA validates tls-alpn-01 challenges through it.
func (m *Manager) Run(ctx context.Context) error {
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = m.opts.CheckInterval
		if err := m.Ensure(ctx); err != nil {
			m.log.Error("acme: certificate check failed", "error", err)
			wait = min(wait, 5*time.Minute)
		}
	}
}

// loadCert installs the stored certificate when it differs from the
// served one.
func (m *Manager) loadCert(ctx context.Context) error {
	r, err := m.load(ctx, "cert:"+m.name)
	if err != nil || r == nil {
		return err
	}
	if cur := m.cur.Load(); cur != nil && len(cur.Certificate) > 0 && string(cur.Certificate[0]) == string(r.firstDER) {
		return nil
	}
	cert, err := tls.X509KeyPair(r.public, r.secret)
	if err != nil {
		return fmt.Errorf("stored certificate: %w", err)
	}
	if err := m.check(&cert); err != nil {
		return fmt.Errorf("stored certificate: %w", err)
	}
	m.cur.Store(&cert)
	return nil
}

// check enforces the policy on a certificate before it is served: an
// ECDSA P-256 key matching the leaf, naming every domain.
func (m *Manager) check(cert *tls.Certificate) error {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("certificate key is %T, not ECDSA P-256", leaf.PublicKey)
	}
	for _, d := range m.opts.Domains {
		if err := leaf.VerifyHostname(d); err != nil {
			return fmt.Errorf("certificate does not name %s", d)
		}
	}
	cert.Leaf = leaf
	return nil
}

// obtain runs one ACME order and stores the result.
func (m *Manager) obtain(ctx context.Context) error {
	client, err := m.client(ctx)
	if err != nil {
		return err
	}
	order, err := client.AuthorizeOrder(ctx, xacme.DomainIDs(m.opts.Domains...))
	if err != nil {
		return fmt.Errorf("acme: new order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, client, u); err != nil {
			return err
		}
	}
	orderURI := order.URI
	if order, err = client.WaitOrder(ctx, orderURI); err != nil {
		return fmt.Errorf("acme: order: %w", err)
	}
	if order.URI == "" {
		order.URI = orderURI
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("acme: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: m.opts.Domains[0]}, DNSNames: m.opts.Domains}, key)
	if err != nil {
		return fmt.Errorf("acme: certificate request: %w", err)
	}
	ders, _, err := client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return fmt.Errorf("acme: finalize: %w", err)
	}
	if len(ders) == 0 {
		return errors.New("acme: the CA returned no certificate")
	}
	var chain []byte
	for _, d := range ders {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(chain, keyPEM)
	if err != nil {
		return fmt.Errorf("acme: issued certificate: %w", err)
	}
	if err := m.check(&cert); err != nil {
		return fmt.Errorf("acme: issued certificate refused: %w", err)
	}
	name := "cert:" + m.name
	leaf := cert.Leaf
	err = m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if err := m.put(ctx, p, name, chain, keyPEM, leaf.NotAfter); err != nil {
			return err
		}
		_, err := audit.Append(ctx, p.Tenant(""), audit.Event{
			Category: audit.CategoryKey, Action: "tls.certificate.issue", ObjectType: "tls_certificate", ObjectID: m.name,
			Actor: audit.Actor{Type: "system", ID: "acme"},
			Details: map[string]any{"serial": leaf.SerialNumber.Text(16), "not_after": leaf.NotAfter.UTC().Format(time.RFC3339),
				"issuer": leaf.Issuer.CommonName, "node": m.opts.Node, "key": "ECDSA P-256"},
		})
		return err
	})
	clear(keyPEM)
	if err != nil {
		return fmt.Errorf("acme: store certificate: %w", err)
	}
	m.cur.Store(&cert)
	m.issued.Add(1)
	m.log.Info("acme: certificate obtained", "domains", m.name, "not_after", leaf.NotAfter, "renew_at", RenewAt(leaf))
	return nil
}

// authorize completes one authorisation with tls-alpn-01 (preferred: it
// needs only the HTTPS port) or http-01.
func (m *Manager) authorize(ctx context.Context, client *xacme.Client, url string) error {
	z, err := client.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("acme: authorization: %w", err)
	}
	if z.Status == xacme.StatusValid {
		return nil
	}
	domain := z.Identifier.Value
	var chal *xacme.Challenge
	types := []string{"tls-alpn-01", "http-01"}
	if m.opts.Challenge != "" {
		types = []string{m.opts.Challenge}
	}
	for _, typ := range types {
		for _, c := range z.Challenges {
			if c.Type == typ {
				chal = c
				break
			}
		}
		if chal != nil {
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("acme: the CA offers no %s challenge for %s", strings.Join(types, " or "), domain)
	}
	expires := m.now().Add(time.Hour)
	var cleanup func()
	switch chal.Type {
	case "tls-alpn-01":
		cert, err := client.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return fmt.Errorf("acme: challenge certificate: %w", err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
		keyPEM, err := marshalKey(cert.PrivateKey.(crypto.Signer))
		if err != nil {
			return err
		}
		if err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
			return m.put(ctx, p, "alpn:"+domain, certPEM, keyPEM, expires)
		}); err != nil {
			return fmt.Errorf("acme: store challenge: %w", err)
		}
		m.chMu.Lock()
		m.alpn[domain] = &cert
		m.chMu.Unlock()
		cleanup = func() {
			m.chMu.Lock()
			delete(m.alpn, domain)
			m.chMu.Unlock()
			m.remove(context.WithoutCancel(ctx), "alpn:"+domain)
		}
	default:
		resp, err := client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return fmt.Errorf("acme: challenge response: %w", err)
		}
		if err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
			return m.put(ctx, p, "http01:"+chal.Token, []byte(resp), nil, expires)
		}); err != nil {
			return fmt.Errorf("acme: store challenge: %w", err)
		}
		m.chMu.Lock()
		m.http01[chal.Token] = resp
		m.chMu.Unlock()
		cleanup = func() {
			m.chMu.Lock()
			delete(m.http01, chal.Token)
			m.chMu.Unlock()
			m.remove(context.WithoutCancel(ctx), "http01:"+chal.Token)
		}
	}
	defer cleanup()
	if _, err := client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("acme: accept %s challenge for %s: %w", chal.Type, domain, err)
	}
	if _, err := client.WaitAuthorization(ctx, url); err != nil {
		return fmt.Errorf("acme: %s validation of %s failed: %w", chal.Type, domain, err)
	}
	return nil
}

// client returns an ACME client with the shared account key, registering
// the account when needed.
func (m *Manager) client(ctx context.Context) (*xacme.Client, error) {
	name := "account:" + m.opts.DirectoryURL
	r, err := m.load(ctx, name)
	if err != nil {
		return nil, err
	}
	var key crypto.Signer
	if r != nil {
		if key, err = parseKey(r.secret); err != nil {
			return nil, fmt.Errorf("acme: stored account key: %w", err)
		}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		keyPEM, err := marshalKey(k)
		if err != nil {
			return nil, err
		}
		// Another node may have created one meanwhile: keep the first.
		if err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
			return m.insertIfAbsent(ctx, p, name, keyPEM)
		}); err != nil {
			return nil, fmt.Errorf("acme: store account key: %w", err)
		}
		clear(keyPEM)
		if r, err = m.load(ctx, name); err != nil || r == nil {
			return nil, fmt.Errorf("acme: reload account key: %v", err)
		}
		if key, err = parseKey(r.secret); err != nil {
			return nil, err
		}
	}
	c := &xacme.Client{Key: key, DirectoryURL: m.opts.DirectoryURL, HTTPClient: m.opts.HTTPClient, UserAgent: "relais"}
	acct := &xacme.Account{}
	if m.opts.Email != "" {
		acct.Contact = []string{"mailto:" + m.opts.Email}
	}
	if _, err := c.Register(ctx, acct, xacme.AcceptTOS); err != nil && !errors.Is(err, xacme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: register account at %s: %w", m.opts.DirectoryURL, err)
	}
	return c, nil
}

func marshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("acme: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(p []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(*ecdsa.PrivateKey)
	if !ok || s.Curve != elliptic.P256() {
		return nil, errors.New("key is not ECDSA P-256")
	}
	return s, nil
}

func randomToken() string {
	return rand.Text()
}

// ---- store ----

type row struct {
	public, secret []byte
	firstDER       []byte
	notAfter       time.Time
}

func aad(name string) []byte { return []byte("relais/acme-state/v1|" + name) }

func (m *Manager) load(ctx context.Context, name string) (*row, error) {
	var pub, wrapped []byte
	var notAfter int64
	err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
		return p.QueryRow(ctx, `SELECT public, secret_wrap, not_after FROM acme_state WHERE name = $1`, name).Scan(&pub, &wrapped, &notAfter)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("acme: read %s: %w", strings.SplitN(name, ":", 2)[0], err)
	}
	r := &row{public: pub, notAfter: store.FromMicros(notAfter)}
	if len(wrapped) > 0 {
		if r.secret, err = m.opts.Master.Unwrap(ctx, wrapped, aad(name)); err != nil {
			return nil, fmt.Errorf("acme: unwrap %s: %w", strings.SplitN(name, ":", 2)[0], err)
		}
	}
	if b, _ := pem.Decode(pub); b != nil {
		r.firstDER = b.Bytes
	}
	return r, nil
}

func (m *Manager) wrap(ctx context.Context, name string, secret []byte) ([]byte, error) {
	if secret == nil {
		return []byte{}, nil
	}
	return m.opts.Master.Wrap(ctx, secret, aad(name))
}

func (m *Manager) put(ctx context.Context, p *store.PlatformTx, name string, public, secret []byte, notAfter time.Time) error {
	w, err := m.wrap(ctx, name, secret)
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, `INSERT INTO acme_state (name, public, secret_wrap, not_after, updated_at, lease_owner, lease_until)
		VALUES ($1, $2, $3, $4, $5, '', 0)
		ON CONFLICT (name) DO UPDATE SET public = excluded.public, secret_wrap = excluded.secret_wrap,
			not_after = excluded.not_after, updated_at = excluded.updated_at`,
		name, public, w, store.Micros(notAfter), store.Micros(m.now()))
	return err
}

func (m *Manager) insertIfAbsent(ctx context.Context, p *store.PlatformTx, name string, secret []byte) error {
	w, err := m.wrap(ctx, name, secret)
	if err != nil {
		return err
	}
	_, err = p.Exec(ctx, `INSERT INTO acme_state (name, public, secret_wrap, not_after, updated_at, lease_owner, lease_until)
		VALUES ($1, $2, $3, 0, $4, '', 0) ON CONFLICT (name) DO NOTHING`, name, []byte{}, w, store.Micros(m.now()))
	return err
}

func (m *Manager) remove(ctx context.Context, name string) {
	if err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `DELETE FROM acme_state WHERE name = $1`, name)
		return err
	}); err != nil {
		m.log.Warn("acme: removing a finished challenge failed", "error", err)
	}
}

// lease takes the renewal lease of this certificate for Options.Lease,
// unless another node holds an unexpired one.
func (m *Manager) lease(ctx context.Context, now time.Time) (bool, error) {
	name := "lock:" + m.name
	var got bool
	err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if _, err := p.Exec(ctx, `INSERT INTO acme_state (name, public, secret_wrap, not_after, updated_at, lease_owner, lease_until)
			VALUES ($1, $2, $3, 0, $4, '', 0) ON CONFLICT (name) DO NOTHING`, name, []byte{}, []byte{}, store.Micros(now)); err != nil {
			return err
		}
		res, err := p.Exec(ctx, `UPDATE acme_state SET lease_owner = $2, lease_until = $3, updated_at = $4
			WHERE name = $1 AND (lease_until < $4 OR lease_owner = $2)`,
			name, m.opts.Node, store.Micros(now.Add(m.opts.Lease)), store.Micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("acme: renewal lease: %w", err)
	}
	return got, nil
}

func (m *Manager) release(ctx context.Context) {
	if err := m.opts.DB.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `UPDATE acme_state SET lease_owner = '', lease_until = 0 WHERE name = $1 AND lease_owner = $2`,
			"lock:"+m.name, m.opts.Node)
		return err
	}); err != nil {
		m.log.Warn("acme: releasing the renewal lease failed; it expires by itself", "error", err)
	}
}

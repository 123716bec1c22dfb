package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/web"
	"github.com/relais-dev/relais/internal/web/acme"
	"github.com/relais-dev/relais/internal/web/mtls"
	"github.com/relais-dev/relais/internal/web/proxyproto"
	"github.com/relais-dev/relais/internal/web/ratelimit"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// lateSource is the certificate source of an ACME front: the ACME manager
// needs the store, which is opened after the listeners, so it is plugged in
// by Serve.
type lateSource struct {
	cur atomic.Pointer[acme.Manager]
}

func (l *lateSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := l.cur.Load()
	if m == nil {
		return nil, errors.New("the ACME certificate manager is not started yet")
	}
	return m.GetCertificate(hello)
}

// edgeFront holds the front's NET-3/NET-4 parts.
type edgeFront struct {
	acme        *lateSource // nil without ACME
	certs       *tlsconf.CertStore
	certSource  string // "file", "self-signed" or "acme"
	clientCerts *mtls.Verifier
}

// prepareEdge loads the client-certificate authorities and adapts the TLS
// configuration for ACME (tls-alpn-01) and mTLS.
func prepareEdge(cfg config.Config, tlsCfg *tls.Config, e *edgeFront, now func() time.Time) error {
	if e.acme != nil {
		tlsCfg.NextProtos = append(tlsCfg.NextProtos, acme.ALPNProto)
	}
	if cfg.TLS.ClientAuthFile != "" {
		v, err := mtls.Load(cfg.TLS.ClientAuthFile, now)
		if err != nil {
			return err
		}
		e.clientCerts = v
		tlsCfg.ClientAuth = mtls.TLSClientAuth
	}
	return nil
}

// NewACME builds the ACME manager of the configuration (tls.acme_*); reg
// may be nil.
func (a *App) NewACME(reg prometheus.Registerer, node string) (*acme.Manager, error) {
	cfg := a.Config
	if len(cfg.TLS.ACMEDomains) == 0 {
		return nil, errors.New("ACME is not configured: set tls.acme_domains (or --acme-domain)")
	}
	var hc *http.Client
	if cfg.TLS.ACMECAFile != "" {
		pemData, err := os.ReadFile(cfg.TLS.ACMECAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("tls.acme_ca_file %s holds no PEM certificate", cfg.TLS.ACMECAFile)
		}
		hc = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}}
	}
	return acme.New(acme.Options{Domains: cfg.TLS.ACMEDomains, DirectoryURL: cfg.TLS.ACMEDirectory, Email: cfg.TLS.ACMEEmail,
		DB: a.DB, Master: a.Master, Node: node, Logger: a.Log, Registerer: reg, HTTPClient: hc,
		CheckInterval: cfg.TLS.ACMECheckInterval.D()})
}

// startEdge starts the ACME manager and the authorities reload and returns
// the edge options of the web server.
func (a *App) startEdge(ctx context.Context, f *Front, reg prometheus.Registerer, node string) (web.Options, error) {
	cfg := a.Config
	var o web.Options
	e := &f.edge
	if e.acme != nil {
		m, err := a.NewACME(nil, node) // its expiry is reported through Front.Certificate
		if err != nil {
			return o, err
		}
		e.acme.cur.Store(m)
		o.HTTPChallenge = m.HTTPHandler
		go func() { _ = m.Run(ctx) }()
	}
	if e.clientCerts != nil {
		o.ClientCerts = e.clientCerts
		go e.clientCerts.Run(ctx, time.Minute, a.Log)
	}
	if len(cfg.HTTP.ProxyProtocolFrom) > 0 {
		var trusted []netip.Prefix
		for _, p := range cfg.HTTP.ProxyProtocolFrom {
			pr, err := netip.ParsePrefix(p) // validated by config
			if err != nil {
				return o, fmt.Errorf("http.proxy_protocol_from: %w", err)
			}
			trusted = append(trusted, pr)
		}
		f.Listeners.HTTPS = proxyproto.Wrap(f.Listeners.HTTPS, trusted, cfg.HTTP.ReadHeaderTimeout.D())
	}
	rl := cfg.HTTP.RateLimit
	if rl.IPPerMinute > 0 || rl.CredentialPerMinute > 0 {
		o.RateLimit = ratelimit.New(ratelimit.Options{
			PerIP:         ratelimit.Rate{PerSecond: float64(rl.IPPerMinute) / 60, Burst: rl.IPBurst},
			PerCredential: ratelimit.Rate{PerSecond: float64(rl.CredentialPerMinute) / 60, Burst: rl.CredentialBurst},
			SessionCookie: web.SessionCookie, Registerer: reg,
		})
	}
	o.MaxHeaderBytes = cfg.HTTP.MaxHeaderBytes
	return o, nil
}

// CertInfo describes the serving certificate. Its fields are those of
// monitor.CertInfo, so one converts to the other.
type CertInfo struct {
	Subject  string    `json:"subject"`
	DNSNames []string  `json:"dns_names,omitempty"`
	KeyType  string    `json:"key_type"` // "ECDSA P-256", "RSA 2048"...
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	Source   string    `json:"source"` // "file", "self-signed", "acme"
}

// Certificate describes the certificate the front serves now (for the
// expiry metric, the alert and the compliance report: NET-3). Before an
// ACME certificate is obtained it returns an error.
func (f *Front) Certificate(context.Context) (CertInfo, error) {
	var leaf *x509.Certificate
	switch {
	case f.edge.acme != nil:
		if m := f.edge.acme.cur.Load(); m != nil {
			leaf = m.Leaf()
		}
	case f.edge.certs != nil:
		leaf = f.edge.certs.Leaf()
	}
	if leaf == nil {
		return CertInfo{}, errors.New("no certificate served yet (ACME order pending)")
	}
	return CertInfo{Subject: leaf.Subject.String(), DNSNames: slices.Clone(leaf.DNSNames), KeyType: keyType(leaf),
		Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter, Source: f.edge.certSource}, nil
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return c.PublicKeyAlgorithm.String()
}

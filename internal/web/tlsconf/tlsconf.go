// Package tlsconf holds the TLS policy of Relais (control NET-2), following
// the ANSSI guide SDE-NT-35 "Recommandations de sécurité relatives à TLS".
//
// Most callers need three functions:
//
//   - [ServerConfig] (or [ServerConfigAndRotator], which also returns the
//     session-ticket key rotator so its [TicketKeyRotator.Run] loop can be
//     started) builds the *tls.Config of the HTTPS server;
//   - [LoadKeyPair] loads operator-supplied certificate files, and
//     [LoadOrCreateSelfSigned] provides a self-signed ECDSA P-256 certificate
//     when none is supplied;
//   - [RedirectHandler] serves the plain-HTTP port, which only redirects to
//     HTTPS (control NET-1).
//
// The policy, in short: TLS 1.2 and 1.3 only; in TLS 1.2 only ECDHE key
// exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), with ECDSA
// certificates (RSA >= 2048 bits tolerated, in which case the ECDHE_RSA
// twins are enabled for that certificate only); key exchange groups
// X25519MLKEM768, X25519, P-256 and P-384; no renegotiation; session ticket
// keys replaced at least every 24 hours. TLS 1.3 cipher suites are not
// configurable in Go; the three it implements (AES-128-GCM, AES-256-GCM,
// ChaCha20-Poly1305) are all AEAD suites recommended by the guide.
//
// Certificates reach the server through a [CertSource], so they can be
// replaced while the server runs ([CertStore.Set] for files, or the ACME
// manager of internal/web/acme). There is no option that weakens the
// policy; docs/security.md maps it to ANSSI's recommendations.
package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// DefaultTicketKeyRotation is the session ticket key period used when
// [Options.TicketKeyRotation] is zero, and also the longest period allowed.
const DefaultTicketKeyRotation = 24 * time.Hour

// MinTicketKeyRotation is the shortest session ticket key period accepted.
// It exists to catch unit mistakes ("24" read as 24ns) rather than for
// security: a shorter period is never less safe.
const MinTicketKeyRotation = time.Minute

// Options configures [ServerConfig].
type Options struct {
	// Cert supplies the server certificate for each handshake. Required.
	// A [*CertStore] is the usual choice.
	Cert CertSource

	// Clock returns the current time. Nil means time.Now. It drives the
	// session ticket key rotation and is installed as tls.Config.Time.
	Clock func() time.Time

	// TicketKeyRotation is how often a fresh session ticket key is made.
	// Zero means DefaultTicketKeyRotation (24h); values above 24h, or
	// below MinTicketKeyRotation, are an error.
	TicketKeyRotation time.Duration
}

// CipherSuites returns the TLS 1.2 cipher suites of the policy, as a fresh
// slice: the three ECDHE_ECDSA AEAD suites and, when rsaKey is true, their
// ECDHE_RSA twins. Every suite uses ephemeral (EC)DHE key exchange and an
// AEAD cipher; CBC and static-RSA key exchange suites are never included.
func CipherSuites(rsaKey bool) []uint16 {
	suites := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	if rsaKey {
		suites = append(suites,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		)
	}
	return suites
}

// CurvePreferences returns the key exchange groups of the policy, as a fresh
// slice: the hybrid post-quantum X25519MLKEM768 (X25519 combined with
// ML-KEM-768; allowed because its security is at least that of X25519
// alone), then X25519, P-256 and P-384. Go ignores the order of this list
// and applies its own preference, which favours the hybrid group.
func CurvePreferences() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
}

// ServerConfig returns the server-side *tls.Config of the policy.
//
// The returned config selects the certificate at each handshake from
// opts.Cert, checks it against the policy (ECDSA P-256/P-384/P-521 or RSA of
// at least 2048 bits; anything else fails the handshake with an error that
// names the problem) and enables the ECDHE_RSA suites only for a handshake
// whose certificate has an RSA key. It advertises "h2" and "http/1.1" by
// ALPN; set NextProtos on the returned config before first use to change
// that, but change nothing else.
//
// Session ticket keys are owned by a [TicketKeyRotator] attached to the
// config. Keys are rotated lazily at the first handshake after each period,
// so the 24h bound holds even if nobody runs the rotator's loop; use
// [ServerConfigAndRotator] to also run [TicketKeyRotator.Run], which drops
// old keys on an idle server too.
func ServerConfig(opts Options) (*tls.Config, error) {
	cfg, _, err := ServerConfigAndRotator(opts)
	return cfg, err
}

// ServerConfigAndRotator is [ServerConfig] that also returns the session
// ticket key rotator attached to the config, so the caller can run
// rot.Run(ctx) for the lifetime of the server.
func ServerConfigAndRotator(opts Options) (*tls.Config, *TicketKeyRotator, error) {
	if opts.Cert == nil {
		return nil, nil, errors.New("tls server config: no certificate source; load a certificate (tlsconf.LoadKeyPair or tlsconf.LoadOrCreateSelfSigned) into a tlsconf.CertStore and pass it as Options.Cert")
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	period := opts.TicketKeyRotation
	if period == 0 {
		period = DefaultTicketKeyRotation
	}
	if err := checkRotationPeriod(period); err != nil {
		return nil, nil, fmt.Errorf("tls server config: %w", err)
	}

	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     CipherSuites(false),
		CurvePreferences: CurvePreferences(),
		// Renegotiation only applies to clients; Go servers never
		// renegotiate. Set explicitly to record the policy.
		Renegotiation: tls.RenegotiateNever,
		NextProtos:    []string{"h2", "http/1.1"},
		Time:          clock,
	}
	rot, err := NewTicketKeyRotator(base, period, clock)
	if err != nil {
		return nil, nil, fmt.Errorf("tls server config: %w", err)
	}
	source := opts.Cert

	// getCertificate asks the source and enforces the key policy. It is
	// also installed as base.GetCertificate so that a copy of base without
	// GetConfigForClient still serves only policy-compliant certificates.
	getCertificate := func(hello *tls.ClientHelloInfo) (*tls.Certificate, keyKind, error) {
		cert, err := source.GetCertificate(hello)
		if err != nil {
			return nil, 0, fmt.Errorf("tls: certificate for server name %q: %w", hello.ServerName, err)
		}
		if cert == nil {
			return nil, 0, fmt.Errorf("tls: certificate source returned no certificate for server name %q; check that a certificate is loaded", hello.ServerName)
		}
		kind, err := certKeyKind(cert)
		if err != nil {
			return nil, 0, fmt.Errorf("tls: certificate for server name %q refused by the TLS policy: %w", hello.ServerName, err)
		}
		return cert, kind, nil
	}
	base.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, _, err := getCertificate(hello)
		return cert, err
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if _, err := rot.RotateIfDue(clock()); err != nil {
			return nil, err
		}
		cert, kind, err := getCertificate(hello)
		if err != nil {
			return nil, err
		}
		// A per-handshake copy: Clone carries the current ticket keys,
		// which the handshake then uses (see tls.Config.GetConfigForClient).
		c := base.Clone()
		c.GetConfigForClient = nil
		c.GetCertificate = nil
		c.Certificates = []tls.Certificate{*cert}
		c.CipherSuites = CipherSuites(kind == rsaKey)
		return c, nil
	}
	return base, rot, nil
}

func checkRotationPeriod(period time.Duration) error {
	if period > DefaultTicketKeyRotation {
		return fmt.Errorf("session ticket key rotation %v is longer than the 24h maximum; set it to 24h or less", period)
	}
	if period < MinTicketKeyRotation {
		return fmt.Errorf("session ticket key rotation %v is shorter than %v; set a duration between %v and 24h (for example 24h)", period, MinTicketKeyRotation, MinTicketKeyRotation)
	}
	return nil
}

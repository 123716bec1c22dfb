package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// MinRSABits is the smallest RSA modulus the policy accepts for a server
// certificate.
const MinRSABits = 2048

// CertSource supplies the server certificate for a handshake. Its one
// method has the signature of tls.Config.GetCertificate, so an ACME client
// such as autocert.Manager satisfies it directly.
//
// Implementations must be safe for concurrent use. The certificate returned
// is checked against the policy at every handshake.
type CertSource interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// CertStore is a [CertSource] holding one certificate that can be replaced
// while the server runs (after a renewal, or a new file from the operator).
// Its zero value holds no certificate and fails every handshake.
type CertStore struct {
	cur atomic.Pointer[tls.Certificate]
}

// NewCertStore returns a CertStore holding cert, which must pass [CertStore.Set].
func NewCertStore(cert tls.Certificate) (*CertStore, error) {
	s := new(CertStore)
	if err := s.Set(cert); err != nil {
		return nil, err
	}
	return s, nil
}

// Set replaces the certificate served by later handshakes. It refuses, and
// keeps the previous certificate, when cert has no leaf, when its private key
// does not match the leaf, or when the key is not ECDSA (P-256, P-384, P-521)
// or RSA of at least [MinRSABits] bits. It does not check validity dates:
// [LoadKeyPair] does, and expiry is monitored elsewhere.
func (s *CertStore) Set(cert tls.Certificate) error {
	leaf, err := checkKeyPair(&cert)
	if err != nil {
		return fmt.Errorf("tls certificate store: %w", err)
	}
	cert.Leaf = leaf
	s.cur.Store(&cert)
	return nil
}

// GetCertificate returns the current certificate; it implements [CertSource].
func (s *CertStore) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cur.Load()
	if c == nil {
		return nil, errors.New("no certificate loaded in the tlsconf.CertStore; call Set with a certificate first")
	}
	return c, nil
}

// Leaf returns the parsed leaf of the current certificate (for expiry
// monitoring and reports), or nil when none is loaded. The caller must not
// modify it.
func (s *CertStore) Leaf() *x509.Certificate {
	c := s.cur.Load()
	if c == nil {
		return nil
	}
	return c.Leaf
}

// keyKind is the key algorithm of a certificate allowed by the policy.
type keyKind int

const (
	ecdsaKey keyKind = iota + 1
	rsaKey
)

// leafOf returns the parsed leaf of cert, parsing it when cert.Leaf is nil.
func leafOf(cert *tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("certificate chain is empty; the certificate file must hold at least one PEM CERTIFICATE block")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse leaf certificate: %w", err)
	}
	return leaf, nil
}

// certKeyKind checks the key of cert's leaf against the policy. It is cheap
// enough to run at every handshake when cert.Leaf is set.
func certKeyKind(cert *tls.Certificate) (keyKind, error) {
	leaf, err := leafOf(cert)
	if err != nil {
		return 0, err
	}
	return publicKeyKind(leaf.PublicKey)
}

func publicKeyKind(pub crypto.PublicKey) (keyKind, error) {
	const advice = "use an ECDSA P-256 certificate (recommended) or RSA of at least 2048 bits"
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return ecdsaKey, nil
		}
		return 0, fmt.Errorf("certificate has an ECDSA key on an unsupported curve; %s", advice)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return 0, fmt.Errorf("certificate has a %d-bit RSA key, below the %d-bit minimum; %s", bits, MinRSABits, advice)
		}
		return rsaKey, nil
	case ed25519.PublicKey:
		return 0, fmt.Errorf("certificate has an Ed25519 key, which TLS clients rarely accept and the policy does not allow; %s", advice)
	default:
		return 0, fmt.Errorf("certificate has an unsupported key type %T; %s", pub, advice)
	}
}

// checkKeyPair checks that cert is a complete key pair allowed by the policy
// and returns its parsed leaf.
func checkKeyPair(cert *tls.Certificate) (*x509.Certificate, error) {
	leaf, err := leafOf(cert)
	if err != nil {
		return nil, err
	}
	if _, err := publicKeyKind(leaf.PublicKey); err != nil {
		return nil, err
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("certificate has no usable private key; load the certificate together with its private key")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("private key does not match the certificate; use the key that was issued with this certificate")
	}
	return leaf, nil
}

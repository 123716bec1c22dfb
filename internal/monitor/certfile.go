package monitor

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// PEMCert is a CertSource reading the serving certificate from its PEM
// file (the operator's tls.cert, or the self-signed one in the data
// directory). An ACME client should provide its own source.
type PEMCert struct {
	Path   string
	Source string // "file" or "self-signed"
}

// Certificate implements CertSource.
func (p PEMCert) Certificate(context.Context) (CertInfo, error) {
	raw, err := os.ReadFile(p.Path) // #nosec G304 -- the operator's configured certificate path
	if err != nil {
		return CertInfo{}, fmt.Errorf("monitor: read certificate: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return CertInfo{}, errors.New("monitor: the certificate file holds no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return CertInfo{}, fmt.Errorf("monitor: parse certificate: %w", err)
	}
	return Describe(c, p.Source), nil
}

// Describe summarises a certificate.
func Describe(c *x509.Certificate, source string) CertInfo {
	kt := c.PublicKeyAlgorithm.String()
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		kt = "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		kt = fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		kt = "Ed25519"
	}
	return CertInfo{Subject: c.Subject.String(), DNSNames: c.DNSNames, KeyType: kt, Issuer: c.Issuer.String(), NotAfter: c.NotAfter.UTC(), Source: source}
}

package mtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// A small private CA for client certificates, for tests and small
// deployments (`relais pki`). Keys are ECDSA P-256; files are PEM, private
// keys PKCS#8 with mode 0600.

// CA is a loaded private CA.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// ClientRequest describes a client certificate to issue.
type ClientRequest struct {
	CommonName string
	DNS        []string
	Emails     []string
	URIs       []string
	Validity   time.Duration
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// NewCA creates a CA certificate and key valid for validity from now.
func NewCA(name string, validity time.Duration, now time.Time) (*CA, error) {
	if name == "" {
		return nil, errors.New("the CA needs a name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: name, Organization: []string{"Relais private CA"}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: c, Key: key}, nil
}

// IssueClient issues a client-authentication certificate and its new key.
func (ca *CA) IssueClient(req ClientRequest, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	if req.CommonName == "" {
		return nil, nil, errors.New("the client certificate needs a common name")
	}
	if req.Validity <= 0 {
		return nil, nil, errors.New("the validity must be positive")
	}
	notAfter := now.Add(req.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: req.CommonName},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:    req.DNS, EmailAddresses: req.Emails,
	}
	for _, u := range req.URIs {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme == "" {
			return nil, nil, fmt.Errorf("URI %q is not an absolute URI", u)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

// CRL makes a certificate revocation list of the given certificates,
// valid until now+validity (number: a CRL number, increasing).
func (ca *CA) CRL(revoked []*x509.Certificate, number int64, validity time.Duration, now time.Time) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, c := range revoked {
		if c.CheckSignatureFrom(ca.Cert) != nil {
			return nil, fmt.Errorf("certificate %s was not issued by this CA", c.Subject)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: now, NextUpdate: now.Add(validity), RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("create CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// CertPEM encodes a certificate.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a private key as PKCS#8.
func KeyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WritePair writes base.crt (0644) and base.key (0600) in dir, refusing to
// overwrite existing files.
func WritePair(dir, base string, c *x509.Certificate, k crypto.Signer) (certPath, keyPath string, err error) {
	keyPEM, err := KeyPEM(k)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s exists already; choose another name or directory (nothing is overwritten)", p)
		}
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certPath, CertPEM(c), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode) // #nosec G304 -- the operator names the directory.
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists already; choose another name or directory (nothing is overwritten)", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// LoadCA reads a CA written by WritePair (base.crt, base.key).
func LoadCA(certPath, keyPath string) (*CA, error) {
	c, err := LoadCert(certPath)
	if err != nil {
		return nil, err
	}
	if !c.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	kb, err := os.ReadFile(keyPath) // #nosec G304 -- the operator names the file.
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(kb)
	if b == nil {
		return nil, fmt.Errorf("%s holds no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key", keyPath)
	}
	pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return &CA{Cert: c, Key: s}, nil
}

// LoadCert reads the first PEM certificate of a file.
func LoadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator names the file.
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(b.Bytes)
}

package tlsconf

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// ecdsaCert returns a self-signed ECDSA P-256 certificate for 127.0.0.1
// made by LoadOrCreateSelfSigned in a temporary directory.
func ecdsaCert(t *testing.T) tls.Certificate {
	t.Helper()
	cert, _, _, err := LoadOrCreateSelfSigned(t.TempDir(), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// signedCert returns a self-signed certificate for 127.0.0.1 with key,
// valid from notBefore to notAfter.
func signedCert(t *testing.T, key crypto.Signer, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func rsaCert(t *testing.T, bits int) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return signedCert(t, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// writePair writes cert (and key, if non-nil) as PEM files in dir.
func writePair(t *testing.T, dir string, cert tls.Certificate, key any) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// serve starts a TLS server with cfg on a 127.0.0.1 listener. Each
// connection completes its handshake, gets "ok\n" and is closed. It returns
// the address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	tln := tls.NewListener(ln, cfg)
	wg.Go(func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = io.WriteString(c, "ok\n")
				// Wait for the client to close, so TLS 1.3 tickets and
				// the payload are delivered before the connection ends.
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String()
}

// dial connects to addr with cfg, reads the server's "ok\n" (which also
// processes TLS 1.3 session tickets) and returns the connection state.
func dial(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		return tls.ConnectionState{}, err
	}
	if string(buf) != "ok\n" {
		return tls.ConnectionState{}, errors.New("unexpected payload " + string(buf))
	}
	return c.(*tls.Conn).ConnectionState(), nil
}

// clientConfig returns a client config trusting cert for 127.0.0.1.
func clientConfig(t *testing.T, cert tls.Certificate) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// serverFor builds a ServerConfig around cert and serves it.
func serverFor(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	store, err := NewCertStore(cert)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Options{Cert: store})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, cfg)
}

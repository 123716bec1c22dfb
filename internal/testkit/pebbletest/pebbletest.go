// Package pebbletest runs Let's Encrypt's ACME test server, pebble, inside
// the test process on loopback, for the ACME tests (NET-3).
//
// Its validation authority really connects to the HTTPS port given to
// [Start] for tls-alpn-01 challenges (resolving the DNS names with the
// system resolver: use "localhost"), so the tests exercise the same path as
// a public CA. Pebble reads its tuning from the environment when it
// starts: Start sets PEBBLE_VA_NOSLEEP=1 and PEBBLE_WFE_NONCEREJECT=0 with
// t.Setenv, so tests using it cannot run in parallel.
package pebbletest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Server is a running pebble.
type Server struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// Client trusts the directory's HTTPS certificate; DirectoryCAPEM is
	// that certificate, for a process that needs it in a file.
	Client         *http.Client
	DirectoryCAPEM []byte
	// Roots holds pebble's root: certificates it issues verify against it.
	Roots *x509.CertPool
}

// Start starts pebble issuing certificates valid for validity (zero: 90
// days, pebble's default), validating tls-alpn-01 challenges on tlsPort.
// It stops when the test ends.
func Start(t testing.TB, tlsPort int, validity time.Duration) *Server {
	t.Helper()
	return start(t, 0, tlsPort, validity)
}

// StartHTTP01 is Start with http-01 validations sent to httpPort (as the
// CA's "port 80").
func StartHTTP01(t testing.TB, httpPort int, validity time.Duration) *Server {
	t.Helper()
	return start(t, httpPort, 0, validity)
}

func start(t testing.TB, httpPort, tlsPort int, validity time.Duration) *Server {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(testWriter{t}, "pebble ", 0)
	}
	if validity < 0 {
		validity = 0
	}
	mem := db.NewMemoryStore()
	authority := ca.New(logger, mem, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: uint64(validity / time.Second)}, // #nosec G115 -- not negative (checked above)
	})
	vaImpl := va.New(logger, httpPort, tlsPort, false, "", mem)
	front := wfe.New(logger, mem, vaImpl, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(front.Handler())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(authority.GetRootCert(0).Cert)
	return &Server{DirectoryURL: srv.URL + wfe.DirectoryPath, Client: srv.Client(), Roots: roots,
		DirectoryCAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package app

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// TestFrontCertificate: the front reports the certificate it serves, with
// its source, for the expiry metric, alert and compliance report (NET-3).
func TestFrontCertificate(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", ""
	cfg.SFTP.Listen = "" // not under test; 2222 may be taken by another test
	f, err := PrepareFront(ctx, cfg, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ci, err := f.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served := func(f *Front) *tls.Certificate {
		c, err := f.TLS.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if ci.Source != "self-signed" || ci.KeyType != "ECDSA P-256" || !ci.NotAfter.Equal(served(f).Leaf.NotAfter) {
		t.Fatalf("self-signed: %+v", ci)
	}

	// The same files given as tls.cert / tls.key: source "file".
	cfg2 := cfg
	cfg2.DataDir = t.TempDir()
	cfg2.TLS.Cert = filepath.Join(cfg.DataDir, filepath.FromSlash(tlsconf.SelfSignedCertFile))
	cfg2.TLS.Key = filepath.Join(cfg.DataDir, filepath.FromSlash(tlsconf.SelfSignedKeyFile))
	f2, err := PrepareFront(ctx, cfg2, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if ci2, err := f2.Certificate(ctx); err != nil || ci2.Source != "file" || !ci2.NotAfter.Equal(ci.NotAfter) {
		t.Fatalf("file: %+v %v", ci2, err)
	}

	// ACME before the manager has a certificate: an error, and handshakes
	// fail rather than serve anything else; tls-alpn-01 is advertised.
	cfg3 := cfg
	cfg3.DataDir = t.TempDir()
	cfg3.TLS.ACMEDomains = []string{"relais.example"}
	f3, err := PrepareFront(ctx, cfg3, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer f3.Close()
	if _, err := f3.Certificate(ctx); err == nil {
		t.Fatal("ACME front reported a certificate before any order")
	}
	if _, err := f3.TLS.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "relais.example"}); err == nil {
		t.Fatal("ACME front served a certificate before any order")
	}
	if !strings.Contains(strings.Join(f3.TLS.NextProtos, ","), "acme-tls/1") {
		t.Errorf("NextProtos %v lack acme-tls/1", f3.TLS.NextProtos)
	}
}

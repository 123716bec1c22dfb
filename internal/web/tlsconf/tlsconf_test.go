package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConfigFields checks the static part of the policy on the returned config.
func TestConfigFields(t *testing.T) {
	store, err := NewCertStore(ecdsaCert(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Options{Cert: store})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions = %x..%x, want TLS 1.2..1.3", cfg.MinVersion, cfg.MaxVersion)
	}
	want := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	if !slices.Equal(cfg.CipherSuites, want) {
		t.Errorf("CipherSuites = %v, want %v", cfg.CipherSuites, want)
	}
	for _, id := range CipherSuites(true) {
		s := tls.CipherSuiteName(id)
		if !strings.HasPrefix(s, "TLS_ECDHE_") || !(strings.Contains(s, "_GCM_") || strings.Contains(s, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE+AEAD", s)
		}
	}
	if got := len(CipherSuites(true)); got != 6 {
		t.Errorf("CipherSuites(true) has %d suites, want 6", got)
	}
	wantCurves := []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
	if !slices.Equal(cfg.CurvePreferences, wantCurves) {
		t.Errorf("CurvePreferences = %v, want %v", cfg.CurvePreferences, wantCurves)
	}
	if cfg.Renegotiation != tls.RenegotiateNever {
		t.Errorf("Renegotiation = %v", cfg.Renegotiation)
	}
	if cfg.SessionTicketsDisabled {
		t.Error("session tickets disabled; the policy rotates them instead")
	}
	// The fresh slices are not shared.
	CipherSuites(false)[0] = 0
	if CipherSuites(false)[0] == 0 {
		t.Error("CipherSuites returns shared state")
	}
}

func TestServerConfigOptionErrors(t *testing.T) {
	store, err := NewCertStore(ecdsaCert(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no cert", Options{}, "no certificate source"},
		{"rotation too long", Options{Cert: store, TicketKeyRotation: 25 * time.Hour}, "longer than the 24h maximum"},
		{"rotation negative", Options{Cert: store, TicketKeyRotation: -time.Hour}, "shorter than"},
		{"rotation in ns", Options{Cert: store, TicketKeyRotation: 24}, "shorter than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ServerConfig(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, d := range []time.Duration{0, time.Minute, 24 * time.Hour} {
		if _, err := ServerConfig(Options{Cert: store, TicketKeyRotation: d}); err != nil {
			t.Errorf("rotation %v: %v", d, err)
		}
	}
}

// TestOldVersionsRefused: TLS 1.0 and 1.1 clients get a protocol_version
// alert from the server.
func TestOldVersionsRefused(t *testing.T) {
	cert := ecdsaCert(t)
	addr := serverFor(t, cert)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = v, v
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
		_, err := dial(t, addr, cfg)
		if err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
			t.Errorf("%s: err = %v, want the server's protocol version alert", tls.VersionName(v), err)
		}
	}
}

// TestTLS12SuitesRefused: TLS 1.2 clients offering only CBC or only static
// RSA key exchange suites get a handshake_failure alert.
func TestTLS12SuitesRefused(t *testing.T) {
	cert := ecdsaCert(t)
	addr := serverFor(t, cert)
	for _, suites := range [][]uint16{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{tls.TLS_RSA_WITH_AES_128_GCM_SHA256},
		{tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
		// ECDSA certificate: the ECDHE_RSA twins cannot be used.
		{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	} {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = suites
		_, err := dial(t, addr, cfg)
		if err == nil || !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("%s: err = %v, want the server's handshake failure alert", suiteNames(suites), err)
		}
	}
}

// TestTLS12ECDSASuites: each ECDSA AEAD suite is negotiated in TLS 1.2.
func TestTLS12ECDSASuites(t *testing.T) {
	cert := ecdsaCert(t)
	addr := serverFor(t, cert)
	for _, s := range CipherSuites(false) {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = []uint16{s}
		st, err := dial(t, addr, cfg)
		if err != nil {
			t.Errorf("%s: %v", tls.CipherSuiteName(s), err)
			continue
		}
		if st.Version != tls.VersionTLS12 || st.CipherSuite != s {
			t.Errorf("negotiated %s %s, want TLS 1.2 %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(s))
		}
	}
}

// TestTLS13: a default client negotiates TLS 1.3 with the hybrid
// post-quantum group, and a client restricted to each allowed group works.
func TestTLS13(t *testing.T) {
	cert := ecdsaCert(t)
	addr := serverFor(t, cert)
	st, err := dial(t, addr, clientConfig(t, cert))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("version = %s, want TLS 1.3", tls.VersionName(st.Version))
	}
	if st.CurveID != tls.X25519MLKEM768 {
		t.Errorf("group = %s, want X25519MLKEM768", st.CurveID)
	}
	for _, g := range CurvePreferences() {
		cfg := clientConfig(t, cert)
		cfg.MinVersion = tls.VersionTLS13
		cfg.CurvePreferences = []tls.CurveID{g}
		st, err := dial(t, addr, cfg)
		if err != nil {
			t.Errorf("group %s: %v", g, err)
		} else if st.CurveID != g {
			t.Errorf("group = %s, want %s", st.CurveID, g)
		}
	}
}

// TestCurveOutsidePolicyRefused: a client offering only P-521 finds no
// common group.
func TestCurveOutsidePolicyRefused(t *testing.T) {
	cert := ecdsaCert(t)
	addr := serverFor(t, cert)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = v, v
		cfg.CurvePreferences = []tls.CurveID{tls.CurveP521}
		if _, err := dial(t, addr, cfg); err == nil {
			t.Errorf("%s with P-521 only: handshake succeeded", tls.VersionName(v))
		}
	}
}

// TestRSACertificate: with an RSA-2048 certificate the ECDHE_RSA GCM and
// ChaCha20 suites are negotiated, static RSA and CBC still refused.
func TestRSACertificate(t *testing.T) {
	cert := rsaCert(t, 2048)
	addr := serverFor(t, cert)
	for _, s := range []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = []uint16{s}
		st, err := dial(t, addr, cfg)
		if err != nil {
			t.Errorf("%s: %v", tls.CipherSuiteName(s), err)
		} else if st.CipherSuite != s {
			t.Errorf("negotiated %s, want %s", tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(s))
		}
	}
	for _, s := range []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA} {
		cfg := clientConfig(t, cert)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = []uint16{s}
		if _, err := dial(t, addr, cfg); err == nil || !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("%s: err = %v, want handshake failure", tls.CipherSuiteName(s), err)
		}
	}
	st, err := dial(t, addr, clientConfig(t, cert))
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 with RSA certificate: %v, %s", err, tls.VersionName(st.Version))
	}
}

// TestWeakKeysRefused: RSA-1024 and Ed25519 certificates are refused by
// NewCertStore, and by the handshake when a custom source serves them.
func TestWeakKeysRefused(t *testing.T) {
	weak := rsaCert(t, 1024)
	if _, err := NewCertStore(weak); err == nil || !strings.Contains(err.Error(), "1024-bit RSA key") {
		t.Errorf("NewCertStore(RSA-1024) err = %v", err)
	}
	cfg, err := ServerConfig(Options{Cert: sourceFunc(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &weak, nil })})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	if _, err := dial(t, addr, clientConfig(t, weak)); err == nil {
		t.Error("handshake with an RSA-1024 certificate succeeded")
	}
	// The policy check itself, as the handshake runs it.
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "x"}); err == nil || !strings.Contains(err.Error(), "refused by the TLS policy") {
		t.Errorf("GetCertificate err = %v", err)
	}

	var empty CertStore
	if _, err := empty.GetCertificate(nil); err == nil {
		t.Error("zero CertStore served a certificate")
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := ecdsaCert(t)
	mismatched.PrivateKey = other
	if _, err := NewCertStore(mismatched); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("NewCertStore(mismatched) err = %v", err)
	}
}

// TestCertStoreReload: a certificate set while serving is used by the next
// handshake, including a change of key type, which switches the TLS 1.2
// suites from ECDSA to RSA.
func TestCertStoreReload(t *testing.T) {
	first := ecdsaCert(t)
	store, err := NewCertStore(first)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Options{Cert: store})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	st, err := dial(t, addr, clientConfig(t, first))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Fingerprint(st.PeerCertificates[0].Raw), Fingerprint(first.Certificate[0]); got != want {
		t.Fatalf("served %s, want %s", got, want)
	}
	second := rsaCert(t, 2048)
	if err := store.Set(second); err != nil {
		t.Fatal(err)
	}
	if store.Leaf() == nil || store.Leaf().PublicKeyAlgorithm.String() != "RSA" {
		t.Errorf("Leaf = %v", store.Leaf())
	}
	c := clientConfig(t, second)
	c.MaxVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	st, err = dial(t, addr, c)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Fingerprint(st.PeerCertificates[0].Raw), Fingerprint(second.Certificate[0]); got != want {
		t.Fatalf("after Set served %s, want %s", got, want)
	}
	// A refused Set keeps the current certificate.
	if err := store.Set(rsaCert(t, 1024)); err == nil {
		t.Fatal("Set(RSA-1024) accepted")
	}
	if _, err := dial(t, addr, clientConfig(t, second)); err != nil {
		t.Fatalf("after refused Set: %v", err)
	}
}

type sourceFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

func (f sourceFunc) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return f(h) }

// TestSourceError: a failing source fails the handshake with its error.
func TestSourceError(t *testing.T) {
	cfg, err := ServerConfig(Options{Cert: sourceFunc(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("acme: not ready")
	})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "a.example"}); err == nil || !strings.Contains(err.Error(), "acme: not ready") {
		t.Errorf("err = %v", err)
	}
}

func suiteNames(ids []uint16) string {
	var names []string
	for _, id := range ids {
		names = append(names, tls.CipherSuiteName(id))
	}
	return strings.Join(names, ",")
}

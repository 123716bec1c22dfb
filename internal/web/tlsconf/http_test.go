package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTPServer: an http.Server using the config negotiates HTTP/2 and
// HTTP/1.1 by ALPN, in TLS 1.3 and in TLS 1.2 (HTTP/2 needs an
// AES-128-GCM suite, which the policy has).
func TestHTTPServer(t *testing.T) {
	cert := ecdsaCert(t)
	store, err := NewCertStore(cert)
	if err != nil {
		t.Fatal(err)
	}
	cfg, rot, err := ServerConfigAndRotator(Options{Cert: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rotDone := make(chan error, 1)
	go func() { rotDone <- rot.Run(ctx) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.Proto)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
		cancel()
		if err := <-rotDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	for _, tc := range []struct {
		version uint16
		h2      bool
		want    string
	}{
		{tls.VersionTLS13, true, "HTTP/2.0"},
		{tls.VersionTLS12, true, "HTTP/2.0"},
		{tls.VersionTLS13, false, "HTTP/1.1"},
	} {
		cc := clientConfig(t, cert)
		cc.MaxVersion = tc.version
		tr := &http.Transport{TLSClientConfig: cc, ForceAttemptHTTP2: tc.h2}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(tc.version), err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != tc.want || resp.TLS.Version != tc.version {
			t.Errorf("%s h2=%v: served %s over %s, want %s", tls.VersionName(tc.version), tc.h2, body, tls.VersionName(resp.TLS.Version), tc.want)
		}
	}
}

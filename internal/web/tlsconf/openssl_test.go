package tlsconf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// opensslPath returns the openssl binary, skipping the test when it is
// missing, except on CI (CI=true) where its absence is a failure.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl not found on PATH (required when CI=true): %v", err)
		}
		t.Skipf("openssl not found on PATH: %v", err)
	}
	return p
}

// sClient runs `openssl s_client -connect addr args...` with no input and
// returns its combined output and whether it exited with status 0.
func sClient(t *testing.T, openssl, addr string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", addr, "-servername", "localhost"}, args...)...)
	cmd.Stdin = strings.NewReader("") // EOF on stdin: s_client quits after the handshake
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run openssl: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("openssl s_client %v timed out:\n%s", args, out)
	}
	return string(out), err == nil
}

// TestOpenSSLClient checks the policy with a client that is not Go's:
// OpenSSL's s_client against a real listener.
func TestOpenSSLClient(t *testing.T) {
	openssl := opensslPath(t)
	addr := serverFor(t, ecdsaCert(t))

	// OpenSSL 3 builds commonly refuse to offer TLS 1.0/1.1 and SHA-1
	// suites at their default security level, so a plain -tls1_1 could be
	// refused by the client itself and prove nothing about the server.
	// @SECLEVEL=0 makes it offer them; each refusal must then be the
	// server's alert in the output.
	for _, tc := range []struct {
		name    string
		args    []string
		ok      bool
		want    string // in the output
		refusal string // for refused cases: the server's alert
	}{
		{"TLS 1.0", []string{"-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"}, false, "", "alert protocol version"},
		{"TLS 1.1", []string{"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"}, false, "", "alert protocol version"},
		{"TLS 1.2 AES128-SHA", []string{"-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"}, false, "", "alert handshake failure"},
		{"TLS 1.2 ECDHE-ECDSA-AES128-SHA256 (CBC)", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0"}, false, "", "alert handshake failure"},
		{"TLS 1.2 AES128-GCM-SHA256 (RSA key exchange)", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256"}, false, "", "alert handshake failure"},
		{"TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 (ECDSA cert)", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, false, "", "alert handshake failure"},
		{"TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"}, true, "Cipher is ECDHE-ECDSA-AES256-GCM-SHA384", ""},
		{"TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, true, "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256", ""},
		{"TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true, "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305", ""},
		{"TLS 1.3", []string{"-tls1_3"}, true, "TLSv1.3", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := sClient(t, openssl, addr, tc.args...)
			if tc.ok {
				if !ok || !strings.Contains(out, tc.want) || strings.Contains(out, "Cipher is (NONE)") {
					t.Fatalf("openssl s_client %v: want a handshake with %q, got exit ok=%v:\n%s", tc.args, tc.want, ok, out)
				}
				return
			}
			if ok && !strings.Contains(out, "Cipher is (NONE)") {
				t.Fatalf("openssl s_client %v: handshake succeeded, want refusal:\n%s", tc.args, out)
			}
			if !strings.Contains(out, tc.refusal) {
				t.Fatalf("openssl s_client %v: want the server's %q (proof that the server, not the client, refused):\n%s", tc.args, tc.refusal, out)
			}
		})
	}
}

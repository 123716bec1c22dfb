package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
	"github.com/relais-dev/relais/internal/web/ratelimit"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// edgeServer runs a Server on a loopback TLS listener with small slow-client
// timeouts and returns its address.
func edgeServer(t *testing.T, opts Options) string {
	t.Helper()
	kp, _, _, err := tlsconf.LoadOrCreateSelfSigned(t.TempDir(), []string{"localhost", "127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := tlsconf.NewCertStore(kp)
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLS, err = tlsconf.ServerConfig(tlsconf.Options{Cert: cs}); err != nil {
		t.Fatal(err)
	}
	opts.DB = storetest.OpenSQLite(t, storetest.Options{})
	opts.ShutdownTimeout = time.Second
	srv := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, Listeners{HTTPS: ln}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

func dialTLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // #nosec G402 -- test server with a self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reads until the server closes the connection (or sends a
// response and then closes). It fails the test if the connection is still
// open after limit: the slow-client timeouts must have cut it well before.
func closedByServer(t *testing.T, c net.Conn, limit time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a slow connection open for %v (read %q)", limit, b)
	}
	return string(b)
}

func healthy(t *testing.T, addr string) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec G402 -- test server with a self-signed certificate
	res, err := cl.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("a normal client was not served during the attack: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
}

// TestSlowlorisHeaders: clients that open connections and send their
// headers a line at a time, never finishing, are cut after the read-header
// timeout, and a normal client is served meanwhile.
func TestSlowlorisHeaders(t *testing.T) {
	addr := edgeServer(t, Options{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	const n = 20
	var wg sync.WaitGroup
	stop := make(chan struct{})
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = dialTLS(t, addr)
		_, _ = io.WriteString(conns[i], "GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
		wg.Add(1)
		go func(c *tls.Conn) { // trickle a header line every 50ms, bounded
			defer wg.Done()
			for k := 0; k < 200; k++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "X-Slow: a\r\n"); err != nil {
					return
				}
			}
		}(conns[i])
	}
	healthy(t, addr)
	for _, c := range conns {
		closedByServer(t, c, 10*time.Second)
		c.Close()
	}
	close(stop)
	wg.Wait()
}

// TestSlowBody: a client that sends its headers and then trickles the body
// is cut by the read timeout.
func TestSlowBody(t *testing.T) {
	addr := edgeServer(t, Options{ReadHeaderTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, IdleTimeout: 5 * time.Second})
	c := dialTLS(t, addr)
	defer c.Close()
	_, _ = io.WriteString(c, "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for k := 0; k < 200; k++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := io.WriteString(c, " "); err != nil {
				return
			}
		}
	}()
	closedByServer(t, c, 10*time.Second)
}

// TestIdleKeepAlive: an idle keep-alive connection is closed after the idle
// timeout.
func TestIdleKeepAlive(t *testing.T) {
	addr := edgeServer(t, Options{ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, IdleTimeout: 300 * time.Millisecond})
	c := dialTLS(t, addr)
	defer c.Close()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("first request: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if rest := closedByServer(t, c, 10*time.Second); rest != "" {
		t.Errorf("unexpected bytes after the response: %q", rest)
	}
}

// TestMaxHeaderBytes: headers over the limit get 431 and the connection is
// closed.
func TestMaxHeaderBytes(t *testing.T) {
	addr := edgeServer(t, Options{ReadHeaderTimeout: time.Second, MaxHeaderBytes: 4096})
	c := dialTLS(t, addr)
	defer c.Close()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
	got := closedByServer(t, c, 10*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Fatalf("oversized headers: %.60q", got)
	}
	// Within the limit, the same request is served.
	healthy(t, addr)
}

// TestRateLimitThroughServer: the limiter answers 429 problems with
// Retry-After and the request id, through the whole middleware chain.
func TestRateLimitThroughServer(t *testing.T) {
	lim := ratelimit.New(ratelimit.Options{PerIP: ratelimit.Rate{PerSecond: 0.5, Burst: 2}})
	addr := edgeServer(t, Options{RateLimit: lim, ReadHeaderTimeout: time.Second})
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec G402 -- test server with a self-signed certificate
	var last *http.Response
	var body []byte
	for i := 0; i < 3; i++ {
		res, err := cl.Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		last = res
	}
	if last.StatusCode != 429 {
		t.Fatalf("third request: %d", last.StatusCode)
	}
	if ra := last.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Code != problem.CodeRateLimited || p.RequestID == "" || last.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("429 problem %+v (%v), headers %v", p, err, last.Header)
	}
}

package main

import (
	"bufio"
	"crypto/tls"
	be "encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeBehindProxyProtocol: with http.proxy_protocol_from naming the
// balancer (here 127.0.0.2), a connection from it that starts with a PROXY
// v2 header is logged with the client's address from the header; a
// connection from it without one is closed; other clients (127.0.0.1) are
// served as usual (headers from them are never parsed: see
// internal/web/proxyproto TestUntrustedNotParsed).
func TestServeBehindProxyProtocol(t *testing.T) {
	probe, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", freePortListener(t))
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2 here: %v", err)
	}
	probe.Close()
	dir := t.TempDir()
	addr := freePort(t)
	srv := startServe(t, dir, cleanEnv("HOME="+dir, "RELAIS_HTTP_PROXY_PROTOCOL_FROM=127.0.0.2/32", "RELAIS_LOG_FORMAT=json"),
		"--listen", addr, "--metrics-listen", "")
	waitHealthy(t, srv, "https://"+addr)

	balancer := func(header []byte) (*http.Response, error) {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}).Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(header); err != nil {
			return nil, err
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // #nosec G402 -- self-signed test server
		if _, err := io.WriteString(tc, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
			return nil, err
		}
		return http.ReadResponse(bufio.NewReader(tc), nil)
	}
	h := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	h = be.BigEndian.AppendUint16(h, 12)
	h = append(h, 198, 51, 100, 23, 127, 0, 0, 1)
	h = be.BigEndian.AppendUint16(h, 5555)
	h = be.BigEndian.AppendUint16(h, 8443)
	res, err := balancer(h)
	if err != nil {
		t.Fatalf("through the balancer: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if _, err := balancer(nil); err == nil {
		t.Error("a balancer connection without a header was served")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(srv.stderr.String(), `"remote_ip":"198.51.100.23"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the access log does not show the client's address:\n%s", srv.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePortListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

package proxyproto

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func v2(cmd byte, fam byte, src netip.AddrPort, dst netip.AddrPort) []byte {
	var body []byte
	switch fam {
	case 0x11:
		s, d := src.Addr().As4(), dst.Addr().As4()
		body = append(append(body, s[:]...), d[:]...)
	case 0x21:
		s, d := src.Addr().As16(), dst.Addr().As16()
		body = append(append(body, s[:]...), d[:]...)
	}
	if fam != 0 {
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	body = append(body, 0x04, 0x00, 0x01, 0x00) // a TLV (NOOP) to skip
	h := append([]byte{}, v2sig...)
	h = append(h, 0x20|cmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// roundTrip accepts one connection on a wrapped listener, sends prefix and
// "hello" from the client, and returns what the server sees.
func roundTrip(t *testing.T, trusted []netip.Prefix, timeout time.Duration, prefix []byte, stall bool) (remote string, data string, readErr error) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(raw, trusted, timeout)
	defer ln.Close()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if !stall {
		if _, err := client.Write(append(append([]byte{}, prefix...), "hello"...)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	remote = c.RemoteAddr().String()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 5)
	return remote, string(buf[:n]), err
}

func TestHeaders(t *testing.T) {
	src4 := netip.MustParseAddrPort("203.0.113.7:4242")
	dst4 := netip.MustParseAddrPort("192.0.2.1:443")
	src6 := netip.MustParseAddrPort("[2001:db8::7]:4242")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, c := range []struct {
		name   string
		prefix []byte
		remote string // "" : the real peer (127.0.0.1)
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n"), "203.0.113.7:4242"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\n"), "[2001:db8::7]:4242"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), ""},
		{"v2 TCP4", v2(1, 0x11, src4, dst4), "203.0.113.7:4242"},
		{"v2 TCP6", v2(1, 0x21, src6, dst6), "[2001:db8::7]:4242"},
		{"v2 LOCAL", v2(0, 0x00, src4, dst4), ""},
	} {
		remote, data, err := roundTrip(t, loopback, time.Second, c.prefix, false)
		if err != nil || data != "hello" {
			t.Errorf("%s: data %q, err %v", c.name, data, err)
		}
		if c.remote == "" && !strings.HasPrefix(remote, "127.0.0.1:") || c.remote != "" && remote != c.remote {
			t.Errorf("%s: remote %s, want %s", c.name, remote, c.remote)
		}
	}
}

// TestRefused: a trusted peer that sends no header, a malformed one, or
// stalls, gets its connection closed; nothing of it reaches the server.
func TestRefused(t *testing.T) {
	for name, prefix := range map[string][]byte{
		"no header":        []byte("GET / HTTP/1.1\r\n"),
		"v1 bad address":   []byte("PROXY TCP4 203.0.113 192.0.2.1 4242 443\r\n"),
		"v1 family lie":    []byte("PROXY TCP6 203.0.113.7 192.0.2.1 4242 443\r\n"),
		"v1 too long":      []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"),
		"v1 bad port":      []byte("PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n"),
		"v2 bad signature": append([]byte("\r\n\r\n\x00\r\nQUIX\n"), make([]byte, 4)...),
		"v2 UDP":           v2(1, 0x12, netip.MustParseAddrPort("203.0.113.7:1"), netip.MustParseAddrPort("192.0.2.1:2")),
	} {
		_, data, err := roundTrip(t, loopback, time.Second, prefix, false)
		if !errors.Is(err, ErrHeader) {
			t.Errorf("%s: data %q, err %v, want ErrHeader", name, data, err)
		}
	}
	// A stalled balancer: the header wait ends at the timeout.
	if _, _, err := roundTrip(t, loopback, 200*time.Millisecond, nil, true); !errors.Is(err, ErrHeader) {
		t.Errorf("stalled: %v", err)
	}
}

// TestUntrustedNotParsed: a client that is not a trusted balancer cannot
// claim another address: its bytes are data.
func TestUntrustedNotParsed(t *testing.T) {
	header := "PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n"
	remote, data, err := roundTrip(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, time.Second, []byte(header), false)
	if err != nil || !strings.HasPrefix(remote, "127.0.0.1:") || !strings.HasPrefix(data, "PROXY") {
		t.Fatalf("remote %s data %q err %v", remote, data, err)
	}
	if Wrap(nil, nil, 0) != nil {
		t.Error("no trusted balancer: the listener must be returned as is")
	}
}

// TestThroughTLS: behind a TCP balancer passing TLS through, the HTTPS
// handler sees the client's address from the header.
func TestThroughTLS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.RemoteAddr) }),
		ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(tls.NewListener(Wrap(raw, loopback, time.Second), cfg)) }()
	defer srv.Close()

	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(v2(1, 0x11, netip.MustParseAddrPort("198.51.100.23:5555"), netip.MustParseAddrPort("192.0.2.1:443"))); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- throwaway test certificate
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if string(body) != "198.51.100.23:5555" {
		t.Fatalf("handler saw %q", body)
	}
}

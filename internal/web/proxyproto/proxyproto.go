// Package proxyproto reads the PROXY protocol header (HAProxy's, versions
// 1 and 2) that a TCP load balancer puts in front of each connection, so
// that Relais sees the client's address rather than the balancer's: for the
// per-IP rate limit, the network allow-lists, the access log and the audit
// trail (AUTH-3). TLS passes through the balancer untouched.
//
// [Wrap] returns a listener whose connections from the trusted balancers
// must start with a header (any other connection from them is closed);
// connections from anyone else are served as they are, never parsed, so a
// client cannot forge its address. The header is read on the connection's
// own goroutine, when the server first asks for the remote address or
// reads, within Timeout: a balancer that stalls does not block Accept.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds the wait for the header.
const DefaultTimeout = 5 * time.Second

// Wrap returns ln with PROXY headers read from connections whose peer is
// in trusted. An empty trusted returns ln itself.
func Wrap(ln net.Listener, trusted []netip.Prefix, timeout time.Duration) net.Listener {
	if len(trusted) == 0 {
		return ln
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &listener{Listener: ln, trusted: trusted, timeout: timeout}
}

type listener struct {
	net.Listener
	trusted []netip.Prefix
	timeout time.Duration
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return c, nil
	}
	for _, p := range l.trusted {
		if p.Contains(ap.Addr().Unmap()) {
			return &conn{Conn: c, timeout: l.timeout, br: bufio.NewReaderSize(c, 256)}, nil
		}
	}
	return c, nil
}

// conn is a connection from a trusted balancer.
type conn struct {
	net.Conn
	timeout time.Duration
	br      *bufio.Reader
	once    sync.Once
	remote  net.Addr
	err     error
}

// ErrHeader is returned by Read on a connection from a trusted balancer
// whose header is missing or malformed.
var ErrHeader = errors.New("proxyproto: missing or malformed PROXY header from a trusted balancer")

func (c *conn) init() {
	c.once.Do(func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.remote, c.err = readHeader(c.br)
		_ = c.Conn.SetReadDeadline(time.Time{})
		if c.err != nil {
			c.err = fmt.Errorf("%w: %v", ErrHeader, c.err)
			_ = c.Conn.Close()
		}
		if c.remote == nil { // LOCAL or UNKNOWN: the balancer's own connection
			c.remote = c.Conn.RemoteAddr()
		}
	})
}

// RemoteAddr is the client's address from the header.
func (c *conn) RemoteAddr() net.Addr {
	c.init()
	return c.remote
}

func (c *conn) Read(b []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(b)
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readHeader reads a v1 or v2 header; it returns a nil address for LOCAL
// (v2) and UNKNOWN (v1) headers.
func readHeader(br *bufio.Reader) (net.Addr, error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	switch first[0] {
	case '\r':
		return readV2(br)
	case 'P':
		return readV1(br)
	}
	return nil, errors.New("the connection does not start with a PROXY header")
}

func readV1(br *bufio.Reader) (net.Addr, error) {
	// At most 107 bytes, CRLF included.
	var line []byte
	for len(line) < 107 {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return nil, errors.New("v1 header longer than 107 bytes or not ended by CRLF")
	}
	f := strings.Split(string(line[:len(line)-2]), " ")
	if f[0] != "PROXY" || len(f) < 2 {
		return nil, errors.New("v1 header does not start with PROXY")
	}
	if f[1] == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, errors.New("v1 header: want PROXY TCP4|TCP6 src dst sport dport")
	}
	src, err := netip.ParseAddr(f[2])
	if err != nil || src.Is4() != (f[1] == "TCP4") {
		return nil, errors.New("v1 header: bad source address")
	}
	if _, err := netip.ParseAddr(f[3]); err != nil {
		return nil, errors.New("v1 header: bad destination address")
	}
	port, err := strconv.ParseUint(f[4], 10, 16)
	if err != nil || (len(f[4]) > 1 && f[4][0] == '0') {
		return nil, errors.New("v1 header: bad source port")
	}
	if _, err := strconv.ParseUint(f[5], 10, 16); err != nil {
		return nil, errors.New("v1 header: bad destination port")
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port))), nil
}

func readV2(br *bufio.Reader) (net.Addr, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr[:12], v2sig) {
		return nil, errors.New("v2 signature mismatch")
	}
	if hdr[12]>>4 != 2 {
		return nil, errors.New("v2 header: unsupported version")
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > 512 {
		return nil, errors.New("v2 header: too long")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	switch hdr[12] & 0x0f {
	case 0: // LOCAL: health check from the balancer itself
		return nil, nil
	case 1: // PROXY
	default:
		return nil, errors.New("v2 header: unknown command")
	}
	switch hdr[13] {
	case 0x11: // TCP over IPv4
		if n < 12 {
			return nil, errors.New("v2 header: short IPv4 addresses")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))), nil
	case 0x21: // TCP over IPv6
		if n < 36 {
			return nil, errors.New("v2 header: short IPv6 addresses")
		}
		src := netip.AddrFrom16([16]byte(body[0:16]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))), nil
	case 0x00: // UNSPEC
		return nil, nil
	}
	return nil, errors.New("v2 header: unsupported address family (TCP over IPv4 or IPv6 only)")
}

// Package ntpfake is a local NTP responder for tests: an RFC 5905 server
// (mode 4, stratum 2, synchronised) on a loopback UDP port whose clock is
// the machine's plus a skew the test sets. It exists because no real NTP
// server can be reached, or skewed, from a test.
package ntpfake

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a running responder.
type Server struct {
	conn net.PacketConn
	skew atomic.Int64
}

// Start starts a responder for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{conn: pc}
	t.Cleanup(func() { _ = pc.Close() })
	go s.serve()
	return s
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// SetSkew makes the server's clock run d ahead of the machine's (behind
// when negative).
func (s *Server) SetSkew(d time.Duration) { s.skew.Store(int64(d)) }

func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix() + ntpEpochOffset)  // #nosec G115 -- times after 1970
	frac := uint64(t.Nanosecond()) << 32 / 1e9 // #nosec G115 -- nanoseconds are non-negative
	return secs<<32 | frac
}

func (s *Server) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 48 {
			continue
		}
		now := time.Now().Add(time.Duration(s.skew.Load()))
		resp := make([]byte, 48)
		version := (buf[0] >> 3) & 7
		resp[0] = version<<3 | 4 // no leap warning, server mode
		resp[1] = 2              // stratum
		resp[2] = buf[2]         // poll
		resp[3] = 0xEC           // precision
		copy(resp[12:16], "LOCL")
		binary.BigEndian.PutUint64(resp[16:24], ntpTime(now.Add(-time.Minute))) // reference time
		copy(resp[24:32], buf[40:48])                                           // origin: the client's transmit time
		binary.BigEndian.PutUint64(resp[32:40], ntpTime(now))                   // receive
		binary.BigEndian.PutUint64(resp[40:48], ntpTime(now))                   // transmit
		_, _ = s.conn.WriteTo(resp, from)
	}
}

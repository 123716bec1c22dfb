package sftpd

import (
	"net/netip"
	"testing"
	"time"
)

// TestConnLimitGroupsIPv6By64 is the attack of a client that holds a whole
// IPv6 /64 (what one subscriber usually gets): with a limit per address it
// could take every connection slot of the server from 32 of its addresses.
// IPv6 addresses count by /64.
func TestConnLimitGroupsIPv6By64(t *testing.T) {
	var l connLimits
	base := netip.MustParseAddr("2001:db8:1:2::")
	n := 0
	for i := range maxConnsPerIP + 5 {
		a := base.As16()
		a[15] = byte(i + 1)
		if l.enter(netip.AddrFrom16(a)) {
			n++
		}
	}
	if n != maxConnsPerIP {
		t.Fatalf("%d connections from one /64, want %d", n, maxConnsPerIP)
	}
	if !l.enter(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Fatal("another /64 refused")
	}
	a := base.As16()
	a[15] = 1
	l.leave(netip.AddrFrom16(a))
	a[15] = 200
	if !l.enter(netip.AddrFrom16(a)) {
		t.Fatal("the /64 still full after a connection left")
	}
	// IPv4 addresses still count one by one.
	for i := range maxConnsPerIP {
		if !l.enter(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})) {
			t.Fatal("IPv4 addresses grouped")
		}
	}
}

// TestRefusalEventsGroupIPv6By64: refused connections are recorded once
// per address per minute so that a scan cannot flood the operator's trail;
// from a /64 a client has 2^64 addresses, so IPv6 counts by /64.
func TestRefusalEventsGroupIPv6By64(t *testing.T) {
	var l connLimits
	now := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	base := netip.MustParseAddr("2001:db8:1:2::")
	recorded := 0
	for i := range 100 {
		a := base.As16()
		a[14], a[15] = byte(i>>8), byte(i+1)
		if ok, _ := l.shouldRecord(netip.AddrFrom16(a), now); ok {
			recorded++
		}
	}
	if recorded != 1 {
		t.Fatalf("%d refusal events from one /64 in a minute, want 1", recorded)
	}
	if ok, n := l.shouldRecord(netip.MustParseAddr("2001:db8:1:2::ffff"), now.Add(61*time.Second)); !ok || n != 99 {
		t.Fatalf("next minute: %v with %d suppressed, want true with 99", ok, n)
	}
}

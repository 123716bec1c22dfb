package router

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// plainASCII, which reads eight bytes at a time, says what a byte-by-byte
// test says, whatever the position of a byte to escape (or non-ASCII) in
// strings of every length around the word size.
func TestPlainASCII(t *testing.T) {
	byByte := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				return false
			}
		}
		return true
	}
	for n := 0; n <= 25; n++ {
		base := strings.Repeat("a", n)
		if !plainASCII(base) {
			t.Fatalf("%q: not plain", base)
		}
		for pos := 0; pos < n; pos++ {
			for _, c := range []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '#', '\\', ']', 0x7e, 0x7f, 0x80, 0xc3, 0xff} {
				s := base[:pos] + string([]byte{c}) + base[pos+1:]
				if got, want := plainASCII(s), byByte(s); got != want {
					t.Fatalf("plainASCII(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}

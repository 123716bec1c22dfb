package otp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Recovery codes look like "7k2m-q9xd-4hte": 12 symbols of Crockford's
// base32 alphabet (digits and lowercase letters without i, l, o, u), in
// groups of 4. The alphabet has 32 symbols, so each symbol is 5 random bits
// with no bias and a code holds 60 bits. When a code is typed back, case,
// hyphens and spaces are ignored, and the letters Crockford's alphabet left
// out are read as the digits they are mistaken for (o as 0, i and l as 1).
const (
	// DefaultRecoveryCodes is the number of recovery codes to give a user.
	DefaultRecoveryCodes = 10
	// MaxRecoveryCodes bounds the number of codes in one set.
	MaxRecoveryCodes = 100
	// RecoveryCodeBits is the entropy of one recovery code.
	RecoveryCodeBits = recoverySymbols * 5

	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	recoverySymbols  = 12
	recoveryGroup    = 4
	// maxRecoveryInput bounds a typed code before it is normalised.
	maxRecoveryInput = 64
)

// NewRecoveryCodes returns n recovery codes (DefaultRecoveryCodes is the
// usual n, at most MaxRecoveryCodes), to show the user once, and their
// SHA-256 hashes, in the same order, to store.
//
// A plain SHA-256 is enough here, unlike for passwords: each code is 60
// uniformly random bits, so there is no dictionary to try and no common code
// shared between users for a precomputed table, and finding one code from
// its hash takes about 2^59 SHA-256 computations. A salted slow hash would
// add little to that, and would make each recovery attempt cost a slow hash
// per stored code.
func NewRecoveryCodes(n int) (codes []string, hashes [][]byte, err error) {
	return newRecoveryCodes(rand.Reader, n)
}

func newRecoveryCodes(r io.Reader, n int) ([]string, [][]byte, error) {
	if n < 1 || n > MaxRecoveryCodes {
		return nil, nil, fmt.Errorf("otp: new recovery codes: %d codes asked, want 1 to %d", n, MaxRecoveryCodes)
	}
	codes := make([]string, 0, n)
	hashes := make([][]byte, 0, n)
	seen := make(map[string]bool, n)
	var buf [8]byte
	for len(codes) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, nil, fmt.Errorf("otp: new recovery codes: %w", err)
		}
		v := binary.BigEndian.Uint64(buf[:])
		var sym [recoverySymbols]byte
		for i := range sym {
			sym[recoverySymbols-1-i] = recoveryAlphabet[v&31]
			v >>= 5
		}
		canon := string(sym[:])
		if seen[canon] {
			continue // a 2^-60 event, but a set must not hold one code twice
		}
		seen[canon] = true
		sum := sha256.Sum256([]byte(canon))
		codes = append(codes, canon[0:4]+"-"+canon[4:8]+"-"+canon[8:12])
		hashes = append(hashes, sum[:])
	}
	return codes, hashes, nil
}

// MatchRecoveryCode returns the index in hashes of the hash of code, or
// (-1, false). code is normalised first (case, hyphens, spaces, and the
// letters o, i and l read as 0, 1 and 1). Every hash is compared, in
// constant time, whatever matches.
//
// Recovery codes are single use, and that is the caller's job: delete
// hashes[index] in the transaction that accepts the login.
func MatchRecoveryCode(code string, hashes [][]byte) (index int, ok bool) {
	canon, valid := normaliseRecoveryCode(code)
	if !valid {
		return -1, false
	}
	sum := sha256.Sum256([]byte(canon))
	index = -1
	for i, h := range hashes {
		if subtle.ConstantTimeCompare(sum[:], h) == 1 && index < 0 {
			index = i
		}
	}
	return index, index >= 0
}

// normaliseRecoveryCode returns the 12 canonical symbols of a typed code.
func normaliseRecoveryCode(code string) (string, bool) {
	if len(code) > maxRecoveryInput {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(code); i++ {
		c := code[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case '-', ' ', '\t':
			continue
		case 'o':
			c = '0'
		case 'i', 'l':
			c = '1'
		}
		if strings.IndexByte(recoveryAlphabet, c) < 0 {
			return "", false
		}
		b.WriteByte(c)
	}
	if b.Len() != recoverySymbols {
		return "", false
	}
	return b.String(), true
}

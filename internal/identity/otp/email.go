package otp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"
)

// EmailCodeDigits is the length of an email code.
const EmailCodeDigits = 8

// NewEmailCode returns a one-time code of 8 random decimal digits, drawn
// uniformly (crypto/rand.Int rejects out-of-range draws rather than reducing
// them modulo 10^8, which would bias the low codes), and its SHA-256 hash,
// which is what the caller stores.
//
// The hash keeps the code out of the store's plain view, but 10^8 codes are
// hashed in seconds: it is no barrier against someone who can read the
// store. What protects an email code is its short life and the attempt
// limits (see the package documentation): store an expiry with the hash and
// delete the hash at first use.
func NewEmailCode() (code string, hash []byte, err error) {
	return newEmailCode(rand.Reader)
}

func newEmailCode(r io.Reader) (string, []byte, error) {
	n, err := rand.Int(r, big.NewInt(100_000_000))
	if err != nil {
		return "", nil, fmt.Errorf("otp: new email code: %w", err)
	}
	code := fmt.Sprintf("%0*d", EmailCodeDigits, n.Int64())
	sum := sha256.Sum256([]byte(code))
	return code, sum[:], nil
}

// CheckEmailCode reports whether code, exactly 8 ASCII digits, hashes to
// hash, comparing in constant time.
func CheckEmailCode(code string, hash []byte) bool {
	if len(code) != EmailCodeDigits || !allDigits(code) || len(hash) != sha256.Size {
		return false
	}
	sum := sha256.Sum256([]byte(code))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}

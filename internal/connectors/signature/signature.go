// Package signature is the HMAC-SHA256 request signature Relais uses on
// both sides of its HTTP links: on the webhooks it sends (the receiver
// checks them) and on the delivery receipts it takes in (Relais checks
// them).
//
// The header, in the style of Stripe's:
//
//	X-Relais-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// where t is the Unix time of signing and v1 the lowercase hex
// HMAC-SHA256, keyed with the shared secret, of the bytes
//
//	t + "." + body
//
// so that neither the body nor the time can be changed without the key. A
// verifier refuses a signature whose time is more than MaxAge away from its
// own clock (a replay of an old request) and compares in constant time.
// Several v1 values may be given (while a secret is being rotated); one
// matching value is enough.
//
// Use Sign to sign and Verify to check; Verify's errors say which check
// failed and never contain the secret.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the signature header.
const Header = "X-Relais-Signature"

// TimestampHeader carries the signing time (Unix seconds) on its own, for
// receivers that log it; the signed value is the t= of Header.
const TimestampHeader = "X-Relais-Timestamp"

// MaxAge is the largest difference between the signing time and the
// verifier's clock that Verify accepts.
const MaxAge = 5 * time.Minute

// MinSecretLen is the shortest secret a connector accepts.
const MinSecretLen = 16

// Errors returned by Verify, wrapped with details.
var (
	// ErrMissing: no signature header.
	ErrMissing = errors.New("signature: missing " + Header + " header")
	// ErrMalformed: the header is not t=<unix>,v1=<hex>.
	ErrMalformed = errors.New("signature: malformed " + Header + " header")
	// ErrStale: the signing time is too far from now (replay or clock skew).
	ErrStale = errors.New("signature: timestamp outside the accepted window")
	// ErrMismatch: no v1 value matches the body and timestamp.
	ErrMismatch = errors.New("signature: does not match the body")
)

// Sign returns the value of the signature header for body signed at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks header (the value of the signature header) against body
// with secret, at time now, accepting signing times at most maxAge away
// (MaxAge when maxAge is 0). It returns the signing time.
func Verify(secret []byte, header string, body []byte, now time.Time, maxAge time.Duration) (time.Time, error) {
	if maxAge <= 0 {
		maxAge = MaxAge
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return time.Time{}, ErrMissing
	}
	if len(header) > 1024 {
		return time.Time{}, fmt.Errorf("%w: longer than 1024 bytes", ErrMalformed)
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return time.Time{}, fmt.Errorf("%w: %q is not key=value", ErrMalformed, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return time.Time{}, fmt.Errorf("%w: t given twice", ErrMalformed)
			}
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return time.Time{}, fmt.Errorf("%w: v1 is not 64 hex digits", ErrMalformed)
			}
			sigs = append(sigs, b)
		default:
			// Unknown schemes are ignored, so that a v2 can be added.
		}
	}
	if ts == "" || len(sigs) == 0 {
		return time.Time{}, fmt.Errorf("%w: t= and v1= are required", ErrMalformed)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix <= 0 {
		return time.Time{}, fmt.Errorf("%w: t is not a Unix time", ErrMalformed)
	}
	at := time.Unix(unix, 0)
	if d := now.Sub(at); d > maxAge || d < -maxAge {
		return at, fmt.Errorf("%w: signed at %s, now %s (window %s)", ErrStale,
			at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), maxAge)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return at, nil
		}
	}
	return at, ErrMismatch
}

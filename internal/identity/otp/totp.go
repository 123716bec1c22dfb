// Package otp is Relais's second factor (AUTH-7): time-based one-time
// passwords from an authenticator app (TOTP, RFC 6238), one-time codes sent
// by email, and recovery codes for when both are lost.
//
// # Which functions to use
//
// TOTP enrolment: [NewSecret] makes a key; show its QR code ([Key.PNG]) or
// its secret, store Key.Secret encrypted (it is a shared secret, not a
// hash), and confirm the enrolment with a first code through [Check]. At
// each login, [Check] the code against the stored secret with the clock's
// time and the last step accepted for the user, and store the step it
// returns: a code is accepted once, never twice.
//
//	step, ok := otp.Check(secret, code, now(), user.LastTOTPStep)
//	if ok { user.LastTOTPStep = step } // in the same transaction as the login
//
// Email codes: [NewEmailCode] returns the code to send and the hash to
// store; [CheckEmailCode] compares a typed code to it. Recovery codes:
// [NewRecoveryCodes] returns the codes to show once and the hashes to store;
// [MatchRecoveryCode] finds a typed code among the stored hashes and returns
// the index of the hash to delete.
//
// # What the caller must do
//
// Single use, expiry and attempt limits are the caller's, since they live in
// the store: record the TOTP step [Check] returns, delete an email code's
// hash once it is used or expired (10 minutes is plenty), delete a recovery
// code's hash at the index [MatchRecoveryCode] returns, all in the
// transaction that accepts the login; and count failed attempts under the
// anti brute-force rules (AUTH-4), without which a 6-digit code falls to
// guessing.
//
// Secrets and codes never appear in errors; [Key] formats without its
// secret.
package otp

import (
	"bytes"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"strings"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: those of RFC 6238's reference and of every common
// authenticator app.
const (
	// Digits is the length of a TOTP code.
	Digits = 6
	// Period is the TOTP time step, in seconds.
	Period = 30
	// Skew is the number of steps accepted on either side of the current
	// one, for clock drift and typing time.
	Skew = 1
	// SecretSize is the size in bytes of a new TOTP secret (160 bits, the
	// size RFC 4226 recommends).
	SecretSize = 20

	// minSecretSize is the shortest secret Check accepts (RFC 4226 section
	// 4, R6: at least 128 bits).
	minSecretSize = 16
	// maxSecretSize bounds a stored secret.
	maxSecretSize = 64
	// maxLabel bounds the issuer and the account name.
	maxLabel = 256
	// Bounds of a QR code image, in pixels.
	minPNG, maxPNG = 64, 2048
)

// Key is a new TOTP key, for enrolment.
type Key struct {
	// Secret is the shared secret, base32 without padding: store it
	// encrypted; show it only to the user enrolling.
	Secret string
	// URL is the otpauth:// URL an authenticator app reads from the QR
	// code; it contains the secret.
	URL string
}

// PNG returns the QR code of k.URL as a size by size PNG image; size must be
// between 64 and 2048 pixels.
func (k Key) PNG(size int) ([]byte, error) {
	if size < minPNG || size > maxPNG {
		return nil, fmt.Errorf("otp: qr code: size %d not in [%d, %d]", size, minPNG, maxPNG)
	}
	key, err := potp.NewKeyFromURL(k.URL)
	if err != nil {
		return nil, errors.New("otp: qr code: key URL does not parse")
	}
	img, err := key.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("otp: qr code of %d pixels: %w", size, err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("otp: qr code: encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// String formats k without its secret.
func (k Key) String() string { return "otp.Key(REDACTED)" }

// GoString formats k without its secret, for %#v.
func (k Key) GoString() string { return k.String() }

// LogValue logs k without its secret.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// NewSecret makes a TOTP key with a 160-bit random secret (SHA-1, 6 digits,
// 30-second steps) for account (the user's email address, say) at issuer
// (the product or tenant name, shown by the authenticator app). Neither may
// be empty nor contain a colon, which separates them in the otpauth label.
func NewSecret(issuer, account string) (Key, error) {
	for _, f := range []struct{ name, v string }{{"issuer", issuer}, {"account", account}} {
		if f.v == "" || len(f.v) > maxLabel || strings.ContainsRune(f.v, ':') {
			return Key{}, fmt.Errorf("otp: new secret: %s must be 1 to %d bytes without ':'", f.name, maxLabel)
		}
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      Period,
		SecretSize:  SecretSize,
		Digits:      potp.DigitsSix,
		Algorithm:   potp.AlgorithmSHA1,
	})
	if err != nil {
		return Key{}, fmt.Errorf("otp: new secret: %w", err)
	}
	return Key{Secret: k.Secret(), URL: k.URL()}, nil
}

// Check reports whether code is the TOTP code of secret for the step of now
// or the step either side of it, and is for a step later than lastStep, the
// step the caller recorded at the last accepted code (0 when there is none).
// On success it returns the step that matched, which the caller must store
// as the new lastStep: a code, once accepted, is refused forever after, and
// so is any code of an earlier step.
//
// code must be exactly 6 ASCII digits (strip the space some apps display
// before calling). secret is base32, in either case, with or without
// padding, of at least 128 bits. Codes are compared in constant time, and
// every step of the window is computed whatever matches.
func Check(secret, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	if len(code) != Digits || !allDigits(code) {
		return 0, false
	}
	key, valid := canonicalSecret(secret)
	if !valid || now.Unix() < 0 {
		return 0, false
	}
	opts := totp.ValidateOpts{Period: Period, Digits: potp.DigitsSix, Algorithm: potp.AlgorithmSHA1}
	current := now.Unix() / Period
	matched := int64(-1)
	for s := current - Skew; s <= current+Skew; s++ {
		if s < 0 || s <= lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(key, time.Unix(s*Period, 0), opts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && matched < 0 {
			matched = s
		}
	}
	if matched < 0 {
		return 0, false
	}
	return matched, true
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// canonicalSecret returns secret as unpadded uppercase base32, if it is
// base32 of minSecretSize to maxSecretSize bytes.
func canonicalSecret(secret string) (string, bool) {
	s := strings.TrimRight(strings.ToUpper(strings.TrimSpace(secret)), "=")
	if len(s) > b32.EncodedLen(maxSecretSize) {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return "", false
		}
	}
	raw, err := b32.DecodeString(s)
	if err != nil || len(raw) < minSecretSize {
		return "", false
	}
	return s, true
}

// allDigits reports whether s is made of ASCII digits only.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

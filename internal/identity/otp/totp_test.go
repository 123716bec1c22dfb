package otp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image/png"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

// refHOTP is an independent HOTP, written from RFC 4226 section 5.3 (and used
// by RFC 6238 with the time step as counter), so that the tests do not check
// pquerna/otp against itself: HMAC-SHA1 of the 8-byte big-endian counter,
// dynamic truncation at the offset given by the low 4 bits of the last byte,
// 31 bits, modulo 10^digits, zero-padded.
func refHOTP(key []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// rfcSecret is the SHA-1 seed of RFC 6238 Appendix B.
const rfcSecret = "12345678901234567890"

// rfcVectors are RFC 6238 Appendix B's SHA-1 rows: time and 8-digit TOTP.
var rfcVectors = []struct {
	unix int64
	totp string
}{
	{59, "94287082"},
	{1111111109, "07081804"},
	{1111111111, "14050471"},
	{1234567890, "89005924"},
	{2000000000, "69279037"},
	{20000000000, "65353130"},
}

func b32secret(raw []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)
}

// TestReferenceMatchesRFC6238 proves the independent reference against the
// RFC's own table, so the tests below rest on the RFC, not on our code.
func TestReferenceMatchesRFC6238(t *testing.T) {
	for _, v := range rfcVectors {
		if got := refHOTP([]byte(rfcSecret), uint64(v.unix/30), 8); got != v.totp {
			t.Errorf("reference TOTP(%d) = %s, RFC says %s", v.unix, got, v.totp)
		}
	}
}

// TestCheckRFC6238Vectors: Check accepts the RFC 6238 Appendix B codes
// (their last 6 digits, which is the 6-digit code) at their times, and
// returns their step.
func TestCheckRFC6238Vectors(t *testing.T) {
	secret := b32secret([]byte(rfcSecret))
	for _, v := range rfcVectors {
		code := v.totp[2:]
		step, ok := Check(secret, code, time.Unix(v.unix, 0), 0)
		if !ok || step != v.unix/30 {
			t.Errorf("Check(RFC code %s at %d) = %d, %v; want %d, true", code, v.unix, step, ok, v.unix/30)
		}
		// The full 8-digit code is the wrong length.
		if _, ok := Check(secret, v.totp, time.Unix(v.unix, 0), 0); ok {
			t.Errorf("Check accepted the 8-digit code %s", v.totp)
		}
	}
}

// TestCheckWindow: with a fresh secret and codes from the reference, the
// current step and one step either side are accepted (and report their own
// step); two steps away is refused, both ways.
func TestCheckWindow(t *testing.T) {
	k, err := NewSecret("Relais", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{
		time.Date(2025, 3, 9, 14, 0, 0, 0, time.UTC),  // start of a step
		time.Date(2025, 3, 9, 14, 0, 29, 0, time.UTC), // end of a step
		time.Unix(1111111111, 0),
	} {
		cur := now.Unix() / 30
		for _, c := range []struct {
			delta int64
			ok    bool
		}{{-2, false}, {-1, true}, {0, true}, {1, true}, {2, false}, {-3, false}, {3, false}} {
			code := refHOTP(raw, uint64(cur+c.delta), 6)
			step, ok := Check(k.Secret, code, now, 0)
			if ok != c.ok || (ok && step != cur+c.delta) {
				t.Errorf("%v: code of step %+d: Check = %d, %v; want ok=%v at step %d", now, c.delta, step, ok, c.ok, cur+c.delta)
			}
		}
	}
}

// TestCheckReplay is the replay attack: a code seen once (shoulder-surfed,
// phished, logged) cannot be used again, nor can an older code still inside
// the window once a newer one was accepted.
func TestCheckReplay(t *testing.T) {
	secret := b32secret([]byte(rfcSecret))
	now := time.Unix(1234567890, 0)
	cur := now.Unix() / 30
	code := func(s int64) string { return refHOTP([]byte(rfcSecret), uint64(s), 6) }

	step, ok := Check(secret, code(cur), now, 0)
	if !ok || step != cur {
		t.Fatalf("first use: %d, %v", step, ok)
	}
	if _, ok := Check(secret, code(cur), now, step); ok {
		t.Error("the same code was accepted twice in the same step")
	}
	if _, ok := Check(secret, code(cur), now.Add(25*time.Second), step); ok {
		t.Error("the same code was accepted again in the next step")
	}
	if _, ok := Check(secret, code(cur-1), now, step); ok {
		t.Error("an older code inside the window was accepted after a newer one")
	}
	// The next step's code is still good (the user is fast, or the clock
	// drifts), and then closes the door on the current one.
	next, ok := Check(secret, code(cur+1), now, step)
	if !ok || next != cur+1 {
		t.Fatalf("next step's code: %d, %v", next, ok)
	}
	if _, ok := Check(secret, code(cur), now.Add(30*time.Second), next); ok {
		t.Error("a code older than the last accepted one was accepted")
	}
	// lastStep from the future (a clock set back) refuses everything.
	if _, ok := Check(secret, code(cur), now, cur+5); ok {
		t.Error("a code was accepted with lastStep ahead of the clock")
	}
}

// TestCheckBadCodes: anything but exactly 6 ASCII digits is refused before
// any computation, including the right code with decoration.
func TestCheckBadCodes(t *testing.T) {
	secret := b32secret([]byte(rfcSecret))
	now := time.Unix(59, 0)
	good := "287082"
	if _, ok := Check(secret, good, now, 0); !ok {
		t.Fatal("baseline code refused")
	}
	for _, code := range []string{
		"", "28708", "2870820", "94287082", " 287082", "287082 ", "287 082", "287-082",
		"28708a", "+87082", "-87082", "２８７０８２", "287082\x00", "0x1234", "287.82",
		strings.Repeat("2", 1000), "000000", "999999",
	} {
		if _, ok := Check(secret, code, now, 0); ok {
			t.Errorf("Check accepted %q", code)
		}
	}
}

// TestCheckSecrets: the stored secret is read leniently in form (case,
// padding) but strictly in substance: not base32, or under 128 bits (an
// empty secret would make every code predictable), is refused.
func TestCheckSecrets(t *testing.T) {
	now := time.Unix(59, 0)
	good := "287082"
	secret := b32secret([]byte(rfcSecret))
	for _, s := range []string{secret, strings.ToLower(secret), secret + "====", " " + secret + " "} {
		if _, ok := Check(s, good, now, 0); !ok {
			t.Errorf("Check refused secret form %q", s)
		}
	}
	empty := refHOTP(nil, 1, 6)
	for name, s := range map[string]string{
		"empty":       "",
		"15 bytes":    b32secret([]byte(rfcSecret[:15])),
		"not base32":  secret[:10] + "1" + secret[11:],
		"base64":      "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
		"inner space": secret[:8] + " " + secret[8:],
		"too long":    b32secret(bytes.Repeat([]byte{1}, 65)),
	} {
		for _, code := range []string{good, empty} {
			if _, ok := Check(s, code, now, 0); ok {
				t.Errorf("Check accepted a code with the %s secret", name)
			}
		}
	}
	if _, ok := Check(secret, good, time.Unix(-1, 0), -10); ok {
		t.Error("Check accepted a time before 1970")
	}
}

// TestNewSecret: 160 random bits, an otpauth URL with the documented
// parameters, usable at once by Check.
func TestNewSecret(t *testing.T) {
	k, err := NewSecret("Relais Acme", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(k.Secret)
	if err != nil || len(raw) != 20 {
		t.Fatalf("secret %d bytes, %v", len(raw), err)
	}
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Relais Acme:alice@example.com" ||
		q.Get("secret") != k.Secret || q.Get("issuer") != "Relais Acme" || q.Get("algorithm") != "SHA1" ||
		q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Errorf("URL %s", k.URL)
	}
	now := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	if _, ok := Check(k.Secret, refHOTP(raw, uint64(now.Unix()/30), 6), now, 0); !ok {
		t.Error("a new secret does not check")
	}
	k2, err := NewSecret("Relais Acme", "alice@example.com")
	if err != nil || k2.Secret == k.Secret {
		t.Errorf("two secrets are equal (%v)", err)
	}
	for _, c := range [][2]string{{"", "alice"}, {"Relais", ""}, {"Re:lais", "alice"}, {"Relais", "al:ice"}, {strings.Repeat("x", 257), "alice"}} {
		if k, err := NewSecret(c[0], c[1]); err == nil || k.Secret != "" {
			t.Errorf("NewSecret(%q, %q) = %v", c[0], c[1], err)
		}
	}
}

// TestKeyPNG: the QR code is a PNG of the asked size; sizes out of bounds
// are refused rather than allocating a huge image.
func TestKeyPNG(t *testing.T) {
	k, err := NewSecret("Relais", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.PNG(256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 256 || r.Dy() != 256 {
		t.Errorf("image is %v", r)
	}
	for _, size := range []int{-1, 0, 63, 2049, 1 << 30} {
		if _, err := k.PNG(size); err == nil {
			t.Errorf("PNG(%d) succeeded", size)
		}
	}
	if _, err := (Key{URL: "%zz"}).PNG(256); err == nil || strings.Contains(err.Error(), "%zz") {
		t.Errorf("PNG of a bad URL: %v", err)
	}
}

// TestKeyRedacted: formatting or logging a Key does not print the secret.
func TestKeyRedacted(t *testing.T) {
	k, err := NewSecret("Relais", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("enrol", "key", k)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("enrol", "key", k)
	out := fmt.Sprintf("%v %+v %#v %s %q", k, k, k, k, k) + logs.String()
	if strings.Contains(out, k.Secret) || !strings.Contains(out, "REDACTED") {
		t.Errorf("formatted key: %s", out)
	}
	// JSON is for the enrolment response only; it does carry the secret,
	// which is why Key has exported fields.
	j, _ := json.Marshal(k)
	if !strings.Contains(string(j), k.Secret) {
		t.Errorf("JSON of a key lacks its secret: %s", j)
	}
}

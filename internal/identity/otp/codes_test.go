package otp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// TestNewEmailCode: 8 digits, stored as their SHA-256, different each time.
func TestNewEmailCode(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		code, hash, err := NewEmailCode()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[0-9]{8}$`).MatchString(code) {
			t.Fatalf("code %q", code)
		}
		if sum := sha256.Sum256([]byte(code)); !bytes.Equal(hash, sum[:]) {
			t.Fatalf("hash of %q is not its SHA-256", code)
		}
		if !CheckEmailCode(code, hash) {
			t.Fatalf("CheckEmailCode refuses a fresh code")
		}
		seen[code] = true
	}
	if len(seen) < 99 {
		t.Errorf("%d distinct codes in 100", len(seen))
	}
}

// TestEmailCodeNoModuloBias: a draw above the largest multiple of 10^8 is
// rejected and drawn again, not reduced modulo 10^8 (which would make the
// low codes likelier); and leading zeros are kept.
func TestEmailCodeNoModuloBias(t *testing.T) {
	r := bytes.NewReader(append([]byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 60)...))
	code, _, err := newEmailCode(r)
	if err != nil {
		t.Fatal(err)
	}
	if code != "00000000" {
		t.Errorf("code = %q: an out-of-range draw was reduced, not rejected (want the next draw, 00000000)", code)
	}
	if _, _, err := newEmailCode(iotest.ErrReader(errors.New("entropy gone"))); err == nil {
		t.Error("a failing random source gave a code")
	}
}

// TestEmailCodeDistribution is a smoke test of uniformity: every digit
// appears in every position about as often as the others.
func TestEmailCodeDistribution(t *testing.T) {
	const n = 20000
	var counts [EmailCodeDigits][10]int
	for range n {
		code, _, err := NewEmailCode()
		if err != nil {
			t.Fatal(err)
		}
		for i := range EmailCodeDigits {
			counts[i][code[i]-'0']++
		}
	}
	for i, row := range counts {
		for d, c := range row {
			// Expected 2000, standard deviation about 42: 6 sigma either way.
			if c < 1750 || c > 2250 {
				t.Errorf("digit %d in position %d: %d of %d", d, i, c, n)
			}
		}
	}
}

// TestCheckEmailCode: anything but the exact 8 digits is refused, and so is
// a hash that is not a SHA-256.
func TestCheckEmailCode(t *testing.T) {
	code, hash, err := NewEmailCode()
	if err != nil {
		t.Fatal(err)
	}
	other := "00000000"
	if other == code {
		other = "00000001"
	}
	for _, c := range []string{"", other, code[:7], code + "0", " " + code, code + " ", code[:4] + "-" + code[4:],
		strings.Replace(code, code[:1], "x", 1), "１２３４５６７８"} {
		if CheckEmailCode(c, hash) {
			t.Errorf("CheckEmailCode(%q) accepted", c)
		}
	}
	for name, h := range map[string][]byte{"nil": nil, "empty": {}, "truncated": hash[:16], "extended": append(bytes.Clone(hash), 0)} {
		if CheckEmailCode(code, h) {
			t.Errorf("CheckEmailCode with a %s hash accepted", name)
		}
	}
	// Even the right code is refused against a hash of zeros (a wiped row).
	if CheckEmailCode(code, make([]byte, 32)) {
		t.Error("zero hash accepted")
	}
}

var recoveryFormat = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$`)

// TestNewRecoveryCodes: 10 codes of the documented form, 60 bits each,
// distinct, stored as SHA-256 of their canonical form.
func TestNewRecoveryCodes(t *testing.T) {
	if RecoveryCodeBits < 60 || len(recoveryAlphabet) != 32 {
		t.Fatalf("%d bits, alphabet of %d", RecoveryCodeBits, len(recoveryAlphabet))
	}
	for _, c := range "ilou" {
		if strings.ContainsRune(recoveryAlphabet, c) {
			t.Errorf("ambiguous letter %c in the alphabet", c)
		}
	}
	codes, hashes, err := NewRecoveryCodes(DefaultRecoveryCodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if !recoveryFormat.MatchString(c) {
			t.Errorf("code %q", c)
		}
		sum := sha256.Sum256([]byte(strings.ReplaceAll(c, "-", "")))
		if !bytes.Equal(hashes[i], sum[:]) {
			t.Errorf("hash %d is not the SHA-256 of code %d", i, i)
		}
		seen[c] = true
	}
	if len(seen) != 10 {
		t.Error("duplicate codes")
	}
	for _, n := range []int{-1, 0, MaxRecoveryCodes + 1} {
		if _, _, err := NewRecoveryCodes(n); err == nil {
			t.Errorf("NewRecoveryCodes(%d) succeeded", n)
		}
	}
}

// TestRecoveryCodeEncoding: each code is 60 bits of the random source, in
// order, 5 bits a symbol: all zeros and all ones give the first and last
// symbols everywhere; a repeated draw is skipped, not issued twice.
func TestRecoveryCodeEncoding(t *testing.T) {
	src := append(append(make([]byte, 8), make([]byte, 8)...), bytes.Repeat([]byte{0xff}, 8)...)
	codes, _, err := newRecoveryCodes(bytes.NewReader(src), 2)
	if err != nil {
		t.Fatal(err)
	}
	if codes[0] != "0000-0000-0000" || codes[1] != "zzzz-zzzz-zzzz" {
		t.Errorf("codes = %q", codes)
	}
	if _, _, err := newRecoveryCodes(bytes.NewReader(make([]byte, 12)), 2); err == nil {
		t.Error("a short random source gave codes")
	}
}

// TestMatchRecoveryCode: a code is found however it is typed, wrong or
// mangled codes are not, and the index tells the caller which hash to
// delete, after which the code no longer works.
func TestMatchRecoveryCode(t *testing.T) {
	// A code with the digits 0 and 1, which o, i and l stand for, needs a
	// crafted source:
	// 0x0000_0000_0000_0021 encodes as "0000-0000-0011".
	src := append([]byte{0, 0, 0, 0, 0, 0, 0, 0x21}, make([]byte, 8*20)...)
	for i := 8; i < len(src); i++ {
		src[i] = byte(i * 37)
	}
	codes, hashes, err := newRecoveryCodes(bytes.NewReader(src), 10)
	if err != nil {
		t.Fatal(err)
	}
	if codes[0] != "0000-0000-0011" {
		t.Fatalf("crafted code = %q", codes[0])
	}
	for _, typed := range []string{
		"0000-0000-0011", "000000000011", "0000 0000 0011", "OOOO-oooo-00LI", "0000-0000-00il",
		" 0000-0000-0011 ", "0000--0000--0011", "00-00-00-00-00-11",
	} {
		if i, ok := MatchRecoveryCode(typed, hashes); !ok || i != 0 {
			t.Errorf("MatchRecoveryCode(%q) = %d, %v; want 0, true", typed, i, ok)
		}
	}
	for want, c := range codes {
		if i, ok := MatchRecoveryCode(strings.ToUpper(c), hashes); !ok || i != want {
			t.Errorf("code %d: MatchRecoveryCode = %d, %v", want, i, ok)
		}
	}
	other, _, err := NewRecoveryCodes(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, typed := range []string{
		"", "0000-0000-001", "0000-0000-00110", "0000-0000-0012", "0000-0000-001u", "0000_0000_0011",
		"0000.0000.0011", "0000-0000-0011\x00", other[0], strings.Repeat("0", 100), "ｏ000-0000-0011",
	} {
		if i, ok := MatchRecoveryCode(typed, hashes); ok || i != -1 {
			t.Errorf("MatchRecoveryCode(%q) = %d, %v; want -1, false", typed, i, ok)
		}
	}
	if _, ok := MatchRecoveryCode(codes[0], nil); ok {
		t.Error("matched against no hashes")
	}
	if _, ok := MatchRecoveryCode(codes[0], [][]byte{nil, {}, make([]byte, 32)}); ok {
		t.Error("matched against empty or zero hashes")
	}
	// Single use, as the caller does it: delete the hash at the index.
	i, ok := MatchRecoveryCode(codes[4], hashes)
	if !ok || i != 4 {
		t.Fatalf("code 4: %d, %v", i, ok)
	}
	hashes = append(hashes[:i], hashes[i+1:]...)
	if _, ok := MatchRecoveryCode(codes[4], hashes); ok {
		t.Error("a used recovery code matched again after its hash was deleted")
	}
	if j, ok := MatchRecoveryCode(codes[5], hashes); !ok || j != 4 {
		t.Errorf("code 5 after the deletion: %d, %v; want 4, true", j, ok)
	}
}

package password

import (
	"errors"
	"testing"
)

// fuzzMaxWork bounds the derivation work of one fuzz input, so that the
// fuzzer explores the parser instead of waiting on well-formed costly hashes
// (which TestVerifyMalformed and TestMalformedBaseline cover).
const fuzzMaxWork = 20_000

// FuzzVerify feeds arbitrary stored hashes and passwords to Verify: it must
// never panic, never report a match together with an error, report every
// failure to parse as ErrMalformed, and only ever match a hash that parses.
//
//	go test -run '^$' -fuzz FuzzVerify ./internal/identity/password/
func FuzzVerify(f *testing.F) {
	for _, p := range []Params{fastPBKDF2, fastArgon2} {
		f.Add("Tr0ub4dor&3", mustHash(f, "Tr0ub4dor&3", p))
		f.Add("wrong", mustHash(f, "Tr0ub4dor&3", p))
	}
	f.Add("passwordPASSWORDpassword", "$pbkdf2-sha256$i=4096$c2FsdFNBTFRzYWx0U0FMVHNhbHRTQUxUc2FsdFNBTFRzYWx0$NIyJ28vTKy8y2BS4EW6EzysXNH68GAAYHE4qH7jdU+HGNVGMfaxH6Q")
	for _, enc := range malformedHashes() {
		f.Add("Tr0ub4dor&3", enc)
	}
	f.Fuzz(func(t *testing.T, pw, encoded string) {
		h, perr := parse(encoded)
		if perr == nil {
			work := h.params.Iterations
			if h.params.Algorithm == AlgArgon2id {
				work = h.params.Iterations * int(h.params.Memory) / 8
			}
			if work > fuzzMaxWork {
				t.Skip("costly well-formed hash")
			}
		}
		ok, err := Verify(pw, encoded)
		if ok && err != nil {
			t.Fatalf("match with an error: %v", err)
		}
		if perr != nil {
			if ok || !errors.Is(err, ErrMalformed) {
				t.Fatalf("unparsable hash: Verify = %v, %v; want false, ErrMalformed", ok, err)
			}
			return
		}
		if err != nil && !errors.Is(err, ErrTooLong) {
			t.Fatalf("parsable hash: unexpected error %v", err)
		}
		// A parsable hash re-encodes to itself: the format is canonical,
		// so two different strings never mean the same hash.
		if got := encode(h.params, h.salt, h.key); got != encoded {
			t.Fatalf("re-encoded as %q", got)
		}
	})
}

// FuzzCountInRange: the range parser never panics, never returns a negative
// count, and its errors are ErrBadRange.
func FuzzCountInRange(f *testing.F) {
	f.Add([]byte("3AA5619F2932733104EB8CEEF08F6FD2693:126927\r\n0000000000000000000000000000000000A:0\n"))
	f.Add([]byte("\n\n3aa5619f2932733104eb8ceef08f6fd2693:1"))
	f.Add([]byte("<html>"))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := countInRange(body, "3AA5619F2932733104EB8CEEF08F6FD2693")
		if n < 0 || (err != nil && (n != 0 || !errors.Is(err, ErrBadRange))) {
			t.Fatalf("countInRange = %d, %v", n, err)
		}
	})
}

package password

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Algorithm names, as they appear in [Params.Algorithm] and in the first
// field of an encoded hash.
const (
	// AlgPBKDF2SHA256 is PBKDF2 (RFC 8018) with HMAC-SHA256, the algorithm
	// AUTH-9 requires and the default.
	AlgPBKDF2SHA256 = "pbkdf2-sha256"
	// AlgArgon2id is Argon2id (RFC 9106), version 0x13, selectable per
	// tenant where memory-hard hashing is preferred.
	AlgArgon2id = "argon2id"
)

// Sizes and bounds. The upper bounds apply both to the parameters given to
// [Hash] and to those read from a stored hash by [Verify]: a stored hash is
// untrusted input, and these bounds keep a planted one from turning a login
// into a denial of service.
const (
	// MaxPasswordBytes is the longest password, in bytes, that [Hash] and
	// [Verify] accept. Longer ones fail with [ErrTooLong].
	MaxPasswordBytes = 1024

	// SaltSize is the size in bytes of the random salt [Hash] draws (128
	// bits, as NIST SP 800-132 and RFC 9106 recommend).
	SaltSize = 16
	// KeySize is the size in bytes of the key [Hash] derives and stores.
	KeySize = 32

	// MinPBKDF2Iterations is the iteration count AUTH-9 requires at least,
	// and the value of [DefaultPBKDF2]. [Hash] accepts lower counts (tests
	// use them); configuration should refuse them.
	MinPBKDF2Iterations = 600_000
	// MaxPBKDF2Iterations bounds the PBKDF2 iteration count.
	MaxPBKDF2Iterations = 10_000_000

	// MaxArgon2Memory bounds the Argon2id memory, in KiB (1 GiB).
	MaxArgon2Memory = 1 << 20
	// MaxArgon2Time bounds the Argon2id number of passes.
	MaxArgon2Time = 16
	// MaxArgon2Threads bounds the Argon2id degree of parallelism (lanes).
	MaxArgon2Threads = 16

	// Lengths, in bytes, of the salt and the key accepted in a stored hash.
	minStoredSalt, maxStoredSalt = 16, 64
	minStoredKey, maxStoredKey   = 16, 64

	// maxEncodedLen bounds the length of a stored hash before it is parsed.
	maxEncodedLen = 512
)

// Errors of this package; test them with [errors.Is].
var (
	// ErrMalformed reports a stored hash that does not parse, names an
	// unknown algorithm, or carries parameters outside the accepted bounds.
	ErrMalformed = errors.New("malformed password hash")
	// ErrTooLong reports a password longer than [MaxPasswordBytes].
	ErrTooLong = errors.New("password too long")
	// ErrInvalidParams reports hashing parameters that are unknown or out
	// of bounds.
	ErrInvalidParams = errors.New("invalid password hashing parameters")
)

// Params selects a hashing algorithm and its cost.
//
// For [AlgPBKDF2SHA256], Iterations is the iteration count and Memory and
// Threads must be zero. PBKDF2-HMAC inherits HMAC's key handling: a password
// and the same password followed by zero bytes (up to 64 bytes in all), and a
// password longer than 64 bytes and its raw SHA-256, are the same password.
// Neither equivalence helps someone who does not already know the password;
// Argon2id has neither. For [AlgArgon2id], Iterations is the number of
// passes (t), Memory the memory in KiB (m) and Threads the degree of
// parallelism (p).
type Params struct {
	// Algorithm is AlgPBKDF2SHA256 or AlgArgon2id.
	Algorithm string
	// Iterations is the PBKDF2 iteration count or the Argon2id passes.
	Iterations int
	// Memory is the Argon2id memory in KiB; zero for PBKDF2.
	Memory uint32
	// Threads is the Argon2id parallelism; zero for PBKDF2.
	Threads uint8
}

// DefaultPBKDF2 returns the default parameters: PBKDF2-HMAC-SHA256 with
// 600,000 iterations, the figure of AUTH-9 and of the OWASP Password Storage
// Cheat Sheet.
func DefaultPBKDF2() Params {
	return Params{Algorithm: AlgPBKDF2SHA256, Iterations: MinPBKDF2Iterations}
}

// DefaultArgon2id returns the Argon2id parameters offered as an alternative
// to PBKDF2: m = 64 MiB, t = 3 passes, p = 2 lanes. The memory and passes are
// those of the second recommended option of RFC 9106 section 4 (which uses
// p = 4), well above the OWASP Password Storage Cheat Sheet's minimum (m = 19
// MiB, t = 2, p = 1). Each login then needs 64 MiB for its duration: size
// the server, and the concurrency of logins, for it.
func DefaultArgon2id() Params {
	return Params{Algorithm: AlgArgon2id, Iterations: 3, Memory: 64 * 1024, Threads: 2}
}

// Validate reports whether p names a known algorithm with a cost within the
// bounds of this package. It does not enforce the AUTH-9 minimum: compare
// with [DefaultPBKDF2] or [MinPBKDF2Iterations] for that.
func (p Params) Validate() error {
	switch p.Algorithm {
	case AlgPBKDF2SHA256:
		if p.Iterations < 1 || p.Iterations > MaxPBKDF2Iterations {
			return fmt.Errorf("%w: pbkdf2 iterations %d not in [1, %d]", ErrInvalidParams, p.Iterations, MaxPBKDF2Iterations)
		}
		if p.Memory != 0 || p.Threads != 0 {
			return fmt.Errorf("%w: memory and threads do not apply to pbkdf2", ErrInvalidParams)
		}
	case AlgArgon2id:
		if p.Iterations < 1 || p.Iterations > MaxArgon2Time {
			return fmt.Errorf("%w: argon2id passes %d not in [1, %d]", ErrInvalidParams, p.Iterations, MaxArgon2Time)
		}
		if p.Threads < 1 || p.Threads > MaxArgon2Threads {
			return fmt.Errorf("%w: argon2id threads %d not in [1, %d]", ErrInvalidParams, p.Threads, MaxArgon2Threads)
		}
		// Argon2 needs 8 KiB per lane; x/crypto would silently raise a
		// lower figure, and the encoded cost would then lie.
		if p.Memory < 8*uint32(p.Threads) || p.Memory > MaxArgon2Memory {
			return fmt.Errorf("%w: argon2id memory %d KiB not in [%d, %d]", ErrInvalidParams, p.Memory, 8*uint32(p.Threads), MaxArgon2Memory)
		}
	default:
		return fmt.Errorf("%w: unknown algorithm %q", ErrInvalidParams, p.Algorithm)
	}
	return nil
}

// Hash derives a key from pw with a fresh 128-bit random salt and the
// parameters p, and returns the encoded hash to store (see the package
// documentation for its format).
func Hash(pw string, p Params) (string, error) {
	if len(pw) > MaxPasswordBytes {
		return "", fmt.Errorf("password: hash: %w (%d bytes, at most %d)", ErrTooLong, len(pw), MaxPasswordBytes)
	}
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	salt := make([]byte, SaltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: hash: read salt: %w", err)
	}
	key, err := derive(pw, p, salt, KeySize)
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return encode(p, salt, key), nil
}

// Verify reports whether pw matches the encoded hash, comparing the keys in
// constant time. A mismatch is (false, nil). A stored hash that does not
// parse or whose cost is out of bounds is (false, an error wrapping
// [ErrMalformed]); Verify never panics on it.
//
// A password longer than [MaxPasswordBytes] is (false, an error wrapping
// [ErrTooLong]), but only after the same derivation work as a real check
// (on a fixed dummy password), so that an over-long password cannot tell an
// existing account, which would otherwise fail fast, from an unknown one, for
// which the caller runs [DummyVerify].
func Verify(pw, encoded string) (ok bool, err error) {
	ok, err = verify(pw, encoded)
	if err != nil {
		return false, fmt.Errorf("password: verify: %w", err)
	}
	return ok, nil
}

// verify is Verify without the error prefix, shared with Reused.
func verify(pw, encoded string) (bool, error) {
	h, err := parse(encoded)
	if err != nil {
		return false, err
	}
	tooLong := len(pw) > MaxPasswordBytes
	if tooLong {
		pw = dummyPassword
	}
	key, err := derive(pw, h.params, h.salt, len(h.key))
	if err != nil {
		return false, err
	}
	if tooLong {
		return false, fmt.Errorf("%w (at most %d bytes)", ErrTooLong, MaxPasswordBytes)
	}
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}

// NeedsRehash reports whether the stored hash should be replaced by a hash
// with parameters p, which the caller can do right after a successful
// [Verify], while it holds the password: when the algorithm differs, when
// the stored cost is lower than p's in any dimension (for Argon2id, also when
// the parallelism differs), when its salt or key is shorter than what [Hash]
// now produces, or when it does not parse. A stored cost higher than p's is
// kept. If p itself is invalid, NeedsRehash returns false, since a rehash
// with p would fail.
func NeedsRehash(encoded string, p Params) bool {
	if p.Validate() != nil {
		return false
	}
	h, err := parse(encoded)
	if err != nil {
		return true
	}
	if h.params.Algorithm != p.Algorithm || len(h.salt) < SaltSize || len(h.key) < KeySize {
		return true
	}
	switch p.Algorithm {
	case AlgArgon2id:
		return h.params.Iterations < p.Iterations || h.params.Memory < p.Memory || h.params.Threads != p.Threads
	default:
		return h.params.Iterations < p.Iterations
	}
}

// dummyPassword is what DummyVerify, and Verify for an over-long password,
// derive from.
const dummyPassword = "relais dummy password, never matches" // #nosec G101 -- a decoy that equalises timing, not a credential

// DummyVerify spends the time of a [Verify] against a hash with parameters p,
// through the same code path, and throws the result away. Call it when a
// login names an unknown user, with the parameters that new hashes use, so
// that the response time does not reveal whether an account exists. If p is
// invalid, [DefaultPBKDF2] is used instead, so that DummyVerify never returns
// early.
//
// Accounts whose stored hash predates a rise of the parameters still take
// less time until they are rehashed at their next login (see [NeedsRehash]).
func DummyVerify(p Params) {
	_, _ = verify(dummyPassword, dummyEncoded(dummyParams(p)))
}

// dummyParams is p, or DefaultPBKDF2 if p is invalid.
func dummyParams(p Params) Params {
	if p.Validate() != nil {
		return DefaultPBKDF2()
	}
	return p
}

// dummyEncoded is a well-formed hash with parameters p, a fixed salt and an
// all-zero key that no derivation produces in practice.
func dummyEncoded(p Params) string {
	return encode(p, make([]byte, SaltSize), make([]byte, KeySize))
}

// derive runs the key derivation function of p. p must be valid.
func derive(pw string, p Params, salt []byte, keyLen int) ([]byte, error) {
	switch p.Algorithm {
	case AlgPBKDF2SHA256:
		key, err := pbkdf2.Key(sha256.New, pw, salt, p.Iterations, keyLen)
		if err != nil {
			return nil, fmt.Errorf("pbkdf2: %w", err)
		}
		return key, nil
	case AlgArgon2id:
		// #nosec G115 -- callers pass Params that passed Validate (passes <= MaxArgon2Time) and keyLen is KeySize or a parsed 16..64
		return argon2.IDKey([]byte(pw), salt, uint32(p.Iterations), p.Memory, p.Threads, uint32(keyLen)), nil
	default:
		return nil, fmt.Errorf("%w: unknown algorithm %q", ErrInvalidParams, p.Algorithm)
	}
}

var b64 = base64.RawStdEncoding.Strict()

// encode formats an encoded hash. p must be valid.
func encode(p Params, salt, key []byte) string {
	switch p.Algorithm {
	case AlgArgon2id:
		return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", AlgArgon2id, argon2.Version,
			p.Memory, p.Iterations, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
	default:
		return fmt.Sprintf("$%s$i=%d$%s$%s", AlgPBKDF2SHA256, p.Iterations,
			b64.EncodeToString(salt), b64.EncodeToString(key))
	}
}

// decoded is a parsed stored hash.
type decoded struct {
	params    Params
	salt, key []byte
}

// parse reads an encoded hash strictly: exact field count and order,
// canonical decimal numbers, strict base64, and every value within the
// bounds of this package. Its errors wrap ErrMalformed and name the field at
// fault, never its content.
func parse(encoded string) (decoded, error) {
	var h decoded
	if len(encoded) > maxEncodedLen {
		return h, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(encoded), maxEncodedLen)
	}
	if !strings.HasPrefix(encoded, "$") {
		return h, fmt.Errorf("%w: does not start with '$'", ErrMalformed)
	}
	f := strings.Split(encoded[1:], "$")
	var err error
	switch f[0] {
	case AlgPBKDF2SHA256:
		if len(f) != 4 {
			return h, fmt.Errorf("%w: pbkdf2-sha256 has %d fields, want 4", ErrMalformed, len(f))
		}
		it, ok := strings.CutPrefix(f[1], "i=")
		if !ok {
			return h, fmt.Errorf("%w: pbkdf2-sha256 iterations field is not i=<n>", ErrMalformed)
		}
		n, err := parseUint(it, 1, MaxPBKDF2Iterations)
		if err != nil {
			return h, fmt.Errorf("%w: pbkdf2-sha256 iterations: %w", ErrMalformed, err)
		}
		h.params = Params{Algorithm: AlgPBKDF2SHA256, Iterations: int(n)} // #nosec G115 -- parseUint bounds n to MaxPBKDF2Iterations
		f = f[2:]
	case AlgArgon2id:
		if len(f) != 5 {
			return h, fmt.Errorf("%w: argon2id has %d fields, want 5", ErrMalformed, len(f))
		}
		if f[1] != "v="+strconv.Itoa(argon2.Version) {
			return h, fmt.Errorf("%w: argon2id version is not v=%d", ErrMalformed, argon2.Version)
		}
		p, err := parseArgon2Params(f[2])
		if err != nil {
			return h, fmt.Errorf("%w: argon2id parameters: %w", ErrMalformed, err)
		}
		h.params = p
		f = f[3:]
	default:
		return h, fmt.Errorf("%w: unknown algorithm", ErrMalformed)
	}
	if h.salt, err = decodeB64(f[0], minStoredSalt, maxStoredSalt); err != nil {
		return h, fmt.Errorf("%w: salt: %w", ErrMalformed, err)
	}
	if h.key, err = decodeB64(f[1], minStoredKey, maxStoredKey); err != nil {
		return h, fmt.Errorf("%w: key: %w", ErrMalformed, err)
	}
	return h, nil
}

// parseArgon2Params reads "m=<n>,t=<n>,p=<n>", in that order.
func parseArgon2Params(s string) (Params, error) {
	p := Params{Algorithm: AlgArgon2id}
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return p, errors.New("not m=<n>,t=<n>,p=<n>")
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(parts[i], name)
		if !ok {
			return p, errors.New("not m=<n>,t=<n>,p=<n>")
		}
		var err error
		if vals[i], err = parseUint(v, 1, MaxArgon2Memory); err != nil {
			return p, fmt.Errorf("%s: %w", name[:1], err)
		}
	}
	if vals[1] > MaxArgon2Time || vals[2] > MaxArgon2Threads {
		return p, errors.New("passes or threads out of range")
	}
	p.Memory, p.Iterations, p.Threads = uint32(vals[0]), int(vals[1]), uint8(vals[2]) // #nosec G115 -- bounded above (memory <= 1<<20, passes and threads <= 16)
	if err := p.Validate(); err != nil {
		return p, errors.New("memory out of range")
	}
	return p, nil
}

// parseUint reads a canonical decimal number (no sign, no leading zero, at
// most 10 digits) within [lo, hi].
func parseUint(s string, lo, hi uint64) (uint64, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a canonical number")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a canonical number")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d not in [%d, %d]", n, lo, hi)
	}
	return n, nil
}

// decodeB64 decodes unpadded standard base64, refusing any byte outside the
// alphabet (the decoder itself would skip CR and LF) and any length outside
// [lo, hi] bytes.
func decodeB64(s string, lo, hi int) ([]byte, error) {
	if len(s) > b64.EncodedLen(hi) {
		return nil, fmt.Errorf("longer than %d bytes", hi)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, errors.New("not unpadded standard base64")
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("not unpadded standard base64")
	}
	if len(b) < lo || len(b) > hi {
		return nil, fmt.Errorf("%d bytes, want %d to %d", len(b), lo, hi)
	}
	return b, nil
}

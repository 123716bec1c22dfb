package password

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"golang.org/x/crypto/argon2"
)

// Each package benchmark has a reference that calls the primitive directly
// with the same cost (600,000 PBKDF2-HMAC-SHA256 iterations, or Argon2id
// m = 64 MiB, t = 3, p = 2, and a 16-byte salt and a 32-byte key), so the
// overhead of this package (salt, parameter checks, encoding, parsing,
// comparison) reads as a ratio in one run. Each operation takes tens to
// hundreds of milliseconds, so fix the count:
//
//	go test -run '^$' -bench . -benchtime 20x -count 3 ./internal/identity/password/
const benchPassword = "correct horse battery staple"

func BenchmarkHashPBKDF2Default(b *testing.B) {
	p := DefaultPBKDF2()
	for b.Loop() {
		if _, err := Hash(benchPassword, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawPBKDF2(b *testing.B) {
	salt := make([]byte, SaltSize)
	rand.Read(salt)
	iter := DefaultPBKDF2().Iterations // the same cost as the benchmark above
	for b.Loop() {
		if _, err := pbkdf2.Key(sha256.New, benchPassword, salt, iter, KeySize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPBKDF2Default(b *testing.B) {
	enc := mustHash(b, benchPassword, DefaultPBKDF2())
	for b.Loop() {
		if ok, err := Verify(benchPassword, enc); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkDummyVerifyPBKDF2Default should read the same as
// BenchmarkVerifyPBKDF2Default: that is the point of DummyVerify.
func BenchmarkDummyVerifyPBKDF2Default(b *testing.B) {
	p := DefaultPBKDF2()
	for b.Loop() {
		DummyVerify(p)
	}
}

func BenchmarkHashArgon2idDefault(b *testing.B) {
	p := DefaultArgon2id()
	for b.Loop() {
		if _, err := Hash(benchPassword, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawArgon2id(b *testing.B) {
	salt := make([]byte, SaltSize)
	rand.Read(salt)
	p := DefaultArgon2id() // the same cost as the benchmark above
	for b.Loop() {
		argon2.IDKey([]byte(benchPassword), salt, uint32(p.Iterations), p.Memory, p.Threads, KeySize)
	}
}

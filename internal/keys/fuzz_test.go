package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"
)

// FuzzFieldOpen proves that Open never panics on hostile input, fails only
// with ErrFormat or ErrDecrypt, and opens nothing but the one ciphertext it
// was given. `go test` runs the seed corpus; `go test -fuzz FuzzFieldOpen`
// explores.
func FuzzFieldOpen(f *testing.F) {
	c := newFieldCipher(f, vecTenant, 1, dataKeyFrom(seq(32)))
	valid, err := hex.DecodeString(vecFieldCiphertext)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, vecField)
	f.Add(valid, "phone")
	f.Add(valid[:len(valid)-1], vecField)
	f.Add(valid[:fieldOverhead], vecField)
	f.Add(valid[:fieldOverhead-1], vecField)
	f.Add(valid[:fieldHeaderSize], vecField)
	f.Add([]byte{}, "")
	f.Add([]byte{0x02}, vecField)
	f.Add(flipped(valid, 8*fieldHeaderSize), vecField)
	f.Add(append([]byte{0x01, 0, 0, 0, 2}, valid[fieldHeaderSize:]...), vecField)
	f.Add(append([]byte{0x01, 0xff, 0xff, 0xff, 0xff}, valid[fieldHeaderSize:]...), vecField)
	f.Fuzz(func(t *testing.T, ciphertext []byte, field string) {
		pt, err := c.Open(field, ciphertext)
		if err != nil {
			if !isDataError(err) {
				t.Fatalf("Open error %v is neither ErrFormat nor ErrDecrypt", err)
			}
			if pt != nil {
				t.Fatal("Open returned plaintext with its error")
			}
		} else if !bytes.Equal(ciphertext, valid) || field != vecField || string(pt) != vecPlaintext {
			t.Fatalf("Open accepted a ciphertext it was never given: %x for field %q", ciphertext, field)
		}
		if v, err := KeyVersionOf(ciphertext); err == nil && (v < 1 || len(ciphertext) < fieldOverhead) {
			t.Fatalf("KeyVersionOf = %d for %d bytes", v, len(ciphertext))
		}
	})
}

// FuzzUnwrapDataKey proves that unwrapping hostile bytes never panics and
// fails only with ErrFormat or ErrDecrypt.
func FuzzUnwrapDataKey(f *testing.F) {
	ctx := context.Background()
	mk := newMasterKey(f)
	w, err := WrapDataKey(ctx, mk, vecTenant, 1, dataKeyFrom(seq(32)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(w)
	f.Add(w[:minWrapped])
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add(flipped(w, 100))
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		dk, err := UnwrapDataKey(ctx, mk, vecTenant, 1, wrapped)
		if err != nil {
			if !isDataError(err) || dk != nil {
				t.Fatalf("UnwrapDataKey = %v, %v", dk, err)
			}
		} else if !bytes.Equal(wrapped, w) {
			t.Fatalf("UnwrapDataKey accepted bytes it never wrapped: %x", wrapped)
		}
	})
}

// FuzzParseMasterKeyFile proves that the key file parser never panics, and
// accepts only the documented format.
func FuzzParseMasterKeyFile(f *testing.F) {
	f.Add(validKeyFile(seq(32)))
	f.Add(validKeyFile(seq(31)))
	f.Add([]byte("relais-master-key-v1\n"))
	f.Add([]byte("relais-master-key-v1\n====\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseMasterKeyFile(data)
		if err != nil {
			if key != nil {
				t.Fatal("parser returned a key with its error")
			}
			return
		}
		if len(key) != 32 || !bytes.Equal(validKeyFile(key), data) {
			t.Fatalf("parser accepted %q", data)
		}
	})
}

package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func TestFieldCipherRoundTrip(t *testing.T) {
	c := newFieldCipher(t, "tenant-a", 1, newDataKey(t))
	tests := []struct {
		name      string
		field     string
		plaintext []byte
	}{
		{"nil", "email", nil},
		{"empty", "email", []byte{}},
		{"email", "email", []byte("alice@example.com")},
		{"unicode", "last_name", []byte("Éléonore Ñúñez 李")},
		{"empty field name", "", []byte("x")},
		{"1 KiB", "notes", seq(1024)},
		{"largest", "blob", make([]byte, MaxFieldSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := c.Seal(tt.field, tt.plaintext)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(ct) != len(tt.plaintext)+fieldOverhead {
				t.Errorf("ciphertext length = %d, want %d", len(ct), len(tt.plaintext)+fieldOverhead)
			}
			if len(tt.plaintext) >= 8 && len(tt.plaintext) < MaxFieldSize && bytes.Contains(ct, tt.plaintext) {
				t.Error("ciphertext contains the plaintext")
			}
			if v, err := KeyVersionOf(ct); err != nil || v != 1 {
				t.Errorf("KeyVersionOf = %d, %v; want 1", v, err)
			}
			pt, err := c.Open(tt.field, ct)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(pt, tt.plaintext) {
				t.Error("Open returned other bytes than were sealed")
			}
		})
	}

	if _, err := c.Seal("blob", make([]byte, MaxFieldSize+1)); err == nil {
		t.Error("Seal of more than MaxFieldSize succeeded")
	}
}

// TestFieldCipherRefusesOtherContext moves a ciphertext of tenant A, field
// "email", key version 1, everywhere it must not open.
func TestFieldCipherRefusesOtherContext(t *testing.T) {
	dkA, dkB := newDataKey(t), newDataKey(t)
	a := newFieldCipher(t, "tenant-a", 1, dkA)
	ct, err := a.Seal("email", []byte("alice@example.com"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		opener *FieldCipher
		field  string
	}{
		{"tenant B's key and ID", newFieldCipher(t, "tenant-b", 1, dkB), "email"},
		{"tenant A's key under tenant B's ID", newFieldCipher(t, "tenant-b", 1, dkA), "email"},
		{"tenant B's key under tenant A's ID", newFieldCipher(t, "tenant-a", 1, dkB), "email"},
		{"tenant ID that extends A's", newFieldCipher(t, "tenant-a1", 1, dkA), "email"},
		{"another field", a, "phone"},
		{"field name shifted into the tenant ID", newFieldCipher(t, "tenant-ae", 1, dkA), "mail"},
		{"empty field", a, ""},
		{"same key labelled as version 2", newFieldCipher(t, "tenant-a", 2, dkA), "email"},
		{"tenant A's next key, version 1", newFieldCipher(t, "tenant-a", 1, newDataKey(t)), "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.opener.Open(tt.field, ct)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open error = %v, want ErrDecrypt", err)
			}
			if pt != nil {
				t.Error("Open returned plaintext with its error")
			}
		})
	}

	// Control: the ciphertext itself is sound.
	if _, err := a.Open("email", ct); err != nil {
		t.Fatalf("control: tenant A cannot open its own ciphertext: %v", err)
	}
}

func TestFieldCipherTampered(t *testing.T) {
	c := newFieldCipher(t, "tenant-a", 7, newDataKey(t))
	ct, err := c.Seal("email", []byte("alice@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every bit flipped", func(t *testing.T) {
		for i := range len(ct) * 8 {
			pt, err := c.Open("email", flipped(ct, i))
			if !isDataError(err) || pt != nil {
				t.Fatalf("bit %d flipped: Open = %q, %v; want ErrDecrypt or ErrFormat", i, pt, err)
			}
			if i < 8 && !errors.Is(err, ErrFormat) {
				t.Fatalf("version byte bit %d flipped: %v, want ErrFormat", i, err)
			}
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(ct) {
			_, err := c.Open("email", ct[:n])
			if n < fieldOverhead && !errors.Is(err, ErrFormat) {
				t.Fatalf("truncated to %d bytes: %v, want ErrFormat", n, err)
			}
			if !isDataError(err) {
				t.Fatalf("truncated to %d bytes: %v, want ErrDecrypt or ErrFormat", n, err)
			}
		}
	})
	t.Run("appended byte", func(t *testing.T) {
		if _, err := c.Open("email", append(append([]byte(nil), ct...), 0)); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open = %v, want ErrDecrypt", err)
		}
	})
	t.Run("nonce swapped from another ciphertext", func(t *testing.T) {
		other, err := c.Seal("email", []byte("alice@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		mixed := append([]byte(nil), ct...)
		copy(mixed[fieldHeaderSize:], other[fieldHeaderSize:fieldHeaderSize+gcmNonceSize])
		if _, err := c.Open("email", mixed); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open = %v, want ErrDecrypt", err)
		}
	})
	t.Run("absurdly long", func(t *testing.T) {
		huge := make([]byte, fieldOverhead+MaxFieldSize+1)
		copy(huge, ct[:fieldHeaderSize])
		if _, err := c.Open("email", huge); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open = %v, want ErrFormat", err)
		}
	})
}

// TestFieldCipherNonceFresh seals one plaintext many times: every ciphertext,
// and every nonce, must differ.
func TestFieldCipherNonceFresh(t *testing.T) {
	c := newFieldCipher(t, "tenant-a", 1, newDataKey(t))
	seen := make(map[string]bool)
	nonces := make(map[string]bool)
	for range 1000 {
		ct, err := c.Seal("email", []byte("alice@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(ct)] {
			t.Fatal("two encryptions of the same plaintext are equal")
		}
		seen[string(ct)] = true
		nonce := string(ct[fieldHeaderSize : fieldHeaderSize+gcmNonceSize])
		if nonces[nonce] {
			t.Fatal("nonce reused")
		}
		nonces[nonce] = true
	}
}

func TestKeyVersionOf(t *testing.T) {
	header := func(version byte, keyVersion uint32, n int) []byte {
		b := make([]byte, n)
		b[0] = version
		binary.BigEndian.PutUint32(b[1:], keyVersion)
		return b
	}
	tests := []struct {
		name       string
		ciphertext []byte
		want       int
		wantErr    error
	}{
		{"version 1", header(1, 1, fieldOverhead), 1, nil},
		{"version 42", header(1, 42, fieldOverhead+10), 42, nil},
		{"largest version", header(1, math.MaxInt32, fieldOverhead), math.MaxInt32, nil},
		{"key version 0", header(1, 0, fieldOverhead), 0, ErrFormat},
		{"key version above MaxInt32", header(1, math.MaxInt32+1, fieldOverhead), 0, ErrFormat},
		{"key version MaxUint32", header(1, math.MaxUint32, fieldOverhead), 0, ErrFormat},
		{"format version 0", header(0, 1, fieldOverhead), 0, ErrFormat},
		{"format version 2", header(2, 1, fieldOverhead), 0, ErrFormat},
		{"nil", nil, 0, ErrFormat},
		{"header only", header(1, 1, fieldHeaderSize), 0, ErrFormat},
		{"one byte short of header, nonce and tag", header(1, 1, fieldOverhead-1), 0, ErrFormat},
		{"too long", header(1, 1, fieldOverhead+MaxFieldSize+1), 0, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KeyVersionOf(tt.ciphertext)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("KeyVersionOf error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("KeyVersionOf = %d, want %d", got, tt.want)
			}
		})
	}

	// With real ciphers: rotation picks the cipher by the version.
	dk1, dk2 := newDataKey(t), newDataKey(t)
	ciphers := map[int]*FieldCipher{1: newFieldCipher(t, "t", 1, dk1), 2: newFieldCipher(t, "t", 2, dk2)}
	for v, c := range ciphers {
		ct, err := c.Seal("email", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := KeyVersionOf(ct)
		if err != nil || got != v {
			t.Fatalf("KeyVersionOf = %d, %v; want %d", got, err, v)
		}
		if _, err := ciphers[got].Open("email", ct); err != nil {
			t.Fatalf("Open with the cipher KeyVersionOf picked: %v", err)
		}
		if _, err := ciphers[3-got].Open("email", ct); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open with the other version's cipher: %v, want ErrDecrypt", err)
		}
	}
}

func TestNewFieldCipherRefuses(t *testing.T) {
	destroyed := newDataKey(t)
	destroyed.Destroy()
	tests := []struct {
		name       string
		tenantID   string
		keyVersion int
		dk         *DataKey
	}{
		{"empty tenant", "", 1, newDataKey(t)},
		{"version 0", "t", 0, newDataKey(t)},
		{"negative version", "t", -1, newDataKey(t)},
		{"version above MaxInt32", "t", math.MaxInt32 + 1, newDataKey(t)},
		{"nil data key", "t", 1, nil},
		{"zero DataKey", "t", 1, &DataKey{}},
		{"destroyed data key", "t", 1, destroyed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := NewFieldCipher(tt.tenantID, tt.keyVersion, tt.dk); err == nil || c != nil {
				t.Errorf("NewFieldCipher = %v, %v; want an error", c, err)
			}
		})
	}
}

func TestFieldCipherZeroValue(t *testing.T) {
	for _, c := range []*FieldCipher{nil, new(FieldCipher)} {
		if _, err := c.Seal("email", []byte("x")); err == nil {
			t.Error("Seal on an uninitialised FieldCipher succeeded")
		}
		if _, err := c.Open("email", make([]byte, 64)); err == nil {
			t.Error("Open on an uninitialised FieldCipher succeeded")
		}
	}
}

// TestFieldCipherOutlivesDataKey checks that the cipher keeps working after
// the data key it came from is destroyed, as the package doc recommends.
func TestFieldCipherOutlivesDataKey(t *testing.T) {
	dk := newDataKey(t)
	c := newFieldCipher(t, "t", 1, dk)
	dk.Destroy()
	ct, err := c.Seal("email", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open("email", ct); err != nil {
		t.Fatal(err)
	}
}

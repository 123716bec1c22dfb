package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestFileMasterKeyWrapUnwrap(t *testing.T) {
	mk := newMasterKey(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty plaintext", nil, []byte("aad")},
		{"data key, no aad", seq(32), nil},
		{"data key", seq(32), []byte("relais/tenant-data-key/v1 t1")},
		{"largest", seq(maxWrapPlaintext), []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := mk.Wrap(ctx, tt.plaintext, tt.aad)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			if len(w) != len(tt.plaintext)+minWrapped {
				t.Errorf("wrapped length = %d, want %d", len(w), len(tt.plaintext)+minWrapped)
			}
			if len(tt.plaintext) > 0 && bytes.Contains(w, tt.plaintext) {
				t.Error("wrapped output contains the plaintext")
			}
			got, err := mk.Unwrap(ctx, w, tt.aad)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Unwrap = %x, want %x", got, tt.plaintext)
			}
		})
	}

	if _, err := mk.Wrap(ctx, seq(maxWrapPlaintext+1), nil); err == nil {
		t.Error("Wrap of more than 4 KiB succeeded; a master key wraps keys, not data")
	}
}

// TestFileMasterKeyUnwrapRefuses tries to unwrap with the wrong key, with the
// wrong binding, and altered or malformed input.
func TestFileMasterKeyUnwrapRefuses(t *testing.T) {
	ctx := context.Background()
	mk, other := newMasterKey(t), newMasterKey(t)
	aad := []byte("tenant a")
	w, err := mk.Wrap(ctx, seq(32), aad)
	if err != nil {
		t.Fatal(err)
	}
	badVersion := append([]byte(nil), w...)
	badVersion[0] = 2

	tests := []struct {
		name    string
		key     *FileMasterKey
		wrapped []byte
		aad     []byte
		want    error
	}{
		{"another master key", other, w, aad, ErrDecrypt},
		{"another aad", mk, w, []byte("tenant b"), ErrDecrypt},
		{"aad dropped", mk, w, nil, ErrDecrypt},
		{"aad extended", mk, w, []byte("tenant a "), ErrDecrypt},
		{"unknown version", mk, badVersion, aad, ErrFormat},
		{"empty", mk, nil, aad, ErrFormat},
		{"shorter than version, nonce and tag", mk, w[:minWrapped-1], aad, ErrFormat},
		{"too long", mk, make([]byte, maxWrapped+1), aad, ErrFormat},
		{"trailing byte", mk, append(append([]byte(nil), w...), 0), aad, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.key.Unwrap(ctx, tt.wrapped, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unwrap error = %v, want %v", err, tt.want)
			}
			if pt != nil {
				t.Errorf("Unwrap returned %d bytes with its error", len(pt))
			}
		})
	}

	t.Run("every bit flipped", func(t *testing.T) {
		for i := range len(w) * 8 {
			if _, err := mk.Unwrap(ctx, flipped(w, i), aad); !isDataError(err) {
				t.Fatalf("bit %d flipped: error = %v, want ErrDecrypt or ErrFormat", i, err)
			}
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(w) {
			if _, err := mk.Unwrap(ctx, w[:n], aad); !isDataError(err) {
				t.Fatalf("truncated to %d bytes: error = %v, want ErrDecrypt or ErrFormat", n, err)
			}
		}
	})
}

func TestFileMasterKeyCanceledContext(t *testing.T) {
	mk := newMasterKey(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mk.Wrap(ctx, seq(32), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap with canceled context: %v, want context.Canceled", err)
	}
	if _, err := mk.Unwrap(ctx, make([]byte, 64), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Unwrap with canceled context: %v, want context.Canceled", err)
	}
}

// TestFileMasterKeyID checks the documented ID against an independent
// computation from the file, and that it does not print key material.
func TestFileMasterKeyID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	mk, err := LoadOrCreateFileMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	key := keyFromFile(t, path)
	sum := sha256.Sum256(key)
	if want := "file:v1:" + hex.EncodeToString(sum[:])[:8]; mk.ID() != want {
		t.Errorf("ID = %q, want %q", mk.ID(), want)
	}
	if !regexp.MustCompile(`^file:v1:[0-9a-f]{8}$`).MatchString(mk.ID()) {
		t.Errorf("ID %q does not match file:v1:<8 hex>", mk.ID())
	}
	if other := newMasterKey(t); other.ID() == mk.ID() {
		t.Errorf("two new master keys share ID %q", mk.ID())
	}

	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("loaded", "key", mk)
	printed := fmt.Sprintf("%v %+v %#v %s", mk, mk, mk, mk) + fmt.Sprintf("%+v", *mk) + logBuf.String()
	assertNoKeyMaterial(t, printed, key)
	if !strings.Contains(printed, mk.ID()) {
		t.Errorf("printed form %q lacks the ID", printed)
	}
}

// keyFromFile decodes the key bytes of a master key file, independently of
// the package's parser.
func keyFromFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) != 3 || lines[0] != "relais-master-key-v1" || lines[2] != "" {
		t.Fatalf("key file is not two newline-terminated lines with the v1 header")
	}
	key, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || len(key) != 32 {
		t.Fatalf("second line is not the base64 of 32 bytes (err %v)", err)
	}
	return key
}

// assertNoKeyMaterial fails if s holds key in raw, hex or base64 form.
func assertNoKeyMaterial(t *testing.T, s string, key []byte) {
	t.Helper()
	for _, form := range []string{
		string(key),
		hex.EncodeToString(key),
		strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		fmt.Sprint(key), // [1 2 3 ...]
		hex.EncodeToString(key[:8]),
	} {
		if strings.Contains(s, form) {
			t.Fatalf("key material leaked into %q", s)
		}
	}
}

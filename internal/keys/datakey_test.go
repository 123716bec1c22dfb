package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
)

func TestNewDataKeyIsRandom(t *testing.T) {
	a, b := newDataKey(t), newDataKey(t)
	if bytes.Equal(a.key[:], b.key[:]) {
		t.Error("two new data keys are equal")
	}
	if bytes.Equal(a.key[:], make([]byte, 32)) {
		t.Error("new data key is all zero")
	}
}

func TestWrapDataKeyRoundTrip(t *testing.T) {
	ctx := context.Background()
	mk, dk := newMasterKey(t), newDataKey(t)
	w, err := WrapDataKey(ctx, mk, "tenant-a", 3, dk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, dk.key[:]) {
		t.Error("wrapped data key contains the key")
	}
	got, err := UnwrapDataKey(ctx, mk, "tenant-a", 3, w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.key[:], dk.key[:]) {
		t.Error("unwrapped data key differs from the wrapped one")
	}
}

// TestUnwrapDataKeyRefuses checks that a wrapped data key opens only under
// its master key, tenant and version: copied to another tenant's row, to
// another version, or read with another master key, it fails.
func TestUnwrapDataKeyRefuses(t *testing.T) {
	ctx := context.Background()
	mk, otherMK := newMasterKey(t), newMasterKey(t)
	wrapA, err := WrapDataKey(ctx, mk, "t1", 1, newDataKey(t))
	if err != nil {
		t.Fatal(err)
	}
	// A master key wrap of 31 bytes under the right binding.
	short, err := mk.Wrap(ctx, seq(31), dataKeyAAD("t1", 1))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		mk       MasterKey
		tenantID string
		version  int
		wrapped  []byte
		want     error
	}{
		{"another master key", otherMK, "t1", 1, wrapA, ErrDecrypt},
		{"copied to another tenant", mk, "t2", 1, wrapA, ErrDecrypt},
		{"copied to a tenant whose ID extends it", mk, "t10", 1, wrapA, ErrDecrypt},
		{"copied to a tenant whose ID it extends", mk, "t", 1, wrapA, ErrDecrypt},
		{"another version", mk, "t1", 2, wrapA, ErrDecrypt},
		{"truncated", mk, "t1", 1, wrapA[:len(wrapA)-1], ErrDecrypt},
		{"empty", mk, "t1", 1, nil, ErrFormat},
		{"absurdly long", mk, "t1", 1, make([]byte, 1<<20), ErrFormat},
		{"wraps 31 bytes, not a key", mk, "t1", 1, short, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dk, err := UnwrapDataKey(ctx, tt.mk, tt.tenantID, tt.version, tt.wrapped)
			if !errors.Is(err, tt.want) {
				t.Fatalf("UnwrapDataKey error = %v, want %v", err, tt.want)
			}
			if dk != nil {
				t.Error("UnwrapDataKey returned a key with its error")
			}
		})
	}

	t.Run("every bit flipped", func(t *testing.T) {
		for i := range len(wrapA) * 8 {
			if _, err := UnwrapDataKey(ctx, mk, "t1", 1, flipped(wrapA, i)); !isDataError(err) {
				t.Fatalf("bit %d flipped: error = %v", i, err)
			}
		}
	})
}

func TestDataKeyArgumentsRefused(t *testing.T) {
	ctx := context.Background()
	mk := newMasterKey(t)
	destroyed := newDataKey(t)
	destroyed.Destroy()
	tests := []struct {
		name     string
		mk       MasterKey
		tenantID string
		version  int
		dk       *DataKey
	}{
		{"nil master key", nil, "t1", 1, newDataKey(t)},
		{"empty tenant", mk, "", 1, newDataKey(t)},
		{"version 0", mk, "t1", 0, newDataKey(t)},
		{"negative version", mk, "t1", -1, newDataKey(t)},
		{"version above uint32", mk, "t1", math.MaxInt32 + 1, newDataKey(t)},
		{"nil data key", mk, "t1", 1, nil},
		{"zero DataKey", mk, "t1", 1, &DataKey{}},
		{"destroyed data key", mk, "t1", 1, destroyed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := WrapDataKey(ctx, tt.mk, tt.tenantID, tt.version, tt.dk); err == nil {
				t.Error("WrapDataKey accepted it")
			}
			if tt.dk == nil || tt.dk.key == nil {
				return
			}
			if _, err := UnwrapDataKey(ctx, tt.mk, tt.tenantID, tt.version, make([]byte, 61)); err == nil {
				t.Error("UnwrapDataKey accepted it")
			}
		})
	}
}

func TestDataKeyDestroy(t *testing.T) {
	dk := newDataKey(t)
	arr := dk.key
	dk.Destroy()
	if !bytes.Equal(arr[:], make([]byte, 32)) {
		t.Error("Destroy left key bytes in memory")
	}
	if _, err := NewFieldCipher("t1", 1, dk); err == nil {
		t.Error("NewFieldCipher accepted a destroyed key")
	}
	if _, err := NewBlindIndex("t1", dk); err == nil {
		t.Error("NewBlindIndex accepted a destroyed key")
	}
	dk.Destroy() // twice is fine
	var nilKey *DataKey
	nilKey.Destroy() // so is nil
}

// TestDataKeyRedacted prints and logs a data key every way we can think of
// and looks for the key bytes.
func TestDataKeyRedacted(t *testing.T) {
	dk := newDataKey(t)
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		fmt.Fprintf(&out, verb+"|", dk)
		fmt.Fprintf(&out, verb+"|", struct{ K *DataKey }{dk})
		fmt.Fprintf(&out, verb+"|", []*DataKey{dk})
	}
	fmt.Fprint(&out, dk, *dk)
	slog.New(slog.NewTextHandler(&out, nil)).Info("key", "dk", dk)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("key", "dk", dk)
	assertNoKeyMaterial(t, out.String(), dk.key[:])
	if !strings.Contains(out.String(), "REDACTED") {
		t.Errorf("output %q lacks REDACTED", out.String())
	}
}

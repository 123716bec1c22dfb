package keys

import (
	"bytes"
	"testing"
)

func TestBlindIndexDeterministic(t *testing.T) {
	dk := newDataKey(t)
	b1, b2 := newBlindIndex(t, "tenant-a", dk), newBlindIndex(t, "tenant-a", dk)
	x := b1.Sum("email", []byte("alice@example.com"))
	if len(x) != 32 {
		t.Fatalf("Sum is %d bytes, want 32", len(x))
	}
	for _, y := range [][]byte{
		b1.Sum("email", []byte("alice@example.com")),
		b2.Sum("email", []byte("alice@example.com")), // another instance, same key
	} {
		if !Equal(x, y) {
			t.Error("the same tenant, field and value gave two indexes")
		}
	}
	if bytes.Contains(x, []byte("alice")) {
		t.Error("index contains the value")
	}
}

// TestBlindIndexSeparation checks that an index of tenant A's field does not
// match across tenants, fields, keys, or shifted boundaries.
func TestBlindIndexSeparation(t *testing.T) {
	dkA, dkB := newDataKey(t), newDataKey(t)
	a := newBlindIndex(t, "tenant-a", dkA)
	base := a.Sum("email", []byte("alice@example.com"))
	tests := []struct {
		name  string
		b     *BlindIndex
		field string
		value string
	}{
		{"tenant B, own key", newBlindIndex(t, "tenant-b", dkB), "email", "alice@example.com"},
		{"tenant A's key, tenant B's ID", newBlindIndex(t, "tenant-b", dkA), "email", "alice@example.com"},
		{"tenant B's key, tenant A's ID", newBlindIndex(t, "tenant-a", dkB), "email", "alice@example.com"},
		{"another field", a, "billing_email", "alice@example.com"},
		{"another value", a, "email", "alice@example.org"},
		{"field and value boundary shifted", a, "emaila", "lice@example.com"},
		{"tenant and field boundary shifted", newBlindIndex(t, "tenant-ae", dkA), "mail", "alice@example.com"},
		{"not normalised", a, "email", "Alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.b.Sum(tt.field, []byte(tt.value))
			if Equal(got, base) || bytes.Equal(got, base) {
				t.Error("index matches tenant A's email index")
			}
		})
	}
}

func TestBlindIndexZeroValuePanics(t *testing.T) {
	for _, b := range []*BlindIndex{nil, new(BlindIndex)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Sum on an uninitialised BlindIndex did not panic; it would compute an unkeyed index")
				}
			}()
			b.Sum("email", []byte("x"))
		}()
	}
}

func TestEqual(t *testing.T) {
	x := seq(32)
	y := flipped(x, 255)
	tests := []struct {
		name string
		a, b []byte
		want bool
	}{
		{"same", x, append([]byte(nil), x...), true},
		{"last bit differs", x, y, false},
		{"first bit differs", x, flipped(x, 0), false},
		{"prefix", x, x[:31], false},
		{"both empty", nil, []byte{}, false},
		{"both nil", nil, nil, false},
		{"equal but not 32 bytes", seq(16), seq(16), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

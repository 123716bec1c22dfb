package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoVerbPrintsKeyMaterial: every value holding key material or a
// credential prints redacted with every fmt verb (memory hygiene).
func TestNoVerbPrintsKeyMaterial(t *testing.T) {
	dk := newDataKey(t)
	raw, _ := dk.bytes()
	fc, err := NewFieldCipher("tenant-a", 1, dk)
	if err != nil {
		t.Fatal(err)
	}
	bi, err := NewBlindIndex("tenant-a", dk)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := LoadFileKeyring(filepath.Join(t.TempDir(), "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVault(VaultOptions{Address: "https://vault.example:8200", Token: "s.very-secret-token"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = kr.Wrap(context.Background(), []byte("x"), nil)
	secrets := [][]byte{raw, bi.key, []byte("s.very-secret-token")}
	for _, val := range []any{dk, fc, bi, kr, kr.current, v} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			out := fmt.Sprintf(verb, val)
			for _, s := range secrets {
				if bytes.Contains([]byte(out), s) || strings.Contains(strings.ToLower(out), hex.EncodeToString(s)) ||
					strings.Contains(out, fmt.Sprint([]byte(s))) {
					t.Fatalf("%T printed with %s shows a secret: %s", val, verb, out)
				}
			}
			if strings.Contains(out, "[") && strings.Contains(out, " ") && strings.ContainsAny(out, "0123456789") && strings.Count(out, " ") > 8 {
				t.Fatalf("%T printed with %s looks like raw bytes: %s", val, verb, out)
			}
		}
	}
}

package keys_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/keys/keystest"
	"github.com/relais-dev/relais/internal/testkit/transit"
)

// TestProviderContract runs the same contract against every provider: the
// key file, Vault transit (the httptest fake) and PKCS#11 (SoftHSM2).
func TestProviderContract(t *testing.T) {
	for _, kind := range []string{"file", "vault", "pkcs11"} {
		t.Run(kind, func(t *testing.T) {
			mk := keystest.Of(t, kind)
			ctx := context.Background()
			secret := bytes.Repeat([]byte{0x42}, 32)
			aad := []byte("relais/test/v1")

			// Round trip, platform scope and tenant scope.
			for _, scope := range []keys.MasterKey{mk, keys.ForTenant(mk, "t-"+kind+"-a")} {
				w, err := scope.Wrap(ctx, secret, aad)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(w, secret) {
					t.Fatal("wrapped form holds the plaintext")
				}
				pt, err := scope.Unwrap(ctx, w, aad)
				if err != nil || !bytes.Equal(pt, secret) {
					t.Fatalf("unwrap: %v", err)
				}
				// Another binding fails authentication.
				if _, err := scope.Unwrap(ctx, w, []byte("other")); !errors.Is(err, keys.ErrDecrypt) {
					t.Fatalf("unwrap with another aad: %v, want ErrDecrypt", err)
				}
				// Altered bytes fail.
				bad := bytes.Clone(w)
				bad[len(bad)-2] ^= 1
				if _, err := scope.Unwrap(ctx, bad, aad); !errors.Is(err, keys.ErrDecrypt) && !errors.Is(err, keys.ErrFormat) {
					t.Fatalf("unwrap altered: %v", err)
				}
				// Garbage is a format error, not a crash.
				if _, err := scope.Unwrap(ctx, []byte("garbage"), aad); !errors.Is(err, keys.ErrFormat) {
					t.Fatalf("unwrap garbage: %v, want ErrFormat", err)
				}
			}

			a, b := keys.ForTenant(mk, "t-"+kind+"-a"), keys.ForTenant(mk, "t-"+kind+"-b")
			wa, err := a.Wrap(ctx, secret, aad)
			if err != nil {
				t.Fatal(err)
			}
			if kind != "file" {
				// Per-tenant master keys: B's key does not open A's wraps.
				if _, err := b.Unwrap(ctx, wa, aad); err == nil {
					t.Fatal("tenant B's master key unwrapped tenant A's key")
				}
			}

			// Rotation: the old wrap still opens; Rewrap moves it to the
			// new version.
			rot, ok := a.(keys.Rotator)
			if !ok {
				t.Fatalf("%T is not a Rotator", a)
			}
			if _, err := rot.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			if pt, err := a.Unwrap(ctx, wa, aad); err != nil || !bytes.Equal(pt, secret) {
				t.Fatalf("unwrap after rotation: %v", err)
			}
			wa2, err := keys.Rewrap(ctx, a, wa, aad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(wa, wa2) {
				t.Fatal("rewrap returned the same bytes")
			}
			if pt, err := a.Unwrap(ctx, wa2, aad); err != nil || !bytes.Equal(pt, secret) {
				t.Fatalf("unwrap rewrapped: %v", err)
			}

			// Destruction (per-tenant providers): nothing opens any more.
			if d, ok := a.(keys.Destroyer); ok {
				if err := d.Destroy(ctx); err != nil {
					t.Fatal(err)
				}
				for _, w := range [][]byte{wa, wa2} {
					if _, err := a.Unwrap(ctx, w, aad); !errors.Is(err, keys.ErrDecrypt) {
						t.Fatalf("unwrap after destroy: %v, want ErrDecrypt", err)
					}
				}
				// Tenant B is untouched.
				wb, err := b.Wrap(ctx, secret, aad)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.Unwrap(ctx, wb, aad); err != nil {
					t.Fatal(err)
				}
			} else if kind != "file" {
				t.Fatalf("%T is not a Destroyer", a)
			}
		})
	}
}

func TestFileKeyringRotation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "master.key")
	k, err := keys.LoadFileKeyring(path, true)
	if err != nil {
		t.Fatal(err)
	}
	// A second process (a running server) with the same files.
	server, err := keys.LoadFileKeyring(path, false)
	if err != nil {
		t.Fatal(err)
	}
	old := k.ID()
	w1, _ := k.Wrap(ctx, []byte("k1"), nil)
	id, err := k.Rotate(ctx)
	if err != nil || id == old {
		t.Fatalf("rotate: %v %s", err, id)
	}
	// Interrupted: rotating again resumes with the same next key.
	if id2, _ := k.Rotate(ctx); id2 != id {
		t.Fatalf("resumed rotation made another key: %s != %s", id2, id)
	}
	// Wrap reloads the files (their directory changed): it must still use
	// the next key while this process rotates.
	w2, _ := k.Wrap(ctx, []byte("k2"), nil)
	if k.ID() != id {
		t.Fatalf("during rotation ID %s, want the next key %s", k.ID(), id)
	}
	old1, _ := keys.LoadFileKeyring(path, false) // a process with only the old key as current
	if _, err := old1.Unwrap(ctx, w2, nil); err != nil {
		t.Fatal(err)
	}
	// The server opens what the rotating process wrapped under the next key.
	if pt, err := server.Unwrap(ctx, w2, nil); err != nil || string(pt) != "k2" {
		t.Fatalf("server unwrap of next-key wrap: %v", err)
	}
	if err := k.CommitRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.CommitRotation(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if k.ID() != id {
		t.Fatalf("after commit ID %s, want %s", k.ID(), id)
	}
	if _, err := os.Stat(path + ".retired-" + strings.TrimPrefix(old, "file:v1:")); err != nil {
		t.Fatal(err)
	}
	// A fresh load opens both generations.
	fresh, err := keys.LoadFileKeyring(path, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range [][]byte{w1, w2} {
		if _, err := fresh.Unwrap(ctx, w, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := fresh.IDs(); len(got) != 2 || got[0] != id || got[1] != old {
		t.Fatalf("IDs %v", got)
	}
	// Deleting the retired file makes the old wraps unreadable.
	if err := os.Remove(path + ".retired-" + strings.TrimPrefix(old, "file:v1:")); err != nil {
		t.Fatal(err)
	}
	fresh, _ = keys.LoadFileKeyring(path, false)
	if _, err := fresh.Unwrap(ctx, w1, nil); !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("retired key deleted: %v", err)
	}
}

func TestVaultFailures(t *testing.T) {
	ctx := context.Background()
	srv := transit.New()
	defer srv.Close()
	v, err := keys.NewVault(keys.VaultOptions{Address: srv.URL, Token: srv.Token, AllowHTTP: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := v.Wrap(ctx, []byte("secret-key-bytes"), nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sealed", func(t *testing.T) {
		srv.Sealed.Store(true)
		defer srv.Sealed.Store(false)
		_, err := v.Unwrap(ctx, w, nil)
		if err == nil || !strings.Contains(err.Error(), "sealed") {
			t.Fatalf("sealed: %v", err)
		}
		if err := v.Check(ctx); err == nil {
			t.Fatal("check passed on a sealed vault")
		}
	})
	t.Run("slow", func(t *testing.T) {
		srv.Delay.Store(int64(time.Minute))
		defer srv.Delay.Store(0)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := v.Unwrap(cctx, w, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("slow: %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		srv.Garbage.Store(true)
		defer srv.Garbage.Store(false)
		if _, err := v.Unwrap(ctx, w, nil); !errors.Is(err, keys.ErrFormat) {
			t.Fatalf("garbage: %v", err)
		}
		if _, err := v.Wrap(ctx, []byte("x"), nil); !errors.Is(err, keys.ErrFormat) {
			t.Fatalf("garbage wrap: %v", err)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		bad, _ := keys.NewVault(keys.VaultOptions{Address: srv.URL, Token: "wrong", AllowHTTP: true})
		_, err := bad.Unwrap(ctx, w, nil)
		var ve *keys.VaultError
		if !errors.As(err, &ve) || ve.Status != http.StatusForbidden || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("bad token: %v", err)
		}
	})
	t.Run("approle", func(t *testing.T) {
		ar, err := keys.NewVault(keys.VaultOptions{Address: srv.URL, RoleID: srv.RoleID, SecretID: srv.SecretID, AllowHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := ar.Unwrap(ctx, w, nil); err != nil || string(pt) != "secret-key-bytes" {
			t.Fatalf("approle: %v", err)
		}
		bad, _ := keys.NewVault(keys.VaultOptions{Address: srv.URL, RoleID: srv.RoleID, SecretID: "nope", AllowHTTP: true})
		if _, err := bad.Unwrap(ctx, w, nil); err == nil || !strings.Contains(err.Error(), "AppRole") {
			t.Fatalf("bad approle: %v", err)
		}
	})
	t.Run("config", func(t *testing.T) {
		if _, err := keys.NewVault(keys.VaultOptions{Address: "http://vault:8200", Token: "x"}); err == nil {
			t.Fatal("plain http accepted")
		}
		if _, err := keys.NewVault(keys.VaultOptions{Address: "https://vault:8200"}); err == nil {
			t.Fatal("no credentials accepted")
		}
	})
}

func TestPKCS11Failures(t *testing.T) {
	if _, err := keystest.SoftHSM(t); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]keys.PKCS11Options{
		"missing module": {Module: "/nonexistent/libpkcs11.so", TokenLabel: keystest.SoftHSMToken, PIN: "pin-987654"},
		"missing token":  {Module: keystest.SoftHSMModule, TokenLabel: "no-such-token", PIN: keystest.SoftHSMPIN},
		"no pin":         {Module: keystest.SoftHSMModule, TokenLabel: keystest.SoftHSMToken},
	} {
		p, err := keys.OpenPKCS11(o)
		if err == nil {
			_ = p.Close()
			t.Fatalf("%s: opened", name)
		}
		t.Logf("%s: %v", name, err)
		if o.PIN != "" && strings.Contains(err.Error(), o.PIN) {
			t.Fatalf("%s: error quotes the PIN", name)
		}
	}
	// The shared provider still works after the failed attempts.
	p, _ := keystest.SoftHSM(t)
	w, err := p.Wrap(context.Background(), []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unwrap(context.Background(), w, nil); err != nil {
		t.Fatal(err)
	}
}

package tenants_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func service(t *testing.T, db *store.DB) *tenants.Service {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
}

func TestCreateListGetDisable(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		a, err := s.Create(ctx, "  Acme  ", "acme")
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != "Acme" || a.Status != tenants.StatusActive || a.ID == "" {
			t.Fatalf("created %+v", a)
		}
		if _, err := s.Create(ctx, "Other", "acme"); !errors.Is(err, tenants.ErrSlugTaken) {
			t.Fatalf("duplicate slug: %v", err)
		}
		b, err := s.Create(ctx, "Beta", "beta")
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 2 || list[0].Slug != "acme" || list[1].Slug != "beta" {
			t.Fatalf("list %+v %v", list, err)
		}
		for _, ref := range []string{"beta", b.ID} {
			got, err := s.Get(ctx, ref)
			if err != nil || got.ID != b.ID {
				t.Fatalf("get %s: %+v %v", ref, got, err)
			}
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, tenants.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		d, err := s.SetStatus(ctx, "acme", tenants.StatusDisabled)
		if err != nil || d.Status != tenants.StatusDisabled {
			t.Fatalf("disable %+v %v", d, err)
		}
		if _, err := s.SetStatus(ctx, "acme", "deleted"); err == nil {
			t.Fatal("bad status accepted")
		}
		// Audit: the operator log has create, create, disable; acme's own log
		// has create, key.create, disable; both chains verify.
		for _, tc := range []struct {
			tenant  string
			actions []string
		}{
			{"", []string{"tenant.create", "tenant.create", "tenant.disable"}},
			{a.ID, []string{"tenant.create", "key.create", "tenant.disable"}},
		} {
			err := db.Platform(ctx, func(p *store.PlatformTx) error {
				all, err := audit.List(ctx, p.Tenant(tc.tenant), 0, 100)
				if err != nil {
					return err
				}
				var recs []audit.Record
				roles := 0
				for _, r := range all {
					if r.Action == "role.create" {
						roles++ // the built-in roles, created with the tenant
						continue
					}
					recs = append(recs, r)
				}
				if tc.tenant != "" && roles != 5 {
					t.Errorf("built-in roles created: %d, want 5", roles)
				}
				if len(recs) != len(tc.actions) {
					t.Errorf("log %q: %d events, want %d", tc.tenant, len(recs), len(tc.actions))
					return nil
				}
				for i, r := range recs {
					if r.Action != tc.actions[i] {
						t.Errorf("log %q event %d: %s, want %s", tc.tenant, i, r.Action, tc.actions[i])
					}
				}
				rep, err := audit.Verify(ctx, p.Tenant(tc.tenant))
				if err != nil || !rep.OK {
					t.Errorf("log %q does not verify: %+v %v", tc.tenant, rep, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		bad := []struct{ name, slug string }{
			{"", "acme"},
			{"Acme", ""},
			{"Acme", "A"},
			{"Acme", "Acme"},
			{"Acme", "-acme"},
			{"Acme", "acme_corp"},
			{"Acme", "acme/../x"},
			{"Ac\x00me", "acme"},
			{"Acme\nInjected", "acme"},
			{string(make([]byte, 300)), "acme"},
		}
		for _, b := range bad {
			var ve *tenants.ValidationError
			if _, err := s.Create(ctx, b.name, b.slug); !errors.As(err, &ve) {
				t.Errorf("Create(%q, %q): %v, want a validation error", b.name, b.slug, err)
			}
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 0 {
			t.Fatalf("bad input created tenants: %+v %v", list, err)
		}
	})
}

func TestEachTenantHasItsOwnKey(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		a, _ := s.Create(ctx, "A", "ta")
		b, _ := s.Create(ctx, "B", "tb")
		ka, va, err := s.DataKey(ctx, a.ID)
		if err != nil || va != 1 {
			t.Fatalf("key a: %v", err)
		}
		kb, _, err := s.DataKey(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		ca, _ := keys.NewFieldCipher(a.ID, 1, ka)
		cb, _ := keys.NewFieldCipher(b.ID, 1, kb)
		ct, err := ca.Seal("email", []byte("jane@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Open("email", ct); !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("tenant b opened tenant a's field: %v", err)
		}
		// The wrapped key of a, copied onto b's row, does not unwrap as b's.
		var wrappedA []byte
		err = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT wrapped FROM tenant_keys WHERE tenant_id = $1`).Scan(&wrappedA)
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tenant(b.ID).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE tenant_keys SET wrapped = $2 WHERE tenant_id = $1`, wrappedA)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.DataKey(ctx, b.ID); !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("swapped wrapped key unwrapped for another tenant: %v", err)
		}
		// Another master key cannot unwrap a's key.
		other := service(t, db)
		if _, _, err := other.DataKey(ctx, a.ID); !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("another master key unwrapped the tenant key: %v", err)
		}
	})
}

func TestPolicyDefaultsAndOverrides(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		a, _ := s.Create(ctx, "A", "ta")
		p, err := s.Policy(ctx, a.ID)
		if err != nil || !reflect.DeepEqual(p, config.DefaultPolicy()) {
			t.Fatalf("fresh tenant policy %+v %v", p, err)
		}
		got, err := s.SetPolicy(ctx, a.ID, json.RawMessage(`{"password":{"min_length":16},"session":{"idle_timeout":"10m"}}`))
		if err != nil || got.Password.MinLength != 16 || got.Password.History != 5 || got.Session.IdleTimeout.String() != "10m0s" {
			t.Fatalf("override: %+v %v", got, err)
		}
		for _, bad := range []string{
			`{"password":{"min_length":4}}`,
			`{"password":{"pbkdf2_iterations":1000}}`,
			`{"pasword":{}}`,
			`{"session":{"idle_timeout":"soon"}}`,
			`[]`,
			`{`,
		} {
			var ve *tenants.ValidationError
			if _, err := s.SetPolicy(ctx, a.ID, json.RawMessage(bad)); !errors.As(err, &ve) {
				t.Errorf("SetPolicy(%s): %v, want validation error", bad, err)
			}
		}
		p, _ = s.Policy(ctx, a.ID)
		if p.Password.MinLength != 16 {
			t.Fatalf("a refused override changed the policy: %+v", p.Password)
		}
	})
}

func TestKeyringSealsOpensAndIsolates(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		a, _ := s.Create(ctx, "A", "ta")
		b, _ := s.Create(ctx, "B", "tb")
		kr := tenants.NewKeyring(db, s.Master, 0)
		ca, err := kr.Crypto(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := kr.Crypto(ctx, a.ID)
		if again != ca {
			t.Error("keyring did not cache")
		}
		cb, _ := kr.Crypto(ctx, b.ID)
		ct, err := ca.SealString("email", "jane@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := ca.OpenString("email", ct); err != nil || pt != "jane@example.com" {
			t.Fatalf("open: %q %v", pt, err)
		}
		if _, err := cb.Open("email", ct); !errors.Is(err, keys.ErrDecrypt) {
			t.Fatalf("tenant b opened a's field: %v", err)
		}
		if string(ca.Index("email", "jane@example.com")) == string(cb.Index("email", "jane@example.com")) {
			t.Fatal("blind indexes equal across tenants")
		}
		if _, err := kr.Crypto(ctx, "no-such-tenant"); !errors.Is(err, tenants.ErrNoKey) {
			t.Fatalf("unknown tenant: %v", err)
		}
		kr.Forget(a.ID)
		if c2, _ := kr.Crypto(ctx, a.ID); c2 == ca {
			t.Error("Forget kept the entry")
		}
	})
}

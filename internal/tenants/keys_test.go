package tenants_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/keys/keystest"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// versionsOf counts the tenant key versions of the contacts' own keys
// (sealed by the tenant's cipher).
func versionsOf(t *testing.T, db *store.DB, tenantID string) map[int]int {
	t.Helper()
	out := map[int]int{}
	err := db.Tenant(tenantID).Tx(context.Background(), func(tx *store.Tx) error {
		rs, err := tx.Query(context.Background(), `SELECT key_enc FROM contacts WHERE tenant_id = $1`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var b []byte
			if err := rs.Scan(&b); err != nil {
				return err
			}
			v, err := keys.KeyVersionOf(b)
			if err != nil {
				return err
			}
			out[v]++
		}
		return rs.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTenantKeyRotation: a rotation interrupted after its first batch leaves
// every field readable; resumed, it moves every field to the new version,
// blind-index lookups keep working, and the status says so.
func TestTenantKeyRotation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, err := s.Create(ctx, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		kr := tenants.NewKeyring(db, mk, 0)
		cs := &contacts.Service{DB: db, Keyring: kr}
		if _, err := cs.Seed(ctx, a.ID, 120, 7, nil); err != nil {
			t.Fatal(err)
		}
		first, err := cs.Create(ctx, a.ID, contacts.NewContact{Email: "Jane@Example.com", FirstName: "Jane"})
		if err != nil {
			t.Fatal(err)
		}
		if got := versionsOf(t, db, a.ID); got[1] != 121 {
			t.Fatalf("before: %v", got)
		}
		v, err := s.StartRotation(ctx, a.ID)
		if err != nil || v != 2 {
			t.Fatalf("start: %d %v", v, err)
		}
		if again, _ := s.StartRotation(ctx, a.ID); again != 2 {
			t.Fatalf("second start made version %d, want the running 2", again)
		}
		// Interrupt after the first batch of contacts.
		cctx, cancel := context.WithCancel(ctx)
		err = s.RunRotation(cctx, kr, a.ID, tenants.RunOptions{BatchSize: 25, Progress: func(p tenants.RotationProgress) {
			if p.Table == "contacts" {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted run: %v", err)
		}
		mid := versionsOf(t, db, a.ID)
		if mid[1] == 0 || mid[2] == 0 {
			t.Fatalf("mid-rotation versions %v, want both", mid)
		}
		// Reads work mid-rotation, and new writes use version 2.
		kr.Forget(a.ID)
		page, err := cs.List(ctx, a.ID, contacts.ListOptions{Limit: 500})
		if err != nil || len(page.Contacts) != 121 {
			t.Fatalf("list mid-rotation: %d %v", len(page.Contacts), err)
		}
		st, err := s.KeyStatus(ctx, a.ID)
		if err != nil || len(st.Rotations) != 1 || st.Rotations[0].State != "running" || st.Rotations[0].RowsDone == 0 {
			t.Fatalf("status mid-rotation: %+v %v", st, err)
		}
		// Resume (as serve does in the background).
		if err := s.ResumeRotations(ctx, kr, tenants.RunOptions{BatchSize: 25}); err != nil {
			t.Fatal(err)
		}
		if got := versionsOf(t, db, a.ID); got[2] != 121 || got[1] != 0 {
			t.Fatalf("after: %v", got)
		}
		got, err := cs.FindByEmail(ctx, a.ID, "jane@example.com")
		if err != nil || got.ID != first.ID || got.FirstName != "Jane" {
			t.Fatalf("lookup after rotation: %+v %v", got, err)
		}
		st, _ = s.KeyStatus(ctx, a.ID)
		if st.Rotations[0].State != "done" || len(st.Versions) != 2 || st.Versions[0].State != "retired" || st.Versions[1].State != "active" {
			t.Fatalf("status after: %+v", st)
		}
		// Nothing left to do: a run returns at once.
		if err := s.RunRotation(ctx, kr, a.ID, tenants.RunOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDestroyKeys: after crypto-shredding, nothing of the tenant decrypts,
// with a clear error, a record is kept, and the other tenant is untouched.
func TestDestroyKeys(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := s.Create(ctx, "Acme", "acme")
		b, _ := s.Create(ctx, "Beta", "beta")
		kr := tenants.NewKeyring(db, mk, 0)
		cs := &contacts.Service{DB: db, Keyring: kr}
		ca, err := cs.Create(ctx, a.ID, contacts.NewContact{Email: "jane@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := cs.Create(ctx, b.ID, contacts.NewContact{Email: "john@example.com"})
		// The wrapped key as a backup would hold it.
		var backupWrapped []byte
		_ = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT wrapped FROM tenant_keys WHERE tenant_id = $1 AND version = 1`).Scan(&backupWrapped)
		})

		got, err := s.DestroyKeys(ctx, "acme", "contract ended")
		if err != nil || got.Status != tenants.StatusDisabled {
			t.Fatalf("destroy: %+v %v", got, err)
		}
		kr.Forget(a.ID)
		if _, err := cs.Get(ctx, a.ID, ca.ID); !errors.Is(err, keys.ErrShredded) {
			t.Fatalf("read after shredding: %v, want ErrShredded", err)
		}
		if _, err := s.StartRotation(ctx, a.ID); !errors.Is(err, keys.ErrShredded) {
			t.Fatalf("rotate after shredding: %v", err)
		}
		st, _ := s.KeyStatus(ctx, a.ID)
		if !st.Shredded {
			t.Fatalf("status: %+v", st)
		}
		var n int
		_ = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM shredding_records WHERE tenant_id = $1 AND kind = 'tenant'`).Scan(&n)
		})
		if n != 1 {
			t.Fatalf("%d shredding records", n)
		}
		// Per-tenant providers: the backup's wrapped copy cannot be
		// unwrapped either. (The key file is shared by every tenant: there
		// the shredding record, re-applied by every restore, and the
		// rotation of the master key close that door; see architecture.md.)
		if keystest.Name() != "file" {
			if _, err := keys.UnwrapDataKey(ctx, keys.ForTenant(mk, a.ID), a.ID, 1, backupWrapped); err == nil {
				t.Fatal("the backup's wrapped key still unwraps")
			}
		}
		// Idempotent; other tenant fine.
		if _, err := s.DestroyKeys(ctx, "acme", "again"); err != nil {
			t.Fatal(err)
		}
		if c, err := cs.Get(ctx, b.ID, cb.ID); err != nil || c.Email != "john@example.com" {
			t.Fatalf("other tenant: %v", err)
		}
	})
}

// TestRotateMaster re-wraps every tenant key under a new master key version;
// all data stays readable, with a fresh keyring too.
func TestRotateMaster(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := s.Create(ctx, "Acme", "acme")
		b, _ := s.Create(ctx, "Beta", "beta")
		cs := &contacts.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
		ca, _ := cs.Create(ctx, a.ID, contacts.NewContact{Email: "jane@example.com"})
		cb, _ := cs.Create(ctx, b.ID, contacts.NewContact{Email: "john@example.com"})
		var before []byte
		_ = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT wrapped FROM tenant_keys WHERE tenant_id = $1`).Scan(&before)
		})
		seen := 0
		if _, err := s.RotateMaster(ctx, func(tenants.Tenant, int) { seen++ }); err != nil {
			t.Fatal(err)
		}
		if seen != 2 {
			t.Fatalf("rotated %d tenants", seen)
		}
		var after []byte
		_ = db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT wrapped FROM tenant_keys WHERE tenant_id = $1`).Scan(&after)
		})
		if string(before) == string(after) {
			t.Fatal("wrapped key unchanged")
		}
		fresh := &contacts.Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
		for _, c := range []struct{ tenant, id, email string }{{a.ID, ca.ID, "jane@example.com"}, {b.ID, cb.ID, "john@example.com"}} {
			got, err := fresh.Get(ctx, c.tenant, c.id)
			if err != nil || got.Email != c.email {
				t.Fatalf("after master rotation: %v", err)
			}
		}
	})
}

// TestKeyMetrics: versions, ages, running rotations and shredded tenants are
// exported.
func TestKeyMetrics(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		_, _ = s.Create(ctx, "Acme", "acme")
		b, _ := s.Create(ctx, "Beta", "beta")
		if _, err := s.StartRotation(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DestroyKeys(ctx, "acme", "test"); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(tenants.NewKeyCollector(db))
		want := `
# HELP relais_tenant_key_rotation_running 1 while a data-key rotation of the tenant is unfinished.
# TYPE relais_tenant_key_rotation_running gauge
relais_tenant_key_rotation_running{tenant="acme"} 0
relais_tenant_key_rotation_running{tenant="beta"} 1
# HELP relais_tenant_key_version Active data-key version of the tenant.
# TYPE relais_tenant_key_version gauge
relais_tenant_key_version{tenant="acme"} 0
relais_tenant_key_version{tenant="beta"} 2
# HELP relais_tenant_keys_destroyed 1 when the tenant's keys were destroyed (crypto-shredded).
# TYPE relais_tenant_keys_destroyed gauge
relais_tenant_keys_destroyed{tenant="acme"} 1
relais_tenant_keys_destroyed{tenant="beta"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "relais_tenant_key_version", "relais_tenant_key_rotation_running", "relais_tenant_keys_destroyed"); err != nil {
			t.Fatal(err)
		}
		if n, err := testutil.GatherAndCount(reg, "relais_tenant_key_age_seconds"); err != nil || n != 1 {
			t.Fatalf("age series: %d %v", n, err)
		}
	})
}

// TestShredTenantKeysInTransaction: the privacy workflow's hook destroys the
// keys inside its transaction (and the per-tenant master key after commit).
func TestShredTenantKeysInTransaction(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, _ := s.Create(ctx, "Acme", "acme")
		var ids []string
		err := db.Platform(ctx, func(ptx *store.PlatformTx) error {
			var err error
			ids, err = s.ShredTenantKeys(ctx, ptx, a.ID)
			return err
		})
		if err != nil || len(ids) == 0 || !strings.Contains(ids[0], "v1") {
			t.Fatalf("shred: %v %v", ids, err)
		}
		kr := tenants.NewKeyring(db, mk, 0)
		if _, err := kr.Crypto(ctx, a.ID); !errors.Is(err, keys.ErrShredded) {
			t.Fatalf("after shredding: %v", err)
		}
		if st, _ := s.KeyStatus(ctx, a.ID); !st.Shredded {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestSealedColumnsCoverSchema walks the migrated schema: every column named
// *_enc (a value sealed with the tenant's field cipher) must be listed in
// tenants.SealedColumns, so that a data-key rotation re-encrypts it; and
// every listed table, key and column must exist.
func TestSealedColumnsCoverSchema(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		q := `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, column_name`
		if db.Dialect() == store.SQLite {
			q = `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.name`
		}
		schema := map[string]bool{}
		err := db.Platform(ctx, func(ptx *store.PlatformTx) error {
			rs, err := ptx.Query(ctx, q)
			if err != nil {
				return err
			}
			defer rs.Close()
			for rs.Next() {
				var tb, col string
				if err := rs.Scan(&tb, &col); err != nil {
					return err
				}
				schema[tb+"."+col] = true
			}
			return rs.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, sc := range tenants.SealedColumns {
			for _, k := range append([]string{"tenant_id"}, sc.Key...) {
				if !schema[sc.Table+"."+k] {
					t.Errorf("SealedColumns: %s.%s (key) is not in the schema", sc.Table, k)
				}
			}
			for _, c := range sc.Columns {
				listed[sc.Table+"."+c[0]] = true
				if !schema[sc.Table+"."+c[0]] {
					t.Errorf("SealedColumns: %s.%s is not in the schema", sc.Table, c[0])
				}
			}
		}
		n := 0
		for col := range schema {
			if !strings.HasSuffix(col, "_enc") {
				continue
			}
			n++
			if !listed[col] {
				t.Errorf("%s is sealed (*_enc) but not in tenants.SealedColumns: a tenant key rotation would leave it under the old key", col)
			}
		}
		if n < 10 {
			t.Fatalf("the schema walk found %d *_enc columns: it is blind", n)
		}
	})
}

// TestRotationReencryptsSSOSecrets: an SSO provider's client secret and SP
// key, sealed with the tenant key, move to the new key version with a
// rotation and still open.
func TestRotationReencryptsSSOSecrets(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk := keystest.Master(t)
		s := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
		a, err := s.Create(ctx, "Acme", "acme")
		if err != nil {
			t.Fatal(err)
		}
		kr := tenants.NewKeyring(db, mk, 0)
		cr, err := kr.Crypto(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		secret, _ := cr.SealString("sso.client_secret", "oidc-client-secret")
		spKey, _ := cr.Seal("sso.sp_key", []byte("sp private key DER"))
		if err := db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO sso_providers (tenant_id, id, name, kind, enabled, config, secret_enc, sp_key_enc, created_at, updated_at)
				VALUES ($1, 'p1', 'Corp', 'oidc', TRUE, '{}', $2, $3, 0, 0)`, secret, spKey)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StartRotation(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RunRotation(ctx, kr, a.ID, tenants.RunOptions{}); err != nil {
			t.Fatal(err)
		}
		kr.Forget(a.ID)
		cr, err = kr.Crypto(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		var gotSecret, gotKey []byte
		if err := db.Tenant(a.ID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT secret_enc, sp_key_enc FROM sso_providers WHERE tenant_id = $1 AND id = 'p1'`).Scan(&gotSecret, &gotKey)
		}); err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			field string
			ct    []byte
			want  string
		}{{"sso.client_secret", gotSecret, "oidc-client-secret"}, {"sso.sp_key", gotKey, "sp private key DER"}} {
			if ver, err := keys.KeyVersionOf(v.ct); err != nil || ver != 2 {
				t.Errorf("%s: key version %d %v after the rotation, want 2", v.field, ver, err)
			}
			if pt, err := cr.OpenString(v.field, v.ct); err != nil || pt != v.want {
				t.Errorf("%s after the rotation: %q %v", v.field, pt, err)
			}
		}
	})
}

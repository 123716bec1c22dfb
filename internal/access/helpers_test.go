package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var operator = access.Actor{Operator: true}

// env is one store with a service and a tenant (with built-in roles).
type env struct {
	t   *testing.T
	db  *store.DB
	svc *access.Service
	ctx context.Context
}

func newEnv(t *testing.T, db *store.DB, tenants ...string) *env {
	t.Helper()
	e := &env{t: t, db: db, svc: &access.Service{DB: db}, ctx: context.Background()}
	for _, id := range tenants {
		e.tenant(id)
	}
	return e
}

// tenant creates a tenant with a raw platform insert and its built-in roles.
func (e *env) tenant(id string) {
	e.t.Helper()
	err := e.db.Platform(e.ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(e.ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $1, $1, 'active', 1, 1)`, id)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.tx(id, func(tx *store.Tx) error { return access.EnsureBuiltinRoles(e.ctx, tx) })
}

func (e *env) tx(tenant string, fn func(*store.Tx) error) {
	e.t.Helper()
	if err := e.db.Tenant(tenant).Tx(e.ctx, fn); err != nil {
		e.t.Fatal(err)
	}
}

// user inserts a user row; personal fields are dummy bytes.
func (e *env) user(tenant, id string) {
	e.t.Helper()
	e.tx(tenant, func(tx *store.Tx) error {
		_, err := tx.Exec(e.ctx, `INSERT INTO users (tenant_id, id, email_enc, email_bidx, name_enc, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 'active', 1, 1)`, id, []byte("enc"), []byte("bidx-"+id), []byte("enc"))
		return err
	})
}

// client inserts an API client row.
func (e *env) client(tenant, id string) {
	e.t.Helper()
	e.tx(tenant, func(tx *store.Tx) error {
		_, err := tx.Exec(e.ctx, `INSERT INTO api_clients (tenant_id, id, name, secret_hash, status, created_at, updated_at)
			VALUES ($1, $2, $3, 'x', 'active', 1, 1)`, id, "client "+id)
		return err
	})
}

func (e *env) exec(tenant, stmt string, args ...any) {
	e.t.Helper()
	e.tx(tenant, func(tx *store.Tx) error {
		_, err := tx.Exec(e.ctx, stmt, args...)
		return err
	})
}

func (e *env) perms(tenant, userID string) access.Set {
	e.t.Helper()
	s, err := e.svc.UserPermissions(e.ctx, tenant, userID)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// actor is a user acting with the permissions its roles give it.
func (e *env) actor(tenant, userID string) access.Actor {
	return access.Actor{UserID: userID, Permissions: e.perms(tenant, userID)}
}

// events returns the tenant's audit records after seq.
func (e *env) events(tenant string, after int64) []audit.Record {
	e.t.Helper()
	var out []audit.Record
	e.tx(tenant, func(tx *store.Tx) error {
		var err error
		out, err = audit.List(e.ctx, tx, after, 1000)
		return err
	})
	return out
}

// seq is the number of events in the tenant's log, after checking the chain.
func (e *env) seq(tenant string) int64 {
	e.t.Helper()
	var rep audit.Report
	e.tx(tenant, func(tx *store.Tx) error {
		var err error
		rep, err = audit.Verify(e.ctx, tx)
		return err
	})
	if !rep.OK {
		e.t.Fatalf("audit chain of %s does not verify: %+v", tenant, rep.Problem)
	}
	return rep.Events
}

// details decodes a record's details.
func details(t *testing.T, r audit.Record) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Details, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got %v, want %v", err, target)
	}
}

func set(names ...string) access.Set {
	ps := make([]access.Permission, len(names))
	for i, n := range names {
		ps[i] = access.Permission(n)
	}
	return access.NewSet(ps...)
}

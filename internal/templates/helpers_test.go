package templates_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

var bg = context.Background()

type env struct {
	svc  *templates.Service
	db   *store.DB
	a, b string // tenant ids
}

// setup makes two tenants on db and a Service over it.
func setup(t testing.TB, db *store.DB) *env {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}
	a, err := ts.Create(bg, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Create(bg, "Beta", "beta")
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: &templates.Service{DB: db}, db: db, a: a.ID, b: b.ID}
}

// run runs fn on SQLite and PostgreSQL, each with two fresh tenants.
func run(t *testing.T, fn func(t *testing.T, e *env)) {
	storetest.Run(t, func(t *testing.T, db *store.DB) { fn(t, setup(t, db)) })
}

// attrs is the attribute schema the tests validate against.
var attrs = templates.FieldSet{Attributes: []string{"country", "tier"}}

func emailInput(name string) templates.Input {
	return templates.Input{
		Name:          name,
		Channel:       templates.ChannelEmail,
		DefaultLocale: "en",
		Variants: map[string]templates.Variant{
			"en": {Subject: "Hello {{.contact.first_name}}", HTML: "<p>Hi {{.contact.first_name | default \"there\"}} from {{.attributes.country}}</p>", From: "news@acme.test"},
			"fr": {Subject: "Bonjour {{.contact.first_name}}", HTML: "<p>Salut {{.contact.first_name}}</p>", Text: "Salut {{.contact.first_name}}"},
		},
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// events returns a tenant's audit events.
func (e *env) events(t *testing.T, tenant string) []audit.Record {
	t.Helper()
	var out []audit.Record
	err := e.db.Tenant(tenant).Tx(bg, func(tx *store.Tx) error {
		var err error
		out, err = audit.List(bg, tx, 0, 10000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// validation asserts err is a *ValidationError on field (and, when line >
// 0, at line:col) and returns it.
func validation(t *testing.T, err error, field string, line, col int) *templates.ValidationError {
	t.Helper()
	var ve *templates.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError on %s, got %v", field, err)
	}
	if ve.Field != field {
		t.Fatalf("want field %s, got %s (%v)", field, ve.Field, ve)
	}
	if line > 0 && (ve.Line != line || ve.Column != col) {
		t.Fatalf("want position %d:%d, got %d:%d (%v)", line, col, ve.Line, ve.Column, ve)
	}
	return ve
}

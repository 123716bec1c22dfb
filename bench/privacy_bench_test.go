package bench

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/tenants"
)

// The tenant export benchmark (REV-2), on SQLite: a tenant of N seeded
// contacts (with their consents, proofs and list memberships) exported
// whole (every table decrypted, JSON Lines and CSV, scratch files sealed,
// tar, AES-256-GCM), against the reference measured in the same run: the
// contacts service's own JSON Lines export of the same contacts (the same
// decryption of the same contacts, one file, no archive). N is 20,000, or
// RELAIS_BENCH_PRIVACY.
//
//	go test -run '^$' -bench 'TenantExport' -benchtime 1x ./bench/
//
// Metrics: contacts/s of each; the ratio is read between the two rows.

func benchPrivacyN() int {
	if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_PRIVACY")); err == nil && n > 0 {
		return n
	}
	return 20_000
}

type privacyEnv struct {
	svc      *privacy.Service
	contacts *contacts.Service
	tenant   tenants.Tenant
	n        int
}

func newPrivacyEnv(b *testing.B) *privacyEnv {
	b.Helper()
	ctx := context.Background()
	env := openTenantEnv(b, "", "Acme", "acme")
	db, mk, kr, t := env.db, env.master, env.keyring, env.tenant
	cs := &contacts.Service{DB: db, Keyring: kr}
	n := benchPrivacyN()
	if _, err := cs.Seed(ctx, t.ID, n, 1, nil); err != nil {
		b.Fatal(err)
	}
	return &privacyEnv{svc: &privacy.Service{DB: db, Master: mk, Keyring: kr, Tenants: env.tenants, Contacts: cs, Audit: &audit.Service{DB: db, Master: mk}},
		contacts: cs, tenant: t, n: n}
}

func BenchmarkTenantExport(b *testing.B) {
	e := newPrivacyEnv(b)
	key := make([]byte, 32)
	var rows int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := privacy.NewAESWriter(io.Discard, key)
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.svc.Export(context.Background(), e.tenant, w, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if res.Manifest.Counts["contacts"] != int64(e.n) {
			b.Fatalf("exported %d contacts", res.Manifest.Counts["contacts"])
		}
		for _, n := range res.Manifest.Counts {
			rows += n
		}
	}
	b.ReportMetric(float64(e.n)*float64(b.N)/b.Elapsed().Seconds(), "contacts/s")
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkTenantExportReference(b *testing.B) {
	e := newPrivacyEnv(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := e.contacts.Export(context.Background(), e.tenant.ID, io.Discard, contacts.ExportOptions{Format: contacts.FormatJSONL})
		if err != nil {
			b.Fatal(err)
		}
		if res.Count != int64(e.n) {
			b.Fatalf("exported %d contacts", res.Count)
		}
	}
	b.ReportMetric(float64(e.n)*float64(b.N)/b.Elapsed().Seconds(), "contacts/s")
}

package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// TestDestruction: two-step destruction with a code and a delay; refused
// while jobs run; afterwards the tenant's rows and keys are gone, the
// certificate verifies (and a tampered one does not), and the other tenant
// is byte-identical.
func TestDestruction(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ps := people()
		populate(t, e, e.a.ID, ps)
		populate(t, e, e.b.ID, ps)
		before, err := privacy.Fingerprint(bg, e.db, e.b.ID)
		if err != nil {
			t.Fatal(err)
		}
		d, code, err := e.svc.RequestDestruction(bg, e.a, 0, "operator")
		if err != nil {
			t.Fatal(err)
		}
		if d.DueAt.Sub(d.RequestedAt) != 30*24*time.Hour || len(code) < 16 {
			t.Fatalf("request %+v", d)
		}
		if _, _, err := e.svc.ConfirmDestruction(bg, e.a, "WRONGCODE", true); !errors.Is(err, privacy.ErrBadCode) {
			t.Fatalf("wrong code: %v", err)
		}
		// Confirmed but not due: nothing destroyed.
		d, cert, err := e.svc.ConfirmDestruction(bg, e.a, code, false)
		if err != nil || cert != nil || d.ConfirmedAt == nil {
			t.Fatalf("confirm before due: %+v %v %v", d, cert, err)
		}
		if _, err := e.tenants.Get(bg, e.a.ID); err != nil {
			t.Fatal("destroyed before due")
		}
		// Queued messages are running jobs: refused, nothing touched.
		if _, _, err := e.svc.ConfirmDestruction(bg, e.a, strings.ToLower(code), true); !errors.Is(err, privacy.ErrBusy) {
			t.Fatalf("destroy with running jobs: %v", err)
		}
		if n, err := e.contacts.Count(bg, e.a.ID); err != nil || n != 3 {
			t.Fatalf("after a refused destruction: %d %v", n, err)
		}
		if err := e.db.Tenant(e.a.ID).Tx(bg, func(tx *store.Tx) error {
			_, err := tx.Exec(bg, `UPDATE messages SET state = 'delivered' WHERE tenant_id = $1`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Due (the clock moves past the delay): the server's job destroys it.
		e.clk.Add(31 * 24 * time.Hour)
		n, err := e.svc.RunDueDestructions(bg)
		if err != nil || n != 1 {
			t.Fatalf("due destructions: %d %v", n, err)
		}
		sc, err := e.svc.StoredCertificate(bg, "acme")
		if err != nil {
			t.Fatal(err)
		}
		// Rows and keys gone, but the shredding record (REV-3): it outlives
		// the tenant, so that a restore of an older backup re-applies it.
		fp, err := privacy.Fingerprint(bg, e.db, e.a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(fp) != 1 || fp["shredding_records"] == "" {
			t.Fatalf("rows left: %v", fp)
		}
		recs, err := e.tenants.ShreddingRecords(bg)
		if err != nil {
			t.Fatal(err)
		}
		var shredded bool
		for _, r := range recs {
			shredded = shredded || (r.TenantID == e.a.ID && r.Kind == "tenant" && r.Reason == "tenant destruction")
		}
		if !shredded {
			t.Fatalf("no tenant shredding record after destruction: %+v", recs)
		}
		if _, err := e.tenants.Get(bg, "acme"); !errors.Is(err, tenants.ErrNotFound) {
			t.Fatalf("tenant row: %v", err)
		}
		if _, err := tenants.NewKeyring(e.db, e.mk, 0).Crypto(bg, e.a.ID); !errors.Is(err, tenants.ErrNoKey) {
			t.Fatalf("keys: %v", err)
		}
		after, err := privacy.Fingerprint(bg, e.db, e.b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatal("the other tenant changed")
		}
		// The certificate verifies, against the platform key too.
		var js, page bytes.Buffer
		if err := sc.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		if err := sc.WriteHTML(&page); err != nil {
			t.Fatal(err)
		}
		pk, err := e.audit.PublicKey(bg, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range [][]byte{js.Bytes(), page.Bytes()} {
			c, err := privacy.VerifyCertificate(f, pk)
			if err != nil {
				t.Fatal(err)
			}
			if c.TenantSlug != "acme" || c.RemainingRows != 0 || c.Rows["contacts"] != 3 || len(c.KeysShredded) == 0 {
				t.Fatalf("certificate %+v", c)
			}
		}
		// Tampered: a count changed, in the JSON or in the HTML.
		bad := bytes.Replace(js.Bytes(), []byte(`"contacts": 3`), []byte(`"contacts": 2`), 1)
		if bytes.Equal(bad, js.Bytes()) {
			t.Fatal("tamper test did not change the file")
		}
		if _, err := privacy.VerifyCertificate(bad, ""); !errors.Is(err, privacy.ErrBadCertificate) {
			t.Fatalf("tampered certificate: %v", err)
		}
		badNote := bytes.Replace(js.Bytes(), []byte(`\"contacts\":3`), []byte(`\"contacts\":2`), 1)
		if _, err := privacy.VerifyCertificate(badNote, ""); !errors.Is(err, privacy.ErrBadCertificate) {
			t.Fatalf("tampered signed note: %v", err)
		}
		// Signed by another key: refused when the platform key is given.
		other, err := e.audit.PublicKey(bg, e.b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := privacy.VerifyCertificate(js.Bytes(), other); !errors.Is(err, privacy.ErrBadCertificate) {
			t.Fatalf("wrong key: %v", err)
		}
		// A second request for the destroyed tenant's slug is not possible.
		if _, err := e.svc.GetDestruction(bg, e.a.ID); err != nil {
			t.Fatal(err)
		}
	})
}

// fakeBackups stands for issue 8's backup service (not merged yet): it
// records the call and answers with one set, or fails.
type fakeBackups struct {
	called string
	fail   bool
}

func (f *fakeBackups) DestroyTenantBackups(_ context.Context, tenantID string) ([]privacy.BackupSet, error) {
	f.called = tenantID
	if f.fail {
		return nil, errors.New("target unreachable")
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	return []privacy.BackupSet{{ID: "set-1", Target: "dir", TakenAt: at, ExpiresAt: at.AddDate(0, 0, 90), Action: "expires"}}, nil
}

// TestDestructionBackupSets: the backup hook is called after the store is
// destroyed and its sets are in the certificate; a failing backup service
// does not undo the destruction and the certificate says so.
func TestDestructionBackupSets(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		for i, ten := range []tenants.Tenant{e.a, e.b} {
			fb := &fakeBackups{fail: i == 1}
			e.svc.Backups = fb
			_, code, err := e.svc.RequestDestruction(bg, ten, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			_, sc, err := e.svc.ConfirmDestruction(bg, ten, code, true)
			if err != nil {
				t.Fatal(err)
			}
			c, err := privacy.VerifyCertificate(certJSON(t, sc), "")
			if err != nil {
				t.Fatal(err)
			}
			if fb.called != ten.ID {
				t.Fatal("backup hook not called")
			}
			if i == 0 && (len(c.BackupSets) != 1 || c.BackupSets[0].ID != "set-1") {
				t.Fatalf("backup sets %+v", c.BackupSets)
			}
			if i == 1 && (len(c.BackupSets) != 0 || !strings.Contains(c.Backups, "target unreachable")) {
				t.Fatalf("failed backup service: %+v", c)
			}
		}
	})
}

func certJSON(t *testing.T, sc *privacy.SignedCertificate) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := sc.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

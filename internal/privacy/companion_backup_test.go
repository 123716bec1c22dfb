package privacy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// acceptMessages accepts n email messages into a tenant, in batches.
func acceptMessages(t *testing.T, e *env, tenantID string, n int) []string {
	t.Helper()
	var ids []string
	for lo := 0; lo < n; lo += 500 {
		var msgs []router.NewMessage
		for i := lo; i < min(lo+500, n); i++ {
			msgs = append(msgs, router.NewMessage{Channel: "email", To: fmt.Sprintf("p%d@example.net", i), IdempotencyKey: fmt.Sprintf("k%d", i),
				Content: router.Content{From: "news@acme.test", Subject: "Hello", Text: fmt.Sprintf("Body %d", i)}})
		}
		acc, err := e.router.Accept(bg, tenantID, msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acc {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

// addOrphanContent writes a content row whose message does not exist (a
// message purged between an export's read of the contents and of the
// messages leaves one in an archive).
func addOrphanContent(t *testing.T, e *env, tenantID, of string) {
	t.Helper()
	if err := e.db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		_, err := tx.Exec(bg, `INSERT INTO message_contents (tenant_id, message_id, content_enc) SELECT tenant_id, 'orphan-1', content_enc FROM message_contents WHERE tenant_id = $1 AND message_id = $2`, of)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// messageCounts are a tenant's messages and message_contents rows, and the
// contents whose message is missing.
func messageCounts(t *testing.T, db *store.DB, tenantID string) (msgs, contents, orphans int) {
	t.Helper()
	if err := db.Tenant(tenantID).Tx(bg, func(tx *store.Tx) error {
		return tx.QueryRow(bg, `SELECT (SELECT count(*) FROM messages WHERE tenant_id = $1), (SELECT count(*) FROM message_contents WHERE tenant_id = $1),
			(SELECT count(*) FROM message_contents c WHERE c.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = $1 AND m.id = c.message_id))`).Scan(&msgs, &contents, &orphans)
	}); err != nil {
		t.Fatal(err)
	}
	return msgs, contents, orphans
}

func backupOf(t *testing.T, e *env) (*backup.Service, backup.Target) {
	t.Helper()
	target, err := backup.OpenTarget("dir://" + filepath.ToSlash(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return &backup.Service{DB: e.db, Master: e.mk, Keyring: e.keyring, Now: e.clk.Now}, target
}

// TestAnonymisedCopyRestoresAtEveryCommit: an anonymised copy writes the
// copy tenant in many transactions, and the backup scheduler may take a
// point of the copy between any two. The backup change log records a
// content row's insert only under its message's key (migration 00034), so
// a content row committed apart from its message (the copy used to write
// every content before any message) left a point whose checksums held
// rows its incremental did not: that point could not be restored. Here a
// point is taken after every transaction of the copy (two pages of
// messages), and each one restores with the copy's rows at that moment;
// the source's orphan content row is not copied.
func TestAnonymisedCopyRestoresAtEveryCommit(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ids := acceptMessages(t, e, e.a.ID, 1500)
		addOrphanContent(t, e, e.a.ID, ids[0])
		bk, target := backupOf(t, e)
		type point struct {
			at               time.Time
			msgs, contents   int
			table            string
			incremental, err bool
		}
		var points []point
		e.svc.CopyProgress = func(ctx context.Context, copyT tenants.Tenant, table string, rows int64) {
			e.clk.Add(time.Minute)
			p, err := bk.Run(ctx, copyT.ID, target, backup.RunOptions{})
			if err != nil {
				t.Errorf("point after %s (%d rows): %v", table, rows, err)
				points = append(points, point{err: true})
				return
			}
			m, c, _ := messageCounts(t, e.db, copyT.ID)
			points = append(points, point{at: p.Time(), msgs: m, contents: c, table: table, incremental: p.Kind == backup.KindIncremental})
		}
		res, err := e.svc.Anonymize(bg, e.a, "", "copy")
		if err != nil {
			t.Fatal(err)
		}
		if m, c, o := messageCounts(t, e.db, res.Tenant.ID); m != 1500 || c != 1500 || o != 0 {
			t.Fatalf("the copy holds %d messages, %d contents, %d orphans; want 1500, 1500, 0", m, c, o)
		}
		if res.Counts["message_contents"] != 1500 {
			t.Fatalf("copy counts %v", res.Counts)
		}
		pages, incr := 0, 0
		for _, p := range points {
			if p.table == "messages" {
				pages++
			}
			if p.incremental {
				incr++
			}
		}
		if pages != 2 || incr < 2 {
			t.Fatalf("%d points after pages of messages (want 2), %d incremental points: %+v", pages, incr, points)
		}
		for i, p := range points {
			if p.err {
				continue
			}
			dest := storetest.OpenSQLite(t, storetest.Options{})
			if _, err := bk.Restore(bg, res.Tenant.ID, target, backup.RestoreOptions{At: p.at, IntoSlug: fmt.Sprintf("copy-at-%d", i), Dest: dest}); err != nil {
				t.Fatalf("restore of the point after %s (%d/%d): %v (mismatch: %v)", p.table, i+1, len(points), err, errors.Is(err, backup.ErrMismatch))
			}
			if m, c, o := messageCounts(t, dest, res.Tenant.ID); m != p.msgs || c != p.contents || o != 0 {
				t.Fatalf("point after %s: restored %d messages, %d contents, %d orphans; the copy held %d, %d", p.table, m, c, o, p.msgs, p.contents)
			}
		}
	})
}

// TestImportDropsOrphanContents: an archive may hold a content row without
// its message (the export reads its tables one after the other). Imported,
// that row would be in the tenant's backup checksums but in no incremental
// (a content insert is logged only with its message's key): the tenant's
// next incremental could not be restored. The import drops it, counts it
// out, and the point after the import restores.
func TestImportDropsOrphanContents(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ids := acceptMessages(t, e, e.a.ID, 3)
		addOrphanContent(t, e, e.a.ID, ids[0])
		key := bytes.Repeat([]byte{7}, 32)
		blob, ex := exportAES(t, e, e.a, key)
		if ex.Manifest.Counts["message_contents"] != 4 {
			t.Fatalf("the archive holds %d contents, want 4 (the orphan included)", ex.Manifest.Counts["message_contents"])
		}
		fresh, err := e.tenants.Create(bg, "Imported", "imported")
		if err != nil {
			t.Fatal(err)
		}
		bk, target := backupOf(t, e)
		if p, err := bk.Run(bg, fresh.ID, target, backup.RunOptions{}); err != nil || p.Kind != backup.KindFull {
			t.Fatalf("first point: %v %v", p.Kind, err)
		}
		e.clk.Add(time.Minute)
		ir, err := e.svc.Import(bg, fresh, func() (io.ReadCloser, error) {
			r, err := privacy.NewAESReader(bytes.NewReader(blob), key)
			return io.NopCloser(r), err
		})
		if err != nil {
			t.Fatal(err)
		}
		if ir.Counts["message_contents"] != 3 || ir.Counts["messages"] != 3 {
			t.Fatalf("import counts %v", ir.Counts)
		}
		if m, c, o := messageCounts(t, e.db, fresh.ID); m != 3 || c != 3 || o != 0 {
			t.Fatalf("imported %d messages, %d contents, %d orphans", m, c, o)
		}
		e.clk.Add(time.Minute)
		if p, err := bk.Run(bg, fresh.ID, target, backup.RunOptions{}); err != nil || p.Kind != backup.KindIncremental {
			t.Fatalf("point after the import: %v %v", p.Kind, err)
		}
		dest := storetest.OpenSQLite(t, storetest.Options{})
		if _, err := bk.Restore(bg, fresh.ID, target, backup.RestoreOptions{IntoSlug: "imported-restored", Dest: dest}); err != nil {
			t.Fatalf("restore of the point after the import: %v", err)
		}
		if m, c, o := messageCounts(t, dest, fresh.ID); m != 3 || c != 3 || o != 0 {
			t.Fatalf("restored %d messages, %d contents, %d orphans", m, c, o)
		}
	})
}

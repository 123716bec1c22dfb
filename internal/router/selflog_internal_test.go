package router

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// newTenant creates a tenant and returns its id and a service.
func newTenant(t *testing.T, db *store.DB) (string, *Service) {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	tn, err := (&tenants.Service{DB: db, Master: mk, Defaults: config.DefaultPolicy()}).Create(context.Background(), "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID, &Service{DB: db, Keyring: tenants.NewKeyring(db, mk, 0)}
}

// loggedMessageKeys is the set of message ids the tenant's change log
// names, key lists read as their keys.
func loggedMessageKeys(t *testing.T, db *store.DB, tenantID string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	got := map[string]bool{}
	err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT pk FROM backup_changes WHERE tenant_id = $1 AND tbl = 'messages'`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var pk string
			if err := rows.Scan(&pk); err != nil {
				return err
			}
			var keys [][]string
			if !strings.HasPrefix(pk, "[[") {
				pk = "[" + pk + "]"
			}
			if err := json.Unmarshal([]byte(pk), &keys); err != nil {
				return err
			}
			for _, k := range keys {
				got[k[0]] = true
			}
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func storedMessageIDs(t *testing.T, db *store.DB, tenantID string) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM messages WHERE tenant_id = $1`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// A batch large enough for the router to log its inserts itself on
// SQLite (and sealed on several cores): every message is stored sealed,
// each row with its own recipient and content, none in clear, and its
// insert is in the change log, in one key list.
func TestAcceptLogsBatchInKeyList(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		tenantID, s := newTenant(t, db)
		n := 300
		var batch []NewMessage
		for i := range n {
			batch = append(batch, NewMessage{Channel: "email", To: fmt.Sprintf("reader%03d@example.net", i), IdempotencyKey: fmt.Sprintf("k-%d", i),
				Content: Content{Subject: fmt.Sprintf("Subject %03d", i), Text: "Hello"}})
		}
		acc, err := s.Accept(ctx, tenantID, batch)
		if err != nil || len(acc) != n {
			t.Fatalf("accept: %d %v", len(acc), err)
		}
		c, err := s.Keyring.Crypto(ctx, tenantID)
		if err != nil {
			t.Fatal(err)
		}
		logged := loggedMessageKeys(t, db, tenantID)
		var lists int
		err = db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM backup_changes WHERE tenant_id = $1 AND tbl = 'messages'`).Scan(&lists)
		})
		if err != nil || lists != 1 {
			t.Fatalf("the batch's inserts are logged in %d rows (%v), want one key list", lists, err)
		}
		for i, a := range acc {
			var to, content []byte
			err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
				return tx.QueryRow(ctx, `SELECT m.recipient_enc, c.content_enc FROM messages m JOIN message_contents c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
					WHERE m.tenant_id = $1 AND m.id = $2`, a.ID).Scan(&to, &content)
			})
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if bytes.Contains(to, []byte("@example.net")) || bytes.Contains(content, []byte("Subject")) {
				t.Fatalf("message %d stored in clear", i)
			}
			gotTo, err := c.OpenString("message.to", to)
			if err != nil || gotTo != batch[i].To {
				t.Fatalf("message %d: recipient %q %v, want %q", i, gotTo, err, batch[i].To)
			}
			raw, err := c.Open("message.content", content)
			var got Content
			if err == nil {
				err = decodeContent(raw, &got)
			}
			if err != nil || got.Subject != batch[i].Content.Subject {
				t.Fatalf("message %d: content %+v %v, want subject %q", i, got, err, batch[i].Content.Subject)
			}
			if !logged[a.ID] {
				t.Fatalf("message %d is not in the change log", i)
			}
		}
	})
}

// The marker that turns the messages' row trigger off (SQLite, migration
// 00035) cannot be committed: its deferred guard fails the commit, on both
// dialects (the table is the same on PostgreSQL, unused there).
func TestSelfLoggedMarkerCannotCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		tenantID, _ := newTenant(t, db)
		err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO backup_self_logged (tenant_id) VALUES ($1)`)
			return err
		})
		if err == nil {
			t.Fatal("a transaction committed with its backup_self_logged row")
		}
		var n int
		err = db.Platform(ctx, func(p *store.PlatformTx) error {
			return p.QueryRow(ctx, `SELECT count(*) FROM backup_self_logged`).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Fatalf("markers left: %d %v", n, err)
		}
	})
}

// An insert that fails half-way (its first statement written, the second
// refused: a row repeating a message id) and whose caller ignores the
// error and commits never commits a message missing from the change log:
// on SQLite the marker left in place refuses the commit (nothing stored);
// on PostgreSQL (two statements: the first of enqueueRowsPerStatement
// rows, logged by the statement trigger) the failed statement aborts the
// transaction, so its commit fails and nothing is stored either.
func TestFailedInsertNeverCommitsUnlogged(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		tenantID, _ := newTenant(t, db)
		var rows []preparedRow
		for i := range enqueueRowsPerStatement {
			id := fmt.Sprintf("m-written-%d", i)
			rows = append(rows, preparedRow{id: id, channel: "email", shard: ShardOf(tenantID, id), to: []byte("sealed"), content: []byte("sealed content")})
		}
		rows = append(rows, rows[0])
		var insertErr error
		err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			_, insertErr = insertMessages(ctx, tx, rows, 1)
			return nil // a caller ignoring the error
		})
		if insertErr == nil {
			t.Fatal("the insert did not fail")
		}
		stored := storedMessageIDs(t, db, tenantID)
		if err == nil || len(stored) != 0 {
			t.Fatalf("%s: commit %v, stored %d messages", db.Dialect(), err, len(stored))
		}
		logged := loggedMessageKeys(t, db, tenantID)
		for _, id := range stored {
			if !logged[id] {
				t.Fatalf("message %s committed without its change log", id)
			}
		}
	})
}

// TestKeyListFailureNeverCommitsUnlogged: on SQLite the router writes the
// key lists of its batch itself; if writing a list fails (here a trigger
// refuses it, as a full disk or a cancelled context would) and the caller
// ignores the error and commits, the marker is still there and its guard
// refuses the commit: no message is stored without its change log.
func TestKeyListFailureNeverCommitsUnlogged(t *testing.T) {
	db := storetest.OpenSQLite(t, storetest.Options{})
	ctx := context.Background()
	tenantID, _ := newTenant(t, db)
	if err := db.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `CREATE TRIGGER test_refuse_key_lists BEFORE INSERT ON backup_changes WHEN NEW.tbl = 'messages' AND substr(NEW.pk, 1, 2) = '[['
			BEGIN SELECT RAISE(ABORT, 'key list refused'); END`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var rows []preparedRow
	for i := range selfLogMin + 8 {
		id := fmt.Sprintf("m-%d", i)
		rows = append(rows, preparedRow{id: id, channel: "email", shard: ShardOf(tenantID, id), to: []byte("sealed"), content: []byte("sealed content")})
	}
	var insertErr error
	err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		_, insertErr = insertMessages(ctx, tx, rows, 1)
		return nil // a caller ignoring the error
	})
	if insertErr == nil || !strings.Contains(insertErr.Error(), "key list refused") {
		t.Fatalf("the key list's failure was not reported: %v", insertErr)
	}
	if err == nil {
		t.Fatal("the transaction committed after its key list failed")
	}
	stored := storedMessageIDs(t, db, tenantID)
	logged := loggedMessageKeys(t, db, tenantID)
	for _, id := range stored {
		if !logged[id] {
			t.Errorf("message %s committed without its change log", id)
		}
	}
	if len(stored) != 0 {
		t.Fatalf("%d messages stored", len(stored))
	}
}

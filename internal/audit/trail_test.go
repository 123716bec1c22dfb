package audit_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// clock is a settable store clock.
type clock struct{ us atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.us.Store(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC).UnixMicro())
	return c
}
func (c *clock) Now() time.Time      { return time.UnixMicro(c.us.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.us.Add(d.Microseconds()) }
func (c *clock) Set(t time.Time)     { c.us.Store(t.UnixMicro()) }
func days(n int) time.Duration       { return time.Duration(n) * 24 * time.Hour }
func masterKey(t *testing.T) keys.MasterKey {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func service(t *testing.T, db *store.DB) *audit.Service {
	t.Helper()
	return &audit.Service{DB: db, Master: masterKey(t)}
}

func appendCat(t *testing.T, db *store.DB, tenant, category string, n int) {
	t.Helper()
	ctx := audit.WithMeta(context.Background(), audit.Meta{Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7"})
	for i := 0; i < n; i++ {
		err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{Category: category, Action: category + ".thing", ObjectType: "contact", ObjectID: "c-1",
				Details: map[string]any{"outcome": "success", "n": i}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func checkpoint(t *testing.T, s *audit.Service, tenant string) audit.Checkpoint {
	t.Helper()
	cp, err := s.Checkpoint(context.Background(), tenant, audit.ReasonManual)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	return cp
}

func fullVerify(t *testing.T, s *audit.Service, tenant string) audit.Report {
	t.Helper()
	rep, err := s.Verify(context.Background(), tenant, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func inTx(t *testing.T, db *store.DB, tenant string, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := db.Tenant(tenant).Tx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointsAndProofs: a checkpoint covers the whole log (with the key
// creation event), is signed with the log's key, is not repeated while the
// log does not grow; inclusion proofs hold for every event, consistency
// proofs between checkpoints; a checkpoint does not open with another
// log's key; the key is authenticated by the master key.
func TestCheckpointsAndProofs(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "acme")
		newTenant(t, db, "beta")
		appendN(t, db, "acme", 5)
		cp1 := checkpoint(t, s, "acme")
		if cp1.Size != 6 || cp1.Origin != "relais-audit/acme" || !strings.HasPrefix(cp1.Note, "relais-audit/acme\n6\n") {
			t.Fatalf("first checkpoint: %+v", cp1)
		}
		if again := checkpoint(t, s, "acme"); again.Size != 6 || again.Note != cp1.Note {
			t.Fatalf("a checkpoint of an unchanged log: %+v", again)
		}
		recs := admList(t, db, "acme")
		if recs[5].Category != audit.CategoryKey || recs[5].Action != "audit_signing_key.create" {
			t.Fatalf("key creation not audited: %+v", recs[5])
		}
		appendN(t, db, "acme", 4)
		cp2 := checkpoint(t, s, "acme")
		if cp2.Size != 10 {
			t.Fatalf("second checkpoint: %+v", cp2)
		}
		vk, err := s.PublicKey(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range []audit.Checkpoint{cp1, cp2} {
			origin, size, root, err := audit.OpenCheckpoint([]byte(cp.Note), vk)
			if err != nil || origin != cp.Origin || size != cp.Size || root != cp.Root {
				t.Fatalf("open checkpoint %d: %v", cp.Size, err)
			}
		}
		bk, err := s.PublicKey(ctx, "beta")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := audit.OpenCheckpoint([]byte(cp2.Note), bk); err == nil || !strings.Contains(err.Error(), "not signed by key relais-audit/beta") {
			t.Fatalf("acme's checkpoint opened with beta's key: %v", err)
		}
		recs = admList(t, db, "acme")
		inTx(t, db, "acme", func(tx *store.Tx) error {
			for seq := int64(1); seq <= 10; seq++ {
				p, err := audit.ProveInclusion(ctx, tx, seq, 10)
				if err != nil {
					return err
				}
				if p.Root != cp2.Root || !bytes.Equal(p.Leaf[:], recs[seq-1].LeafHash) {
					t.Errorf("proof of %d: root or leaf differs", seq)
				}
				if err := p.Check(); err != nil {
					t.Errorf("proof of %d: %v", seq, err)
				}
				p.Leaf[0] ^= 1
				if p.Check() == nil {
					t.Errorf("proof of %d holds for another leaf", seq)
				}
			}
			cp, err := audit.ProveConsistency(ctx, tx, 6, 10)
			if err != nil {
				return err
			}
			if cp.OldRoot != cp1.Root || cp.NewRoot != cp2.Root {
				t.Errorf("consistency roots differ from the checkpoints")
			}
			if err := cp.Check(); err != nil {
				t.Errorf("consistency: %v", err)
			}
			cp.OldRoot[0] ^= 1
			if cp.Check() == nil {
				t.Errorf("consistency holds for another old root")
			}
			if _, err := audit.ProveInclusion(ctx, tx, 11, 11); err == nil {
				t.Errorf("a proof beyond the tree")
			}
			return nil
		})
		rep := fullVerify(t, s, "acme")
		if !rep.OK || rep.Events != 10 || rep.TreeSize != 10 || rep.Checkpoints != 2 || !rep.KeyAuthenticated || rep.Key != vk {
			t.Fatalf("verify: %+v", rep)
		}
		// The same with a pinned key, and with the transaction-level Verify.
		if rep, err := s.Verify(ctx, "acme", audit.VerifyOptions{Key: vk}); err != nil || !rep.OK {
			t.Fatalf("verify with the pinned key: %+v %v", rep, err)
		}
		if rep, err := s.Verify(ctx, "acme", audit.VerifyOptions{Key: bk}); err != nil || rep.OK || !strings.Contains(rep.Problem.Reason, "not the given public key") {
			t.Fatalf("verify with beta's key: %+v %v", rep, err)
		}
		if rep := verify(t, db, "acme"); !rep.OK || rep.Checkpoints != 2 || rep.KeyAuthenticated {
			t.Fatalf("tx verify: %+v", rep)
		}
	})
}

func admList(t *testing.T, db *store.DB, tenant string) []audit.Record {
	t.Helper()
	var out []audit.Record
	inTx(t, db, tenant, func(tx *store.Tx) error {
		var err error
		out, err = audit.List(context.Background(), tx, 0, 1000)
		return err
	})
	return out
}

// TestTamperingAfterCheckpointsIsDetected: with checkpoints in place, each
// change an attacker with write access to the store can make is reported
// precisely (which event, which checkpoint), including those that keep the
// chain consistent and only the signed checkpoints reveal.
func TestTamperingAfterCheckpointsIsDetected(t *testing.T) {
	cases := []struct {
		name       string
		tamper     func(t *testing.T, db *store.DB)
		seq        int64
		checkpoint int64
		reason     string
	}{
		{"changed byte", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_events SET details = replace(details, '"a"', '"A"') WHERE tenant_id = $1 AND seq = 3`)
		}, 3, 0, "altered"},
		{"deleted event", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 4`)
		}, 4, 0, "missing"},
		{"two events reordered", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_events SET seq = 100 WHERE tenant_id = $1 AND seq = 2`)
			tamper(t, db, "acme", `UPDATE audit_events SET seq = 2 WHERE tenant_id = $1 AND seq = 3`)
			tamper(t, db, "acme", `UPDATE audit_events SET seq = 3 WHERE tenant_id = $1 AND seq = 100`)
		}, 2, 0, "holds the content of event 3: events were reordered"},
		{"event inserted in the middle", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1`)
			for seq := 9; seq >= 3; seq-- {
				tamper(t, db, "acme", `UPDATE audit_events SET seq = seq + 1 WHERE tenant_id = $1 AND seq = $2`, seq)
			}
			// A forged event with a leaf that matches its own content.
			r := audit.Record{TenantID: "acme", Seq: 3, At: time.Unix(1700000000, 0).UTC(), Category: "change", Action: "contact.delete", ActorType: "user", ActorID: "u-9", Details: []byte(`{}`)}
			body, leaf := audit.LeafOf(r)
			tamper(t, db, "acme", `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id, object_type, object_id, ip, user_agent, request_id, details, leaf_hash, hash, body_hash)
				VALUES ($1, 3, $2, 'change', 'contact.delete', 'user', 'u-9', '', '', '', '', '', '{}', $3, $4, $5)`, store.Micros(r.At), leaf, leaf, body)
		}, 3, 0, "does not link"},
		{"event appended without the head", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `INSERT INTO audit_events (tenant_id, seq, at, category, action, actor_type, actor_id, object_type, object_id, ip, user_agent, request_id, details, leaf_hash, hash, body_hash)
				SELECT tenant_id, 10, at, category, action, actor_type, actor_id, object_type, object_id, ip, user_agent, request_id, details, leaf_hash, hash, body_hash FROM audit_events WHERE tenant_id = $1 AND seq = 9`)
		}, 10, 0, "head"},
		{"end of the log cut consistently", func(t *testing.T, db *store.DB) {
			// Events 7 to 9 removed, head and tree moved back: the chain
			// is whole; the checkpoint of 9 events is not.
			tamper(t, db, "acme", `UPDATE audit_heads SET seq = 6, hash = (SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = 6) WHERE tenant_id = $1`)
			for seq := 7; seq <= 9; seq++ {
				tamper(t, db, "acme", `DELETE FROM audit_events WHERE tenant_id = $1 AND seq = $2`, seq)
			}
			tamper(t, db, "acme", `UPDATE audit_trees SET size = 6 WHERE tenant_id = $1`)
			inTx(t, db, "acme", func(tx *store.Tx) error {
				_, err := tx.Exec(context.Background(), `DELETE FROM audit_tree_hashes WHERE tenant_id = $1 AND idx >= $2`, tlog.StoredHashIndex(0, 6))
				return err
			})
		}, 7, 9, "beyond the log"},
		{"history rewritten consistently", func(t *testing.T, db *store.DB) {
			inTx(t, db, "acme", func(tx *store.Tx) error { return audit.RewriteEvent(context.Background(), tx, 2, "contact.read") })
		}, 0, 6, "does not match the tree"},
		{"forged checkpoint signature", func(t *testing.T, db *store.DB) {
			var note string
			inTx(t, db, "acme", func(tx *store.Tx) error {
				return tx.QueryRow(context.Background(), `SELECT note FROM audit_checkpoints WHERE tenant_id = $1 AND tree_size = 9`).Scan(&note)
			})
			i := strings.LastIndex(note, " ") + 10
			forged := note[:i] + string(rune(note[i]^1)) + note[i+1:]
			tamper(t, db, "acme", `UPDATE audit_checkpoints SET note = $2 WHERE tenant_id = $1 AND tree_size = 9`, forged)
		}, 0, 9, "checkpoint at tree size 9"},
		{"checkpoint root replaced", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_checkpoints SET root_hash = $2 WHERE tenant_id = $1 AND tree_size = 6`, make([]byte, 32))
		}, 0, 6, "differs from the signed note"},
		{"stored tree hash altered", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_tree_hashes SET hash = $2 WHERE tenant_id = $1 AND idx = $3`, make([]byte, 32), tlog.StoredHashIndex(1, 1))
		}, 4, 0, "stored tree was altered"},
		{"signing key replaced", func(t *testing.T, db *store.DB) {
			tamper(t, db, "acme", `UPDATE audit_signing_keys SET public_key = $2 WHERE tenant_id = $1`, bytes.Repeat([]byte{7}, 32))
		}, 0, 0, "cannot be trusted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, db *store.DB) {
				s := service(t, db)
				newTenant(t, db, "acme")
				appendN(t, db, "acme", 5)
				checkpoint(t, s, "acme") // 6 events with the key's
				appendN(t, db, "acme", 3)
				checkpoint(t, s, "acme") // 9
				if rep := fullVerify(t, s, "acme"); !rep.OK || rep.Checkpoints != 2 {
					t.Fatalf("before tampering: %+v", rep)
				}
				tc.tamper(t, db)
				rep := fullVerify(t, s, "acme")
				if rep.OK || rep.Problem == nil {
					t.Fatalf("tampering not detected: %+v", rep)
				}
				p := rep.Problem
				if p.Seq != tc.seq || p.Checkpoint != tc.checkpoint || !strings.Contains(p.Reason, tc.reason) {
					t.Fatalf("problem %+v, want seq %d, checkpoint %d, %q", p, tc.seq, tc.checkpoint, tc.reason)
				}
				t.Logf("%s: %s", tc.name, p.Reason)
			})
		})
	}
}

// TestCheckpointRefusesAnAlteredLog: the checkpoint job checks each new
// event before it extends the tree, and does not sign over an alteration.
func TestCheckpointRefusesAnAlteredLog(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		s := service(t, db)
		newTenant(t, db, "acme")
		appendN(t, db, "acme", 3)
		tamper(t, db, "acme", `UPDATE audit_events SET actor_id = 'x' WHERE tenant_id = $1 AND seq = 2`)
		_, err := s.Checkpoint(context.Background(), "acme", audit.ReasonManual)
		var te *audit.TamperError
		if !errors.Is(err, audit.ErrTampered) || !errors.As(err, &te) || te.Problem.Seq != 2 {
			t.Fatalf("checkpoint over an altered event: %v", err)
		}
		inTx(t, db, "acme", func(tx *store.Tx) error {
			cps, err := audit.Checkpoints(context.Background(), tx)
			if len(cps) != 0 {
				t.Errorf("checkpoints: %+v", cps)
			}
			return err
		})
	})
}

// TestCheckpointAllAndTheOperatorLog: the periodic job signs every log
// that grew, the operator's too, and nothing when nothing grew.
func TestCheckpointAllAndTheOperatorLog(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := service(t, db)
		newTenant(t, db, "a")
		newTenant(t, db, "b")
		appendN(t, db, "a", 2)
		appendN(t, db, "b", 1)
		err := db.Platform(ctx, func(p *store.PlatformTx) error {
			_, err := audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "tenant.create"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.CheckpointAll(ctx); err != nil || n != 3 {
			t.Fatalf("first run: %d %v", n, err)
		}
		if n, err := s.CheckpointAll(ctx); err != nil || n != 0 {
			t.Fatalf("second run: %d %v", n, err)
		}
		appendN(t, db, "b", 1)
		if n, err := s.CheckpointAll(ctx); err != nil || n != 1 {
			t.Fatalf("third run: %d %v", n, err)
		}
		for _, tenant := range []string{"", "a", "b"} {
			if rep := fullVerify(t, s, tenant); !rep.OK || rep.Checkpoints == 0 {
				t.Fatalf("log %q: %+v", tenant, rep)
			}
		}
		vk, err := s.PublicKey(ctx, "")
		if err != nil || !strings.HasPrefix(vk, audit.OperatorOrigin+"+") {
			t.Fatalf("operator key: %q %v", vk, err)
		}
		// Run stops with its context.
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := s.Run(rctx, audit.RunOptions{CheckpointEvery: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	})
}

// Package backup makes, verifies and restores per-tenant encrypted logical
// backups (BAK-1..6, ISO-2), and encrypted snapshots of a whole SQLite
// instance.
//
// # Which functions to use
//
// A [Service] holds the store, the master key and the tenant keyring.
// [Service.Run] takes a backup point of one tenant into a [Target]
// ([OpenTarget]: dir:///path or s3://bucket/prefix?endpoint=host:port): a
// full one, or an incremental one holding the changes since the previous
// point. [Service.List] lists the points, [Service.Verify] reads back and
// authenticates every object, [Service.Restore] restores the state at a
// point in time into a new tenant (in this store or another), and
// [Service.RestoreTest] restores the latest point into a scratch store and
// compares it with what the backup recorded. [Service.Instance] snapshots a
// whole SQLite store. [Scheduler] runs all of it on the policy's schedule.
//
// # Format (relais-backup/v1)
//
// Objects of a tenant live under tenants/<tenant id>/sets/<set id>/. A set
// is a full point and its incrementals; it has one random 256-bit key, sealed
// in every manifest by the tenant's field cipher (AES-256-GCM under the
// tenant's data key, bound to the tenant id, the key version and the set
// id): destroying the tenant's keys makes every set unreadable.
//
//   - points/<seq>-<point id>.manifest: a header line (JSON [Header], in
//     clear, nothing personal) and a line of base64: the [Body] (JSON)
//     encrypted with the set key by the streaming AEAD (AES-256-GCM-HKDF,
//     1 MiB segments, tink-go), the header line as additional data. A
//     point exists once its manifest exists: it is written last.
//   - chunks/<id>: chunk plaintexts encrypted the same way (additional data:
//     set id and chunk id). The id is HMAC-SHA256 of the plaintext under the
//     tenant's address key (random, sealed like the set key, the same in
//     every set): content-addressed, so an unchanged chunk is stored once. A
//     point may reference a chunk stored by an earlier set ([ChunkRef].Set);
//     its header then carries that set's key too, sealed by the tenant key,
//     and retention keeps such chunks. Chunks are cut after rows chosen by
//     their content (past half the chunk size, after a row whose digest
//     falls under a threshold), so a changed row moves one cut at most.
//   - points/<seq>-<point id>.tar.pgp (optional): the same point as a tar
//     (manifest.json, then each chunk as tables/<table>/<n>.jsonl) encrypted
//     to OpenPGP recipients; its SHA-256 is in the authenticated body.
//
// A chunk is JSON lines: a header {"table","op","columns"} then one JSON
// array per row (op "rows": the values in column order, columns sorted by
// name, tenant_id left out) or per deleted key (op "deletes": the primary
// key after tenant_id). Values: text as JSON strings, bytes as standard
// base64, integers and booleans as JSON, NULL as null. Personal fields are
// the stored ciphertexts (sealed by the tenant's field cipher): a backup
// never holds them in clear, even inside its own encryption.
//
// # Incrementals and the change sequence
//
// Triggers on every backed-up table append the key of each inserted,
// updated or deleted row to backup_changes (migration 00009). A point reads,
// in one consistent snapshot ([store.TenantStore.Snapshot]), the rows of the
// keys changed since the previous point's watermark (SQLite: the highest
// seq; PostgreSQL: the snapshot, since sequence order is not commit order):
// a key without a row is a delete. After a point, [Service.PruneChangeLog]
// prunes the log up to the lowest watermark of the tenant's targets, in
// short transactions (not in the point's: it is not on its critical
// path). Restoring at time T takes the last full point at or before T and
// applies its incrementals up to T in order.
//
// # Restore, tenant ids and the audit trail
//
// Every binding of a tenant's data names its id: field ciphertexts and
// blind indexes, the wrapped data keys, the audit leaves, checkpoints and
// signing key. A restore therefore keeps the tenant id and changes the
// slug: the restored audit log is the original log, verifiable with the
// original checkpoints and public key, and the restore appends its own
// event to it. So a restore goes into a store where that tenant id is
// absent (another store, a scratch store, or this one after the tenant was
// removed); next to the live tenant it is refused.
package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Service makes, verifies and restores backups. DB, Master and Keyring are
// required.
type Service struct {
	DB      *store.DB
	Master  keys.MasterKey
	Keyring *tenants.Keyring
	// Now is the clock; DB.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics, when set, counts backups, failures and verification results.
	Metrics *Metrics
	// Notify, when set, is called for every alert (a failed verification
	// or restore test), besides the metric and the audit event.
	Notify func(context.Context, Alert)
	// Shred tells which tenants and contacts were shredded; StoreShredding
	// on DB when nil.
	Shred ShredRecords
	// ChunkBytes is the plaintext size at which a chunk is cut (4 MiB).
	ChunkBytes int
	// Workers encrypt and upload chunks in parallel (4: uploads and fsyncs
	// wait on I/O more than on the CPU).
	Workers int
}

// Alert is a failed verification or restore test.
type Alert struct {
	TenantID string
	Kind     string // "verify" or "restore_test"
	Object   string // the object that failed, when known
	Message  string
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return s.DB.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Service) shred() ShredRecords {
	if s.Shred != nil {
		return s.Shred
	}
	return StoreShredding{DB: s.DB}
}

// RunOptions tune one backup.
type RunOptions struct {
	// Full forces a full point (otherwise incremental when the target
	// holds a set this store continues).
	Full bool
	// PGP, when not empty, also writes the point as a tar encrypted to
	// these OpenPGP public keys.
	PGP openpgp.EntityList
}

func tenantPrefix(tenantID string) string { return "tenants/" + tenantID + "/" }
func setPrefix(tenantID, setID string) string {
	return tenantPrefix(tenantID) + "sets/" + setID + "/"
}
func chunkName(tenantID, setID, id string) string { return setPrefix(tenantID, setID) + "chunks/" + id }
func manifestName(h Header) string {
	return setPrefix(h.TenantID, h.SetID) + "points/" + fmt.Sprintf("%06d", h.Seq) + "-" + h.PointID + ".manifest"
}

func newPointID(t time.Time) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(r[:])
}

type state struct {
	SetID     string
	Watermark string
	LastFull  int64
}

func (s *Service) readState(ctx context.Context, tx *store.Tx, target string) (state, error) {
	var st state
	err := tx.QueryRow(ctx, `SELECT set_id, watermark, last_full_at FROM backup_state WHERE tenant_id = $1 AND target = $2`, target).
		Scan(&st.SetID, &st.Watermark, &st.LastFull)
	if errors.Is(err, store.ErrNotFound) {
		return state{}, nil
	}
	return st, err
}

// Run takes one backup point of the tenant into the target.
func (s *Service) Run(ctx context.Context, tenantID string, t Target, o RunOptions) (Point, error) {
	p, err := s.run(ctx, tenantID, t, o)
	if err != nil {
		s.Metrics.runFailed(tenantID)
		s.log().Error("backup failed", "tenant", tenantID, "target", t.ID(), "err", err)
		return Point{}, err
	}
	s.Metrics.runDone(tenantID, p)
	return p, nil
}

func (s *Service) run(ctx context.Context, tenantID string, t Target, o RunOptions) (Point, error) {
	crypto, err := s.Keyring.Crypto(ctx, tenantID)
	if err != nil {
		return Point{}, fmt.Errorf("backup: tenant keys: %w", err)
	}
	tables, err := loadSchema(ctx, s.DB)
	if err != nil {
		return Point{}, err
	}
	var st state
	if err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		st, err = s.readState(ctx, tx, t.ID())
		return err
	}); err != nil {
		return Point{}, fmt.Errorf("backup: read the backup state: %w", err)
	}
	points, err := s.points(ctx, t, tenantID)
	if err != nil {
		return Point{}, err
	}
	b := &builder{s: s, t: t, tenantID: tenantID, tables: tables, crypto: crypto,
		keys: &pointKeys{sets: map[string]*setKeys{}}, setKey: map[string]keySrc{}}
	for _, p := range points {
		b.setKey[p.SetID] = keySrc{h: p.Header, sealed: p.SetKey}
		for set, sealed := range p.OtherSetKeys {
			if _, ok := b.setKey[set]; !ok {
				b.setKey[set] = keySrc{h: p.Header, sealed: sealed}
			}
		}
	}
	// An incremental continues the set this store last wrote to this target,
	// when its last point is still there and was taken at the same schema
	// version (after a migration the next point is a full one: a migration
	// that moves rows to a new table records no changes for them).
	schema, _, err := s.DB.SchemaStatus(ctx)
	if err != nil {
		return Point{}, fmt.Errorf("backup: %w", err)
	}
	dialect := string(s.DB.Dialect())
	if !o.Full && st.SetID != "" && strings.HasPrefix(st.Watermark, dialect+":") {
		var last *Point
		for i := range points {
			if points[i].SetID == st.SetID {
				last = &points[i]
			}
		}
		if last != nil && last.Schema != schema {
			s.log().Info("backup: the schema changed since the set's last point; taking a full point", "tenant", tenantID,
				"target", t.ID(), "schema_then", last.Schema, "schema_now", schema)
			last = nil
		}
		if last != nil {
			raw, err := openSealed(ctx, s.Master, last.Header, setKeyField(last.SetID), last.SetKey)
			if err == nil {
				k, err := deriveSetKeys(raw)
				clear(raw)
				if err != nil {
					return Point{}, err
				}
				b.keys.sets[st.SetID], b.sealedKey = k, last.SetKey
				b.h = Header{SetID: st.SetID, Seq: last.Seq + 1, Kind: KindIncremental, Parent: last.PointID}
				b.prevWatermark = st.Watermark
			}
		}
	}
	taken := s.now()
	pointID := newPointID(taken)
	if b.sealedKey == nil {
		b.h = Header{SetID: pointID, Seq: 0, Kind: KindFull}
		raw, sealed, err := newSealedKey(crypto, setKeyField(pointID))
		if err != nil {
			return Point{}, err
		}
		k, err := deriveSetKeys(raw)
		clear(raw)
		if err != nil {
			return Point{}, err
		}
		b.keys.sets[pointID], b.sealedKey = k, sealed
	}
	b.keys.set = b.h.SetID
	// The tenant's address key: the newest point's, so that chunks keep
	// their names across sets; a new one for the first point.
	for i := len(points) - 1; i >= 0 && b.keys.address == nil; i-- {
		if raw, err := openSealed(ctx, s.Master, points[i].Header, addressKeyField, points[i].AddrKey); err == nil {
			if b.h.AddrKey, err = crypto.Seal(addressKeyField, raw); err != nil {
				return Point{}, err
			}
			b.keys.address = raw
		}
	}
	if b.keys.address == nil {
		if b.keys.address, b.h.AddrKey, err = newSealedKey(crypto, addressKeyField); err != nil {
			return Point{}, err
		}
	}
	b.h.Format, b.h.TenantID, b.h.PointID, b.h.Dialect, b.h.SetKey = Format, tenantID, pointID, dialect, b.sealedKey
	b.h.TakenAt = store.Micros(taken)
	b.h.Schema = schema
	if err := b.known(ctx); err != nil {
		return Point{}, err
	}
	// The audit events committed so far get their place in the log first;
	// those committed meanwhile are in the point's copy of audit_queue.
	if _, err := audit.Sequence(ctx, s.DB, tenantID); err != nil {
		return Point{}, err
	}
	b.start(ctx, o.Workers(s))
	if len(o.PGP) > 0 {
		if err := b.startPGP(ctx, o.PGP); err != nil {
			_ = b.stop()
			return Point{}, err
		}
	}
	started := time.Now()
	err = s.DB.Tenant(tenantID).Snapshot(ctx, func(tx *store.Tx) error { return b.read(ctx, tx) })
	if werr := b.stop(); err == nil {
		err = werr
	}
	if err == nil && b.pgp != nil {
		err = b.finishPGP()
	} else if b.pgp != nil {
		b.abortPGP(err)
	}
	if err != nil {
		return Point{}, err
	}
	if err := b.writeManifest(ctx); err != nil {
		return Point{}, err
	}
	p := Point{Header: b.h, Object: manifestName(b.h)}
	written := time.Now()
	// Record the point and trace it. The change log is pruned afterwards,
	// outside the point's critical path (PruneChangeLog).
	err = s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		lastFull := st.LastFull
		if b.h.Kind == KindFull {
			lastFull = b.h.TakenAt
		}
		if _, err := tx.Exec(ctx, `INSERT INTO backup_state (tenant_id, target, set_id, last_full_at, last_point_at, watermark)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, target) DO UPDATE SET set_id = excluded.set_id, last_full_at = excluded.last_full_at,
				last_point_at = excluded.last_point_at, watermark = excluded.watermark`,
			t.ID(), b.h.SetID, lastFull, b.h.TakenAt, b.body.Watermark); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "backup.run",
			ObjectType: "backup_point", ObjectID: b.h.PointID,
			Details: map[string]any{"kind": b.h.Kind, "set": b.h.SetID, "target": t.ID(), "rows": b.rows, "bytes": b.bytes,
				"chunks": b.uploaded, "pgp": b.body.PGP != nil}})
		return err
	})
	if err != nil {
		return Point{}, fmt.Errorf("backup: the point %s is stored but recording it failed: %w", p.PointID, err)
	}
	s.log().Info("backup point written", "tenant", tenantID, "kind", b.h.Kind, "point", p.PointID, "target", t.ID(),
		"rows", b.rows, "bytes", b.bytes, "chunks_uploaded", b.uploaded,
		"write_ms", written.Sub(started).Milliseconds(), "record_ms", time.Since(written).Milliseconds())
	return p, nil
}

// Workers is the number of upload workers.
func (o RunOptions) Workers(s *Service) int {
	if s.Workers > 0 {
		return s.Workers
	}
	return 4
}

// pruneBatch is the number of change-log entries deleted per transaction
// by PruneChangeLog.
const pruneBatch = 20_000

// PruneChangeLog deletes the tenant's change-log entries that every
// target's last point already covers (up to the lowest watermark), in
// transactions of a bounded number of entries, so that SQLite's write lock
// is never held for long, and returns how many it deleted. Run leaves the
// log as it is: the scheduler and `relais backup run` call this after each
// point. Entries left behind (an interrupted prune) are harmless: an
// incremental reads only the entries after its set's watermark, and the
// next prune deletes them.
func (s *Service) PruneChangeLog(ctx context.Context, tenantID string) (int64, error) {
	return s.pruneChangeLog(ctx, tenantID, pruneBatch)
}

func (s *Service) pruneChangeLog(ctx context.Context, tenantID string, batch int) (int64, error) {
	var q string
	if s.DB.Dialect() == store.Postgres {
		q = `DELETE FROM backup_changes WHERE tenant_id = $1 AND seq IN (SELECT c.seq FROM backup_changes c WHERE c.tenant_id = $1
			AND EXISTS (SELECT 1 FROM backup_state s WHERE s.tenant_id = $1)
			AND NOT EXISTS (SELECT 1 FROM backup_state s WHERE s.tenant_id = $1
				AND (s.watermark NOT LIKE 'postgres:%' OR NOT pg_visible_in_snapshot(c.xid, substr(s.watermark, 10)::pg_snapshot)))
			ORDER BY c.seq LIMIT ` + strconv.Itoa(batch) + `)`
	} else {
		q = `DELETE FROM backup_changes WHERE seq IN (SELECT seq FROM backup_changes WHERE tenant_id = $1 AND seq <= (
			SELECT MIN(CASE WHEN watermark LIKE 'sqlite:%' THEN CAST(substr(watermark, 8) AS INTEGER) ELSE 0 END)
			FROM backup_state WHERE tenant_id = $1) ORDER BY seq LIMIT ` + strconv.Itoa(batch) + `)`
	}
	var total int64
	for {
		var n int64
		err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
			res, err := tx.Exec(ctx, q)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("backup: prune the change log: %w", err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// builder assembles one point.
type builder struct {
	s             *Service
	t             Target
	tenantID      string
	tables        []*table
	h             Header
	body          Body
	crypto        *tenants.Crypto
	keys          *pointKeys
	sealedKey     []byte
	prevWatermark string
	have          map[string]bool     // chunks already in this set
	elsewhere     map[string][]string // chunk id -> earlier sets holding it
	setKey        map[string]keySrc   // where each set's key can be opened
	noReuse       map[string]bool     // sets whose key could not be opened

	rows, bytes int64
	uploaded    int

	jobs   chan chunkJob
	bufs   chan []byte // recycled chunk buffers
	wg     sync.WaitGroup
	mu     sync.Mutex
	errUp  error
	cancel context.CancelFunc

	pgp *pgpWriter
}

// keySrc is a sealed set key and the header whose tenant keys open it.
type keySrc struct {
	h      Header
	sealed []byte
}

type chunkJob struct {
	name, id string
	plain    []byte
}

func (b *builder) known(ctx context.Context) error {
	b.have, b.elsewhere, b.noReuse = map[string]bool{}, map[string][]string{}, map[string]bool{}
	prefix := tenantPrefix(b.tenantID) + "sets/"
	names, err := b.t.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		set, rest, _ := strings.Cut(strings.TrimPrefix(n, prefix), "/")
		id, ok := strings.CutPrefix(rest, "chunks/")
		if !ok {
			continue
		}
		switch {
		case set == b.h.SetID:
			b.have[id] = true
		case b.setKey[set].sealed != nil:
			// Only sets whose key a manifest holds.
			b.elsewhere[id] = append(b.elsewhere[id], set)
		}
	}
	return nil
}

// reuse returns the earlier set whose copy of chunk id this point can
// reference, sealing that set's key into this point's header.
func (b *builder) reuse(id string) string {
	for _, set := range b.elsewhere[id] {
		if b.noReuse[set] {
			continue
		}
		if b.h.OtherSetKeys[set] == nil {
			src := b.setKey[set]
			raw, err := openSealed(context.Background(), b.s.Master, src.h, setKeyField(set), src.sealed)
			if err != nil {
				b.noReuse[set] = true
				continue
			}
			sealed, err := b.crypto.Seal(setKeyField(set), raw)
			clear(raw)
			if err != nil {
				b.noReuse[set] = true
				continue
			}
			if b.h.OtherSetKeys == nil {
				b.h.OtherSetKeys = map[string][]byte{}
			}
			b.h.OtherSetKeys[set] = sealed
		}
		return set
	}
	return ""
}

func (b *builder) start(ctx context.Context, workers int) {
	ctx, b.cancel = context.WithCancel(ctx)
	b.jobs = make(chan chunkJob, workers)
	b.bufs = make(chan []byte, 2*workers+2)
	for range workers {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			// This worker's ciphertext buffer, reused for a directory
			// target (its Put has read and written the bytes when it
			// returns; an HTTP client may still hold a request body).
			_, reuse := b.t.(*DirTarget)
			var ct []byte
			for j := range b.jobs {
				if b.failed() != nil {
					continue
				}
				var err error
				ct, err = b.keys.own().sealTo(ct, j.plain, chunkAAD(b.h.SetID, j.id))
				b.recycle(j.plain)
				if err == nil {
					err = b.t.Put(ctx, j.name, bytes.NewReader(ct), int64(len(ct)))
				}
				if !reuse {
					ct = nil
				}
				if err != nil {
					b.fail(err)
				}
			}
		}()
	}
}

func (b *builder) fail(err error) {
	b.mu.Lock()
	if b.errUp == nil {
		b.errUp = err
		b.cancel()
	}
	b.mu.Unlock()
}

func (b *builder) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errUp
}

func (b *builder) stop() error {
	if b.jobs != nil {
		close(b.jobs)
		b.wg.Wait()
		b.jobs = nil
	}
	b.cancel()
	return b.failed()
}

// emit stores one chunk (unless the set has it) and returns its reference.
func (b *builder) emit(tbl string, plain []byte, count int) (ChunkRef, error) {
	if err := b.failed(); err != nil {
		return ChunkRef{}, err
	}
	id := b.keys.chunkID(plain)
	ref := ChunkRef{ID: id, Size: int64(len(plain)), Count: count}
	if b.pgp != nil {
		if err := b.pgp.add(tbl, plain); err != nil {
			return ChunkRef{}, err
		}
	}
	b.bytes += int64(len(plain))
	if b.have[id] {
		b.recycle(plain)
		return ref, nil
	}
	if set := b.reuse(id); set != "" {
		ref.Set = set
		b.recycle(plain)
		return ref, nil
	}
	b.have[id] = true
	b.uploaded++
	b.jobs <- chunkJob{name: chunkName(b.tenantID, b.h.SetID, id), id: id, plain: plain}
	return ref, nil
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func selectList(t *table) string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quote(c.Name)
	}
	return strings.Join(cols, ", ")
}

// read reads everything the point needs, inside the snapshot.
func (b *builder) read(ctx context.Context, tx *store.Tx) error {
	if err := b.readWatermark(ctx, tx); err != nil {
		return err
	}
	var ti TenantInfo
	if err := tx.QueryRow(ctx, `SELECT id, slug, name, status, created_at, updated_at FROM tenants WHERE id = $1`).
		Scan(&ti.ID, &ti.Slug, &ti.Name, &ti.Status, &ti.CreatedAt, &ti.UpdatedAt); err != nil {
		return fmt.Errorf("backup: read the tenant: %w", err)
	}
	b.body.Tenant = ti
	b.h.TenantSlug = ti.Slug
	krows, err := tx.Query(ctx, `SELECT version, master_key_id, wrapped, state FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`)
	if err != nil {
		return err
	}
	for krows.Next() {
		var w WrappedKey
		if err := krows.Scan(&w.Version, &w.MasterKeyID, &w.Wrapped, &w.State); err != nil {
			_ = krows.Close()
			return err
		}
		b.h.TenantKeys = append(b.h.TenantKeys, w)
	}
	_ = krows.Close()
	var changed map[string][][]any
	if b.h.Kind == KindIncremental {
		if changed, err = b.changedKeys(ctx, tx); err != nil {
			return err
		}
	}
	for _, t := range b.tables {
		e := TableEntry{Name: t.Name, Columns: t.Columns, PK: t.PK}
		whole := b.h.Kind == KindFull || !t.Tracked
		e.Whole = whole
		if err := b.scan(ctx, tx, t, &e, whole); err != nil {
			return fmt.Errorf("backup: read table %s: %w", t.Name, err)
		}
		if !whole {
			if err := b.changes(ctx, tx, t, &e, changed[t.Name]); err != nil {
				return fmt.Errorf("backup: read the changes of table %s: %w", t.Name, err)
			}
		}
		b.body.Tables = append(b.body.Tables, e)
	}
	return nil
}

func (b *builder) readWatermark(ctx context.Context, tx *store.Tx) error {
	if tx.Dialect() == store.Postgres {
		var snap string
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text WHERE $1::text IS NOT NULL`).Scan(&snap); err != nil {
			return fmt.Errorf("backup: snapshot: %w", err)
		}
		b.body.Watermark = "postgres:" + snap
		return nil
	}
	var seq int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM backup_changes WHERE tenant_id = $1`).Scan(&seq); err != nil {
		return fmt.Errorf("backup: change log: %w", err)
	}
	b.body.Watermark = "sqlite:" + strconv.FormatInt(seq, 10)
	return nil
}

// changedKeys reads the keys changed since the previous point, by table.
func (b *builder) changedKeys(ctx context.Context, tx *store.Tx) (map[string][][]any, error) {
	var rows interface {
		Next() bool
		Scan(...any) error
		Close() error
		Err() error
	}
	var err error
	if tx.Dialect() == store.Postgres {
		rows, err = tx.Query(ctx, `SELECT DISTINCT tbl, pk FROM backup_changes WHERE tenant_id = $1
			AND NOT pg_visible_in_snapshot(xid, $2::pg_snapshot)`, strings.TrimPrefix(b.prevWatermark, "postgres:"))
	} else {
		prev, _ := strconv.ParseInt(strings.TrimPrefix(b.prevWatermark, "sqlite:"), 10, 64)
		cur, _ := strconv.ParseInt(strings.TrimPrefix(b.body.Watermark, "sqlite:"), 10, 64)
		rows, err = tx.Query(ctx, `SELECT DISTINCT tbl, pk FROM backup_changes WHERE tenant_id = $1 AND seq > $2 AND seq <= $3`, prev, cur)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read the change log: %w", err)
	}
	defer func() { _ = rows.Close() }()
	byName := map[string]*table{}
	for _, t := range b.tables {
		byName[t.Name] = t
	}
	logged := map[string]map[string]bool{} // keys as logged, by table
	// The keys of key lists, by table: only inserts are logged so
	// (messages, migrations 00035-00036).
	inserted := map[string]map[string]bool{}
	for rows.Next() {
		var tbl, pk string
		if err := rows.Scan(&tbl, &pk); err != nil {
			return nil, err
		}
		if byName[tbl] == nil {
			continue
		}
		if logged[tbl] == nil {
			logged[tbl] = map[string]bool{}
		}
		keys, list, err := loggedKeys(pk)
		if err != nil {
			return nil, fmt.Errorf("backup: change log key list of %s: %w", tbl, err)
		}
		if list && inserted[tbl] == nil {
			inserted[tbl] = map[string]bool{}
		}
		for _, k := range keys {
			logged[tbl][k] = true
			if list {
				inserted[tbl][k] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A table whose inserts are logged under another's keys
	// (insertsLoggedWith) gets the keys of that table's inserts too (its
	// key lists; its updates and deletes, logged as plain keys, do not
	// change this table's rows, whose own changes are logged): a key whose
	// row is not there is read as a delete, as for any logged key.
	for _, t := range b.tables {
		with := insertsLoggedWith(t.Name)
		if with == "" || len(inserted[with]) == 0 {
			continue
		}
		if logged[t.Name] == nil {
			logged[t.Name] = map[string]bool{}
		}
		for pk := range inserted[with] {
			logged[t.Name][pk] = true
		}
	}
	out := map[string][][]any{}
	for tbl, pks := range logged {
		t := byName[tbl]
		for pk := range pks {
			key, err := parseKey(t, pk)
			if err != nil {
				return nil, fmt.Errorf("backup: change log key of %s: %w", tbl, err)
			}
			out[tbl] = append(out[tbl], key)
		}
	}
	return out, nil
}

// loggedKeys returns the keys a change-log row names: its pk, one key, or
// each key of a key list, a JSON array of keys ('[["id1"], ["id2"]]'),
// and whether it was a list: the inserts into messages are logged as lists
// (migrations 00035 and 00036: a list of one key for a message inserted
// alone), its updates and deletes as plain keys.
func loggedKeys(pk string) (keys []string, list bool, err error) {
	if !strings.HasPrefix(pk, "[[") {
		return []string{pk}, false, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(pk), &raw); err != nil {
		return nil, true, err
	}
	keys = make([]string, len(raw))
	for i, k := range raw {
		keys[i] = string(k)
	}
	return keys, true, nil
}

// parseKey reads a logged key: a JSON array of the primary-key values after
// tenant_id (blobs in hex, "\x"-prefixed on PostgreSQL).
func parseKey(t *table, pk string) ([]any, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(pk), &raw); err != nil {
		return nil, err
	}
	if len(raw) != len(t.PK) {
		return nil, fmt.Errorf("key %s has %d values, want %d", pk, len(raw), len(t.PK))
	}
	key := make([]any, len(raw))
	for i, r := range raw {
		switch t.kindOf(t.PK[i]) {
		case kindBytes:
			var s string
			if err := json.Unmarshal(r, &s); err != nil {
				return nil, err
			}
			b, err := hex.DecodeString(strings.ToLower(strings.TrimPrefix(s, `\x`)))
			if err != nil {
				return nil, err
			}
			key[i] = b
		case kindInt:
			n, err := strconv.ParseInt(string(r), 10, 64)
			if err != nil {
				return nil, err
			}
			key[i] = n
		default:
			var s string
			if err := json.Unmarshal(r, &s); err != nil {
				return nil, err
			}
			key[i] = s
		}
	}
	return key, nil
}

// chunker cuts JSON lines into chunks.
type chunker struct {
	b      *builder
	table  string
	header []byte
	buf    []byte
	count  int
	refs   []ChunkRef
	limit  int
}

func (b *builder) newChunker(t *table, op string) *chunker {
	h, _ := json.Marshal(struct {
		Table   string   `json:"table"`
		Op      string   `json:"op"`
		Columns []column `json:"columns"`
		PK      []string `json:"pk,omitempty"`
	}{t.Name, op, t.Columns, t.PK})
	limit := b.s.ChunkBytes
	if limit <= 0 {
		limit = 4 << 20
	}
	return &chunker{b: b, table: t.Name, header: append(h, '\n'), limit: limit}
}

// reset starts the next chunk; its buffer is taken at its first row (a
// table or a change set without rows costs no buffer).
func (c *chunker) reset() {
	c.buf = nil
	c.count = 0
}

// open gives the chunk its buffer, with the header, if it has none yet.
func (c *chunker) open() {
	if c.buf == nil {
		c.buf = append(c.b.buffer(c.limit), c.header...)
	}
}

// buffer returns an empty chunk buffer: a recycled one (the upload
// workers hand theirs back) or a new one, large enough for a chunk's
// longest cut without growing.
func (b *builder) buffer(limit int) []byte {
	select {
	case buf := <-b.bufs:
		if cap(buf) >= 2*limit+64<<10 {
			return buf[:0]
		}
	default:
	}
	return make([]byte, 0, 2*limit+64<<10)
}

// recycle hands a chunk buffer back once nothing refers to it.
func (b *builder) recycle(buf []byte) {
	select {
	case b.bufs <- buf:
	default:
	}
}

func (c *chunker) line(l []byte) error {
	c.open()
	c.buf = append(c.buf, l...)
	c.buf = append(c.buf, '\n')
	c.count++
	if len(c.buf) >= c.limit {
		return c.flush()
	}
	return nil
}

// rowLine adds a row and cuts the chunk where the content says: past half
// the chunk size, after a row whose digest falls under a threshold
// proportional to its length (about one cut per chunk size of rows), and
// at twice the chunk size at most. Cuts follow the rows, not their offsets,
// so a row inserted or changed moves one cut at most: the chunks around it
// keep their content and names, and a later set reuses them.
func (c *chunker) rowLine(l []byte, digest [32]byte) error {
	c.open()
	c.buf = append(c.buf, l...)
	return c.endRow(len(l), digest)
}

// endRow ends a row already encoded at the end of the chunk's buffer (l
// bytes long), and cuts the chunk as rowLine says.
func (c *chunker) endRow(l int, digest [32]byte) error {
	c.buf = append(c.buf, '\n')
	c.count++
	n := len(c.buf)
	if n >= 2*c.limit {
		return c.flush()
	}
	if n >= c.limit/2 {
		threshold := int64(l+1) * (1 << 32) / int64(c.limit)
		if int64(binary.BigEndian.Uint32(digest[:4])) < threshold {
			return c.flush()
		}
	}
	return nil
}

func (c *chunker) flush() error {
	if c.count == 0 {
		if c.buf != nil {
			c.b.recycle(c.buf)
			c.buf = nil
		}
		return nil
	}
	ref, err := c.b.emit(c.table, c.buf, c.count)
	if err != nil {
		return err
	}
	c.refs = append(c.refs, ref)
	c.reset()
	return nil
}

// scanBatch is rows read by a table scan's reader, handed to its encoder:
// rows*columns values, row after row.
type scanBatch struct {
	vals []any
	n    int
}

// scanBatchRows is the number of rows per batch; scanBatches the batches
// in flight between the reader and the encoder (memory stays bounded).
const (
	scanBatchRows = 256
	scanBatches   = 4
)

// pipeRows reads rows (of cols columns) in this goroutine, which owns
// the transaction, and hands them in batches to consume, called in order
// in another goroutine: reading and what consume does run on separate
// cores, with scanBatches batches in flight at most. The values passed to
// consume are valid until it returns. A consume error stops the reading.
func pipeRows(rows *sql.Rows, cols int, consume func(vals []any) error) error {
	batches := make(chan *scanBatch, scanBatches)
	free := make(chan *scanBatch, scanBatches+2)
	var cerr error
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for bt := range batches {
			for r := 0; r < bt.n && cerr == nil; r++ {
				cerr = consume(bt.vals[r*cols : (r+1)*cols])
			}
			if cerr != nil {
				stop.Store(true)
			}
			clear(bt.vals)
			select {
			case free <- bt:
			default:
			}
		}
	}()
	next := func() *scanBatch {
		select {
		case bt := <-free:
			bt.n = 0
			return bt
		default:
			return &scanBatch{vals: make([]any, scanBatchRows*cols)}
		}
	}
	ptrs := make([]any, cols)
	bt := next()
	var err error
	for !stop.Load() && rows.Next() {
		base := bt.n * cols
		for i := range ptrs {
			ptrs[i] = &bt.vals[base+i]
		}
		if err = rows.Scan(ptrs...); err != nil {
			break
		}
		if bt.n++; bt.n == scanBatchRows {
			batches <- bt
			bt = next()
		}
	}
	if err == nil {
		err = rows.Err()
	}
	if err == nil && bt.n > 0 {
		batches <- bt
	}
	close(batches)
	<-done
	if err == nil {
		err = cerr
	}
	return err
}

// scan reads every row of a table: their checksum always, and the rows
// themselves when whole. The snapshot's reader (this goroutine, which owns
// the transaction) only steps and scans rows; an encoder goroutine encodes
// them, sums their checksum and cuts chunks, which the upload workers
// encrypt and write: the stages run on separate cores.
func (b *builder) scan(ctx context.Context, tx *store.Tx, t *table, e *TableEntry, whole bool) error {
	q := `SELECT ` + selectList(t) + ` FROM ` + quote(t.Name) + ` WHERE tenant_id = $1`
	if len(t.PK) > 0 {
		q += ` ORDER BY ` + strings.Join(quoteAll(t.PK), ", ")
	}
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	cols := len(t.Columns)
	var sum checksum
	var ch *chunker
	if whole {
		ch = b.newChunker(t, "rows")
	}
	line := make([]byte, 0, 1024)
	err = pipeRows(rows, cols, func(vals []any) error {
		if ch == nil {
			var err error
			line, err = sum.addValues(line, t, vals)
			return err
		}
		// Encoded in place at the end of the chunk's buffer.
		ch.open()
		start := len(ch.buf)
		var err error
		if ch.buf, err = encodeRow(ch.buf, t, vals); err != nil {
			return err
		}
		digest, err := sum.addRow(ch.buf[start:], t, vals)
		if err != nil {
			return err
		}
		b.rows++
		return ch.endRow(len(ch.buf)-start, digest)
	})
	if err == nil && ch != nil {
		err = ch.flush()
	}
	if err != nil {
		return err
	}
	if ch != nil {
		e.Chunks = ch.refs
	}
	e.Rows, e.Checksum = sum.rows, sum.String()
	return nil
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quote(n)
	}
	return out
}

func encodeRow(dst []byte, t *table, vals []any) ([]byte, error) {
	dst = append(dst, '[')
	var err error
	for i, c := range t.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendValue(dst, c.Kind, vals[i]); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
	}
	return append(dst, ']'), nil
}

// canonicalJSON rewrites text that holds a JSON object or array in one
// form (keys sorted, no spaces): PostgreSQL's jsonb columns give back their
// own spacing and key order, SQLite's text columns the original. Other
// text, and invalid JSON, is returned unchanged.
func canonicalJSON(v any) (any, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return v, false
	}
	if len(s) < 3 || (s[0] != '{' && s[0] != '[') {
		return v, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil || dec.More() {
		return v, false
	}
	out, err := json.Marshal(x)
	if err != nil {
		return v, false
	}
	return string(out), true
}

func encodeKey(dst []byte, t *table, key []any) ([]byte, error) {
	dst = append(dst, '[')
	var err error
	for i, k := range t.PK {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendValue(dst, t.kindOf(k), key[i]); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func keyWhere(t *table, from int) string {
	var sb strings.Builder
	sb.WriteString("tenant_id = $1")
	for i, k := range t.PK {
		fmt.Fprintf(&sb, " AND %s = $%d", quote(k), from+i)
	}
	return sb.String()
}

// changes reads the current row of each changed key: a row is an upsert,
// no row a delete.
func (b *builder) changes(ctx context.Context, tx *store.Tx, t *table, e *TableEntry, keys [][]any) error {
	if len(keys) == 0 {
		return nil
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]...) < fmt.Sprint(keys[j]...) })
	q := `SELECT ` + selectList(t) + ` FROM ` + quote(t.Name) + ` WHERE ` + keyWhere(t, 2)
	up, del := b.newChunker(t, "rows"), b.newChunker(t, "deletes")
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(t.Columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var line []byte
	for _, k := range keys {
		err := tx.QueryRow(ctx, q, k...).Scan(ptrs...)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if line, err = encodeKey(line[:0], t, k); err != nil {
				return err
			}
			if err := del.line(line); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if line, err = encodeRow(line[:0], t, vals); err != nil {
				return err
			}
			if err := up.line(line); err != nil {
				return err
			}
			b.rows++
		}
	}
	if err := up.flush(); err != nil {
		return err
	}
	if err := del.flush(); err != nil {
		return err
	}
	e.Chunks, e.Deletes = up.refs, del.refs
	return nil
}

func (b *builder) writeManifest(ctx context.Context) error {
	hdr, err := json.Marshal(b.h)
	if err != nil {
		return err
	}
	body, err := json.Marshal(b.body)
	if err != nil {
		return err
	}
	ct, err := b.keys.own().seal(body, manifestAAD(hdr))
	if err != nil {
		return err
	}
	var out bytes.Buffer
	out.Write(hdr)
	out.WriteByte('\n')
	out.WriteString(base64.StdEncoding.EncodeToString(ct))
	out.WriteByte('\n')
	if err := b.t.Put(ctx, manifestName(b.h), bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
		return fmt.Errorf("backup: write the manifest: %w", err)
	}
	return nil
}

// readManifest reads a manifest's header (not authenticated yet).
func readManifest(ctx context.Context, t Target, name string) (Header, []byte, []byte, error) {
	r, err := t.Get(ctx, name)
	if err != nil {
		return Header{}, nil, nil, err
	}
	defer func() { _ = r.Close() }()
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return Header{}, nil, nil, fmt.Errorf("backup: read %s: %w", name, err)
	}
	hdr, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return Header{}, nil, nil, fmt.Errorf("%w: %s: no header line", ErrAuth, name)
	}
	var h Header
	if err := json.Unmarshal(hdr, &h); err != nil || h.Format != Format {
		return Header{}, nil, nil, fmt.Errorf("%w: %s: unreadable header", ErrAuth, name)
	}
	b64, ok := bytes.CutSuffix(rest, []byte("\n"))
	if !ok {
		return Header{}, nil, nil, fmt.Errorf("%w: %s: no final newline", ErrAuth, name)
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(string(b64))
	if err != nil || bytes.ContainsAny(b64, "\r\n") {
		return Header{}, nil, nil, fmt.Errorf("%w: %s: body is not base64", ErrAuth, name)
	}
	return h, hdr, ct, nil
}

// openManifest authenticates and decrypts a manifest.
func (s *Service) openManifest(ctx context.Context, t Target, name string) (Header, Body, *pointKeys, error) {
	h, hdr, ct, err := readManifest(ctx, t, name)
	if err != nil {
		return Header{}, Body{}, nil, err
	}
	if name != manifestName(h) {
		return Header{}, Body{}, nil, fmt.Errorf("%w: %s: its header names another point", ErrAuth, name)
	}
	k, err := openPointKeys(ctx, s.Master, h)
	if err != nil {
		return Header{}, Body{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	plain, err := k.own().open(bytes.NewReader(ct), manifestAAD(hdr))
	if err != nil {
		return Header{}, Body{}, nil, fmt.Errorf("%w: %s", ErrAuth, name)
	}
	var body Body
	if err := json.Unmarshal(plain, &body); err != nil {
		return Header{}, Body{}, nil, fmt.Errorf("%w: %s: body is not JSON", ErrAuth, name)
	}
	return h, body, k, nil
}

// points lists the tenant's points in the target, sorted by time. Their
// headers are read, not yet authenticated (Verify and Restore do that).
func (s *Service) points(ctx context.Context, t Target, tenantID string) ([]Point, error) {
	names, err := t.List(ctx, tenantPrefix(tenantID)+"sets/")
	if err != nil {
		return nil, err
	}
	var out []Point
	for _, n := range names {
		if !strings.HasSuffix(n, ".manifest") {
			continue
		}
		h, _, _, err := readManifest(ctx, t, n)
		if err != nil {
			return nil, err
		}
		out = append(out, Point{Header: h, Object: n})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].TakenAt != out[j].TakenAt {
			return out[i].TakenAt < out[j].TakenAt
		}
		return out[i].Seq < out[j].Seq
	})
	return out, nil
}

// FindTenant finds a tenant's id in the target from its id or the slug its
// backups were taken under (the newest point wins).
func (s *Service) FindTenant(ctx context.Context, t Target, ref string) (string, error) {
	names, err := t.List(ctx, "tenants/")
	if err != nil {
		return "", err
	}
	var id string
	var at int64
	for _, n := range names {
		if !strings.HasSuffix(n, ".manifest") {
			continue
		}
		tid, _, _ := strings.Cut(strings.TrimPrefix(n, "tenants/"), "/")
		if tid == ref {
			return tid, nil
		}
		h, _, _, err := readManifest(ctx, t, n)
		if err != nil {
			continue
		}
		if h.TenantSlug == ref && h.TakenAt >= at {
			id, at = h.TenantID, h.TakenAt
		}
	}
	if id == "" {
		return "", fmt.Errorf("backup: no backup of tenant %q in %s", ref, t.ID())
	}
	return id, nil
}

// List returns the tenant's backup points in the target, oldest first.
func (s *Service) List(ctx context.Context, tenantID string, t Target) ([]Point, error) {
	return s.points(ctx, t, tenantID)
}

// insertWithCompanionWeight is how many changes the insert of a row whose
// companion an incremental reads with it (insertsLoggedWith: a message and
// its content, about 5 kB, ten times changeBytesEstimate) counts for in
// PendingChanges.
const insertWithCompanionWeight = 11

// PendingChanges is the number of changes logged for the tenant and not
// yet pruned, an estimate of the next incremental's size in changes of
// about changeBytesEstimate bytes: each key a change-log row names (a key
// list, loggedKeys, counts as its keys), an insert of messages as
// insertWithCompanionWeight (its content comes with it).
func (s *Service) PendingChanges(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	q := `SELECT coalesce(sum(CASE WHEN substr(pk, 1, 2) = '[[' THEN json_array_length(pk) * (CASE WHEN tbl = $2 THEN $3 ELSE 1 END) ELSE 1 END), 0)
		FROM backup_changes WHERE tenant_id = $1`
	if s.DB.Dialect() == store.Postgres {
		q = `SELECT coalesce(sum(CASE WHEN left(pk, 2) = '[[' THEN json_array_length(pk::json) * (CASE WHEN tbl = $2 THEN $3::int ELSE 1 END) ELSE 1 END), 0)::bigint
			FROM backup_changes WHERE tenant_id = $1`
	}
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, q, insertsLoggedWith("message_contents"), insertWithCompanionWeight).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("backup: pending changes: %w", err)
	}
	return n, nil
}

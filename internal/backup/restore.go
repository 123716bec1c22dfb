package backup

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Restore errors.
var (
	// ErrTenantExists: the target store already has the backup's tenant
	// (the live tenant, or an earlier restore).
	ErrTenantExists = errors.New("the backup's tenant already exists in the target store")
	// ErrNoPoint: no backup point at or before the requested time.
	ErrNoPoint = errors.New("no backup point at or before that time")
	// ErrMismatch: the restored rows do not match what the backup recorded.
	ErrMismatch = errors.New("restored rows do not match the backup's checksums")
)

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// At is the point in time; the zero time means the latest point.
	At time.Time
	// IntoSlug is the restored tenant's slug (required); IntoName its name
	// (the original's when empty).
	IntoSlug, IntoName string
	// Dest is the store to restore into; this service's store when nil.
	Dest *store.DB
	// Progress, when set, is called with the plaintext bytes restored so
	// far and the total.
	Progress func(done, total int64)
	// CacheMiB is the SQLite page cache of the restore's connection while
	// it runs (256 when zero); the connection's own setting is put back
	// after it.
	CacheMiB int
	// newStore: set by RestoreNewStore (a store made for this restore,
	// closed after it): CHECK constraints are checked once per table after
	// the load (see deferredChecks).
	newStore bool
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	TenantID string `json:"tenant_id"`
	Slug     string `json:"slug"`
	Point    Point  `json:"point"`
	Points   int    `json:"points"`
	Rows     int64  `json:"rows"`
	Tables   int    `json:"tables"`
}

type openedPoint struct {
	h    Header
	body Body
	keys *pointKeys
}

// chain returns the authenticated points to apply for time at: the last
// full point at or before it and its incrementals up to it.
func (s *Service) chain(ctx context.Context, tenantID string, t Target, at time.Time) ([]openedPoint, error) {
	points, err := s.points(ctx, t, tenantID)
	if err != nil {
		return nil, err
	}
	var target *Point
	for i := range points {
		if at.IsZero() || points[i].TakenAt <= store.Micros(at) {
			target = &points[i]
		}
	}
	if target == nil {
		return nil, ErrNoPoint
	}
	var set []Point
	for _, p := range points {
		if p.SetID == target.SetID && p.Seq <= target.Seq {
			set = append(set, p)
		}
	}
	sort.Slice(set, func(i, j int) bool { return set[i].Seq < set[j].Seq })
	var out []openedPoint
	for i, p := range set {
		h, body, k, err := s.openManifest(ctx, t, p.Object)
		if err != nil {
			return nil, err
		}
		if h.Seq != i || (i == 0) != (h.Kind == KindFull) || (i > 0 && h.Parent != set[i-1].PointID) || h.TenantID != tenantID {
			return nil, fmt.Errorf("backup: set %s is broken at point %s (missing or out-of-order points); restore an earlier time", h.SetID, h.PointID)
		}
		out = append(out, openedPoint{h: h, body: body, keys: k})
	}
	return out, nil
}

// Restore restores the tenant's state at o.At from the target into a new
// tenant with the same id and the slug o.IntoSlug, in o.Dest (or this
// store), in one transaction: a failure or a crash leaves nothing. It is
// refused for a shredded tenant, into a store that has the tenant, or
// under a slug in use. The restored rows are compared with the checksums
// the backup recorded before the transaction commits.
//
// The rows of the full point are summed as they are written (each parsed
// row encoded again and hashed, off the writer's goroutine), not read back:
// the tenant's tables held none of its rows before (checked), every plain
// INSERT must report as many rows written as it bound, and nothing else
// writes those tables in the transaction (the only triggers are the
// change log's, which write backup_changes and are off during a restore),
// so the rows bound are the rows stored, and the check proves the same
// thing the read-back did: the backup's every row, none missing, none
// added, none altered, against the sums taken from the live tenant. A
// table that an incremental of the chain changes (upserts, deletes, a
// table copied whole) or whose columns differ at the last point is read
// back after the load, as before.
func (s *Service) Restore(ctx context.Context, tenantID string, t Target, o RestoreOptions) (RestoreResult, error) {
	if err := tenants.ValidateSlug(o.IntoSlug); err != nil {
		return RestoreResult{}, err
	}
	shredded, err := s.shred().TenantShredded(ctx, tenantID)
	if err != nil {
		return RestoreResult{}, err
	}
	if shredded {
		return RestoreResult{}, ErrShredded
	}
	chain, err := s.chain(ctx, tenantID, t, o.At)
	if err != nil {
		return RestoreResult{}, err
	}
	dest := o.Dest
	if dest == nil {
		dest = s.DB
	}
	tables, err := loadSchema(ctx, dest)
	if err != nil {
		return RestoreResult{}, err
	}
	last := chain[len(chain)-1]
	if err := compatible(tables, last.body.Tables); err != nil {
		return RestoreResult{}, err
	}
	var total int64
	for _, p := range chain {
		for _, e := range p.body.Tables {
			for _, c := range append(append([]ChunkRef(nil), e.Chunks...), e.Deletes...) {
				total += c.Size
			}
		}
	}
	// The live store's shredding records, read before the restore's
	// transaction (the store restored into may be this one).
	shredRecords, err := s.shred().Records(ctx, tenantID)
	if err != nil {
		return RestoreResult{}, err
	}
	r := &restorer{s: s, t: t, tenantID: tenantID, tables: tables, total: total, progress: o.Progress, dialect: dest.Dialect(),
		sums: map[string]*checksum{}}
	for _, e := range chain[0].body.Tables {
		r.sums[e.Name] = &checksum{}
	}
	// The tables an incremental changes (rows, deletes, or copied whole
	// again) or whose columns differ at the last point (a migration in
	// between): their sums are read back from the store after the load;
	// the others' are those of the full point's rows as written.
	touched := map[string]bool{}
	fullCols := map[string][]column{}
	for _, e := range chain[0].body.Tables {
		fullCols[e.Name] = e.Columns
	}
	for _, p := range chain[1:] {
		for _, e := range p.body.Tables {
			if len(e.Chunks) > 0 || len(e.Deletes) > 0 || e.Whole || !slices.Equal(e.Columns, fullCols[e.Name]) {
				touched[e.Name] = true
			}
		}
	}
	res := RestoreResult{TenantID: tenantID, Slug: o.IntoSlug, Point: Point{Header: last.h, Object: manifestName(last.h)}, Points: len(chain)}
	// Phase times, logged at the end.
	var tLoaded, tIndexed, tSummed time.Time
	tStart := time.Now()
	// One pinned connection: on SQLite the full batches' INSERTs run
	// through the driver directly (store.Tx.PrepareDirect).
	err = dest.PlatformPinned(ctx, func(ptx *store.PlatformTx) error {
		if ptx.Dialect() == store.SQLite {
			// A restore writes every index of the tenant at once: a 256 MiB
			// page cache (o.CacheMiB) for this connection while it runs,
			// then the connection's own setting again (the store's
			// sqlite.cache_mib).
			var was int64
			if err := ptx.QueryRow(ctx, `PRAGMA cache_size`).Scan(&was); err != nil {
				return err
			}
			cache := o.CacheMiB
			if cache <= 0 {
				cache = 256
			}
			if _, err := ptx.Exec(ctx, `PRAGMA cache_size = `+strconv.Itoa(-cache*1024)); err != nil {
				return err
			}
			defer func() {
				_, _ = ptx.Exec(context.WithoutCancel(ctx), `PRAGMA cache_size = `+strconv.FormatInt(was, 10))
			}()
		}
		var n int
		if err := ptx.QueryRow(ctx, `SELECT count(*) FROM tenants WHERE id = $1`, tenantID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrTenantExists
		}
		// Leftover rows of that tenant id (a tenant removed without its
		// data): never restore over them.
		for _, tb := range tables {
			var one int
			err := ptx.Tenant(tenantID).QueryRow(ctx, `SELECT 1 FROM `+quote(tb.Name)+` WHERE tenant_id = $1 LIMIT 1`).Scan(&one)
			if err == nil {
				return fmt.Errorf("%w: table %s still holds rows of tenant %s", ErrTenantExists, tb.Name, tenantID)
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		ti := last.body.Tenant
		name := ti.Name
		if o.IntoName != "" {
			name = o.IntoName
		}
		now := store.Micros(s.now())
		_, err := ptx.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			tenantID, o.IntoSlug, name, ti.Status, ti.CreatedAt, now)
		if store.IsUniqueViolation(err) {
			return tenants.ErrSlugTaken
		}
		if err != nil {
			return fmt.Errorf("backup: create the tenant: %w", err)
		}
		tx := ptx.Tenant(tenantID)
		if _, err := tx.Exec(ctx, `INSERT INTO backup_restoring (tenant_id) VALUES ($1)`); err != nil {
			return err
		}
		rebuild, err := dropIndexes(ctx, ptx, tables)
		if err != nil {
			return err
		}
		built := map[string]bool{}
		create := func(ix setAside) error {
			built[ix.kind+" "+ix.name] = true
			ti := time.Now()
			defer func() { r.indexing += time.Since(ti) }()
			if _, err := ptx.Exec(ctx, ix.sql); err != nil {
				// A unique index (the contacts' e-mail blind index, say)
				// that the backup's rows break: the whole restore is
				// refused.
				return fmt.Errorf("backup: the restored rows break %s %s of the store: %w", ix.kind, ix.name, err)
			}
			return nil
		}
		// A table's set-aside indexes are built as soon as the full point's
		// rows of that table are in, while its last pages are still in the
		// page cache (the incrementals after it then update them as any
		// write does); the triggers once every point is applied.
		r.loaded = func(table string) error {
			for _, ix := range rebuild {
				if ix.table == table && ix.kind == "index" && !built[ix.kind+" "+ix.name] {
					if err := create(ix); err != nil {
						return err
					}
				}
			}
			return nil
		}
		// Into a new store: the CHECK constraints are checked after the
		// load, once per table, instead of row by row (deferredChecks).
		var checks *deferredChecks
		if o.newStore && ptx.Dialect() == store.SQLite {
			c, ok, err := loadChecks(ctx, ptx, tables)
			if err != nil {
				return err
			}
			if ok {
				// A flag pragma expires the connection's prepared
				// statements: those prepared while it is on are compiled
				// again, with their checks, once it is off.
				if _, err := ptx.Exec(ctx, `PRAGMA ignore_check_constraints = ON`); err != nil {
					return err
				}
				checks, r.checks = c, c
				defer func() {
					if checks != nil {
						_, _ = ptx.Exec(context.WithoutCancel(ctx), `PRAGMA ignore_check_constraints = OFF`)
					}
				}()
			}
		}
		for i, p := range chain {
			if err := r.apply(ctx, tx, p, i == 0); err != nil {
				return err
			}
		}
		if checks != nil {
			tc := time.Now()
			if _, err := ptx.Exec(ctx, `PRAGMA ignore_check_constraints = OFF`); err != nil {
				return err
			}
			// Tables whose rows could not all be checked as parsed.
			for name := range r.scanLater {
				checks.scan(name)
			}
			if err := checks.verify(ctx, tx, tables); err != nil {
				return err
			}
			checks = nil
			r.checking = time.Since(tc)
		}
		tLoaded = time.Now()
		for _, ix := range rebuild {
			if !built[ix.kind+" "+ix.name] {
				if err := create(ix); err != nil {
					return err
				}
			}
		}
		if err := fixSerials(ctx, ptx, tables); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM backup_restoring WHERE tenant_id = $1`); err != nil {
			return err
		}
		tIndexed = time.Now()
		var readBack []TableEntry
		for _, e := range last.body.Tables {
			if r.sums[e.Name] == nil || touched[e.Name] {
				readBack = append(readBack, e)
			}
		}
		sums, err := checksums(ctx, tx, tables, readBack)
		if err != nil {
			return err
		}
		for _, e := range last.body.Tables {
			got := sums[e.Name]
			if got == nil {
				got = r.sums[e.Name]
			}
			if got.rows != e.Rows || got.String() != e.Checksum {
				return fmt.Errorf("%w: table %s has %d rows (checksum %.12s), the backup recorded %d (%.12s)",
					ErrMismatch, e.Name, got.rows, got.String(), e.Rows, e.Checksum)
			}
			res.Rows += e.Rows
		}
		res.Tables = len(last.body.Tables)
		tSummed = time.Now()
		// Only once the rows are proven to be the backup's: shredding done
		// since the backup is applied again, in this same transaction.
		if err := s.shred().Reapply(ctx, tx, shredRecords); err != nil {
			return fmt.Errorf("backup: re-apply the shredding records: %w", err)
		}
		// The log head's hash is kept differently by each dialect (SQLite:
		// the event before the last, fixed up at the next append;
		// PostgreSQL: the last event's): set it to the last event's, which
		// both accept, so the restore's own event links to it.
		if _, err := tx.Exec(ctx, `UPDATE audit_heads SET hash = COALESCE((SELECT e.hash FROM audit_events e
			WHERE e.tenant_id = $1 AND e.seq = audit_heads.seq), hash) WHERE tenant_id = $1`); err != nil {
			return fmt.Errorf("backup: audit head: %w", err)
		}
		details := map[string]any{"point": last.h.PointID, "set": last.h.SetID, "taken_at": last.h.TakenAt,
			"target": t.ID(), "from_slug": ti.Slug, "rows": res.Rows}
		if _, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "backup.restore",
			ObjectType: "tenant", ObjectID: tenantID, Details: details}); err != nil {
			return err
		}
		_, err = audit.Append(ctx, ptx.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "tenant.restore",
			ObjectType: "tenant", ObjectID: tenantID, Details: details})
		return err
	})
	if err != nil {
		return RestoreResult{}, err
	}
	s.log().Info("backup restored", "tenant", tenantID, "rows", res.Rows, "load_ms", tLoaded.Sub(tStart).Milliseconds(),
		"index_ms", tIndexed.Sub(tLoaded).Milliseconds(), "sums_ms", tSummed.Sub(tIndexed).Milliseconds(),
		"commit_ms", time.Since(tSummed).Milliseconds(), "wait_ms", r.waited.Milliseconds(), "indexes_ms", r.indexing.Milliseconds(), "checks_ms", r.checking.Milliseconds())
	return res, nil
}

// ErrStoreExists: RestoreNewStore was given a directory that already
// holds a store.
var ErrStoreExists = errors.New("the directory already holds a store")

// RestoreNewStore restores as Restore does into a new SQLite store that it
// creates in dir (which must not hold one), migrates and closes: the CLI's
// --store with a new directory, the automatic restore tests' scratch
// store. tune sets the new store's page size and cache (its Build is set
// here). While the restore runs the store has one connection and a
// rollback journal instead of the write-ahead log (store.SQLiteTuning
// Build): the restored pages are all new to the file, and are written to
// it once (a log writes them to itself, then again to the file at the
// checkpoint, reading them back). The restore stays one transaction:
// an error rolls it back and then removes the store; a crash (kill -9,
// power) leaves a hot journal that SQLite plays back when the store is
// next opened, which leaves the migrated store without the tenant (the
// tenant's row is inserted in the same transaction). o.Dest is ignored.
func (s *Service) RestoreNewStore(ctx context.Context, tenantID string, t Target, dir string, tune store.SQLiteTuning, o RestoreOptions) (RestoreResult, error) {
	path := filepath.Join(dir, "relais.db")
	// Claim the path: created here, or refused if it exists, in one step
	// (two restores into the same directory cannot both go on, and what
	// is removed on failure below is this call's own).
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("backup: create %s: %w", dir, err)
	}
	claim, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the operator's new store directory
	if errors.Is(err, fs.ErrExist) {
		return RestoreResult{}, fmt.Errorf("backup: %w: %s", ErrStoreExists, path)
	} else if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	if err := claim.Close(); err != nil {
		_ = os.Remove(path)
		return RestoreResult{}, fmt.Errorf("backup: %w", err)
	}
	tune.Build = true
	remove := func() {
		for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
			_ = os.Remove(path + suffix)
		}
	}
	dest, err := store.Open(ctx, store.Options{DataDir: dir, Now: s.DB.Now, SQLite: tune})
	if err != nil {
		// The file is this call's (claimed above) and holds nothing; left
		// there it would make the next attempt ErrStoreExists.
		remove()
		return RestoreResult{}, err
	}
	discard := func() {
		_ = dest.Close()
		remove()
	}
	if _, err := dest.Migrate(ctx); err != nil {
		discard()
		return RestoreResult{}, err
	}
	o.Dest, o.newStore = dest, true
	res, err := s.Restore(ctx, tenantID, t, o)
	if err != nil {
		// Rolled back: the store holds nothing of the tenant; it was made
		// for this restore only.
		discard()
		return RestoreResult{}, err
	}
	if err := dest.Close(); err != nil {
		return res, fmt.Errorf("backup: the restore into %s committed, but closing the store failed (its next opener switches it to WAL mode): %w", path, err)
	}
	return res, nil
}

// compatible checks that the target store has every table and column of
// the backup.
func compatible(tables []*table, entries []TableEntry) error {
	byName := map[string]*table{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	for _, e := range entries {
		t := byName[e.Name]
		if t == nil {
			return fmt.Errorf("backup: the target store has no table %s; run `relais migrate` with a binary at least as new as the backup's", e.Name)
		}
		for _, c := range e.Columns {
			found := false
			for _, d := range t.Columns {
				found = found || d.Name == c.Name
			}
			if !found {
				return fmt.Errorf("backup: the target store's table %s has no column %s: either the store's schema is older than the backup's "+
					"(run `relais migrate`), or a later migration moved or removed the column (restore the backup with the relais "+
					"release that took it into an empty store, then run this release's `relais migrate` on that store)", e.Name, c.Name)
			}
		}
	}
	return nil
}

type restorer struct {
	s        *Service
	t        Target
	tenantID string
	tables   []*table
	dialect  store.Dialect
	done     int64
	total    int64
	progress func(done, total int64)
	stmts    map[string]*store.Stmt // full-batch INSERTs, prepared once per restore
	direct   map[string]*store.DirectStmt
	noDirect bool // the store has no direct statements (PostgreSQL)
	// shared caches the texts of the full batches' statements with shared
	// columns, by the batch's full statement and the columns' mask
	// (inserter.sharedColumns); variants counts them by full statement.
	shared   map[sharedKey]string
	variants map[string]int
	// sums are the checksums of the rows the full point's chunks hold, as
	// parsed and written, by table.
	sums map[string]*checksum
	// waited is the time the writer spent waiting for parsed chunks;
	// indexing, building set-aside indexes.
	waited, indexing, checking time.Duration
	// checks, when set, are the CHECK constraints the restore verifies
	// itself (SQLite's per-row checks off); scanLater, the tables the
	// parsing goroutine could not check (queried after the load).
	checks    *deferredChecks
	scanLater map[string]bool
	// plain is the parsing goroutine's buffer for a chunk's plaintext,
	// reused from chunk to chunk.
	plain []byte
	// loaded, when set, is called once the full point's rows of a table
	// are written (it builds that table's set-aside indexes).
	loaded func(table string) error
}

// prepared returns the statement q prepared in tx, preparing it once.
func (r *restorer) prepared(ctx context.Context, tx *store.Tx, q string) (*store.Stmt, error) {
	if st, ok := r.stmts[q]; ok {
		return st, nil
	}
	st, err := tx.Prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	if r.stmts == nil {
		r.stmts = map[string]*store.Stmt{}
	}
	r.stmts[q] = st
	return st, nil
}

// preparedDirect returns the statement q prepared in tx through the
// driver, once; nil when the store cannot (the caller then uses prepared).
func (r *restorer) preparedDirect(ctx context.Context, tx *store.Tx, q string) (*store.DirectStmt, error) {
	if r.noDirect {
		return nil, nil
	}
	if st, ok := r.direct[q]; ok {
		return st, nil
	}
	st, err := tx.PrepareDirect(ctx, q)
	if errors.Is(err, store.ErrNoDirect) {
		r.noDirect = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.direct == nil {
		r.direct = map[string]*store.DirectStmt{}
	}
	r.direct[q] = st
	return st, nil
}

// restoreStep is one step of applying a point: a chunk of rows or
// deletes of a table, or clearing a table copied whole.
type restoreStep struct {
	t  *table
	e  TableEntry
	c  ChunkRef
	op string // "rows", "deletes" or "clear"
}

// parseAhead is how many parsed chunks may wait for the restore's writer.
const parseAhead = 4

// parsedChunk is a step's chunk read, authenticated and parsed.
type parsedChunk struct {
	rows [][]any
	sum  *checksum // the rows' checksum, for a full point's rows
	err  error
}

// apply applies one point of the chain; full says it is the chain's full
// point, whose rows are summed as they are written.
func (r *restorer) apply(ctx context.Context, tx *store.Tx, p openedPoint, full bool) error {
	entries := map[string]TableEntry{}
	for _, e := range p.body.Tables {
		entries[e.Name] = e
	}
	// Deletes children first, then rows parents first.
	var steps []restoreStep
	for i := len(r.tables) - 1; i >= 0; i-- {
		t := r.tables[i]
		e, ok := entries[t.Name]
		if !ok {
			continue
		}
		if e.Whole && p.h.Kind == KindIncremental {
			// An untracked table, copied whole: replace it.
			steps = append(steps, restoreStep{t: t, e: e, op: "clear"})
		}
		for _, c := range e.Deletes {
			steps = append(steps, restoreStep{t: t, e: e, c: c, op: "deletes"})
		}
	}
	var rowSteps [][]restoreStep // by table, parents first
	for _, t := range r.tables {
		e, ok := entries[t.Name]
		if !ok || len(e.Chunks) == 0 {
			continue
		}
		var ts []restoreStep
		for _, c := range e.Chunks {
			ts = append(ts, restoreStep{t: t, e: e, c: c, op: "rows"})
		}
		rowSteps = append(rowSteps, ts)
	}
	if full {
		steps = append(steps, interleave(rowSteps)...)
	} else {
		for _, ts := range rowSteps {
			steps = append(steps, ts...)
		}
	}
	// A table's last chunk, after which its set-aside indexes are built.
	last := map[*table]int{}
	for i, st := range steps {
		if st.op == "rows" {
			last[st.t] = i
		}
	}
	// A goroutine reads, authenticates and parses the next chunks while
	// this one, which owns the transaction, writes the current one. It may
	// run up to parseAhead chunks ahead (a chunk parsed is about three
	// times its plaintext in memory): while the writer builds a table's
	// indexes, it keeps parsing on the other core.
	pctx, cancel := context.WithCancel(ctx)
	parsed := make(chan parsedChunk, parseAhead)
	go func() {
		defer close(parsed)
		for _, st := range steps {
			var pc parsedChunk
			if st.op != "clear" {
				pc.rows, pc.sum, pc.err = r.parse(pctx, p, st, full && st.op == "rows")
			}
			select {
			case parsed <- pc:
			case <-pctx.Done():
				return
			}
			if pc.err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range parsed { // drain: the reader stops at the cancel
		}
	}()
	for i, st := range steps {
		tw := time.Now()
		pc, ok := <-parsed
		r.waited += time.Since(tw)
		if !ok {
			return fmt.Errorf("backup: restore: %w", pctx.Err())
		}
		if pc.err != nil {
			return pc.err
		}
		if st.op == "clear" {
			if _, err := tx.Exec(ctx, `DELETE FROM `+quote(st.t.Name)+` WHERE tenant_id = $1`); err != nil {
				return fmt.Errorf("backup: restore table %s: %w", st.t.Name, err)
			}
			continue
		}
		if err := r.write(ctx, tx, p, st, pc.rows); err != nil {
			return err
		}
		if pc.sum != nil {
			r.sums[st.t.Name].merge(pc.sum)
		}
		if full && st.op == "rows" && r.loaded != nil && last[st.t] == i {
			if err := r.loaded(st.t.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// interleave orders a full point's chunks, given by table with parents
// first: a table's chunks stay in their order, and come after every chunk
// of the tables it references (its foreign keys), but the chunks of tables
// that do not depend on each other are interleaved, each next chunk taken
// from the table with the largest share of its chunks left (ties: the
// first). The parsing goroutine and the writer then work on different
// tables at once: the contacts' chunks cost more to parse (blobs decoded,
// then encoded again for the checksums) than to write, the consent
// events' (no foreign key) less, and interleaved the writer no longer
// waits for the contacts' chunks.
func interleave(byTable [][]restoreStep) []restoreStep {
	n := 0
	index := map[string]int{}
	for i, ts := range byTable {
		n += len(ts)
		index[ts[0].t.Name] = i
	}
	next := make([]int, len(byTable)) // chunks taken, by table
	done := func(i int) bool { return next[i] == len(byTable[i]) }
	ready := func(i int) bool {
		for _, ref := range byTable[i][0].t.Refs {
			if j, ok := index[ref]; ok && j != i && !done(j) {
				return false
			}
		}
		return true
	}
	out := make([]restoreStep, 0, n)
	for len(out) < n {
		best, bestLeft := -1, 0.0
		for i, ts := range byTable {
			if done(i) || !ready(i) {
				continue
			}
			if left := float64(len(ts)-next[i]) / float64(len(ts)); best < 0 || left > bestLeft {
				best, bestLeft = i, left
			}
		}
		if best < 0 {
			// Unreachable with tables in topological order (the first
			// table left is always ready); kept safe: the given order.
			for i := range byTable {
				out = append(out, byTable[i][next[i]:]...)
				next[i] = len(byTable[i])
			}
			break
		}
		out = append(out, byTable[best][next[best]])
		next[best]++
	}
	return out
}

// parse reads, authenticates and parses one chunk: inserts (a full point),
// upserts (an incremental) or deletes. With sum, it also returns the
// checksum of the rows parsed, each encoded again from its parsed values
// as the backup encoded the live row (the values the restore binds).
func (r *restorer) parse(ctx context.Context, p openedPoint, st restoreStep, sum bool) ([][]any, *checksum, error) {
	t, c, op := st.t, st.c, st.op
	name := chunkName(r.tenantID, refSet(p.h, c), c.ID)
	if r.plain == nil {
		r.plain = make([]byte, 0, 64<<10)
	}
	plain, err := r.s.readChunkInto(ctx, r.t, p.keys, r.tenantID, c, r.plain)
	if err != nil {
		return nil, nil, fmt.Errorf("backup: chunk %s: %s", name, reason(err))
	}
	// Nothing parsed refers to plain (text values are substrings of a
	// copy, blobs are decoded into the parser's buffer): the next chunk
	// reuses its memory.
	r.plain = plain[:0]
	// Lines as bufio.ScanLines cuts them (a final line without its
	// newline, a carriage return before it dropped).
	text, pos := string(plain), 0 // text values are substrings of the one copy
	nextLine := func() (line []byte, str string, ok bool) {
		if pos >= len(plain) {
			return nil, "", false
		}
		end := bytes.IndexByte(plain[pos:], '\n')
		next := pos + end + 1
		if end < 0 {
			end, next = len(plain)-pos, len(plain)
		}
		line, str = plain[pos:pos+end], text[pos:pos+end]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line, str = line[:n-1], str[:n-1]
		}
		pos = next
		return line, str, true
	}
	head, _, ok := nextLine()
	if !ok {
		return nil, nil, fmt.Errorf("backup: chunk %s is empty", name)
	}
	var hdr struct {
		Table   string   `json:"table"`
		Op      string   `json:"op"`
		Columns []column `json:"columns"`
	}
	if err := json.Unmarshal(head, &hdr); err != nil || hdr.Table != t.Name || hdr.Op != op {
		return nil, nil, fmt.Errorf("backup: chunk %s does not hold %s of table %s", name, op, t.Name)
	}
	kinds := make([]string, 0, len(st.e.Columns))
	if op == "deletes" {
		for _, k := range t.PK {
			kinds = append(kinds, t.kindOf(k))
		}
	} else {
		for _, col := range st.e.Columns {
			kinds = append(kinds, col.Kind)
		}
	}
	var cs *checksum
	var src *table
	var enc []byte // the checksum's scratch encoding
	if sum {
		cs, src = &checksum{}, &table{Name: st.e.Name, Columns: st.e.Columns, PK: st.e.PK}
	}
	var rc *rowChecker
	if r.checks != nil && op == "rows" {
		var ok bool
		if rc, ok = r.checks.checker(t.Name, st.e.Columns); !ok {
			if r.scanLater == nil {
				r.scanLater = map[string]bool{}
			}
			r.scanLater[t.Name] = true
		}
	}
	rows := make([][]any, 0, c.Count)
	lp := lineParser{vals: make([]any, 0, c.Count*len(kinds)), blobs: make([]byte, 0, len(plain))}
	for {
		line, str, ok := nextLine()
		if !ok {
			break
		}
		vals, err := lp.parse(line, str, kinds)
		if err != nil {
			return nil, nil, fmt.Errorf("backup: chunk %s holds a malformed line: %w", name, err)
		}
		if rc != nil {
			if err := rc.check(vals); err != nil {
				return nil, nil, err
			}
		}
		if cs != nil {
			if enc, err = cs.addValues(enc, src, vals); err != nil {
				return nil, nil, fmt.Errorf("backup: chunk %s: %w", name, err)
			}
		}
		rows = append(rows, vals)
	}
	return rows, cs, nil
}

// write applies one parsed chunk.
func (r *restorer) write(ctx context.Context, tx *store.Tx, p openedPoint, st restoreStep, rows [][]any) error {
	t := st.t
	var w batchWriter
	if st.op == "deletes" {
		w = &deleter{t: t}
	} else {
		w = newInserter(r.dialect, t, st.e.Columns, p.h.Kind == KindIncremental)
		w.(*inserter).prepared = r.prepared
		w.(*inserter).direct = r.preparedDirect
		w.(*inserter).sharedSQL = r.sharedSQL
	}
	for _, vals := range rows {
		if err := w.add(ctx, tx, vals); err != nil {
			return fmt.Errorf("backup: restore table %s: %w", t.Name, err)
		}
	}
	if err := w.flush(ctx, tx); err != nil {
		return fmt.Errorf("backup: restore table %s: %w", t.Name, err)
	}
	r.done += st.c.Size
	if r.progress != nil {
		r.progress(r.done, r.total)
	}
	return nil
}

type batchWriter interface {
	add(ctx context.Context, tx *store.Tx, vals []any) error
	flush(ctx context.Context, tx *store.Tx) error
}

type deleter struct{ t *table }

func (d *deleter) add(ctx context.Context, tx *store.Tx, key []any) error {
	_, err := tx.Exec(ctx, `DELETE FROM `+quote(d.t.Name)+` WHERE `+keyWhere(d.t, 2), key...)
	return err
}

func (d *deleter) flush(context.Context, *store.Tx) error { return nil }

// inserter writes rows in multi-row statements.
type inserter struct {
	dialect store.Dialect
	t       *table
	cols    []column
	upsert  bool
	perStmt int
	args    []any
	n       int
	kinds   []string // the target store's kinds of cols
	// prepared, when set, gives a full batch's statement prepared once
	// (its text is the same for every full batch of the table).
	prepared func(ctx context.Context, tx *store.Tx, q string) (*store.Stmt, error)
	// direct, when set, gives it prepared through the driver (nil when
	// the store cannot), run with nargs (args as the driver takes them).
	direct  func(ctx context.Context, tx *store.Tx, q string) (*store.DirectStmt, error)
	nargs   []driver.NamedValue
	fullSQL string
	// sharedSQL, when set, gives the text of a full batch's statement
	// whose columns in mask are bound once for all its rows ("" when the
	// restore keeps no more variants of that statement).
	sharedSQL func(full string, mask uint64, build func() string) string
}

func newInserter(d store.Dialect, t *table, cols []column, upsert bool) *inserter {
	per := 4000 / (len(cols) + 1)
	if per < 1 {
		per = 1
	}
	kinds := make([]string, len(cols))
	for i, c := range cols {
		kinds[i] = t.kindOf(c.Name)
	}
	// args[0] is the tenant's slot (store.Stmt.ExecSlot).
	args := make([]any, 1, 1+per*len(cols))
	return &inserter{dialect: d, t: t, cols: cols, upsert: upsert, perStmt: per, kinds: kinds, args: args}
}

func (w *inserter) add(ctx context.Context, tx *store.Tx, vals []any) error {
	for i, v := range vals {
		w.args = append(w.args, convert(w.kinds[i], v))
	}
	w.n++
	if w.n >= w.perStmt {
		return w.flush(ctx, tx)
	}
	return nil
}

// convert adapts a value to the target column's kind (a boolean kept as an
// integer in one dialect, say).
func convert(kind string, v any) any {
	switch x := v.(type) {
	case int64:
		if kind == kindBool {
			return x != 0
		}
	case bool:
		if kind == kindInt {
			if x {
				return int64(1)
			}
			return int64(0)
		}
	}
	return v
}

func (w *inserter) flush(ctx context.Context, tx *store.Tx) error {
	if w.n == 0 {
		return nil
	}
	if w.prepared != nil && w.n == w.perStmt {
		if w.fullSQL == "" {
			w.fullSQL = w.sql()
		}
		if w.direct != nil {
			dst, err := w.direct(ctx, tx, w.fullSQL)
			if err != nil {
				return err
			}
			if dst != nil && w.sharedSQL != nil && !w.upsert {
				if mask := w.sharedColumns(); mask != 0 {
					q := w.sharedSQL(w.fullSQL, mask, func() string { return w.sqlShared(mask) })
					if q != "" {
						vst, err := w.direct(ctx, tx, q)
						if err != nil {
							return err
						}
						return w.execShared(ctx, vst, mask)
					}
				}
			}
			if dst != nil {
				if len(w.nargs) != len(w.args) {
					w.nargs = make([]driver.NamedValue, len(w.args))
					for i := range w.nargs {
						w.nargs[i].Ordinal = i + 1
					}
				}
				for i, v := range w.args[1:] {
					w.nargs[i+1].Value = v
				}
				n, err := dst.ExecSlot(ctx, w.nargs)
				for i := range w.nargs { // no reference kept to the batch's values
					w.nargs[i].Value = nil
				}
				return w.done(directResult(n), err)
			}
		}
		st, err := w.prepared(ctx, tx, w.fullSQL)
		if err != nil {
			return err
		}
		res, err := st.ExecSlot(ctx, w.args)
		return w.done(res, err)
	}
	res, err := tx.Exec(ctx, w.sql(), w.args[1:]...)
	return w.done(res, err)
}

// sharedKey names a full batch's statement with shared columns.
type sharedKey struct {
	full string
	mask uint64
}

// maxSharedVariants bounds the statements with shared columns a restore
// prepares for one table's full batches (each is prepared once and kept
// until the transaction ends); batches past it bind every value.
const maxSharedVariants = 32

// sharedSQL returns the text of the statement for full batches of the
// statement full whose columns in mask are shared, built once; "" past
// maxSharedVariants variants of full.
func (r *restorer) sharedSQL(full string, mask uint64, build func() string) string {
	k := sharedKey{full, mask}
	if q, ok := r.shared[k]; ok {
		return q
	}
	if r.variants[full] >= maxSharedVariants {
		return ""
	}
	if r.shared == nil {
		r.shared, r.variants = map[sharedKey]string{}, map[string]int{}
	}
	q := build()
	r.shared[k] = q
	r.variants[full]++
	return q
}

// sharedColumns returns the mask of the batch's columns (the first 64)
// that hold the same value in every row: NULL, or the same integer, real,
// boolean, text or blob. The statement for the batch then binds such a
// column's value once, as one parameter every row refers to (as they all
// refer to the tenant's $1), instead of once a row: fewer values to bind
// through the driver (each text or blob is copied to C memory, bound,
// unbound and freed there). The rows stored are the same.
func (w *inserter) sharedColumns() uint64 {
	nc := len(w.cols)
	if w.n < 2 || nc == 0 {
		return 0
	}
	if nc > 64 {
		nc = 64
	}
	rows := w.args[1:]
	stride := len(w.cols)
	var mask uint64
	for c := 0; c < nc; c++ {
		v := rows[c]
		same := shareable(v)
		for i := c + stride; same && i < len(rows); i += stride {
			same = sameValue(v, rows[i])
		}
		if same {
			mask |= 1 << c
		}
	}
	return mask
}

// shareable says whether sameValue compares values like v.
func shareable(v any) bool {
	switch v.(type) {
	case nil, int64, float64, bool, string, []byte:
		return true
	}
	return false
}

// sameValue says whether a and b bind the same: same type and value (an
// empty blob is not NULL, a real compares by its bits).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []byte:
		y, ok := b.([]byte)
		return ok && (x == nil) == (y == nil) && bytes.Equal(x, y)
	}
	return false
}

// sqlShared is the full batch's statement with the columns in mask shared:
// the column list names the tenant, then the shared columns, then the
// others; each row is ($1, ?2, ..., ?k+1, ?, ?, ...), so the shared
// columns are parameters 2 to k+1 in every row and the others are
// numbered after them, row by row (SQLite numbers a bare ? one more than
// the largest number before it).
func (w *inserter) sqlShared(mask uint64) string {
	var shared, other []string
	for i, c := range w.cols {
		if i < 64 && mask&(1<<i) != 0 {
			shared = append(shared, quote(c.Name))
		} else {
			other = append(other, quote(c.Name))
		}
	}
	var sb strings.Builder
	sb.WriteString(`INSERT INTO ` + quote(w.t.Name) + ` (tenant_id`)
	for _, c := range append(append([]string(nil), shared...), other...) {
		sb.WriteString(", " + c)
	}
	sb.WriteString(") VALUES ")
	for i := 0; i < w.n; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("($1")
		for j := range shared {
			sb.WriteString(", ?" + strconv.Itoa(j+2))
		}
		for range other {
			sb.WriteString(", ?")
		}
		sb.WriteString(")")
	}
	return sb.String()
}

// execShared runs a full batch through vst, its statement with the columns
// in mask shared (sqlShared): the tenant's slot, the shared values (taken
// from the first row), then each row's other values.
func (w *inserter) execShared(ctx context.Context, vst *store.DirectStmt, mask uint64) error {
	rows := w.args[1:]
	nc := len(w.cols)
	k := bits.OnesCount64(mask)
	size := 1 + k + w.n*(nc-k)
	if cap(w.nargs) < size {
		w.nargs = make([]driver.NamedValue, size)
	}
	args := w.nargs[:size]
	j := 1
	for c := 0; c < nc && c < 64; c++ {
		if mask&(1<<c) != 0 {
			args[j] = driver.NamedValue{Ordinal: j + 1, Value: rows[c]}
			j++
		}
	}
	for r := 0; r < w.n; r++ {
		row := rows[r*nc : (r+1)*nc]
		for c, v := range row {
			if c >= 64 || mask&(1<<c) == 0 {
				args[j] = driver.NamedValue{Ordinal: j + 1, Value: v}
				j++
			}
		}
	}
	n, err := vst.ExecSlot(ctx, args)
	for i := range args { // no reference kept to the batch's values
		args[i].Value = nil
	}
	return w.done(directResult(n), err)
}

// directResult is a direct statement's count of rows as a sql.Result.
type directResult int64

func (r directResult) LastInsertId() (int64, error) {
	return 0, errors.New("backup: no insert id")
}
func (r directResult) RowsAffected() (int64, error) { return int64(r), nil }

// done ends a batch: a plain INSERT must have written every row it bound
// (the restore's checksums are those of the rows bound).
func (w *inserter) done(res sql.Result, err error) error {
	n := w.n
	w.args, w.n = w.args[:1], 0
	if err != nil || w.upsert {
		return err
	}
	got, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if got != int64(n) {
		return fmt.Errorf("%w: a statement of %d rows wrote %d", ErrMismatch, n, got)
	}
	return nil
}

// sql is the multi-row statement for the batch's w.n rows.
func (w *inserter) sql() string {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO ` + quote(w.t.Name) + ` (tenant_id`)
	for _, c := range w.cols {
		sb.WriteString(", " + quote(c.Name))
	}
	sb.WriteString(") VALUES ")
	param := 2
	for i := 0; i < w.n; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("($1")
		for range w.cols {
			if w.dialect == store.Postgres {
				fmt.Fprintf(&sb, ", $%d", param)
			} else {
				sb.WriteString(", ?")
			}
			param++
		}
		sb.WriteString(")")
	}
	if w.upsert {
		var conflict []string
		if w.t.PKTenant {
			conflict = append(conflict, "tenant_id")
		}
		conflict = append(conflict, quoteAll(w.t.PK)...)
		sb.WriteString(" ON CONFLICT (" + strings.Join(conflict, ", ") + ") ")
		var sets []string
		for _, c := range w.cols {
			isPK := false
			for _, k := range w.t.PK {
				isPK = isPK || k == c.Name
			}
			if !isPK {
				sets = append(sets, quote(c.Name)+" = excluded."+quote(c.Name))
			}
		}
		if len(sets) == 0 {
			sb.WriteString("DO NOTHING")
		} else {
			sb.WriteString("DO UPDATE SET " + strings.Join(sets, ", "))
		}
	}
	return sb.String()
}

// dropIndexes drops, on SQLite, the secondary indexes (those created by
// CREATE [UNIQUE] INDEX, such as the contacts' e-mail blind index since
// migration 00020; not the primary keys and UNIQUE constraints of the
// tables' definitions) of the restored tables that hold no row at all, and
// returns them: a restore builds them once after its rows are in, in its
// same transaction, instead of inserting every row into them (random keys
// such as blind indexes make that the larger part of a restore). A unique
// index is checked when it is built: duplicates fail the restore. A table
// that holds rows of other tenants keeps its indexes (rebuilding would
// cost their rows too).
func dropIndexes(ctx context.Context, ptx *store.PlatformTx, tables []*table) ([]setAside, error) {
	if ptx.Dialect() != store.SQLite {
		return nil, nil
	}
	var rebuild []setAside
	for _, t := range tables {
		empty := false
		var one int
		err := ptx.QueryRow(ctx, `SELECT 1 FROM `+quote(t.Name)+` LIMIT 1`).Scan(&one)
		switch {
		case errors.Is(err, store.ErrNotFound):
			empty = true
		case err != nil:
			return nil, err
		}
		rows, err := ptx.Query(ctx, `SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = $1 AND sql IS NOT NULL
			AND (type = 'trigger' OR (type = 'index' AND $2)) ORDER BY type, name`, t.Name, empty)
		if err != nil {
			return nil, err
		}
		var mine []setAside
		for rows.Next() {
			ix := setAside{table: t.Name}
			if err := rows.Scan(&ix.kind, &ix.name, &ix.sql); err != nil {
				_ = rows.Close()
				return nil, err
			}
			mine = append(mine, ix)
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for _, ix := range mine {
			if _, err := ptx.Exec(ctx, `DROP `+strings.ToUpper(ix.kind)+` `+quote(ix.name)); err != nil {
				return nil, fmt.Errorf("backup: set aside %s %s: %w", ix.kind, ix.name, err)
			}
		}
		rebuild = append(rebuild, mine...)
	}
	return rebuild, nil
}

// setAside is an index or a trigger dropped for the load: its table, its
// kind, its name and the statement that creates it again.
type setAside struct{ table, kind, name, sql string }

// fixSerials moves PostgreSQL sequences past the restored ids.
func fixSerials(ctx context.Context, ptx *store.PlatformTx, tables []*table) error {
	if ptx.Dialect() != store.Postgres {
		return nil
	}
	for _, t := range tables {
		if !t.Serial || len(t.PK) != 1 {
			continue
		}
		col := t.PK[0]
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', '%s'), GREATEST((SELECT COALESCE(MAX(%s), 0) FROM %s), 1))`,
			t.Name, col, quote(col), quote(t.Name)) // #nosec G201 -- names from the catalogue, not input
		if _, err := ptx.Exec(ctx, q); err != nil {
			return fmt.Errorf("backup: advance the sequence of %s: %w", t.Name, err)
		}
	}
	return nil
}

// checksums reads back the tenant's rows of the tables of entries and
// computes their neutral checksums, with the backup's columns and kinds.
func checksums(ctx context.Context, tx *store.Tx, tables []*table, entries []TableEntry) (map[string]*checksum, error) {
	out := map[string]*checksum{}
	byName := map[string]*table{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	for _, e := range entries {
		src := &table{Name: e.Name, Columns: e.Columns, PK: e.PK}
		q := `SELECT ` + selectList(src) + ` FROM ` + quote(e.Name) + ` WHERE tenant_id = $1`
		if t := byName[e.Name]; t != nil && len(t.PK) > 0 && tx.Dialect() == store.SQLite {
			// The sum does not depend on the order; SQLite's planner may
			// otherwise walk another index (a blind index: random order).
			q += ` ORDER BY ` + strings.Join(quoteAll(t.PK), ", ")
		}
		rows, err := tx.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		sum := &checksum{}
		var line []byte
		err = pipeRows(rows, len(src.Columns), func(vals []any) error {
			var err error
			line, err = sum.addValues(line, src, vals)
			return err
		})
		_ = rows.Close()
		if err != nil {
			return nil, err
		}
		out[e.Name] = sum
	}
	return out, nil
}

// RestoreTest restores the tenant's latest point into a scratch SQLite
// store in a temporary directory and compares every table's row count and
// checksum with those the backup recorded from the live tenant at its
// point; it records the result (backup_state, metric, audit event, and an
// alert on failure) and removes the scratch store.
func (s *Service) RestoreTest(ctx context.Context, tenantID string, t Target) (RestoreResult, error) {
	res, err := s.restoreTest(ctx, tenantID, t)
	ok := err == nil
	s.Metrics.restoreTested(tenantID, ok)
	details := map[string]any{"target": t.ID(), "ok": ok, "point": res.Point.PointID, "rows": res.Rows, "tables": res.Tables}
	if err != nil {
		details["error"] = err.Error()
	}
	aerr := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE backup_state SET last_restore_at = $2, last_restore_ok = $3 WHERE tenant_id = $1 AND target = $4`,
			store.Micros(s.now()), ok, t.ID()); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryAdmin, Action: "backup.restore_test",
			ObjectType: "backup_target", ObjectID: t.ID(), Details: details})
		return err
	})
	if aerr != nil {
		s.log().Error("backup: record the restore test", "tenant", tenantID, "err", aerr)
	}
	if !ok && s.Notify != nil {
		s.Notify(ctx, Alert{TenantID: tenantID, Kind: "restore_test", Message: err.Error()})
	}
	return res, err
}

func (s *Service) restoreTest(ctx context.Context, tenantID string, t Target) (RestoreResult, error) {
	dir, err := os.MkdirTemp("", "relais-restore-test-*")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("backup: scratch store: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// The scratch store gets the live store's page size (the restore then
	// writes the same pages a restore into a store like it would).
	var tune store.SQLiteTuning
	if s.DB.Dialect() == store.SQLite {
		if err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
			return p.QueryRow(ctx, `PRAGMA page_size`).Scan(&tune.PageSize)
		}); err != nil {
			return RestoreResult{}, err
		}
	}
	return s.RestoreNewStore(ctx, tenantID, t, dir, tune, RestoreOptions{IntoSlug: "restore-test"})
}

// Package store is Relais's only way to its SQL database: SQLite (embedded,
// the default) or PostgreSQL (several nodes).
//
// Tenant data is reached only through a tenant-scoped transaction:
//
//	err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
//		_, err := tx.Exec(ctx, `UPDATE contacts SET name = $2 WHERE tenant_id = $1 AND id = $3`, name, id)
//		return err
//	})
//
// The tenant is always bound as parameter $1 by the store itself; callers
// pass their own parameters from $2 on and cannot supply a tenant, and a
// statement that does not use $1 is refused before it reaches the database
// (ErrUnscoped). On PostgreSQL every transaction also sets relais.tenant_id,
// and row-level security policies admit only that tenant's rows: a query
// that forgot its tenant clause still sees nothing of other tenants.
//
// Operator work that spans tenants (creating tenants, the platform audit log)
// goes through DB.Platform, which is explicit in the code and in review.
//
// Timestamps are stored as Unix microseconds in both dialects; use Micros and
// FromMicros.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Errors returned by the store.
var (
	// ErrUnscoped: a tenant statement that does not reference $1 (the tenant).
	ErrUnscoped = errors.New("store: tenant statement does not reference the tenant parameter $1")
	// ErrNoTenant: a tenant handle with an empty tenant id.
	ErrNoTenant = errors.New("store: empty tenant id")
	// ErrNotFound is returned by lookups that find no row.
	ErrNotFound = errors.New("not found")
)

// Options configure Open.
type Options struct {
	// URL is a postgres:// URL; empty selects SQLite in DataDir.
	URL string
	// DataDir holds relais.db for SQLite; created 0700 when missing.
	DataDir string
	// Logger receives warnings (e.g. a PostgreSQL role that bypasses RLS).
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// SQLite tunes the embedded store's connections (zero values: the
	// defaults of DefaultSQLiteTuning).
	SQLite SQLiteTuning
}

// SQLiteTuning are the embedded store's memory and checkpoint settings
// (internal/config's [sqlite] section). Zero fields take
// DefaultSQLiteTuning's values.
type SQLiteTuning struct {
	// CacheMiB is each connection's page cache (PRAGMA cache_size; SQLite's
	// own default is 2 MiB). Pages are allocated as they are used.
	CacheMiB int
	// WALAutocheckpoint is the write-ahead log's size, in pages, that
	// triggers a checkpoint into the database file (PRAGMA
	// wal_autocheckpoint; SQLite's own default is 1000). Each checkpoint
	// ends with two fsyncs and writes every page changed since the last
	// one once: a bulk write that changes more pages than this per
	// transaction would otherwise checkpoint at every commit.
	WALAutocheckpoint int
	// PageSize is the page size, in bytes, of a database file that Open
	// creates (a power of two from 4096 to 65536; SQLite's default, 4096,
	// when zero). A store keeps the page size it was created with.
	PageSize int
	// Build opens the store for one caller that fills it before anyone
	// else opens it (a restore into a new store, see backup's
	// RestoreNewStore): one connection, a rollback journal instead of the
	// write-ahead log, synchronous FULL. Pages new to the file are then
	// written once, to the file, where the log writes them twice (to the
	// log, then to the file at the checkpoint); a rollback journal keeps
	// the transaction all-or-nothing as the log does (a crash leaves a hot
	// journal, which the next opener plays back). Close puts the store
	// back in WAL mode. Its connection also reads the file through a
	// memory map (PRAGMA mmap_size), and, on Linux, the kernel is asked
	// every 100 ms to start writing the file's dirty pages (writeback), so
	// that the commit's fsync finds little left to write.
	Build bool
}

// buildMmapBytes is the memory map of a Build store's connection.
const buildMmapBytes = 1 << 40

// DefaultSQLiteTuning returns the embedded store's default settings.
func DefaultSQLiteTuning() SQLiteTuning {
	return SQLiteTuning{CacheMiB: 8, WALAutocheckpoint: 10000}
}

// pragmas returns the DSN parameters that apply t to each connection:
// its settings, temporary tables and statement journals (a multi-row
// statement's undo pages) in memory rather than in files, and a size
// limit of twice the checkpoint interval to which the write-ahead log file
// is truncated when a commit starts it over (it only grows beyond that in
// a bulk session, see TenantStore.Bulk).
func (t SQLiteTuning) pragmas() string {
	d := DefaultSQLiteTuning()
	if t.CacheMiB <= 0 {
		t.CacheMiB = d.CacheMiB
	}
	if t.WALAutocheckpoint <= 0 {
		t.WALAutocheckpoint = d.WALAutocheckpoint
	}
	return fmt.Sprintf("&_pragma=cache_size(%d)&_pragma=wal_autocheckpoint(%d)&_pragma=temp_store(MEMORY)&_pragma=journal_size_limit(%d)",
		-t.CacheMiB*1024, t.WALAutocheckpoint, t.walSizeLimit())
}

// createSQLite creates the database file at path with the given page size
// when it does not exist yet (0 or 4096: left to the first connection,
// which creates it with SQLite's default). The page size of a database is
// fixed when its first page is written: here, by switching it to WAL mode
// on a connection of its own, before the store's connections open it.
func createSQLite(ctx context.Context, path string, pageSize int) error {
	if pageSize == 0 || pageSize == 4096 {
		return nil
	}
	if pageSize < 4096 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("store: SQLite page size %d: use a power of two from 4096 to 65536", pageSize)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?_pragma=page_size("+strconv.Itoa(pageSize)+")")
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	defer func() { _ = db.Close() }()
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return fmt.Errorf("store: create %s: %w; check that the data directory is writable", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("store: restrict %s: %w", path, err)
	}
	return nil
}

// walSizeLimit is the journal_size_limit of the store's connections, in
// bytes: twice the checkpoint interval, in pages of the size set for new
// stores (4 KiB when not set).
func (t SQLiteTuning) walSizeLimit() int64 {
	page := int64(4096)
	if t.PageSize > 0 {
		page = int64(t.PageSize)
	}
	return 2 * int64(t.WALAutocheckpoint) * page
}

// busyTimeoutMillis is how long an SQLite connection waits for a lock.
const busyTimeoutMillis = 15000

// DB is an open store.
type DB struct {
	sql     *sql.DB
	dialect Dialect
	now     func() time.Time
	log     *slog.Logger
	// rlsEffective is false on PostgreSQL when the role bypasses RLS.
	rlsEffective bool
	// stmts caches prepared statements (SQLite only).
	stmts *stmtCache
	// writes queues write transactions (SQLite only).
	writes *writeGate
	// build: opened with SQLiteTuning.Build (rollback journal, one
	// connection); Close switches the file back to WAL mode.
	build bool
	// wb starts the write-out of a Build store's dirty pages while it is
	// filled (see writeback); nil otherwise.
	wb *writeback
	// writer is the connection of the write transactions (SQLite only).
	writer *writerConn
}

// Open connects to the store. It does not migrate; call Migrate.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db := &DB{now: opts.Now, log: opts.Logger}
	var err error
	if opts.URL != "" {
		err = db.openPostgres(ctx, opts.URL)
	} else {
		err = db.openSQLite(ctx, opts.DataDir, opts.SQLite)
	}
	if err != nil {
		return nil, err
	}
	return db, nil
}

func (db *DB) openSQLite(ctx context.Context, dir string, tune SQLiteTuning) error {
	if dir == "" {
		return errors.New("store: no data directory for SQLite; pass --data-dir or set RELAIS_DATABASE_URL")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "relais.db")
	// _txlock=immediate: writers take the lock at BEGIN, so two writers
	// never deadlock on a lock upgrade; busy_timeout makes them wait.
	if err := createSQLite(ctx, path, tune.PageSize); err != nil {
		return err
	}
	journal, syncMode, conns := "WAL", "NORMAL", 8
	if tune.Build {
		journal, syncMode, conns = "DELETE", "FULL", 1
	}
	dsn := "file:" + filepath.ToSlash(path) + "?_pragma=journal_mode(" + journal + ")&_pragma=busy_timeout(" + strconv.Itoa(busyTimeoutMillis) + ")" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(" + syncMode + ")" + tune.pragmas() + "&_txlock=immediate"
	if tune.Build {
		// Reads through a memory map (up to SQLite's compiled maximum): a restore
		// reads its tables back (index builds, checks) without a system
		// call per page. Writes still go through write(2).
		dsn += "&_pragma=mmap_size(" + strconv.FormatInt(buildMmapBytes, 10) + ")"
	}
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	s.SetMaxOpenConns(conns)
	s.SetMaxIdleConns(conns)
	db.build = tune.Build
	db.stmts = &stmtCache{}
	db.writes = newWriteGate()
	db.writer = &writerConn{}
	if err := s.PingContext(ctx); err != nil {
		_ = s.Close()
		return fmt.Errorf("store: open %s: %w; check that the data directory is writable", path, err)
	}
	// The database file holds personal data (encrypted) and wrapped keys.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = s.Close()
		return fmt.Errorf("store: restrict %s: %w", path, err)
	}
	db.sql, db.dialect, db.rlsEffective = s, SQLite, false
	if tune.Build {
		db.wb = startWriteback(path, writebackEvery)
	}
	return nil
}

func (db *DB) openPostgres(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("store: RELAIS_DATABASE_URL is not a postgres:// URL")
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("store: bad database URL: %s", redactPgErr(err))
	}
	s := stdlib.OpenDB(*cfg)
	s.SetMaxOpenConns(20)
	s.SetMaxIdleConns(10)
	s.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.PingContext(pingCtx); err != nil {
		_ = s.Close()
		return fmt.Errorf("store: connect to PostgreSQL at %s: %s; check RELAIS_DATABASE_URL and that the server is up", hostOf(u), redactPgErr(err))
	}
	db.sql, db.dialect = s, Postgres
	var super string
	var bypass bool
	err = s.QueryRowContext(ctx, `SELECT current_setting('is_superuser'), rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass)
	if err != nil {
		_ = s.Close()
		return fmt.Errorf("store: inspect the database role: %w", err)
	}
	db.rlsEffective = super != "on" && !bypass
	if !db.rlsEffective {
		db.log.Warn("the PostgreSQL role is a superuser or has BYPASSRLS: row-level security, the second tenant wall, is not in force; connect as an ordinary role")
	}
	return nil
}

func hostOf(u *url.URL) string {
	if u.Host != "" {
		return u.Host
	}
	if h := u.Query().Get("host"); h != "" {
		return h
	}
	return "(default host)"
}

// redactPgErr keeps a connection error useful without echoing secrets.
func redactPgErr(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "password="); i >= 0 {
		msg = msg[:i] + "password=xxxxx"
	}
	return msg
}

// Close closes the pool.
func (db *DB) Close() error {
	// The writeback's descriptor is closed after the pool (a close(2)
	// drops the process's POSIX locks on the file, see writeback).
	db.wb.close()
	defer db.wb.release()
	if db.writer != nil {
		db.writer.close()
	}
	if db.stmts != nil {
		db.stmts.close()
	}
	if db.build {
		// The store's other openers expect WAL mode (they would switch it
		// themselves, but only while no other connection has it open).
		var mode string
		if err := db.sql.QueryRowContext(context.Background(), `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
			_ = db.sql.Close()
			return fmt.Errorf("store: switch to WAL mode: %w", err)
		}
	}
	return db.sql.Close()
}

// Dialect reports the SQL engine.
func (db *DB) Dialect() Dialect { return db.dialect }

// RLSEffective reports whether PostgreSQL row-level security binds the
// application's role (always false on SQLite, which has none).
func (db *DB) RLSEffective() bool { return db.rlsEffective }

// Now is the store's clock.
func (db *DB) Now() time.Time { return db.now() }

// Ping checks the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Micros converts a time to the stored form.
func Micros(t time.Time) int64 { return t.UTC().UnixMicro() }

// FromMicros converts a stored timestamp back.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// IsUniqueViolation reports whether err is a unique-constraint failure, in
// either dialect.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
}

// VacuumInto writes a consistent snapshot of an SQLite store to path (which
// must not exist), with VACUUM INTO: online, without blocking writers for
// longer than the copy of each page. It is refused on PostgreSQL, whose
// physical backups belong to pgBackRest or WAL-G.
func (db *DB) VacuumInto(ctx context.Context, path string) error {
	if db.dialect != SQLite {
		return errors.New("store: VACUUM INTO is for SQLite; back up PostgreSQL with pgBackRest or WAL-G")
	}
	if _, err := db.sql.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("store: snapshot into %s: %w", path, err)
	}
	return nil
}

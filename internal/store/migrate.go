package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations
var migrations embed.FS

func (db *DB) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+string(db.dialect))
	if err != nil {
		return nil, fmt.Errorf("store: migrations for %s: %w", db.dialect, err)
	}
	// Features add their migrations independently (their numbers are
	// reserved when the work starts, not when it lands), so a store may
	// have applied a later number before an earlier one arrives: apply the
	// missing ones then. Migrations never depend on a higher-numbered one.
	opts := []goose.ProviderOption{goose.WithAllowOutofOrder(true)}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Several nodes may start at once: one migrates, the others wait.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.sql, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies every pending migration of the store's dialect and
// returns the versions applied.
func (db *DB) Migrate(ctx context.Context) ([]int64, error) {
	p, err := db.provider()
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// SchemaStatus reports the database's schema version and the newest
// version this binary knows.
func (db *DB) SchemaStatus(ctx context.Context) (current, latest int64, err error) {
	p, err := db.provider()
	if err != nil {
		return 0, 0, err
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: schema version: %w", err)
	}
	for _, s := range p.ListSources() {
		latest = max(latest, s.Version)
	}
	return current, latest, nil
}

// Ready reports whether the store answers and its schema is current.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.Ping(ctx); err != nil {
		return err
	}
	cur, latest, err := db.SchemaStatus(ctx)
	if err != nil {
		return err
	}
	pending, err := db.pendingMigrations(ctx)
	if err != nil {
		return err
	}
	if cur != latest || pending {
		return fmt.Errorf("store: schema at version %d with migrations pending, this binary needs %d; run `relais migrate`", cur, latest)
	}
	return nil
}

// pendingMigrations reports whether any migration (of any number) is not
// applied yet.
func (db *DB) pendingMigrations(ctx context.Context) (bool, error) {
	p, err := db.provider()
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("store: pending migrations: %w", err)
	}
	return pending, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// backupCtx is an opened app and target for a backup command.
type backupCtx struct {
	ctx    context.Context
	a      *app.App
	target backup.Target
}

func (b *backupCtx) close() { _ = b.a.Close() }

// openBackup checks the flags, opens the target and the app.
func (c *cli) openBackup(cmd *cobra.Command, flags ...string) (*backupCtx, error) {
	if err := need(cmd, append([]string{"target"}, flags...)...); err != nil {
		return nil, err
	}
	url, _ := cmd.Flags().GetString("target")
	target, err := backup.OpenTarget(url)
	if err != nil {
		return nil, usageError{err}
	}
	a, err := c.open(cmd)
	if err != nil {
		return nil, err
	}
	return &backupCtx{ctx: operatorContext(cmd.Context()), a: a, target: target}, nil
}

// tenantID finds --tenant in the store, or else among the target's backups
// (a tenant gone from the store can still be restored).
func (b *backupCtx) tenantID(cmd *cobra.Command, inTarget bool) (string, string, error) {
	ref, _ := cmd.Flags().GetString("tenant")
	t, err := b.a.Tenants.Get(b.ctx, ref)
	if err == nil {
		return t.ID, t.Slug, nil
	}
	if !inTarget || !errors.Is(err, tenants.ErrNotFound) {
		return "", "", tenantErr(err)
	}
	id, ferr := b.a.Backup.FindTenant(b.ctx, b.target, ref)
	if ferr != nil {
		return "", "", fmt.Errorf("%w; check --tenant and --target (`relais backup list`)", ferr)
	}
	return id, ref, nil
}

func (c *cli) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up, list, verify and restore tenants; snapshot the instance",
		Long: `Per-tenant backups are encrypted (AES-256-GCM streaming, under a key per
set sealed by the tenant's key; optionally also to OpenPGP keys), hold only
that tenant's rows in a dialect-neutral format (a backup taken on SQLite
restores into PostgreSQL and back), and are full or incremental. Targets are
dir:///absolute/path or s3://bucket/prefix?endpoint=host:port (credentials in
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). serve runs them on the tenant's
policy when backup.target is set. See docs/operations.md.`,
	}
	var asJSON bool
	cmd.PersistentFlags().String("target", "", "dir:///absolute/path or s3://bucket/prefix?endpoint=host:port")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")

	run := &cobra.Command{
		Use:   "run --tenant T --target URL [--full] [--pgp-recipient FILE]",
		Short: "Take a backup point of a tenant (incremental unless --full or no set to continue)",
		Example: `  relais backup run --tenant acme --target dir:///var/backups/relais
  relais backup run --tenant acme --full --target 's3://backups/relais?endpoint=s3.example.net'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := c.openBackup(cmd, "tenant")
			if err != nil {
				return err
			}
			defer b.close()
			id, slug, err := b.tenantID(cmd, false)
			if err != nil {
				return err
			}
			full, _ := cmd.Flags().GetBool("full")
			o := backup.RunOptions{Full: full}
			if path, _ := cmd.Flags().GetString("pgp-recipient"); path != "" {
				if o.PGP, err = backup.ReadRecipients(path); err != nil {
					return err
				}
			}
			p, err := b.a.Backup.Run(b.ctx, id, b.target, o)
			if err != nil {
				return err
			}
			if asJSON {
				err = printJSON(c.stdout, p)
			} else {
				fmt.Fprintf(c.stdout, "%s backup of %s: point %s (set %s) in %s\n", p.Kind, slug, p.PointID, p.SetID, b.target.ID())
			}
			if err != nil {
				return err
			}
			// The point is written and recorded; the change log it covers
			// is pruned after it, in short transactions.
			if _, err := b.a.Backup.PruneChangeLog(b.ctx, id); err != nil {
				return fmt.Errorf("the backup point %s is written, but %w; the next backup prunes it again", p.PointID, err)
			}
			return nil
		},
	}
	run.Flags().String("tenant", "", "the tenant's slug or id")
	run.Flags().Bool("full", false, "a full point (starts a new set)")
	run.Flags().String("pgp-recipient", "", "a file of OpenPGP public keys: also write the point encrypted to them")

	list := &cobra.Command{
		Use:     "list --tenant T --target URL",
		Short:   "List a tenant's backup points",
		Example: `  relais backup list --tenant acme --target dir:///var/backups/relais`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := c.openBackup(cmd, "tenant")
			if err != nil {
				return err
			}
			defer b.close()
			id, _, err := b.tenantID(cmd, true)
			if err != nil {
				return err
			}
			pts, err := b.a.Backup.List(b.ctx, id, b.target)
			if err != nil {
				return err
			}
			if asJSON {
				if pts == nil {
					pts = []backup.Point{}
				}
				return printJSON(c.stdout, pts)
			}
			if len(pts) == 0 {
				fmt.Fprintln(c.stdout, "no backup points; take one with `relais backup run`")
			}
			for _, p := range pts {
				fmt.Fprintf(c.stdout, "%s  %-11s  set %s  #%d  point %s\n", p.Time().Format("2006-01-02T15:04:05Z"), p.Kind, p.SetID, p.Seq, p.PointID)
			}
			return nil
		},
	}
	list.Flags().String("tenant", "", "the tenant's slug or id")

	verify := &cobra.Command{
		Use:   "verify --tenant T --target URL",
		Short: "Read back and authenticate every object of a tenant's backups",
		Long: `Reads every manifest, chunk and OpenPGP copy of the tenant's backup points
and authenticates it (AEAD tags, chunk names, recorded digests). A failure
names each object, is recorded in the tenant's audit trail, and exits 1.`,
		Example: `  relais backup verify --tenant acme --target dir:///var/backups/relais`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := c.openBackup(cmd, "tenant")
			if err != nil {
				return err
			}
			defer b.close()
			id, slug, err := b.tenantID(cmd, false)
			if err != nil {
				return err
			}
			rep, err := b.a.Backup.Verify(b.ctx, id, b.target)
			if asJSON && (err == nil || len(rep.Failed) > 0) {
				if perr := printJSON(c.stdout, rep); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(c.stdout, "backups of %s verify: %d points, %d objects, %d bytes authenticated", slug, rep.Points, rep.Objects, rep.Bytes)
				if n := len(rep.Unreferenced); n > 0 {
					fmt.Fprintf(c.stdout, " (%d unreferenced objects of interrupted backups)", n)
				}
				fmt.Fprintln(c.stdout)
			}
			return nil
		},
	}
	verify.Flags().String("tenant", "", "the tenant's slug or id")

	restore := &cobra.Command{
		Use:   "restore --tenant T --target URL [--at TIME] --into NEW_SLUG [--store URL_OR_DIR]",
		Short: "Restore a tenant as it was at a time, as a new tenant",
		Long: `Restores the state at --at (the latest point when absent) from the last
full point before it and its incrementals, in one transaction: a failure
leaves nothing. The restored tenant keeps its id (its keys and audit trail
are bound to it) under the slug --into. It goes into this store, or with
--store into another one (a postgres:// URL or an SQLite data directory,
migrated first); a store that already has the tenant is refused. An SQLite
directory without a store gets a new one, filled under a rollback journal
(each page written once) and removed if the restore fails.`,
		Example: `  relais backup restore --tenant acme --target dir:///var/backups/relais --at 2026-03-10T12:00:00Z --into acme-restored --store /srv/relais-scratch`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			atS, _ := cmd.Flags().GetString("at")
			at, err := parseAuditTime("at", atS)
			if err != nil {
				return err
			}
			into, _ := cmd.Flags().GetString("into")
			if err := need(cmd, "tenant", "into"); err != nil {
				return err
			}
			if err := tenants.ValidateSlug(into); err != nil {
				return usageError{fmt.Errorf("--into: %w", err)}
			}
			b, err := c.openBackup(cmd)
			if err != nil {
				return err
			}
			defer b.close()
			id, _, err := b.tenantID(cmd, true)
			if err != nil {
				return err
			}
			o := backup.RestoreOptions{At: at, IntoSlug: into}
			sq := b.a.Config.SQLite
			tune := store.SQLiteTuning{CacheMiB: sq.CacheMiB, WALAutocheckpoint: sq.WALAutocheckpoint, PageSize: sq.PageSize}
			// A new SQLite directory: the store is created for the restore
			// (backup.RestoreNewStore, which writes its pages once).
			newDir := ""
			if dest, _ := cmd.Flags().GetString("store"); dest != "" {
				if isNewSQLiteDir(dest) {
					newDir = dest
				} else {
					db, err := openStore(b.ctx, dest, tune)
					if err != nil {
						return err
					}
					defer func() { _ = db.Close() }()
					o.Dest = db
				}
			}
			var bar *progress
			o.Progress = func(done, total int64) {
				if bar == nil {
					bar = c.startProgress(total, "restoring", true, asJSON)
				}
				bar.set(done, func() string { return fmt.Sprintf("restored %d of %d bytes", done, total) })
			}
			var res backup.RestoreResult
			if newDir != "" {
				res, err = b.a.Backup.RestoreNewStore(b.ctx, id, b.target, newDir, tune, o)
			} else {
				res, err = b.a.Backup.Restore(b.ctx, id, b.target, o)
			}
			if bar != nil {
				bar.end(err == nil)
			}
			if err != nil {
				return restoreErr(err)
			}
			if asJSON {
				return printJSON(c.stdout, res)
			}
			fmt.Fprintf(c.stdout, "restored tenant %s as %s: point %s of %s (%d points, %d tables, %d rows)\n",
				res.TenantID, res.Slug, res.Point.PointID, res.Point.Time().Format("2006-01-02T15:04:05Z"), res.Points, res.Tables, res.Rows)
			return nil
		},
	}
	restore.Flags().String("tenant", "", "the tenant's slug or id (in this store or in the target's backups)")
	restore.Flags().String("at", "", "restore the state at this time (RFC 3339 or a date); the latest when absent")
	restore.Flags().String("into", "", "the restored tenant's slug")
	restore.Flags().String("store", "", "restore into another store: a postgres:// URL or an SQLite data directory")

	restoreTest := &cobra.Command{
		Use:   "restore-test --tenant T --target URL",
		Short: "Restore the latest point into a scratch store and compare it with the backup's checksums",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := c.openBackup(cmd, "tenant")
			if err != nil {
				return err
			}
			defer b.close()
			id, slug, err := b.tenantID(cmd, false)
			if err != nil {
				return err
			}
			res, err := b.a.Backup.RestoreTest(b.ctx, id, b.target)
			if err != nil {
				return fmt.Errorf("restore test of %s FAILED: %w", slug, err)
			}
			if asJSON {
				return printJSON(c.stdout, res)
			}
			fmt.Fprintf(c.stdout, "restore test of %s passed: point %s, %d tables, %d rows match\n", slug, res.Point.PointID, res.Tables, res.Rows)
			return nil
		},
	}
	restoreTest.Flags().String("tenant", "", "the tenant's slug or id")

	instance := &cobra.Command{
		Use:   "instance --target URL",
		Short: "Snapshot the whole SQLite store, encrypted under a key wrapped by the master key",
		Long: `Writes a consistent snapshot of the SQLite store (VACUUM INTO, online) to
the target as instance/<id>.db.enc, encrypted; open it with
relais backup instance-restore. For PostgreSQL use pgBackRest or WAL-G (see
docs/operations.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := c.openBackup(cmd)
			if err != nil {
				return err
			}
			defer b.close()
			h, err := b.a.Backup.Instance(b.ctx, b.target, b.a.Config.DataDir)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.stdout, h)
			}
			fmt.Fprintf(c.stdout, "instance snapshot %s written to %s\n", h.ID, b.target.ID())
			return nil
		},
	}

	instanceRestore := &cobra.Command{
		Use:   "instance-restore --target URL --id ID --out FILE",
		Short: "Decrypt an instance snapshot into an SQLite database file",
		Long: `Authenticates and decrypts the snapshot into FILE (which must not exist),
with this instance's master key. Stop relais, put FILE in place of
<data_dir>/relais.db, start relais.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "id", "out"); err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			id, _ := cmd.Flags().GetString("id")
			b, err := c.openBackup(cmd)
			if err != nil {
				return err
			}
			defer b.close()
			return writeNew(out, func(f *os.File) error { return b.a.Backup.OpenInstance(b.ctx, b.target, id, f) })
		},
	}
	instanceRestore.Flags().String("id", "", "the snapshot id (see the instance/ folder of the target)")
	instanceRestore.Flags().String("out", "", "the database file to write")

	cmd.AddCommand(run, list, verify, restore, restoreTest, instance, instanceRestore)
	return cmd
}

// restoreErr says what to do about a refused restore.
func restoreErr(err error) error {
	switch {
	case errors.Is(err, backup.ErrTenantExists):
		return fmt.Errorf("%w: restore into another store with --store (a scratch SQLite directory or a postgres:// URL)", err)
	case errors.Is(err, tenants.ErrSlugTaken):
		return fmt.Errorf("%w: choose another --into", err)
	case errors.Is(err, backup.ErrNoPoint):
		return fmt.Errorf("%w: see `relais backup list`", err)
	}
	return err
}

// openStore opens and migrates a restore destination: a postgres:// URL or
// an SQLite data directory (created with the configured [sqlite] settings
// when new).
// isNewSQLiteDir says whether dest names an SQLite data directory (an
// absolute path) without a store in it yet.
func isNewSQLiteDir(dest string) bool {
	if strings.HasPrefix(dest, "postgres://") || strings.HasPrefix(dest, "postgresql://") || !filepath.IsAbs(dest) {
		return false
	}
	_, err := os.Stat(filepath.Join(dest, "relais.db"))
	return errors.Is(err, fs.ErrNotExist)
}

func openStore(ctx context.Context, dest string, tune store.SQLiteTuning) (*store.DB, error) {
	o := store.Options{DataDir: dest, SQLite: tune}
	if strings.HasPrefix(dest, "postgres://") || strings.HasPrefix(dest, "postgresql://") {
		o = store.Options{URL: dest}
	} else if !filepath.IsAbs(dest) {
		return nil, usageError{errors.New("--store: give a postgres:// URL or an absolute SQLite data directory")}
	}
	db, err := store.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	if _, err := db.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// writeNew writes a new file through a temporary one, renamed when fn
// succeeds.
func writeNew(path string, fn func(*os.File) error) error {
	if _, err := os.Stat(path); err == nil {
		return usageError{fmt.Errorf("--out %s exists; give a new file", path)}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".relais-*")
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

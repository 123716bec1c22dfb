package app

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/config"
)

// Destruction's view of the backups: the tenant's sets on the configured
// target are listed, then deleted, and nothing of the tenant is left there.
func TestBackupSetsForDestruction(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Backup.Target = "dir://" + filepath.ToSlash(t.TempDir())
	a, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Privacy.Backups == nil {
		t.Fatal("destruction is not wired to the backups")
	}
	tn, err := a.Tenants.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	target, err := backup.OpenTarget(cfg.Backup.Target)
	if err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{true, false} {
		if _, err := a.Backup.Run(ctx, tn.ID, target, backup.RunOptions{Full: full}); err != nil {
			t.Fatal(err)
		}
	}
	sets, err := a.Privacy.Backups.DestroyTenantBackups(ctx, tn.ID)
	if err != nil || len(sets) != 1 || sets[0].Action != "deleted" || sets[0].TakenAt.IsZero() {
		t.Fatalf("sets %+v, %v", sets, err)
	}
	if left, err := a.Backup.List(ctx, tn.ID, target); err != nil || len(left) != 0 {
		t.Fatalf("left on the target: %d %v", len(left), err)
	}
}

// Supervision reads the backups' state: after a backup and a verification,
// the tenant's status says when, and that it verified.
func TestBackupStatusForSupervision(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Backup.Target = "dir://" + filepath.ToSlash(t.TempDir())
	a, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tn, err := a.Tenants.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.backupStatus(ctx, tn.ID); err != nil || !st.Configured || !st.LastBackup.IsZero() {
		t.Fatalf("before any backup: %+v %v", st, err)
	}
	target, _ := backup.OpenTarget(cfg.Backup.Target)
	if _, err := a.Backup.Run(ctx, tn.ID, target, backup.RunOptions{Full: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Backup.Verify(ctx, tn.ID, target); err != nil {
		t.Fatal(err)
	}
	st, err := a.backupStatus(ctx, tn.ID)
	if err != nil || st.LastBackup.IsZero() || st.LastFull.IsZero() || st.LastVerify.IsZero() || !st.VerifyOK {
		t.Fatalf("after a backup and a verification: %+v %v", st, err)
	}
}

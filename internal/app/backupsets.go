package app

import (
	"context"
	"time"

	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/privacy"
)

// backupSets gives tenant destruction (REV-3) the tenant's backup sets on
// the configured target and deletes them: privacy.BackupSets over
// internal/backup. The deleted sets are listed in the destruction
// certificate.
type backupSets struct {
	svc    *backup.Service
	target string
}

// DestroyTenantBackups implements privacy.BackupSets.
func (b backupSets) DestroyTenantBackups(ctx context.Context, tenantID string) ([]privacy.BackupSet, error) {
	t, err := backup.OpenTarget(b.target)
	if err != nil {
		return nil, err
	}
	points, err := b.svc.List(ctx, tenantID, t)
	if err != nil {
		return nil, err
	}
	first := map[string]time.Time{}
	var order []string
	for _, p := range points {
		if _, ok := first[p.SetID]; !ok {
			order = append(order, p.SetID)
			first[p.SetID] = p.Time()
		}
	}
	if _, err := b.svc.DeleteAll(ctx, tenantID, t); err != nil {
		return nil, err
	}
	out := make([]privacy.BackupSet, 0, len(order))
	for _, id := range order {
		out = append(out, privacy.BackupSet{ID: id, Target: t.ID(), TakenAt: first[id], Action: "deleted"})
	}
	return out, nil
}

// backupStatus is supervision's view of a tenant's backups
// (monitor.BackupSource over backup_state).
func (a *App) backupStatus(ctx context.Context, tenantID string) (monitor.BackupStatus, error) {
	st, ok, err := a.Backup.Status(ctx, tenantID)
	if err != nil || !ok {
		return monitor.BackupStatus{Configured: a.Config.Backup.Target != ""}, err
	}
	return monitor.BackupStatus{Configured: true, Target: st.Target, LastFull: st.LastFull, LastBackup: st.LastPoint,
		LastVerify: st.LastVerify, VerifyOK: st.VerifyOK, LastRestoreTest: st.LastRestoreTest, RestoreOK: st.RestoreOK}, nil
}

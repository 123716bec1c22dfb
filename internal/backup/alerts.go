package backup

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Metrics are the backup metrics; a nil *Metrics records nothing.
type Metrics struct {
	points      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	bytes       *prometheus.CounterVec
}

// NewMetrics registers the backup metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		points: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_backup_points_total",
			Help: "Backup points written, by tenant and kind."}, []string{"tenant", "kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_backup_failures_total",
			Help: "Failed backups, verifications and restore tests, by tenant and operation."}, []string{"tenant", "op"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_backup_last_success_timestamp_seconds",
			Help: "When the tenant's last backup point was taken."}, []string{"tenant"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_backup_bytes_total",
			Help: "Plaintext bytes of backup chunks written, by tenant."}, []string{"tenant"}),
	}
	if reg != nil {
		reg.MustRegister(m.points, m.failures, m.lastSuccess, m.bytes)
	}
	return m
}

func (m *Metrics) runDone(tenant string, p Point) {
	if m == nil {
		return
	}
	m.points.WithLabelValues(tenant, p.Kind).Inc()
	m.lastSuccess.WithLabelValues(tenant).Set(float64(p.TakenAt) / 1e6)
}

func (m *Metrics) runFailed(tenant string) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(tenant, "backup").Inc()
}

func (m *Metrics) verified(tenant string, ok bool) {
	if m == nil {
		return
	}
	// The verification's result itself is a supervision indicator
	// (relais_backup_verify_ok, internal/monitor, read from backup_state).
	if ok {
		return
	}
	m.failures.WithLabelValues(tenant, "verify").Inc()
}

func (m *Metrics) restoreTested(tenant string, ok bool) {
	if m == nil {
		return
	}
	// The result itself is relais_backup_restore_test_ok (internal/monitor).
	if ok {
		return
	}
	m.failures.WithLabelValues(tenant, "restore_test").Inc()
}

// ShredRecords is the contract with key management (internal/keys, issue
// 7): which tenants were shredded, and what to re-apply to a restored
// tenant so that an old backup cannot bring shredded data back.
type ShredRecords interface {
	// TenantShredded reports whether the tenant's keys were destroyed on
	// this platform: its backups must then not be restored.
	TenantShredded(ctx context.Context, tenantID string) (bool, error)
	// Records reads the platform's shredding records of the tenant, before
	// the restore's transaction starts (from the live store, which may not
	// be the store restored into).
	Records(ctx context.Context, tenantID string) ([]tenants.ShreddingRecord, error)
	// Reapply runs inside the restore's transaction, after the rows are in
	// and before it commits: it re-applies those records to the restored
	// tenant (per-contact keys destroyed since the backup: their contacts'
	// sealed fields stay unreadable) and keeps the records in the store
	// restored into.
	Reapply(ctx context.Context, tx *store.Tx, records []tenants.ShreddingRecord) error
}

// StoreShredding is the ShredRecords of the live store: a tenant is shredded
// when a tenant shredding record names it (destruction, `relais tenant
// destroy-keys`) or when it has tenant_keys rows and none is usable (all
// 'destroyed'); per-contact shredding records are re-applied to a restore.
type StoreShredding struct {
	DB *store.DB
	// EraseContact, when set, also erases what the restored rows hold of
	// a shredded contact outside its sealed fields (list memberships,
	// consent proofs, messages): privacy.Service.EraseRestored.
	EraseContact func(ctx context.Context, tx *store.Tx, contactID string) error
}

// TenantShredded implements ShredRecords.
func (s StoreShredding) TenantShredded(ctx context.Context, tenantID string) (bool, error) {
	var total, destroyed, records int
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM shredding_records WHERE tenant_id = $1 AND kind = 'tenant'`).Scan(&records); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*), COALESCE(SUM(CASE WHEN state = 'destroyed' THEN 1 ELSE 0 END), 0)
			FROM tenant_keys WHERE tenant_id = $1`).Scan(&total, &destroyed)
	})
	if err != nil {
		return false, fmt.Errorf("backup: read the shredding records: %w", err)
	}
	return records > 0 || (total > 0 && total == destroyed), nil
}

// Records implements ShredRecords.
func (s StoreShredding) Records(ctx context.Context, tenantID string) ([]tenants.ShreddingRecord, error) {
	var out []tenants.ShreddingRecord
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, kind, subject_id, reason, actor, at FROM shredding_records WHERE tenant_id = $1 ORDER BY at, id`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			r := tenants.ShreddingRecord{TenantID: tenantID}
			var at int64
			if err := rows.Scan(&r.ID, &r.Kind, &r.SubjectID, &r.Reason, &r.Actor, &at); err != nil {
				return err
			}
			r.At = store.FromMicros(at)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("backup: read the shredding records: %w", err)
	}
	return out, nil
}

// Reapply implements ShredRecords: every contact key shredded since the
// backup is deleted again (with the contact's sealed fields and blind
// indexes), and the records are kept in the store restored into.
func (s StoreShredding) Reapply(ctx context.Context, tx *store.Tx, records []tenants.ShreddingRecord) error {
	for _, r := range records {
		if r.Kind == "contact" {
			if _, err := tx.Exec(ctx, tenants.ShredContactSQL, r.SubjectID); err != nil {
				return fmt.Errorf("shred contact %s again: %w", r.SubjectID, err)
			}
			if s.EraseContact != nil {
				if err := s.EraseContact(ctx, tx, r.SubjectID); err != nil {
					return fmt.Errorf("erase contact %s again: %w", r.SubjectID, err)
				}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO shredding_records (tenant_id, id, kind, subject_id, reason, actor, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`, r.ID, r.Kind, r.SubjectID, r.Reason, r.Actor, store.Micros(r.At)); err != nil {
			return fmt.Errorf("keep shredding record %s: %w", r.ID, err)
		}
	}
	return nil
}

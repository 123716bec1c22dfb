package tenants

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/store"
)

// KeyCollector exports each tenant's key state as Prometheus metrics (DATA-2):
// the active data-key version, its age, and whether a rotation is running or
// the keys are destroyed. It reads the store at each scrape (one query).
type KeyCollector struct {
	DB *store.DB

	version, age, rotating, shredded *prometheus.Desc
}

// NewKeyCollector returns the collector; register it on the metrics registry.
func NewKeyCollector(db *store.DB) *KeyCollector {
	l := []string{"tenant"}
	return &KeyCollector{DB: db,
		version:  prometheus.NewDesc("relais_tenant_key_version", "Active data-key version of the tenant.", l, nil),
		age:      prometheus.NewDesc("relais_tenant_key_age_seconds", "Age of the tenant's active data key.", l, nil),
		rotating: prometheus.NewDesc("relais_tenant_key_rotation_running", "1 while a data-key rotation of the tenant is unfinished.", l, nil),
		shredded: prometheus.NewDesc("relais_tenant_keys_destroyed", "1 when the tenant's keys were destroyed (crypto-shredded).", l, nil),
	}
}

// Describe sends the metric descriptions.
func (k *KeyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- k.version
	ch <- k.age
	ch <- k.rotating
	ch <- k.shredded
}

// Collect reads the key state of every tenant.
func (k *KeyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := k.DB.Now()
	_ = k.DB.Platform(ctx, func(ptx *store.PlatformTx) error {
		rs, err := ptx.Query(ctx, `SELECT t.slug,
			COALESCE(MAX(CASE WHEN k.state = 'active' THEN k.version END), 0),
			COALESCE(MAX(CASE WHEN k.state = 'active' THEN k.created_at END), 0),
			COUNT(CASE WHEN k.state <> 'destroyed' THEN 1 END),
			(SELECT COUNT(*) FROM key_rotations r WHERE r.tenant_id = t.id AND r.state = 'running')
			FROM tenants t JOIN tenant_keys k ON k.tenant_id = t.id GROUP BY t.id, t.slug`)
		if err != nil {
			return err
		}
		defer func() { _ = rs.Close() }()
		for rs.Next() {
			var slug string
			var version, created, live, running int64
			if err := rs.Scan(&slug, &version, &created, &live, &running); err != nil {
				return err
			}
			ch <- prometheus.MustNewConstMetric(k.version, prometheus.GaugeValue, float64(version), slug)
			if created > 0 {
				ch <- prometheus.MustNewConstMetric(k.age, prometheus.GaugeValue, now.Sub(store.FromMicros(created)).Seconds(), slug)
			}
			ch <- prometheus.MustNewConstMetric(k.rotating, prometheus.GaugeValue, float64(min(running, 1)), slug)
			destroyed := 0.0
			if live == 0 {
				destroyed = 1
			}
			ch <- prometheus.MustNewConstMetric(k.shredded, prometheus.GaugeValue, destroyed, slug)
		}
		return rs.Err()
	})
}

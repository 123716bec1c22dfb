package alerts

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/store"
)

var descFiring = prometheus.NewDesc("relais_alerts_firing", "Built-in alerts firing, per rule and severity (all tenants).", []string{"rule", "severity"}, nil)

// Collector exposes relais_alerts_firing. Every known rule is reported,
// at 0 when quiet, so that its series never disappears.
type Collector struct{ DB *store.DB }

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) { ch <- descFiring }

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := map[[2]string]float64{}
	_ = c.DB.Platform(ctx, func(p *store.PlatformTx) error {
		rows, err := p.Query(ctx, `SELECT rule, severity, COUNT(*) FROM monitor_alerts WHERE state = 'firing' GROUP BY rule, severity`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rule, sev string
			var n float64
			if err := rows.Scan(&rule, &sev, &n); err != nil {
				return err
			}
			counts[[2]string{rule, sev}] = n
		}
		return rows.Err()
	})
	for _, r := range RuleNames {
		for _, s := range []string{SeverityWarning, SeverityCritical} {
			ch <- prometheus.MustNewConstMetric(descFiring, prometheus.GaugeValue, counts[[2]string{r, s}], r, s)
		}
	}
}

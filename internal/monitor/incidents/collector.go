package incidents

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descOpen    = prometheus.NewDesc("relais_incidents_open", "Open incidents, per criticality.", []string{"criticality"}, nil)
	descOverdue = prometheus.NewDesc("relais_incident_notifications_overdue", "Affected tenants not notified by their deadline (INC-2).", nil, nil)
)

// Collector exposes the incident summary (AVL-4) as metrics.
type Collector struct{ S *Service }

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) { ch <- descOpen; ch <- descOverdue }

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sum, err := c.S.Summarise(ctx, "")
	if err != nil {
		return
	}
	for _, level := range Criticalities {
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(sum.OpenByLevel[level]), level)
	}
	ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(sum.OverdueNotify))
}

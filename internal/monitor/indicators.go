package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/store"
)

// ClockSource is the clock check as the indicators see it.
type ClockSource interface {
	Configured() bool
	LastOffset() (offset time.Duration, at time.Time, ok bool)
}

// Indicators computes the standard indicators (AVL-4) from the store, the
// request recorder and the providers, for the API report and as
// Prometheus metrics (it is a prometheus.Collector; the store is read at
// most every CacheFor, 30 s by default, whatever the scrape rate).
type Indicators struct {
	DB        *store.DB
	Providers Providers
	Requests  *Requests
	Clock     ClockSource
	// Policy returns a tenant's effective policy (latency thresholds).
	Policy func(ctx context.Context, tenantID string) (config.Policy, error)
	// Window is the period of the deliverability, transit and failed-login
	// figures (24 h by default).
	Window   time.Duration
	CacheFor time.Duration
	Now      func() time.Time
	Logger   *slog.Logger

	mu     sync.Mutex
	cached *Report
	cacheT time.Time
}

// Deliverability is delivered / sent for one group of messages.
type Deliverability struct {
	TenantID    string  `json:"tenant_id"`
	CampaignID  string  `json:"campaign_id,omitempty"`
	Channel     string  `json:"channel"`
	ConnectorID string  `json:"connector_id"`
	Sent        int64   `json:"sent"`
	Delivered   int64   `json:"delivered"`
	Bounced     int64   `json:"bounced"`
	Failed      int64   `json:"failed"`
	Ratio       float64 `json:"ratio"` // delivered / sent (0 when nothing sent)
}

// Transit is the campaign transit time (accepted to delivered).
type Transit struct {
	TenantID   string        `json:"tenant_id"`
	CampaignID string        `json:"campaign_id,omitempty"`
	Messages   int64         `json:"messages"`
	Mean       time.Duration `json:"mean_ns"`
	P95        time.Duration `json:"p95_ns"`
}

// QueueDepth counts messages waiting.
type QueueDepth struct {
	TenantID string `json:"tenant_id"`
	Channel  string `json:"channel"`
	Queued   int64  `json:"queued"`
}

// TenantLatencyReport is a tenant's latency against its threshold.
type TenantLatencyReport struct {
	TenantID  string        `json:"tenant_id"`
	Requests  int64         `json:"requests"`
	P95       time.Duration `json:"p95_ns"`
	Threshold time.Duration `json:"threshold_ns"`
	Window    time.Duration `json:"window_ns"`
	Over      bool          `json:"over"`
}

// ClockReport is the last clock measurement.
type ClockReport struct {
	Configured bool          `json:"configured"`
	Offset     time.Duration `json:"offset_ns"`
	At         time.Time     `json:"at,omitzero"`
	Measured   bool          `json:"measured"`
}

// Report is the indicators at one instant.
type Report struct {
	At                time.Time               `json:"at"`
	Window            time.Duration           `json:"window_ns"`
	Availability      []RouteAvailability     `json:"availability"`
	Latency           []TenantLatencyReport   `json:"latency"`
	Deliverability    []Deliverability        `json:"deliverability"`
	Campaigns         []Deliverability        `json:"campaign_deliverability"`
	Transit           []Transit               `json:"transit"`
	CampaignTransit   []Transit               `json:"campaign_transit"`
	Queue             []QueueDepth            `json:"queue"`
	FailedLogins      map[string]int64        `json:"failed_logins"`
	Backups           map[string]BackupStatus `json:"backups,omitempty"`
	BackupsConfigured bool                    `json:"backups_configured"`
	Certificate       *CertInfo               `json:"certificate,omitempty"`
	Keys              []KeyInfo               `json:"keys,omitempty"`
	KeysConfigured    bool                    `json:"keys_configured"`
	Clock             ClockReport             `json:"clock"`
	Errors            []string                `json:"errors,omitempty"`
}

func (ix *Indicators) now() time.Time {
	if ix.Now != nil {
		return ix.Now()
	}
	return time.Now()
}

func (ix *Indicators) window() time.Duration {
	if ix.Window > 0 {
		return ix.Window
	}
	return 24 * time.Hour
}

// Report computes the indicators. tenantID "" covers every tenant (the
// operator's view); otherwise only that tenant's figures are returned.
func (ix *Indicators) Report(ctx context.Context, tenantID string) (Report, error) {
	r, err := ix.compute(ctx)
	if err != nil {
		return Report{}, err
	}
	if tenantID == "" {
		return r, nil
	}
	return r.only(tenantID), nil
}

// only filters a full report down to one tenant.
func (r Report) only(t string) Report {
	out := r
	out.Availability = nil // routes are shared by every tenant: the operator's view
	out.Latency = filter(r.Latency, func(x TenantLatencyReport) bool { return x.TenantID == t })
	out.Deliverability = filter(r.Deliverability, func(x Deliverability) bool { return x.TenantID == t })
	out.Campaigns = filter(r.Campaigns, func(x Deliverability) bool { return x.TenantID == t })
	out.Transit = filter(r.Transit, func(x Transit) bool { return x.TenantID == t })
	out.CampaignTransit = filter(r.CampaignTransit, func(x Transit) bool { return x.TenantID == t })
	out.Queue = filter(r.Queue, func(x QueueDepth) bool { return x.TenantID == t })
	out.FailedLogins = map[string]int64{t: r.FailedLogins[t]}
	out.Backups = nil
	if b, ok := r.Backups[t]; ok {
		out.Backups = map[string]BackupStatus{t: b}
	}
	out.Keys = filter(r.Keys, func(k KeyInfo) bool { return k.TenantID == t })
	out.Errors = nil
	return out
}

func filter[T any](in []T, keep func(T) bool) []T {
	out := []T{}
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// compute builds the full report (cached for CacheFor).
func (ix *Indicators) compute(ctx context.Context) (Report, error) {
	cacheFor := ix.CacheFor
	if cacheFor == 0 {
		cacheFor = 30 * time.Second
	}
	now := ix.now()
	ix.mu.Lock()
	if ix.cached != nil && cacheFor > 0 && now.Sub(ix.cacheT) < cacheFor && !now.Before(ix.cacheT) {
		r := *ix.cached
		ix.mu.Unlock()
		return r, nil
	}
	ix.mu.Unlock()
	r := Report{At: now.UTC(), Window: ix.window(), FailedLogins: map[string]int64{}}
	from := store.Micros(now.Add(-ix.window()))
	var tenantIDs []string
	// Failed logins still queued; a log that cannot be sequenced (the
	// sequencer reports it) does not stop the indicators of every tenant.
	_, _ = audit.SequenceAll(ctx, ix.DB)
	err := ix.DB.Platform(ctx, func(p *store.PlatformTx) error {
		if err := scanRows(ctx, p, `SELECT id FROM tenants ORDER BY id`, nil, func(sc func(...any) error) error {
			var id string
			if err := sc(&id); err != nil {
				return err
			}
			tenantIDs = append(tenantIDs, id)
			return nil
		}); err != nil {
			return err
		}
		// Deliverability per tenant, channel, connector; and per campaign.
		delivQ := `SELECT tenant_id, COALESCE(campaign_id, ''), channel, connector_id,
				COUNT(*), SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END),
				SUM(CASE WHEN state = 'bounced' THEN 1 ELSE 0 END), SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END)
			FROM messages WHERE sent_at IS NOT NULL AND sent_at >= $1
			GROUP BY tenant_id, COALESCE(campaign_id, ''), channel, connector_id`
		byKey := map[[3]string]*Deliverability{}
		byCampaign := map[[3]string]*Deliverability{}
		if err := scanRows(ctx, p, delivQ, []any{from}, func(sc func(...any) error) error {
			var d Deliverability
			if err := sc(&d.TenantID, &d.CampaignID, &d.Channel, &d.ConnectorID, &d.Sent, &d.Delivered, &d.Bounced, &d.Failed); err != nil {
				return err
			}
			add := func(m map[[3]string]*Deliverability, k [3]string, campaign string) {
				a := m[k]
				if a == nil {
					a = &Deliverability{TenantID: d.TenantID, CampaignID: campaign, Channel: d.Channel}
					if campaign == "" {
						a.ConnectorID = d.ConnectorID
					}
					m[k] = a
				}
				a.Sent += d.Sent
				a.Delivered += d.Delivered
				a.Bounced += d.Bounced
				a.Failed += d.Failed
			}
			add(byKey, [3]string{d.TenantID, d.Channel, d.ConnectorID}, "")
			if d.CampaignID != "" {
				add(byCampaign, [3]string{d.TenantID, d.CampaignID, d.Channel}, d.CampaignID)
			}
			return nil
		}); err != nil {
			return err
		}
		r.Deliverability, r.Campaigns = flatten(byKey), flatten(byCampaign)
		// Transit: accepted to delivered, for campaign messages delivered in
		// the window (read on the sent_at index: a receipt more than a day
		// after the hand-off is not counted).
		samples := map[[2]string][]time.Duration{}
		if err := scanRows(ctx, p, `SELECT tenant_id, campaign_id, delivered_at - accepted_at FROM messages
			WHERE sent_at >= $2 AND campaign_id IS NOT NULL AND delivered_at >= $1 LIMIT 200000`, []any{from, from - int64(24*time.Hour/time.Microsecond)}, func(sc func(...any) error) error {
			var t, c string
			var us int64
			if err := sc(&t, &c, &us); err != nil {
				return err
			}
			d := time.Duration(max(us, 0)) * time.Microsecond
			samples[[2]string{t, c}] = append(samples[[2]string{t, c}], d)
			samples[[2]string{t, ""}] = append(samples[[2]string{t, ""}], d)
			return nil
		}); err != nil {
			return err
		}
		for k, s := range samples {
			tr := transit(k[0], k[1], s)
			if k[1] == "" {
				r.Transit = append(r.Transit, tr)
			} else {
				r.CampaignTransit = append(r.CampaignTransit, tr)
			}
		}
		sort.Slice(r.Transit, func(i, j int) bool { return r.Transit[i].TenantID < r.Transit[j].TenantID })
		sort.Slice(r.CampaignTransit, func(i, j int) bool {
			return r.CampaignTransit[i].TenantID+r.CampaignTransit[i].CampaignID < r.CampaignTransit[j].TenantID+r.CampaignTransit[j].CampaignID
		})
		if err := scanRows(ctx, p, `SELECT tenant_id, channel, COUNT(*) FROM messages WHERE shard IN (`+allShards+`) AND state = 'queued'
			GROUP BY tenant_id, channel ORDER BY tenant_id, channel`, nil,
			func(sc func(...any) error) error {
				var q QueueDepth
				if err := sc(&q.TenantID, &q.Channel, &q.Queued); err != nil {
					return err
				}
				r.Queue = append(r.Queue, q)
				return nil
			}); err != nil {
			return err
		}
		// Tenant data keys are in the store whatever the key provider.
		if err := scanRows(ctx, p, `SELECT tenant_id, version, created_at FROM tenant_keys WHERE state = 'active' ORDER BY tenant_id, version`, nil,
			func(sc func(...any) error) error {
				var t string
				var v, created int64
				if err := sc(&t, &v, &created); err != nil {
					return err
				}
				r.Keys = append(r.Keys, KeyInfo{Name: fmt.Sprintf("tenant data key v%d", v), Provider: "master key", TenantID: t, Created: store.FromMicros(created)})
				return nil
			}); err != nil {
			return err
		}
		// Failed logins in the last 15 minutes (the operator's log under "").
		loginFrom := store.Micros(now.Add(-15 * time.Minute))
		return scanRows(ctx, p, `SELECT tenant_id, details FROM audit_events WHERE category = 'auth' AND at >= $1`, []any{loginFrom},
			func(sc func(...any) error) error {
				var t, details string
				if err := sc(&t, &details); err != nil {
					return err
				}
				if AuthFailure(details) {
					r.FailedLogins[t]++
				}
				return nil
			})
	})
	if err != nil {
		return Report{}, fmt.Errorf("monitor: indicators: %w", err)
	}
	r.Availability = ix.Requests.Availability(time.Hour)
	ix.addLatency(ctx, &r, tenantIDs)
	ix.addProviders(ctx, &r, tenantIDs)
	ix.mu.Lock()
	ix.cached, ix.cacheT = &r, now
	ix.mu.Unlock()
	return r, nil
}

// allShards lists the router's shards, so that the queue depth is read on
// its (shard, state, due_at) index.
var allShards = func() string {
	parts := make([]string, router.Shards)
	for i := range parts {
		parts[i] = strconv.Itoa(i)
	}
	return strings.Join(parts, ", ")
}()

// AuthFailure reports whether an auth audit event's details record a
// failed attempt.
func AuthFailure(details string) bool {
	var d struct {
		Outcome string `json:"outcome"`
	}
	return json.Unmarshal([]byte(details), &d) == nil && d.Outcome == "failure"
}

func (ix *Indicators) addLatency(ctx context.Context, r *Report, tenantIDs []string) {
	def := config.DefaultPolicy().Monitor
	lat := ix.Requests.Latency(def.AlertWindow.D())
	for _, t := range tenantIDs {
		pol := def
		if ix.Policy != nil {
			if p, err := ix.Policy(ctx, t); err == nil {
				pol = p.Monitor
			}
		}
		l := lat[t]
		if pol.AlertWindow != def.AlertWindow {
			l = ix.Requests.Latency(pol.AlertWindow.D())[t]
		}
		r.Latency = append(r.Latency, TenantLatencyReport{TenantID: t, Requests: l.Requests, P95: l.P95,
			Threshold: pol.LatencyP95.D(), Window: pol.AlertWindow.D(), Over: l.Requests > 0 && l.P95 > pol.LatencyP95.D()})
	}
}

func (ix *Indicators) addProviders(ctx context.Context, r *Report, tenantIDs []string) {
	pv := ix.Providers
	if pv.Backups != nil {
		r.BackupsConfigured = true
		r.Backups = map[string]BackupStatus{}
		for _, t := range append([]string{""}, tenantIDs...) {
			b, err := pv.Backups.BackupStatus(ctx, t)
			if err != nil {
				r.Errors = append(r.Errors, "backups: "+err.Error())
				continue
			}
			r.Backups[t] = b
		}
	}
	if pv.Cert != nil {
		if c, err := pv.Cert.Certificate(ctx); err == nil {
			r.Certificate = &c
		} else {
			r.Errors = append(r.Errors, "certificate: "+err.Error())
		}
	}
	if pv.Keys != nil {
		r.KeysConfigured = true
		for _, t := range append([]string{""}, tenantIDs...) {
			ks, err := pv.Keys.Keys(ctx, t)
			if err != nil {
				r.Errors = append(r.Errors, "keys: "+err.Error())
				continue
			}
			r.Keys = append(r.Keys, ks...)
		}
	}
	if ix.Clock != nil {
		r.Clock.Configured = ix.Clock.Configured()
		r.Clock.Offset, r.Clock.At, r.Clock.Measured = ix.Clock.LastOffset()
	}
}

func flatten(m map[[3]string]*Deliverability) []Deliverability {
	out := make([]Deliverability, 0, len(m))
	for _, d := range m {
		if d.Sent > 0 {
			d.Ratio = float64(d.Delivered) / float64(d.Sent)
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.TenantID+"\x00"+a.CampaignID+"\x00"+a.Channel+"\x00"+a.ConnectorID < b.TenantID+"\x00"+b.CampaignID+"\x00"+b.Channel+"\x00"+b.ConnectorID
	})
	return out
}

func transit(tenant, campaign string, s []time.Duration) Transit {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	idx := (len(s)*95+99)/100 - 1
	return Transit{TenantID: tenant, CampaignID: campaign, Messages: int64(len(s)), Mean: sum / time.Duration(len(s)), P95: s[max(idx, 0)]}
}

// scanRows runs a platform query and calls each for every row.
func scanRows(ctx context.Context, p *store.PlatformTx, q string, args []any, each func(scan func(...any) error) error) error {
	rows, err := p.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Describe implements prometheus.Collector.
func (ix *Indicators) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descDelivered, descCampSent, descCampDeliv, descTransitAvg, descTransitP95, descQueue,
		descFailed, descThreshold, descBackupLast, descVerifyLast, descVerifyOK, descRestLast, descRestOK, descCert, descKey, descUp} {
		ch <- d
	}
}

var (
	descSent       = prometheus.NewDesc("relais_deliverability_sent", "Messages handed to a connector in the indicator window, per tenant, channel and connector.", []string{"tenant", "channel", "connector"}, nil)
	descDelivered  = prometheus.NewDesc("relais_deliverability_delivered", "Of those, messages delivered.", []string{"tenant", "channel", "connector"}, nil)
	descCampSent   = prometheus.NewDesc("relais_campaign_sent", "Campaign messages handed to a connector in the indicator window.", []string{"tenant", "campaign", "channel"}, nil)
	descCampDeliv  = prometheus.NewDesc("relais_campaign_delivered", "Of those, messages delivered.", []string{"tenant", "campaign", "channel"}, nil)
	descTransitAvg = prometheus.NewDesc("relais_campaign_transit_mean_seconds", "Mean campaign transit time (accepted to delivered) in the indicator window.", []string{"tenant"}, nil)
	descTransitP95 = prometheus.NewDesc("relais_campaign_transit_p95_seconds", "95th percentile campaign transit time in the indicator window.", []string{"tenant"}, nil)
	descQueue      = prometheus.NewDesc("relais_queue_depth", "Messages queued, per tenant and channel.", []string{"tenant", "channel"}, nil)
	descFailed     = prometheus.NewDesc("relais_failed_logins_recent", "Failed authentication attempts in the last 15 minutes, per tenant (\"\" : unknown tenant).", []string{"tenant"}, nil)
	descThreshold  = prometheus.NewDesc("relais_tenant_latency_threshold_seconds", "The tenant's p95 latency alert threshold (policy.monitor.latency_p95).", []string{"tenant"}, nil)
	descBackupLast = prometheus.NewDesc("relais_backup_last_timestamp_seconds", "When the last backup completed.", []string{"tenant"}, nil)
	descVerifyLast = prometheus.NewDesc("relais_backup_last_verify_timestamp_seconds", "When the last backup verification ran.", []string{"tenant"}, nil)
	descVerifyOK   = prometheus.NewDesc("relais_backup_verify_ok", "1 when the last backup verification passed.", []string{"tenant"}, nil)
	descRestLast   = prometheus.NewDesc("relais_backup_last_restore_test_timestamp_seconds", "When the last restore test ran.", []string{"tenant"}, nil)
	descRestOK     = prometheus.NewDesc("relais_backup_restore_test_ok", "1 when the last restore test passed.", []string{"tenant"}, nil)
	descCert       = prometheus.NewDesc("relais_certificate_expiry_timestamp_seconds", "When the serving certificate expires.", []string{"source"}, nil)
	descKey        = prometheus.NewDesc("relais_key_created_timestamp_seconds", "When a key was created or last rotated (age: time() minus this).", []string{"name", "provider", "tenant"}, nil)
	descUp         = prometheus.NewDesc("relais_indicators_up", "1 when the indicators could be read from the store.", nil, nil)
)

// Collect computes (or reuses) the report and emits it.
func (ix *Indicators) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := ix.compute(ctx)
	if err != nil {
		if ix.Logger != nil {
			ix.Logger.Error("indicators", "error", err)
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, d := range r.Deliverability {
		g(descSent, float64(d.Sent), d.TenantID, d.Channel, d.ConnectorID)
		g(descDelivered, float64(d.Delivered), d.TenantID, d.Channel, d.ConnectorID)
	}
	for _, d := range r.Campaigns {
		g(descCampSent, float64(d.Sent), d.TenantID, d.CampaignID, d.Channel)
		g(descCampDeliv, float64(d.Delivered), d.TenantID, d.CampaignID, d.Channel)
	}
	for _, t := range r.Transit {
		g(descTransitAvg, t.Mean.Seconds(), t.TenantID)
		g(descTransitP95, t.P95.Seconds(), t.TenantID)
	}
	for _, q := range r.Queue {
		g(descQueue, float64(q.Queued), q.TenantID, q.Channel)
	}
	for t, n := range r.FailedLogins {
		g(descFailed, float64(n), t)
	}
	for _, l := range r.Latency {
		g(descThreshold, l.Threshold.Seconds(), l.TenantID)
	}
	ts := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixMilli()) / 1000
	}
	b01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for t, b := range r.Backups {
		if !b.Configured {
			continue
		}
		g(descBackupLast, ts(b.LastBackup), t)
		g(descVerifyLast, ts(b.LastVerify), t)
		g(descVerifyOK, b01(b.VerifyOK), t)
		g(descRestLast, ts(b.LastRestoreTest), t)
		g(descRestOK, b01(b.RestoreOK), t)
	}
	if r.Certificate != nil {
		g(descCert, ts(r.Certificate.NotAfter), r.Certificate.Source)
	}
	for _, k := range r.Keys {
		at := k.Created
		if k.Rotated.After(at) {
			at = k.Rotated
		}
		g(descKey, ts(at), k.Name, k.Provider, k.TenantID)
	}
}

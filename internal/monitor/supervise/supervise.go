// Package supervise assembles Relais's supervision from the settings: the
// request recorder and indicators, the clock check, the built-in alert
// engine with its notifiers, the incident register, the feature flags and
// the compliance report. internal/app builds one [Supervisor] and runs it
// in serve; the CLI builds one to reach the same services.
package supervise

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/monitor/compliance"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/incidents"
	"github.com/relais-dev/relais/internal/monitor/notify"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// Options are what supervision needs.
type Options struct {
	DB      *store.DB
	Config  config.Config
	Tenants *tenants.Service
	Master  keys.MasterKey
	// Providers are the other features' state; a nil one is reported as
	// not configured. When Providers.Cert is nil the certificate file of
	// the configuration is read.
	Providers monitor.Providers
	Logger    *slog.Logger
	// Node names this node in clock excursions (the host name when empty).
	Node    string
	Version string
	Now     func() time.Time
}

// Supervisor holds the supervision services.
type Supervisor struct {
	Flags      *flags.Service
	FlagReader flags.Reader // cached, for hot paths
	Incidents  *incidents.Service
	Engine     *alerts.Engine
	Clock      *clock.Checker
	Requests   *monitor.Requests
	Indicators *monitor.Indicators
	opts       Options
}

// New builds the services. It reads the webhook signing key file when a
// webhook is configured.
func New(o Options) (*Supervisor, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Node == "" {
		// Stable across restarts, so that a restarted node closes the
		// clock excursion it left open.
		o.Node, _ = os.Hostname()
	}
	if o.Providers.Cert == nil {
		o.Providers.Cert = certFile(o.Config)
	}
	mc := o.Config.Monitor
	email := &notify.Email{Addr: mc.SMTPAddr, From: mc.MailFrom}
	hook := &notify.Webhook{Now: o.Now}
	if mc.WebhookSecretFile != "" {
		raw, err := os.ReadFile(mc.WebhookSecretFile) // #nosec G304 -- the operator's configured key file
		if err != nil {
			return nil, fmt.Errorf("monitor.webhook_secret_file: %w", err)
		}
		key := []byte(strings.TrimSpace(string(raw)))
		if len(key) < 32 {
			return nil, fmt.Errorf("monitor.webhook_secret_file: the key must be at least 32 bytes (e.g. openssl rand -hex 32)")
		}
		hook.Key = key
	}
	s := &Supervisor{opts: o}
	s.Flags = &flags.Service{DB: o.DB}
	s.FlagReader = &flags.Cached{R: s.Flags}
	s.Incidents = &incidents.Service{DB: o.DB, Deadline: mc.IncidentDeadline.D(), Email: email, Webhook: hook, Now: o.Now}
	s.Clock = &clock.Checker{DB: o.DB, Servers: mc.NTPServers, MaxOffset: mc.ClockMaxOffset.D(), Node: o.Node, Logger: o.Logger, Now: o.Now}
	s.Requests = monitor.NewRequests(nil, o.Now)
	s.Indicators = &monitor.Indicators{DB: o.DB, Providers: o.Providers, Requests: s.Requests, Clock: s.Clock, Policy: s.Policy, Now: o.Now, Logger: o.Logger}
	src := alerts.Sources{Backups: o.Providers.Backups, Cert: o.Providers.Cert, Clock: s.Clock, Incidents: s.Incidents, Latency: s.Requests, Policy: s.Policy}
	s.Engine = &alerts.Engine{DB: o.DB, Rules: alerts.BuiltinRules(o.DB, mc, src), Now: o.Now, Logger: o.Logger,
		Notifiers: []alerts.Notifier{&alerts.OperatorNotifier{Email: email, To: mc.NotifyEmails, Webhook: hook, WebhookURL: mc.WebhookURL}}}
	return s, nil
}

// Plug replaces the providers that p sets (the others stay): for a
// feature that exists only once serve runs, such as the certificate the
// TLS front serves (ACME). Call it before Run.
func (s *Supervisor) Plug(p monitor.Providers) {
	cur := &s.opts.Providers
	if p.Backups != nil {
		cur.Backups = p.Backups
	}
	if p.Keys != nil {
		cur.Keys = p.Keys
	}
	if p.Cert != nil {
		cur.Cert = p.Cert
	}
	if p.SSO != nil {
		cur.SSO = p.SSO
	}
	s.Indicators.Providers = *cur
	for _, r := range s.Engine.Rules {
		switch r := r.(type) {
		case *alerts.BackupRule:
			r.Source = cur.Backups
		case *alerts.CertRule:
			r.Source = cur.Cert
		}
	}
}

// certFile is the certificate of the configuration: the operator's file,
// or the self-signed one in the data directory.
func certFile(cfg config.Config) monitor.CertSource {
	if cfg.TLS.Cert != "" {
		return monitor.PEMCert{Path: cfg.TLS.Cert, Source: "file"}
	}
	return monitor.PEMCert{Path: filepath.Join(cfg.DataDir, "tls", "selfsigned.crt"), Source: "self-signed"}
}

// Policy is a tenant's effective policy ("" : the platform defaults).
func (s *Supervisor) Policy(ctx context.Context, tenantID string) (config.Policy, error) {
	if tenantID == "" {
		return s.opts.Config.Policy, nil
	}
	return s.opts.Tenants.Policy(ctx, tenantID)
}

// Register adds the supervision metrics to reg: indicators, the per-tenant
// latency histogram, the clock, firing alerts and incidents.
func (s *Supervisor) Register(reg prometheus.Registerer) error {
	if err := s.Requests.Register(reg); err != nil {
		return fmt.Errorf("monitor: register metrics: %w", err)
	}
	if err := s.Clock.Register(reg); err != nil {
		return err
	}
	for _, c := range []prometheus.Collector{s.Indicators, alerts.Collector{DB: s.opts.DB}, incidents.Collector{S: s.Incidents}} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("monitor: register metrics: %w", err)
		}
	}
	return nil
}

// Run runs the clock check and the alert evaluation until ctx ends.
func (s *Supervisor) Run(ctx context.Context) {
	mc := s.opts.Config.Monitor
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Clock.Run(ctx, mc.ClockInterval.D())
	}()
	s.Engine.Run(ctx, mc.AlertInterval.D())
	<-done
}

// Audit is the audit service the report verifies with.
func (s *Supervisor) Audit() *audit.Service {
	return &audit.Service{DB: s.opts.DB, Master: s.opts.Master, Logger: s.opts.Logger}
}

// Compliance builds the compliance report of a tenant (id or slug).
func (s *Supervisor) Compliance(ctx context.Context, tenantRef string) (compliance.Report, error) {
	return compliance.Build(ctx, compliance.Options{DB: s.opts.DB, Config: s.opts.Config, Tenants: s.opts.Tenants, Audit: s.Audit(),
		Incidents: s.Incidents, Flags: s.Flags, Providers: s.opts.Providers, Clock: s.Clock, Version: s.opts.Version, Now: s.opts.Now}, tenantRef)
}

// IndicatorReport is the indicators for a tenant ("" : all, the
// operator's view). The per-campaign figures are shown to a tenant only
// with its experimental_campaign_indicators flag on.
func (s *Supervisor) IndicatorReport(ctx context.Context, tenantID string) (monitor.Report, error) {
	r, err := s.Indicators.Report(ctx, tenantID)
	if err != nil || tenantID == "" {
		return r, err
	}
	on, err := s.FlagReader.Enabled(ctx, tenantID, flags.ExperimentalCampaignIndicators)
	if err != nil {
		return monitor.Report{}, err
	}
	if !on {
		r.Campaigns, r.CampaignTransit = nil, nil
	}
	return r, nil
}

// RuleNames are the built-in alert rules (for silences).
func (s *Supervisor) RuleNames() []string { return alerts.RuleNames }

// Now is the supervision clock.
func (s *Supervisor) Now() time.Time { return s.opts.Now() }

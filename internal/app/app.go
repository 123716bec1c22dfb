// Package app is Relais's composition root: it turns a configuration into
// the store, the keys, the domain services and the servers. It is the only
// package that knows every other one; cmd/relais stays thin.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/audit/forward"
	"github.com/relais-dev/relais/internal/backup"
	"github.com/relais-dev/relais/internal/bounces"
	"github.com/relais-dev/relais/internal/campaigns"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/connectors/registry"
	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/identity/jwtauth"
	"github.com/relais-dev/relais/internal/identity/password"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/flags"
	"github.com/relais-dev/relais/internal/monitor/supervise"
	"github.com/relais-dev/relais/internal/privacy"
	"github.com/relais-dev/relais/internal/router"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/sso"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/templates"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web"
	"github.com/relais-dev/relais/internal/web/accesslog"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// App holds the opened services.
type App struct {
	Config   config.Config
	Log      *slog.Logger
	DB       *store.DB
	Master   keys.MasterKey
	Tenants  *tenants.Service
	Keyring  *tenants.Keyring
	Access   *access.Service
	Identity *identity.Service
	JWTKeys  *jwtauth.KeyStore
	Issuer   *jwtauth.Issuer
	Verifier *jwtauth.Verifier
	// Router accepts messages; Connectors manages connectors and routes.
	Router     *router.Service
	Connectors *router.Connectors
	Now        func() time.Time
	// Contacts keeps contacts, consents, lists and segments, and imports
	// and exports them.
	Contacts *contacts.Service
	// Templates keeps message templates; Campaigns sends them to
	// audiences (its expansion job runs in Serve).
	Templates *templates.Service
	Campaigns *campaigns.Service
	// SFTP is the SFTP file exchange: accounts, /inbox imports, /outbox
	// deliveries (Deliver).
	SFTP *sftpd.Service
	// SSO signs users in through the tenants' identity providers (OIDC,
	// SAML) and serves SCIM provisioning.
	SSO *sso.Service
	// Privacy answers subject requests and runs retention, anonymised
	// copies, tenant export/import, purge and destruction (issue 9).
	Privacy *privacy.Service
	// Monitor is supervision: indicators, clock check, built-in alerts,
	// incidents, feature flags, compliance report (its jobs run in Serve).
	Monitor *supervise.Supervisor
	// Backup makes, verifies and restores per-tenant backups; its
	// scheduler runs in Serve when backup.target is set.
	Backup *backup.Service
}

// NewLogger builds the structured logger from the settings.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	// slog's JSON handler, through which the web server also writes its
	// access lines directly (the same bytes, without slog's per-record cost).
	return slog.New(accesslog.NewHandler(w, opts))
}

// Open connects the store, migrates it when migrate is true (otherwise
// refuses a store whose schema is behind), and loads the master key.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool) (*App, error) {
	db, err := store.Open(ctx, store.Options{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Logger: log, SQLite: store.SQLiteTuning{
		CacheMiB: cfg.SQLite.CacheMiB, WALAutocheckpoint: cfg.SQLite.WALAutocheckpoint, PageSize: cfg.SQLite.PageSize}})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = db.Close()
		}
	}()
	if migrate {
		applied, err := db.Migrate(ctx)
		if err != nil {
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("schema migrated", "versions", applied, "dialect", db.Dialect())
		}
	} else if err := db.Ready(ctx); err != nil {
		return nil, err
	}
	master, err := OpenMasterKey(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			_ = CloseMasterKey(master)
		}
	}()
	a := &App{Config: cfg, Log: log, DB: db, Master: master, Now: time.Now}
	a.Tenants = &tenants.Service{DB: db, Master: master, Defaults: cfg.Policy}
	a.Keyring = tenants.NewKeyring(db, master, cfg.Keys.CacheTTL.D())
	a.Access = &access.Service{DB: db}
	a.Identity = &identity.Service{DB: db, Tenants: a.Tenants, Keyring: a.Keyring, Perms: access.Source{S: a.Access}, Issuer: "Relais"}
	a.SSO = &sso.Service{DB: db, Tenants: a.Tenants, Keyring: a.Keyring, Identity: a.Identity, Access: a.Access}
	a.Identity.PasswordLogin = a.SSO.PasswordLogin
	switch {
	case cfg.Auth.BreachCorpusDir != "":
		a.Identity.Breach = password.DirRangeChecker{Dir: cfg.Auth.BreachCorpusDir}
	case cfg.Auth.BreachCheckURL != "":
		a.Identity.Breach = password.HTTPRangeChecker{BaseURL: cfg.Auth.BreachCheckURL}
	}
	if a.JWTKeys, err = jwtauth.NewKeyStore(db, master, jwtauth.KeyStoreOptions{Logger: log}); err != nil {
		return nil, err
	}
	jc := jwtauth.Config{Issuer: cfg.Auth.TokenIssuer}
	a.Issuer, a.Verifier = jwtauth.NewIssuer(a.JWTKeys, jc), jwtauth.NewVerifier(a.JWTKeys, jc)
	a.Router = &router.Service{DB: db, Keyring: a.Keyring}
	a.Connectors = &router.Connectors{Service: a.Router, Open: registry.Open, Redact: registry.Redact}
	a.Contacts = &contacts.Service{DB: db, Keyring: a.Keyring}
	a.Templates = &templates.Service{DB: db}
	a.Campaigns = &campaigns.Service{DB: db, Contacts: a.Contacts, Templates: a.Templates, Router: a.Router,
		PublicBaseURL: publicBaseURL(cfg), Logger: log}
	sftpDir := cfg.SFTP.Dir
	if sftpDir == "" {
		sftpDir = filepath.Join(cfg.DataDir, "sftp")
	}
	a.SFTP = &sftpd.Service{DB: db, Keyring: a.Keyring, Tenants: a.Tenants, Contacts: a.Contacts, Blobs: sftpd.DirBlobs{Root: sftpDir},
		Config: cfg.SFTP, Logger: log}
	// Erasure crypto-shreds the contact's own key (PRIV-4), destruction the
	// tenant's data keys and provider key, with shredding records that
	// outlive the tenant (REV-3). Issue 8 (backup) plugs Privacy.Backups
	// (the tenant's backup sets) in here.
	a.Privacy = &privacy.Service{DB: db, Master: master, Keyring: a.Keyring, Tenants: a.Tenants, Contacts: a.Contacts,
		Audit: &audit.Service{DB: db, Master: master, Logger: log}, DestroyDelay: cfg.Privacy.DestroyDelay.D(),
		ContactShredder: contacts.KeyShredder{}, KeyShredder: a.Tenants}
	// Providers of other features (backups, an ACME certificate) plug into
	// monitor.Providers here as they land.
	if a.Monitor, err = supervise.New(supervise.Options{DB: db, Config: cfg, Tenants: a.Tenants, Master: master,
		Providers: monitor.Providers{SSO: monitor.SSOSourceFunc(a.ssoState), Keys: monitor.KeySourceFunc(a.keyInfo),
			Backups: monitor.BackupSourceFunc(a.backupStatus)}, Logger: log, Now: a.Now}); err != nil {
		return nil, err
	}
	// A restore re-applies the live store's shredding records: a person
	// erased since the backup stays erased (keys, consents, messages).
	a.Backup = &backup.Service{DB: db, Master: master, Keyring: a.Keyring, Logger: log,
		Shred: backup.StoreShredding{DB: db, EraseContact: a.Privacy.EraseRestored}}
	if cfg.Backup.Target != "" {
		// Destruction deletes the tenant's backup sets on the target.
		a.Privacy.Backups = backupSets{svc: a.Backup, target: cfg.Backup.Target}
	}
	ok = true
	return a, nil
}

// Close releases the store and the master-key provider.
func (a *App) Close() error {
	err := a.DB.Close()
	if cerr := CloseMasterKey(a.Master); err == nil {
		err = cerr
	}
	return err
}

// Front is what `serve` prepares before it touches the store: the
// listeners (so a port in use fails before anything is written) and the TLS
// material (so a bad certificate fails just as early).
type Front struct {
	Listeners   web.Listeners
	TLS         *tls.Config
	Rotator     *tlsconf.TicketKeyRotator
	Fingerprint string
	// SFTP is the SFTP listener (nil when sftp.listen is empty).
	SFTP net.Listener
	edge edgeFront
}

// Close releases the listeners (after a failed start).
func (f *Front) Close() {
	for _, l := range []net.Listener{f.Listeners.HTTPS, f.Listeners.Redirect, f.Listeners.Metrics, f.SFTP} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// PrepareFront opens the listeners and loads or creates the certificate.
func PrepareFront(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time) (*Front, error) {
	var kp tls.Certificate
	var fp string
	var err error
	var edge edgeFront
	var source tlsconf.CertSource
	if len(cfg.TLS.ACMEDomains) > 0 {
		edge.acme, edge.certSource, fp = &lateSource{}, "acme", "(ACME: obtained after start)"
		source = edge.acme
	} else if cfg.TLS.Cert != "" {
		edge.certSource = "file"
		if kp, fp, err = tlsconf.LoadKeyPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return nil, err
		}
	} else {
		edge.certSource = "self-signed"
		var created bool
		if kp, fp, created, err = tlsconf.LoadOrCreateSelfSigned(cfg.DataDir, cfg.TLS.Hosts, now); err != nil {
			return nil, err
		}
		if created {
			log.Info("created a self-signed TLS certificate", "sha256", fp)
		}
	}
	if source == nil {
		if edge.certs, err = tlsconf.NewCertStore(kp); err != nil {
			return nil, err
		}
		source = edge.certs
	}
	tlsCfg, rotator, err := tlsconf.ServerConfigAndRotator(tlsconf.Options{Cert: source, Clock: now, TicketKeyRotation: cfg.TLS.TicketKeyRotation.D()})
	if err != nil {
		return nil, err
	}
	if err := prepareEdge(cfg, tlsCfg, &edge, now); err != nil {
		return nil, err
	}
	f := &Front{TLS: tlsCfg, Rotator: rotator, Fingerprint: fp, edge: edge}
	if f.Listeners.HTTPS, err = web.Listen(ctx, cfg.Listen, "--listen"); err != nil {
		return nil, err
	}
	if cfg.MetricsListen != "" {
		if f.Listeners.Metrics, err = web.Listen(ctx, cfg.MetricsListen, "--metrics-listen"); err != nil {
			f.Close()
			return nil, err
		}
	}
	if cfg.SFTP.Listen != "" {
		if f.SFTP, err = web.Listen(ctx, cfg.SFTP.Listen, "--sftp-listen"); err != nil {
			f.Close()
			return nil, err
		}
	}
	if cfg.RedirectListen != "" {
		if f.Listeners.Redirect, err = web.Listen(ctx, cfg.RedirectListen, "--redirect-listen"); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// ServeOptions are the serve command's inputs beyond the configuration.
type ServeOptions struct {
	Version string
	// Out receives the human-readable start-up lines.
	Out io.Writer
}

// Serve runs the servers on the prepared front until ctx is cancelled
// (SIGTERM / SIGINT), then stops gracefully.
func (a *App) Serve(ctx context.Context, f *Front, so ServeOptions) error {
	cfg := a.Config
	if so.Out == nil {
		so.Out = io.Discard
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		tenants.NewKeyCollector(a.DB))
	if err := a.JWTKeys.EnsureCurrent(ctx); err != nil {
		return fmt.Errorf("token signing keys: %w", err)
	}
	sinks, err := auditSinks(cfg.AuditForward)
	if err != nil {
		return err
	}
	node := uuid.NewString()
	suppress := &campaigns.Suppressor{Contacts: a.Contacts}
	// Supervision reads the certificate the front really serves (a file,
	// the self-signed one, or ACME's).
	a.Monitor.Plug(monitor.Providers{
		Cert: monitor.CertSourceFunc(func(ctx context.Context) (monitor.CertInfo, error) {
			c, err := f.Certificate(ctx)
			return monitor.CertInfo(c), err
		}),
	})
	if err := a.Monitor.Register(reg); err != nil {
		return err
	}
	engine := router.NewEngine(a.DB, a.Keyring, registry.Open, router.EngineOptions{Logger: a.Log, Registerer: reg,
		Node: node, Suppress: func(ctx context.Context, tenantID, contactID, channel, campaignID string) (bool, string, error) {
			// DEV-1: a tenant's SMS are held back while its sms_sending flag is off.
			if stop, reason, err := flags.HoldSMS(ctx, a.Monitor.FlagReader, tenantID, channel); stop || err != nil {
				return stop, reason, err
			}
			return suppress.Check(ctx, tenantID, contactID, channel, campaignID)
		}, SuppressLoad: suppress.Preload})
	a.Router.Wake = engine.Wake
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	edgeOpts, err := a.startEdge(runCtx, f, reg, node)
	if err != nil {
		return err
	}
	srv := web.New(web.Options{
		MaxHeaderBytes: edgeOpts.MaxHeaderBytes, RateLimit: edgeOpts.RateLimit, ClientCerts: edgeOpts.ClientCerts, HTTPChallenge: edgeOpts.HTTPChallenge,
		Logger: a.Log, Registry: reg, DB: a.DB, Tenants: a.Tenants, TLS: f.TLS,
		Identity: a.Identity, Access: a.Access, SSO: a.SSO, Verifier: a.Verifier, Issuer: a.Issuer, Keys: a.JWTKeys,
		Router: a.Router, Connectors: a.Connectors, Contacts: a.Contacts,
		Campaigns: a.Campaigns, Templates: a.Templates, SFTP: a.SFTP, Privacy: a.Privacy, Monitor: a.Monitor,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, MaxImportBytes: cfg.HTTP.MaxImportBytes, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.D(),
		ReadTimeout: cfg.HTTP.ReadTimeout.D(), WriteTimeout: cfg.HTTP.WriteTimeout.D(),
		IdleTimeout: cfg.HTTP.IdleTimeout.D(), ShutdownTimeout: cfg.HTTP.ShutdownTimeout.D(),
		Version: so.Version, Now: a.Now,
	})
	ls := f.Listeners
	httpsAddr := ls.HTTPS.Addr().String()
	metricsAddr, redirectAddr := "", ""
	if ls.Metrics != nil {
		metricsAddr = ls.Metrics.Addr().String()
	}
	if ls.Redirect != nil {
		redirectAddr = ls.Redirect.Addr().String()
	}
	fmt.Fprintf(so.Out, "relais %s serving https://%s (store: %s)\n", so.Version, httpsAddr, a.DB.Dialect())
	fmt.Fprintf(so.Out, "TLS certificate SHA-256 fingerprint: %s\n", f.Fingerprint)
	if metricsAddr != "" {
		fmt.Fprintf(so.Out, "metrics: http://%s/metrics\n", metricsAddr)
	}
	if redirectAddr != "" {
		fmt.Fprintf(so.Out, "plain HTTP redirect: http://%s\n", redirectAddr)
	}
	a.Log.Info("serving", "https", httpsAddr, "metrics", metricsAddr, "redirect", redirectAddr,
		"store", a.DB.Dialect(), "rls", a.DB.RLSEffective(), "tls_sha256", f.Fingerprint)

	rotErr := make(chan error, 1)
	go func() { rotErr <- f.Rotator.Run(runCtx) }()
	go a.maintainSigningKeys(runCtx)
	go a.resumeKeyRotations(runCtx)
	// The audit trail's sequencer (queued events into their logs, every
	// 200 ms), checkpoints (every minute for logs that grew) and retention
	// (daily), on every node: the store serialises them.
	go audit.Sequencer(runCtx, a.DB, 0, a.Log)
	auditJob := &audit.Service{DB: a.DB, Master: a.Master, Logger: a.Log}
	go func() {
		_ = auditJob.Run(runCtx, audit.RunOptions{Retention: func(ctx context.Context, tenantID string) (audit.Retention, error) {
			if tenantID == "" {
				return audit.RetentionFrom(a.Config.Policy.Audit), nil
			}
			pol, err := a.Tenants.Policy(ctx, tenantID)
			if err != nil {
				return audit.Retention{}, err
			}
			return audit.RetentionFrom(pol.Audit), nil
		}})
	}()
	if len(sinks) > 0 {
		observe := forwardMetrics(reg)
		go func() {
			_ = auditJob.Forward(runCtx, audit.ForwardOptions{Sinks: sinks, Every: cfg.AuditForward.Every.D(),
				Batch: cfg.AuditForward.Batch, Observe: observe})
		}()
	}
	sftpDone := make(chan error, 1)
	go func() { sftpDone <- a.SFTP.Run(runCtx) }()
	if f.SFTP != nil {
		hostKeys, created, err := sftpd.LoadOrCreateHostKeys(filepath.Join(cfg.DataDir, "ssh"))
		if err != nil {
			cancel()
			<-sftpDone
			return err
		}
		if created {
			a.Log.Info("created SFTP host keys", "dir", filepath.Join(cfg.DataDir, "ssh"))
		}
		fmt.Fprintf(so.Out, "sftp: %s\n", f.SFTP.Addr())
		for _, k := range hostKeys {
			fmt.Fprintf(so.Out, "SFTP host key %s\n", ssh.FingerprintSHA256(k.PublicKey()))
		}
		go func() {
			if err := a.SFTP.Serve(runCtx, f.SFTP, hostKeys); err != nil {
				a.Log.Error("sftp server stopped", "error", err)
			}
		}()
	}
	if err := a.startBackups(runCtx, reg, node); err != nil {
		return err
	}
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(runCtx) }()
	// Delivery status notifications in the SMTP connectors' bounce
	// mailboxes, every minute.
	bounceJob := &bounces.Service{Tenants: a.Tenants, Router: a.Router, Connectors: a.Connectors, Contacts: a.Contacts, Logger: a.Log}
	go bounceJob.Run(runCtx, time.Minute)
	campaignsDone := make(chan error, 1)
	go func() { campaignsDone <- a.Campaigns.Run(runCtx) }()
	// Retention rules and due tenant destructions (privacy.job_every).
	go func() {
		_ = a.Privacy.Run(runCtx, privacy.RunOptions{Every: a.Config.Privacy.JobEvery.D(), Logger: a.Log})
	}()
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); a.Monitor.Run(runCtx) }()
	err = srv.Run(ctx, ls)
	cancel()
	if eerr := <-engineDone; eerr != nil && err == nil {
		err = eerr
	}
	if serr := <-sftpDone; serr != nil && err == nil {
		err = serr
	}
	if cerr := <-campaignsDone; cerr != nil && err == nil {
		err = cerr
	}
	<-monitorDone
	if rerr := <-rotErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	a.Log.Info("stopped")
	return err
}

// ssoState is a tenant's single sign-on state for supervision and the
// compliance report: the enabled providers' protocols, and whether
// password sign-in is off.
func (a *App) ssoState(ctx context.Context, tenantID string) (monitor.SSOState, error) {
	ps, err := a.SSO.ListProviders(ctx, tenantID)
	if err != nil {
		return monitor.SSOState{}, err
	}
	var st monitor.SSOState
	seen := map[string]bool{}
	enabled := 0
	for _, p := range ps {
		if !p.Enabled {
			continue
		}
		enabled++
		st.Configured = true
		if !seen[p.Kind] {
			seen[p.Kind] = true
			st.Protocols = append(st.Protocols, p.Kind)
		}
	}
	pw, err := a.SSO.PasswordLogin(ctx, tenantID)
	if err != nil {
		return monitor.SSOState{}, err
	}
	st.Enforced = st.Configured && !pw
	if st.Configured {
		st.Detail = fmt.Sprintf("%d enabled provider(s)", enabled)
	}
	return st, nil
}

// auditSinks opens the configured audit forwarding sinks (LOG-6).
func auditSinks(f config.AuditForward) ([]audit.Sink, error) {
	var sinks []audit.Sink
	for _, u := range []string{f.Syslog, f.GELF} {
		if u == "" {
			continue
		}
		s, err := forward.Open(u, forward.Options{CAFile: f.CAFile})
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}

// forwardMetrics registers the forwarding metrics and returns the hook
// that updates them after each round.
func forwardMetrics(reg prometheus.Registerer) func(string, time.Duration, int, error) {
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "relais_audit_forward_lag_seconds",
		Help: "Age of the oldest audit event not yet delivered to the sink (0: caught up)."}, []string{"sink"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_audit_forward_events_total",
		Help: "Audit events delivered to the sink."}, []string{"sink"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "relais_audit_forward_failures_total",
		Help: "Forwarding rounds that failed for the sink (retried with backoff)."}, []string{"sink"})
	reg.MustRegister(lag, sent, failed)
	return func(sink string, l time.Duration, n int, err error) {
		lag.WithLabelValues(sink).Set(l.Seconds())
		sent.WithLabelValues(sink).Add(float64(n))
		if err != nil {
			failed.WithLabelValues(sink).Inc()
		}
	}
}

// resumeKeyRotations finishes, every few minutes, any tenant data-key
// rotation left unfinished (its CLI run was interrupted), in the background.
func (a *App) resumeKeyRotations(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Tenants.ResumeRotations(ctx, a.Keyring, tenants.RunOptions{}); err != nil && ctx.Err() == nil {
				a.Log.Error("key rotation failed; it will be retried", "error", err)
			}
		}
	}
}

// startBackups runs the backup scheduler when backup.target is set (on
// every node: a lease per tenant lets one node at a time work on it).
func (a *App) startBackups(ctx context.Context, reg prometheus.Registerer, node string) error {
	a.Backup.Metrics = backup.NewMetrics(reg)
	cfg := a.Config.Backup
	if cfg.Target == "" {
		return nil
	}
	target, err := backup.OpenTarget(cfg.Target)
	if err != nil {
		return err
	}
	s := &backup.Scheduler{Svc: a.Backup, Target: target, Node: node, KeepSets: cfg.KeepSets,
		Tenants: func(ctx context.Context) ([]string, error) {
			ts, err := a.Tenants.List(ctx)
			if err != nil {
				return nil, err
			}
			var ids []string
			for _, t := range ts {
				if t.Status == tenants.StatusActive {
					ids = append(ids, t.ID)
				}
			}
			return ids, nil
		},
		Policy: func(ctx context.Context, id string) (config.BackupPolicy, error) {
			p, err := a.Tenants.Policy(ctx, id)
			return p.Backup, err
		}}
	if cfg.PGPRecipients != "" {
		if s.PGP, err = backup.ReadRecipients(cfg.PGPRecipients); err != nil {
			return err
		}
	}
	go func() { _ = s.Run(ctx, time.Minute) }()
	return nil
}

// maintainSigningKeys rotates and prunes the token signing keys every few
// minutes (several nodes may do it; the store serialises them).
func (a *App) maintainSigningKeys(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.JWTKeys.EnsureCurrent(ctx); err != nil {
				a.Log.Error("token signing key rotation failed", "error", err)
			}
			if _, err := a.JWTKeys.Prune(ctx); err != nil {
				a.Log.Error("token signing key pruning failed", "error", err)
			}
		}
	}
}

// publicBaseURL is the address put in the links sent to contacts
// (unsubscribe): the public_url setting, or else the first name of the
// certificate with the port of the HTTPS listener unless it is 443.
func publicBaseURL(cfg config.Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		port = "443"
	}
	host := "localhost"
	if len(cfg.TLS.Hosts) > 0 && cfg.TLS.Hosts[0] != "" {
		host = cfg.TLS.Hosts[0]
	}
	if port == "443" {
		return "https://" + host
	}
	return "https://" + net.JoinHostPort(host, port)
}

// LoadConfig reads the configuration file (or RELAIS_CONFIG) and the
// environment.
func LoadConfig(path string) (config.Config, error) {
	if path == "" {
		path = os.Getenv("RELAIS_CONFIG")
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// Describe returns a one-line description of where the store is.
func Describe(cfg config.Config) string {
	if cfg.DatabaseURL != "" {
		return "PostgreSQL " + config.MaskURL(cfg.DatabaseURL)
	}
	return "SQLite in " + strings.TrimRight(cfg.DataDir, "/")
}

// Package app is Relais's composition root: it turns a configuration into
// the store, the keys, the domain services and the servers. It is the only
// package that knows every other one; cmd/relais stays thin.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/web"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

// App holds the opened services.
type App struct {
	Config  config.Config
	Log     *slog.Logger
	DB      *store.DB
	Master  keys.MasterKey
	Tenants *tenants.Service
	Now     func() time.Time
}

// NewLogger builds the structured logger from the settings.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Open connects the store, migrates it when migrate is true (otherwise
// refuses a store whose schema is behind), and loads the master key.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, migrate bool) (*App, error) {
	db, err := store.Open(ctx, store.Options{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Logger: log})
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
	master, err := keys.LoadOrCreateFileMasterKey(cfg.MasterKeyPath())
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	ok = true
	return &App{
		Config:  cfg,
		Log:     log,
		DB:      db,
		Master:  master,
		Tenants: &tenants.Service{DB: db, Master: master, Defaults: cfg.Policy},
		Now:     time.Now,
	}, nil
}

// Close releases the store.
func (a *App) Close() error { return a.DB.Close() }

// ServeOptions are the serve command's inputs beyond the configuration.
type ServeOptions struct {
	Version string
	// Ready, when not nil, is called once every listener is open (tests).
	Ready func(https, metrics, redirect string)
	// Out receives the human-readable start-up lines.
	Out io.Writer
}

// Serve runs the servers until ctx is cancelled (SIGTERM / SIGINT).
func (a *App) Serve(ctx context.Context, so ServeOptions) error {
	cfg := a.Config
	if so.Out == nil {
		so.Out = io.Discard
	}
	var cert tlsconf.CertSource
	var fingerprint string
	if cfg.TLS.Cert != "" {
		kp, fp, err := tlsconf.LoadKeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return err
		}
		cs, err := tlsconf.NewCertStore(kp)
		if err != nil {
			return err
		}
		cert, fingerprint = cs, fp
	} else {
		kp, fp, created, err := tlsconf.LoadOrCreateSelfSigned(cfg.DataDir, cfg.TLS.Hosts, a.Now)
		if err != nil {
			return err
		}
		cs, err := tlsconf.NewCertStore(kp)
		if err != nil {
			return err
		}
		cert, fingerprint = cs, fp
		if created {
			a.Log.Info("created a self-signed TLS certificate", "sha256", fingerprint)
		}
	}
	tlsCfg, err := tlsconf.ServerConfig(tlsconf.Options{Cert: cert, Clock: a.Now, TicketKeyRotation: cfg.TLS.TicketKeyRotation.D()})
	if err != nil {
		return err
	}
	rotator, err := tlsconf.NewTicketKeyRotator(tlsCfg, cfg.TLS.TicketKeyRotation.D(), a.Now)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := web.New(web.Options{
		Logger: a.Log, Registry: reg, DB: a.DB, Tenants: a.Tenants, TLS: tlsCfg,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.D(),
		ReadTimeout: cfg.HTTP.ReadTimeout.D(), WriteTimeout: cfg.HTTP.WriteTimeout.D(),
		IdleTimeout: cfg.HTTP.IdleTimeout.D(), ShutdownTimeout: cfg.HTTP.ShutdownTimeout.D(),
		Version: so.Version, Now: a.Now,
	})

	var ls web.Listeners
	closeAll := func() {
		for _, l := range []net.Listener{ls.HTTPS, ls.Redirect, ls.Metrics} {
			if l != nil {
				_ = l.Close()
			}
		}
	}
	if ls.HTTPS, err = web.Listen(ctx, cfg.Listen, "--listen"); err != nil {
		return err
	}
	defer closeAll() // Run closes them on a clean stop; this covers early returns
	if cfg.MetricsListen != "" {
		if ls.Metrics, err = web.Listen(ctx, cfg.MetricsListen, "--metrics-listen"); err != nil {
			closeAll()
			return err
		}
	}
	if cfg.RedirectListen != "" {
		if ls.Redirect, err = web.Listen(ctx, cfg.RedirectListen, "--redirect-listen"); err != nil {
			closeAll()
			return err
		}
	}

	httpsAddr := ls.HTTPS.Addr().String()
	metricsAddr, redirectAddr := "", ""
	if ls.Metrics != nil {
		metricsAddr = ls.Metrics.Addr().String()
	}
	if ls.Redirect != nil {
		redirectAddr = ls.Redirect.Addr().String()
	}
	fmt.Fprintf(so.Out, "relais %s serving https://%s (store: %s)\n", so.Version, httpsAddr, a.DB.Dialect())
	fmt.Fprintf(so.Out, "TLS certificate SHA-256 fingerprint: %s\n", fingerprint)
	if metricsAddr != "" {
		fmt.Fprintf(so.Out, "metrics: http://%s/metrics\n", metricsAddr)
	}
	if redirectAddr != "" {
		fmt.Fprintf(so.Out, "plain HTTP redirect: http://%s\n", redirectAddr)
	}
	a.Log.Info("serving", "https", httpsAddr, "metrics", metricsAddr, "redirect", redirectAddr,
		"store", a.DB.Dialect(), "rls", a.DB.RLSEffective(), "tls_sha256", fingerprint)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rotErr := make(chan error, 1)
	go func() { rotErr <- rotator.Run(runCtx) }()
	if so.Ready != nil {
		so.Ready(httpsAddr, metricsAddr, redirectAddr)
	}
	err = srv.Run(ctx, ls)
	cancel()
	if rerr := <-rotErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	a.Log.Info("stopped")
	return err
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

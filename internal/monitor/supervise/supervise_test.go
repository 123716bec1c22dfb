package supervise_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/supervise"
)

// TestWebhookKeyFile: a missing or short signing key refuses to start;
// a good one is accepted; no webhook needs no key.
func TestWebhookKeyFile(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir
	if _, err := supervise.New(supervise.Options{Config: cfg}); err != nil {
		t.Fatalf("no webhook: %v", err)
	}
	cfg.Monitor.WebhookURL = "https://hooks.example.test/relais"
	cfg.Monitor.WebhookSecretFile = filepath.Join(dir, "missing")
	if _, err := supervise.New(supervise.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "monitor.webhook_secret_file") {
		t.Fatalf("missing key file: %v", err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Monitor.WebhookSecretFile = short
	if _, err := supervise.New(supervise.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short key: %v", err)
	}
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte(strings.Repeat("k", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Monitor.WebhookSecretFile = good
	if _, err := supervise.New(supervise.Options{Config: cfg}); err != nil {
		t.Fatalf("good key: %v", err)
	}
}

// TestPlug: a provider plugged after New reaches the indicators, the alert
// rules and the compliance report.
func TestPlug(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	s, err := supervise.New(supervise.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	s.Plug(monitor.Providers{Cert: monitor.CertSourceFunc(func(context.Context) (monitor.CertInfo, error) {
		return monitor.CertInfo{Subject: "CN=acme", KeyType: "ECDSA P-256", NotAfter: at, Source: "acme"}, nil
	})})
	c, err := s.Indicators.Providers.Cert.Certificate(context.Background())
	if err != nil || c.Source != "acme" {
		t.Fatalf("indicators' certificate %+v %v", c, err)
	}
	for _, r := range s.Engine.Rules {
		if cr, ok := r.(*alerts.CertRule); ok {
			if got, _ := cr.Source.Certificate(context.Background()); got.Source != "acme" {
				t.Fatalf("certificate rule reads %+v", got)
			}
		}
	}
	if s.Indicators.Providers.Backups != nil {
		t.Fatal("an unset provider was replaced")
	}
}

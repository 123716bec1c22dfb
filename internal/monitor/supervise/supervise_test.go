package supervise_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/config"
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

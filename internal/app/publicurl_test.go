package app

import (
	"testing"

	"github.com/relais-dev/relais/internal/config"
)

// The links put in messages use public_url when it is set, else the
// certificate's first name and the listen port.
func TestPublicBaseURL(t *testing.T) {
	cfg := config.Default()
	if got := publicBaseURL(cfg); got != "https://localhost:8443" {
		t.Fatalf("default: %s", got)
	}
	cfg.Listen, cfg.TLS.Hosts = "0.0.0.0:443", []string{"relais.example"}
	if got := publicBaseURL(cfg); got != "https://relais.example" {
		t.Fatalf("443: %s", got)
	}
	cfg.PublicURL = "https://mail.example.com/relais/"
	if got := publicBaseURL(cfg); got != "https://mail.example.com/relais" {
		t.Fatalf("public_url: %s", got)
	}
}

package config

import (
	"strings"
	"testing"
)

// TestEdgeSettings: the network-edge settings (issue 13) are checked, and
// the environment reaches the nested rate-limit keys.
func TestEdgeSettings(t *testing.T) {
	cfg, err := Load("", []string{"RELAIS_HTTP_RATE_LIMIT_IP_PER_MINUTE=60", "RELAIS_HTTP_RATE_LIMIT_IP_BURST=5",
		"RELAIS_TLS_ACME_DOMAINS=a.example, b.example", "RELAIS_TLS_ACME_CHECK_INTERVAL=5m"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.RateLimit.IPPerMinute != 60 || cfg.HTTP.RateLimit.IPBurst != 5 || len(cfg.TLS.ACMEDomains) != 2 || cfg.TLS.ACMEDomains[1] != "b.example" {
		t.Fatalf("environment not applied: %+v %+v", cfg.HTTP.RateLimit, cfg.TLS.ACMEDomains)
	}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"RELAIS_HTTP_MAX_HEADER_BYTES=100"}, "max_header_bytes"},
		{[]string{"RELAIS_HTTP_RATE_LIMIT_IP_PER_MINUTE=60", "RELAIS_HTTP_RATE_LIMIT_IP_BURST=0"}, "rate_limit"},
		{[]string{"RELAIS_HTTP_RATE_LIMIT_CREDENTIAL_BURST=-1"}, "rate_limit"},
		{[]string{"RELAIS_TLS_ACME_DOMAINS=a.example", "RELAIS_TLS_CERT=c.pem", "RELAIS_TLS_KEY=k.pem"}, "exclude each other"},
		{[]string{"RELAIS_TLS_ACME_DIRECTORY=http://ca.example/dir"}, "https://"},
		{[]string{"RELAIS_TLS_ACME_CHECK_INTERVAL=0s"}, "acme_check_interval"},
		{[]string{"RELAIS_HTTP_PROXY_PROTOCOL_FROM=10.0.0.5"}, "proxy_protocol_from"},
	} {
		if _, err := Load("", c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error about %s", c.env, err, c.want)
		}
	}
	// Both zero disables a limit.
	if _, err := Load("", []string{"RELAIS_HTTP_RATE_LIMIT_IP_PER_MINUTE=0", "RELAIS_HTTP_RATE_LIMIT_IP_BURST=0"}); err != nil {
		t.Errorf("disabling the per-IP limit: %v", err)
	}
}

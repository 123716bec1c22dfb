package monitor_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relais-dev/relais/internal/monitor"
	"github.com/relais-dev/relais/internal/monitor/alerts"
	"github.com/relais-dev/relais/internal/monitor/clock"
	"github.com/relais-dev/relais/internal/monitor/incidents"
)

var deploy = filepath.Join("..", "..", "deploy")

// TestPrometheusRules runs `promtool check rules` and `promtool test rules`
// on the shipped rules (AVL-3). Without promtool (Debian's prometheus
// package) it skips, except in CI where it fails.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found: CI must install Debian's prometheus package")
		}
		t.Skip("promtool not found (apt-get install prometheus)")
	}
	dir := filepath.Join(deploy, "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml", "alerts_days_test.yml"},
	} {
		cmd := exec.Command(promtool, args...) // #nosec G204 -- fixed arguments, promtool from PATH
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// webMetrics are the HTTP metrics internal/web registers (it imports
// monitor, so they are listed here rather than registered).
var webMetrics = []string{"relais_http_requests_total", "relais_http_request_duration_seconds", "relais_http_requests_in_flight"}

// exposed returns the metric names Relais's supervision registers.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	chk := &clock.Checker{}
	if err := chk.Register(reg); err != nil {
		t.Fatal(err)
	}
	monitor.NewRequests(reg, nil)
	names := map[string]bool{"up": true}
	for _, n := range webMetrics {
		names[n] = true
	}
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range []prometheus.Collector{&monitor.Indicators{}, alerts.Collector{}, incidents.Collector{}} {
		c.Describe(ch)
	}
	close(ch)
	re := regexp.MustCompile(`fqName: "([a-z_0-9]+)"`)
	for d := range ch {
		if m := re.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	names["relais_tenant_request_duration_seconds"] = true // a vector: gathered only once observed
	return names
}

// TestShippedMonitoringUsesRealMetrics: every metric the rules and the
// dashboard use is one Relais exposes, and the dashboard is valid JSON
// with a panel per indicator family.
func TestShippedMonitoringUsesRealMetrics(t *testing.T) {
	names := exposed(t)
	re := regexp.MustCompile(`\b(relais_[a-z_0-9]+|up)\b`)
	for _, f := range []string{filepath.Join(deploy, "prometheus", "alerts.yml"), filepath.Join(deploy, "grafana", "relais.json")} {
		raw, err := os.ReadFile(f) // #nosec G304 -- fixed paths in the repository
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllString(string(raw), -1) {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suf)
			}
			if !names[base] && !names[m] {
				t.Errorf("%s uses %s, which Relais does not expose", filepath.Base(f), m)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(deploy, "grafana", "relais.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"relais_http_requests_total", "relais_http_request_duration_seconds_bucket", "relais_tenant_request_duration_seconds_bucket",
		"relais_deliverability_delivered", "relais_campaign_transit_p95_seconds", "relais_campaign_transit_mean_seconds", "relais_queue_depth",
		"relais_failed_logins_recent", "relais_backup_last_timestamp_seconds", "relais_backup_verify_ok", "relais_backup_restore_test_ok",
		"relais_certificate_expiry_timestamp_seconds", "relais_clock_offset_seconds", "relais_key_created_timestamp_seconds",
		"relais_alerts_firing", "relais_incidents_open"} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard has no panel on %s", want)
		}
	}
}

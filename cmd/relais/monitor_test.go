package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/testkit/ntpfake"
)

// TestMonitorCommands runs the built binary: feature flags, the incident
// register from creation to closing, the alert list, and the compliance
// report in three formats, whose figures follow the live settings (an
// environment setting changes the report); usage errors exit 2, others 1,
// each on one line.
func TestMonitorCommands(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("HOME=" + dir)
	data := filepath.Join(dir, "data")
	run := func(env []string, args ...string) result {
		t.Helper()
		return relais(t, dir, env, "", append([]string{"--data-dir", data}, args...)...)
	}
	ok := func(r result, what string) string {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
		return r.stdout
	}
	fails := func(r result, code int, what, want string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%s: exit %d, stderr %q; want exit %d and %q on one line", what, r.code, r.stderr, code, want)
		}
	}
	ok(run(env, "tenant", "create", "--name", "Acme", "--slug", "acme"), "tenant create")

	if out := ok(run(env, "flag", "set", "--tenant", "acme", "sms_sending", "off"), "flag set"); !strings.Contains(out, "flag sms_sending is off for acme") {
		t.Fatalf("flag set: %s", out)
	}
	fails(run(env, "flag", "set", "--tenant", "acme", "sms_sending", "maybe"), 2, "flag bad value", "use on or off")
	fails(run(env, "flag", "set", "--tenant", "acme", "warp_drive", "on"), 1, "unknown flag", `no flag "warp_drive"`)
	fails(run(env, "flag", "set", "--tenant", "nobody", "sms_sending", "on"), 1, "unknown tenant", "nobody")
	if out := ok(run(env, "flag", "list", "--tenant", "acme"), "flag list"); !strings.Contains(out, "sms_sending") || !strings.Contains(out, "false") {
		t.Fatalf("flag list: %s", out)
	}

	fails(run(env, "incident", "create", "--title", "x"), 2, "incident without category", "--category")
	fails(run(env, "incident", "create", "--category", "oops", "--criticality", "high", "--title", "x"), 1, "bad category", "category must be one of")
	out := ok(run(env, "incident", "create", "--category", "data_breach", "--criticality", "high", "--title", "Bucket exposed",
		"--tenant", "acme", "--json"), "incident create")
	var inc struct {
		Ref     string
		Tenants []struct{ Deadline string } `json:"affected_tenants"`
	}
	if err := json.Unmarshal([]byte(out), &inc); err != nil || inc.Ref != "INC-1" || len(inc.Tenants) != 1 {
		t.Fatalf("incident create: %v %s", err, out)
	}
	if out := ok(run(env, "incident", "list"), "incident list"); !strings.Contains(out, "INC-1") || !strings.Contains(out, "1 to notify") {
		t.Fatalf("incident list: %s", out)
	}
	fails(run(env, "incident", "show", "INC-7"), 1, "unknown incident", "no such incident")
	fails(run(env, "incident", "show", "seven"), 2, "bad reference", "not an incident reference")
	fails(run(env, "incident", "notify", "INC-1"), 1, "notify without contacts", "no security contact")
	fails(run(env, "incident", "close", "INC-1"), 2, "close without report", "--report")
	fails(run(env, "incident", "close", "INC-1", "--report", "done"), 1, "close before notifying", "has not been notified")
	if out := ok(run(env, "incident", "notify", "INC-1", "--manual", "called the DPO"), "notify manual"); !strings.Contains(out, "manual: called the DPO") {
		t.Fatalf("notify: %s", out)
	}
	report := filepath.Join(dir, "report.md")
	if err := os.WriteFile(report, []byte("Bucket made private; access logs reviewed."), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := ok(run(env, "incident", "close", "INC-1", "--report-file", report, "--lessons", "Block public buckets."), "close"); !strings.Contains(out, "closed") {
		t.Fatalf("close: %s", out)
	}
	ok(run(env, "alert", "list"), "alert list")
	fails(run(env, "alert", "list", "--state", "burning"), 2, "alert list bad state", "use firing or resolved")

	fails(run(env, "compliance", "report", "--tenant", "acme", "--format", "pdf"), 2, "bad format", "use json, md or html")
	fails(run(env, "compliance", "report"), 2, "no tenant", "--tenant")
	md := ok(run(env, "compliance", "report", "--tenant", "acme", "--format", "md"), "report md")
	for _, want := range []string{"# Relais compliance report: Acme (acme)", "Preset **seed**: 12 characters", "| AUD-3 ", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"} {
		if !strings.Contains(md, want) {
			t.Errorf("md report lacks %q", want)
		}
	}
	html := ok(run(env, "compliance", "report", "--tenant", "acme", "--format", "html"), "report html")
	if !strings.HasPrefix(html, "<!doctype html>") {
		t.Errorf("html report: %.100s", html)
	}
	// A live setting changes the report.
	report14 := ok(run(append(env, "RELAIS_POLICY_PASSWORD_MIN_LENGTH=14", "RELAIS_MONITOR_NTP_SERVERS=ntp1.example.test"),
		"compliance", "report", "--tenant", "acme", "--format", "json"), "report json")
	var rep struct {
		Password struct {
			Policy struct {
				MinLength int `json:"min_length"`
			}
		}
		Clock struct {
			Servers []string `json:"ntp_servers"`
		}
		Controls []struct {
			ID      string
			InForce bool `json:"in_force"`
		}
		Keys struct {
			MasterProvider string `json:"master_key_provider"`
			Providers      string `json:"providers"`
			Keys           []struct {
				Name     string `json:"name"`
				Provider string `json:"provider"`
				AgeDays  *int   `json:"age_days"`
			} `json:"keys"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(report14), &rep); err != nil {
		t.Fatal(err)
	}
	// The key source app.Open plugs in (issue 7): the master key's provider
	// and age, and the tenant's active data key with the provider that
	// wraps it.
	if rep.Keys.Providers != "configured" || !strings.HasPrefix(rep.Keys.MasterProvider, "file (") {
		t.Fatalf("compliance keys: %+v", rep.Keys)
	}
	var master, dataKey bool
	for _, k := range rep.Keys.Keys {
		master = master || (k.Name == "master" && strings.HasPrefix(k.Provider, "file (") && k.AgeDays != nil && *k.AgeDays == 0)
		dataKey = dataKey || (strings.HasPrefix(k.Name, "tenant data key v1 (active") && strings.Contains(k.Provider, "wraps it: file:") && k.AgeDays != nil)
	}
	if !master || !dataKey {
		t.Fatalf("compliance keys: no master key or active data key with its provider and age: %+v", rep.Keys.Keys)
	}
	if rep.Password.Policy.MinLength != 14 || len(rep.Clock.Servers) != 1 {
		t.Fatalf("report does not follow the settings: %+v %+v", rep.Password, rep.Clock)
	}
	for _, c := range rep.Controls {
		if c.ID == "LOG-5" && !c.InForce {
			t.Error("LOG-5 not in force with an NTP server configured")
		}
	}
	out = ok(run(env, "compliance", "report", "--tenant", "acme", "--output", filepath.Join(dir, "r.json")), "report to file")
	if !strings.Contains(out, "controls in force") {
		t.Fatalf("report --output: %s", out)
	}
}

// TestServeSupervision: a running server measures its clock against a
// (fake, loopback) NTP server, exposes the supervision metrics, evaluates
// its built-in alerts, and serves the supervision API to the operator.
func TestServeSupervision(t *testing.T) {
	dir := t.TempDir()
	ntp := ntpfake.Start(t)
	ntp.SetSkew(3 * time.Second)
	https, metrics := freePort(t), freePort(t)
	env := cleanEnv("HOME="+dir, "RELAIS_MONITOR_NTP_SERVERS="+ntp.Addr(), "RELAIS_MONITOR_CLOCK_INTERVAL=1s", "RELAIS_MONITOR_ALERT_INTERVAL=1s")
	data := filepath.Join(dir, "data")
	srv := startServe(t, dir, env, "--data-dir", data, "--listen", https, "--metrics-listen", metrics)
	waitHealthy(t, srv, "https://"+https)
	r := relais(t, dir, env, "", "--data-dir", data, "operator", "token", "create", "--name", "sup", "--json")
	if r.code != 0 {
		t.Fatalf("token: %s", r.stderr)
	}
	var tok struct {
		Secret string `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("token output %q: %v", r.stdout, err)
	}
	get := func(url string, auth bool) string {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+tok.Secret)
		}
		res, err := insecureClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	// The clock alert fires within a few evaluations (1 s each).
	var alerts string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		alerts = get("https://"+https+"/api/v1/operator/monitor/alerts?state=firing", true)
		if strings.Contains(alerts, `"rule":"clock_offset"`) {
			break
		}
	}
	if !strings.Contains(alerts, `"rule":"clock_offset"`) {
		t.Fatalf("no clock_offset alert: %s\nstderr: %s", alerts, srv.stderr)
	}
	m := get("http://"+metrics+"/metrics", false)
	var offset float64
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "relais_clock_offset_seconds "); ok {
			offset, _ = strconv.ParseFloat(v, 64)
		}
	}
	if offset < 2.5 || offset > 3.5 {
		t.Errorf("relais_clock_offset_seconds = %v, want about 3", offset)
	}
	for _, want := range []string{"relais_clock_check_success 1", `relais_alerts_firing{rule="clock_offset",severity="critical"} 1`,
		"relais_indicators_up 1", "relais_certificate_expiry_timestamp_seconds{source=\"self-signed\"}", "relais_incident_notifications_overdue 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if ind := get("https://"+https+"/api/v1/operator/monitor/indicators", true); !strings.Contains(ind, `"measured":true`) {
		t.Errorf("indicators: %.300s", ind)
	}
}

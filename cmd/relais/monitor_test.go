package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	}
	if err := json.Unmarshal([]byte(report14), &rep); err != nil {
		t.Fatal(err)
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

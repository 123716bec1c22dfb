package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// TestAuditCommands runs the built binary as an operator and an auditor
// would: pubkey (printed and written to the data directory), checkpoint,
// export, offline verification of the export with only the public key,
// a tampered export, a wrong key, verification of the store, a tampered
// store, purge, and usage errors; every failure is one line and exit 1
// (2 for usage).
func TestAuditCommands(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("HOME=" + dir)
	data := filepath.Join(dir, "data")
	run := func(args ...string) result {
		t.Helper()
		return relais(t, dir, env, "", append([]string{"--data-dir", data}, args...)...)
	}
	ok := func(r result, what string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
		}
	}
	fails := func(r result, code int, what, want string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%s: exit %d, stderr %q; want exit %d and %q on one line", what, r.code, r.stderr, code, want)
		}
	}

	r := run("tenant", "create", "--name", "Acme", "--slug", "acme", "--json")
	ok(r, "tenant create")
	var tenant struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &tenant); err != nil {
		t.Fatal(err)
	}
	ok(run("tenant", "create", "--name", "Beta", "--slug", "beta"), "tenant create beta")

	r = run("audit", "pubkey", "--tenant", "acme")
	ok(r, "pubkey")
	key := strings.TrimSpace(r.stdout)
	keyFile := filepath.Join(data, "audit-keys", tenant.ID+".pub")
	if b, err := os.ReadFile(keyFile); err != nil || strings.TrimSpace(string(b)) != key || !strings.HasPrefix(key, "relais-audit/"+tenant.ID+"+") {
		t.Fatalf("public key %q, file %q: %v", key, b, err)
	}
	r = run("audit", "checkpoint", "--tenant", "acme")
	ok(r, "checkpoint")
	if !strings.Contains(r.stdout, "checkpoint of acme: tree of") {
		t.Fatalf("checkpoint: %s", r.stdout)
	}
	r = run("audit", "verify", "--tenant", "acme", "--key", keyFile)
	ok(r, "verify")
	if !strings.Contains(r.stdout, "audit log of acme verifies") || !strings.Contains(r.stdout, "1 signed checkpoints") {
		t.Fatalf("verify: %s", r.stdout)
	}

	exp := filepath.Join(dir, "acme.jsonl")
	r = run("audit", "export", "--tenant", "acme", "--from", "2000-01-01", "--out", exp)
	ok(r, "export")
	if fi, err := os.Stat(exp); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", fi, err)
	}
	// Offline: no data directory at all, only the file and the key.
	offline := func(file, key string) result {
		return relais(t, t.TempDir(), env, "", "audit", "verify", "--export", file, "--key", key)
	}
	r = offline(exp, keyFile)
	ok(r, "verify export")
	if !strings.Contains(r.stdout, "export verifies") {
		t.Fatalf("verify export: %s", r.stdout)
	}
	b, _ := os.ReadFile(exp)
	bad := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), `"role.create"`, `"role.delete"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(offline(bad, keyFile), 1, "tampered export", "line 2: event 1 was altered")
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(bad, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(offline(bad, keyFile), 1, "truncated export", "truncated: it has no checkpoint")
	r = run("audit", "pubkey", "--tenant", "beta")
	ok(r, "beta pubkey")
	other := filepath.Join(dir, "beta.pub")
	if err := os.WriteFile(other, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(offline(exp, other), 1, "wrong key", "wrong key")

	// The store, tampered with behind Relais's back.
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Tenant(tenant.ID).Tx(ctx, func(tx *store.Tx) error {
		if err := audit.SequenceLog(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_events SET actor_id = 'mallory' WHERE tenant_id = $1 AND seq = 3`)
		return err
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	fails(run("audit", "verify", "--tenant", "acme"), 1, "tampered store", "audit log of acme does NOT verify (event 3): event 3 was altered")
	fails(run("audit", "export", "--tenant", "acme", "--out", filepath.Join(dir, "x.jsonl")), 1, "export of a tampered log", "event 3 was altered")
	if _, err := os.Stat(filepath.Join(dir, "x.jsonl")); !os.IsNotExist(err) {
		t.Fatalf("a failed export left its file: %v", err)
	}

	r = run("audit", "purge", "--operator", "--dry-run")
	ok(r, "purge dry run")
	if !strings.Contains(r.stdout, "would purge 0 event bodies of operator") {
		t.Fatalf("purge: %s", r.stdout)
	}
	fails(run("audit", "verify"), 2, "no log", "give --tenant SLUG")
	fails(run("audit", "verify", "--export", exp), 2, "no key", "--export needs --key")
	fails(run("audit", "export", "--tenant", "acme"), 2, "no --out", "--out FILE is required")
	fails(run("audit", "export", "--tenant", "acme", "--from", "yesterday", "--out", exp), 2, "bad time", "--from \"yesterday\"")
	fails(run("audit", "verify", "--tenant", "nope"), 1, "unknown tenant", "tenant not found")
}

// TestServeForwardsTheAuditTrailToSyslog runs `relais serve` with a syslog
// receiver on loopback (a real TCP socket; octet-counted RFC 5424 frames):
// events written by the CLI while the server runs reach the receiver, and
// the forwarding metrics show them.
func TestServeForwardsTheAuditTrailToSyslog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					n, err := br.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSpace(n))
					if err != nil {
						return
					}
					buf := make([]byte, size)
					if _, err := io.ReadFull(br, buf); err != nil {
						return
					}
					got <- string(buf)
				}
			}()
		}
	}()
	dir := t.TempDir()
	metrics := freePort(t)
	env := cleanEnv("HOME="+dir, "RELAIS_AUDIT_FORWARD_SYSLOG=tcp://"+ln.Addr().String(), "RELAIS_AUDIT_FORWARD_EVERY=100ms")
	base := "https://" + freePort(t)
	srv := startServe(t, dir, env, "--listen", strings.TrimPrefix(base, "https://"), "--metrics-listen", metrics)
	waitHealthy(t, srv, base)
	if r := relais(t, dir, env, "", "tenant", "create", "--name", "Acme", "--slug", "acme"); r.code != 0 {
		t.Fatalf("tenant create: %s", r.stderr)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-got:
			if strings.Contains(m, " tenant.create ") && strings.HasPrefix(m, "<109>1 ") {
				res, err := http.Get("http://" + metrics + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(body), `relais_audit_forward_events_total{sink="tcp://`) {
					t.Fatalf("no forwarding metric:\n%s", body)
				}
				return
			}
		case <-deadline:
			t.Fatalf("the tenant.create event never reached syslog; stderr: %s", srv.stderr)
		}
	}
}

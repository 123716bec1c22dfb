package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupCLI: run (full, then incremental), list, verify, restore-test,
// restore refused next to the live tenant and done into another store,
// a flipped byte named by verify (exit 1), instance snapshot and its
// restore, usage errors (exit 2).
func TestBackupCLI(t *testing.T) {
	dir, env := ctTenant(t)
	if r := relais(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "25"); r.code != 0 {
		t.Fatalf("seed: %+v", r)
	}
	bdir := t.TempDir()
	target := "dir://" + bdir
	if r := relais(t, dir, env, "", "backup", "run", "--tenant", "acme"); r.code != 2 || !strings.Contains(r.stderr, "--target") {
		t.Fatalf("missing --target: %+v", r)
	}
	if r := relais(t, dir, env, "", "backup", "run", "--tenant", "acme", "--target", "dir://relative"); r.code != 2 {
		t.Fatalf("relative target: %+v", r)
	}
	r := relais(t, dir, env, "", "backup", "run", "--tenant", "acme", "--target", target)
	if r.code != 0 || !strings.Contains(r.stdout, "full backup of acme") {
		t.Fatalf("run: %+v", r)
	}
	if r := relais(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "3", "--seed", "9"); r.code != 0 {
		t.Fatalf("seed: %+v", r)
	}
	if r = relais(t, dir, env, "", "backup", "run", "--tenant", "acme", "--target", target); r.code != 0 || !strings.Contains(r.stdout, "incremental") {
		t.Fatalf("incremental: %+v", r)
	}
	r = relais(t, dir, env, "", "backup", "list", "--tenant", "acme", "--target", target, "--json")
	var pts []map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &pts) != nil || len(pts) != 2 {
		t.Fatalf("list: %+v", r)
	}
	if r = relais(t, dir, env, "", "backup", "verify", "--tenant", "acme", "--target", target); r.code != 0 || !strings.Contains(r.stdout, "verify: 2 points") {
		t.Fatalf("verify: %+v", r)
	}
	if r = relais(t, dir, env, "", "backup", "restore-test", "--tenant", "acme", "--target", target); r.code != 0 || !strings.Contains(r.stdout, "passed") {
		t.Fatalf("restore-test: %+v", r)
	}
	if r = relais(t, dir, env, "", "backup", "restore", "--tenant", "acme", "--target", target, "--into", "acme2"); r.code == 0 || !strings.Contains(r.stderr, "--store") {
		t.Fatalf("restore next to the live tenant: %+v", r)
	}
	scratch := t.TempDir()
	if r = relais(t, dir, env, "", "backup", "restore", "--tenant", "acme", "--target", target, "--into", "acme-copy", "--store", scratch); r.code != 0 || !strings.Contains(r.stdout, "as acme-copy") {
		t.Fatalf("restore: %+v", r)
	}
	// The scratch store now exists: a restore opens it and finds the tenant.
	if r = relais(t, dir, env, "", "backup", "restore", "--tenant", "acme", "--target", target, "--into", "acme-copy2", "--store", scratch); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("restore into a store that has the tenant: %+v", r)
	}
	senv := append(cleanEnv(), "RELAIS_MASTER_KEY_FILE="+filepath.Join(dir, "relais-data", "master.key"))
	if n := countContacts(t, dir, senv, "acme"); n != 28 {
		t.Fatalf("live tenant has %d contacts", n)
	}
	r = relais(t, dir, senv, "", "contacts", "count", "--tenant", "acme-copy", "--data-dir", scratch)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "28" {
		t.Fatalf("restored tenant count: %+v", r)
	}
	// Instance snapshot.
	r = relais(t, dir, env, "", "backup", "instance", "--target", target, "--json")
	var inst struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &inst) != nil || inst.ID == "" {
		t.Fatalf("instance: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "relais.db")
	if r = relais(t, dir, env, "", "backup", "instance-restore", "--target", target, "--id", inst.ID, "--out", out); r.code != 0 {
		t.Fatalf("instance-restore: %+v", r)
	}
	if b, _ := os.ReadFile(out); !strings.HasPrefix(string(b), "SQLite format 3") {
		t.Fatal("instance-restore did not write an SQLite file")
	}
	// One flipped byte in a chunk: verify names it and exits 1.
	var chunk string
	_ = filepath.WalkDir(bdir, func(p string, d os.DirEntry, err error) error {
		if err == nil && chunk == "" && strings.Contains(p, "/chunks/") && !d.IsDir() {
			chunk = p
		}
		return nil
	})
	b, _ := os.ReadFile(chunk)
	b[len(b)-5] ^= 0x10
	_ = os.WriteFile(chunk, b, 0o600)
	rel, _ := filepath.Rel(bdir, chunk)
	if r = relais(t, dir, env, "", "backup", "verify", "--tenant", "acme", "--target", target); r.code != 1 || !strings.Contains(r.stderr, rel) {
		t.Fatalf("verify after a flipped byte: %+v", r)
	}
}

// TestOperationsRunbook runs the backup runbook of docs/operations.md (the
// ```sh runbook block) as written, with bash, the built relais on the PATH
// and $BACKUPS an empty directory: every step must succeed.
func TestOperationsRunbook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```sh runbook\n")
	if !ok {
		t.Fatal("no ```sh runbook block in docs/operations.md")
	}
	script, _, ok := strings.Cut(rest, "```")
	if !ok || strings.Count(script, "relais backup") < 6 {
		t.Fatalf("runbook block too short:\n%s", script)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "runbook.sh")
	if err := os.WriteFile(path, []byte("set -euo pipefail\nset -x\n"+script), 0o600); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv("BACKUPS="+t.TempDir(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command("bash", path)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the runbook failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "verifies") || !strings.Contains(string(out), "restored tenant") {
		t.Fatalf("unexpected runbook output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "relais-snapshot.db")); err != nil {
		t.Fatalf("instance snapshot not restored: %v", err)
	}
}

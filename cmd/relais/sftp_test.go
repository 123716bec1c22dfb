package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSFTPThroughServe (XFER-1..3): `relais sftp account add` enrols a key
// and a network; `relais serve --sftp-listen` serves it; OpenSSH's sftp
// uploads a CSV that the server imports by itself, and downloads the
// report from /outbox; a wrong key and a password are refused; bad input
// to the command is a usage error that creates nothing.
func TestSFTPThroughServe(t *testing.T) {
	if _, err := exec.LookPath("sftp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("OpenSSH's sftp client is not installed: CI must install openssh-client")
		}
		t.Skip("OpenSSH's sftp client is not installed")
	}
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	keygen := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("ssh-keygen", append([]string{"-q", "-N", "", "-f", p}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
		return p
	}
	key, wrong, weak := keygen("crm", "-t", "ed25519"), keygen("wrong", "-t", "ed25519"), keygen("weak", "-t", "rsa", "-b", "2048")

	for _, bad := range [][]string{
		{"--name", "crm", "--key", key + ".pub"},                                       // no --allow
		{"--name", "crm", "--key", key + ".pub", "--allow", "anywhere"},                // bad network
		{"--name", "crm", "--key", weak + ".pub", "--allow", "127.0.0.1/32"},           // RSA 2048
		{"--name", "crm", "--key", filepath.Join(dir, "nope"), "--allow", "0.0.0.0/0"}, // missing file
		{"--name", "crm", "--key", key + ".pub", "--allow", "127.0.0.1", "--map", "Mail"},
	} {
		r := relais(t, dir, env, "", append([]string{"sftp", "account", "add", "--tenant", "acme"}, bad...)...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "relais: ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%v: exit %d, %q", bad, r.code, r.stderr)
		}
	}
	if r := ok(t, dir, env, "", "sftp", "account", "list", "--tenant", "acme"); strings.Contains(r.stdout, "crm") {
		t.Fatalf("a refused add created an account: %s", r.stdout)
	}
	r := ok(t, dir, env, "", "sftp", "account", "add", "--tenant", "acme", "--name", "crm", "--key", key+".pub",
		"--allow", "127.0.0.1/32,::1", "--map", "Mail=email", "--expires", "90d")
	if !strings.Contains(r.stdout, "log in as acme.crm") || !strings.Contains(r.stdout, "SHA256:") {
		t.Fatalf("add: %s", r.stdout)
	}
	if r := relais(t, dir, env, "", "sftp", "account", "add", "--tenant", "acme", "--name", "crm", "--key", key+".pub", "--allow", "127.0.0.1"); r.code == 0 {
		t.Fatal("duplicate name accepted")
	}

	https, sftpAddr := freePort(t), freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "", "--sftp-listen", sftpAddr)
	waitHealthy(t, srv, "https://"+https)
	_, port, _ := net.SplitHostPort(sftpAddr)
	if err := os.WriteFile(filepath.Join(dir, "c.csv"), []byte("Mail\nalice@example.com\nbob@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(key, batch string, opts ...string) (string, error) {
		bf := filepath.Join(dir, "batch")
		_ = os.WriteFile(bf, []byte(batch), 0o600)
		args := append([]string{"-b", bf, "-F", "/dev/null", "-P", port, "-o", "StrictHostKeyChecking=accept-new",
			"-o", "UserKnownHostsFile=" + filepath.Join(dir, "known_hosts"), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}, opts...)
		if key != "" {
			args = append(args, "-i", key)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sftp", append(args, "acme.crm@127.0.0.1")...)
		cmd.Dir, cmd.Env = dir, []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(key, "put c.csv /inbox/c.csv\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	// The server imports in the background; the report appears in /outbox.
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = run(key, "get /outbox/c.csv.report.json report.json\n"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no report: %v\n%s\n%s", err, out, srv.stderr)
	}
	var rep struct {
		Status string
		Job    struct{ Created int }
	}
	b, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if json.Unmarshal(b, &rep) != nil || rep.Status != "completed" || rep.Job.Created != 2 {
		t.Fatalf("report: %s", b)
	}
	if out, err := run(wrong, "ls /\n"); err == nil {
		t.Fatalf("wrong key accepted: %s", out)
	}
	if out, err := run("", "ls /\n", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"); err == nil {
		t.Fatalf("password accepted: %s", out)
	}
	// An operator delivers a file (restitution, export) to /outbox.
	if err := os.WriteFile(filepath.Join(dir, "export.csv"), []byte("exported\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ok(t, dir, env, "", "sftp", "deliver", "--tenant", "acme", "--file", filepath.Join(dir, "export.csv")); !strings.Contains(r.stdout, "/outbox/export.csv") {
		t.Fatalf("deliver: %s", r.stdout)
	}
	if r := relais(t, dir, env, "", "sftp", "deliver", "--tenant", "acme", "--file", filepath.Join(dir, "export.csv"), "--name", "../x"); r.code != 2 {
		t.Fatalf("deliver under a bad name: %+v", r)
	}
	if r := ok(t, dir, env, "", "sftp", "files", "--tenant", "acme"); !strings.Contains(r.stdout, "export.csv") || !strings.Contains(r.stdout, "c.csv.report.json") {
		t.Fatalf("files: %s", r.stdout)
	}
	if out, err := run(key, "get /outbox/export.csv got.csv\n"); err != nil {
		t.Fatalf("download the delivered file: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "got.csv")); string(b) != "exported\n" {
		t.Fatalf("delivered file read back as %q", b)
	}
	ok(t, dir, env, "", "sftp", "account", "remove", "--tenant", "acme", "--name", "crm")
	if out, err := run(key, "ls /\n"); err == nil {
		t.Fatalf("removed account accepted: %s", out)
	}
}

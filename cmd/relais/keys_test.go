package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	be "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/keys/keystest"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
	"github.com/relais-dev/relais/internal/testkit/transit"
)

// sealedVersions opens the SQLite store in dataDir and counts the key
// versions of every sealed field of the tenant.
func sealedVersions(t *testing.T, dataDir, slug string) map[int]int {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tenantID string
	if err := db.Platform(ctx, func(ptx *store.PlatformTx) error {
		return ptx.QueryRow(ctx, `SELECT id FROM tenants WHERE slug = $1`, slug).Scan(&tenantID)
	}); err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, sc := range tenants.SealedColumns {
		for _, col := range sc.Columns {
			err := db.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
				rs, err := tx.Query(ctx, `SELECT `+col[0]+` FROM `+sc.Table+` WHERE tenant_id = $1`)
				if err != nil {
					return err
				}
				defer rs.Close()
				for rs.Next() {
					var b []byte
					if err := rs.Scan(&b); err != nil {
						return err
					}
					if len(b) == 0 {
						continue
					}
					v, err := keys.KeyVersionOf(b)
					if err != nil {
						return err
					}
					out[v]++
				}
				return rs.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestTenantRotationSurvivesKill9: `relais keys rotate` killed with SIGKILL
// in the middle of the contacts leaves every field readable; run again, it
// resumes and completes, every field is under the new version and decrypts.
func TestTenantRotationSurvivesKill9(t *testing.T) {
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	ok(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "3000")

	cmd := exec.Command(binary, "keys", "rotate", "--tenant", "acme", "--batch-size", "5")
	cmd.Dir, cmd.Env = dir, env
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(errPipe)
	killed := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "progress:") && strings.Contains(sc.Text(), "(contacts)") {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, errPipe) }()
	_ = cmd.Wait()
	if !killed {
		t.Fatal("the rotation finished before it could be killed")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("rotation not killed: %v", cmd.ProcessState)
	}

	dataDir := filepath.Join(dir, "relais-data")
	mid := sealedVersions(t, dataDir, "acme")
	if mid[1] == 0 || mid[2] == 0 {
		t.Fatalf("after kill -9, versions %v: want fields under both v1 and v2", mid)
	}
	st := ok(t, dir, env, "", "keys", "status", "--tenant", "acme")
	if !strings.Contains(st.stdout, "RUNNING") || !strings.Contains(st.stdout, "relais keys rotate --tenant acme") {
		t.Fatalf("status after kill:\n%s", st.stdout)
	}
	// Reads work mid-rotation: the export decrypts every contact.
	out := filepath.Join(dir, "mid.csv")
	ok(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", out)
	if b, _ := os.ReadFile(out); bytes.Count(b, []byte("@")) < 3000 {
		t.Fatalf("export mid-rotation holds %d addresses", bytes.Count(b, []byte("@")))
	}

	r := ok(t, dir, env, "", "keys", "rotate", "--tenant", "acme")
	if !strings.Contains(r.stdout, "rotated to v2") {
		t.Fatalf("resumed rotation: %s", r.stdout)
	}
	if got := sealedVersions(t, dataDir, "acme"); got[1] != 0 || got[2] == 0 {
		t.Fatalf("after the resumed rotation, versions %v", got)
	}
	var status struct {
		Tenants []tenants.KeyStatus `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(ok(t, dir, env, "", "keys", "status", "--json").stdout), &status); err != nil {
		t.Fatal(err)
	}
	if ks := status.Tenants[0]; len(ks.Rotations) != 1 || ks.Rotations[0].State != "done" || ks.Versions[1].State != "active" {
		t.Fatalf("status: %+v", ks)
	}
	out = filepath.Join(dir, "after.csv")
	ok(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", out)
	b, _ := os.ReadFile(out)
	if lines := bytes.Count(b, []byte("\n")); lines != 3001 || bytes.Count(b, []byte("@")) < 3000 {
		t.Fatalf("export after rotation: %d lines", lines)
	}
}

// copyStore copies the SQLite files of a data directory (a file-level
// backup taken while no process runs).
func copyStore(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relais.db", "relais.db-wal"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// keyMaterial returns every form in which the master key and the tenants'
// data keys (and their field subkeys) could leak into text: raw, hex, and
// base64 in its four alphabets. The data keys are unwrapped here by hand,
// following the formats of internal/keys/doc.go.
func keyMaterial(t *testing.T, dataDir string) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	mk, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || len(mk) != 32 {
		t.Fatalf("master key file: %v", err)
	}
	secrets := map[string][]byte{"master key": mk}
	block, _ := aes.NewCipher(mk)
	gcm, _ := cipher.NewGCM(block)
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type row struct {
		tenant  string
		version int
		wrapped []byte
	}
	var rows []row
	err = db.Platform(ctx, func(ptx *store.PlatformTx) error {
		rs, err := ptx.Query(ctx, `SELECT tenant_id, version, wrapped FROM tenant_keys WHERE state <> 'destroyed'`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.tenant, &r.version, &r.wrapped); err != nil {
				return err
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		aad := []byte{0x01}
		aad = append(aad, "relais/tenant-data-key/v1"...)
		aad = be.BigEndian.AppendUint64(aad, uint64(len(r.tenant)))
		aad = append(aad, r.tenant...)
		aad = be.BigEndian.AppendUint32(aad, uint32(r.version))
		dk, err := gcm.Open(nil, r.wrapped[1:13], r.wrapped[13:], aad)
		if err != nil {
			t.Fatalf("unwrap by the documented format: %v", err)
		}
		secrets["data key "+r.tenant] = dk
		for _, info := range []string{"relais/field/v1", "relais/blind-index/v1"} {
			sub, _ := hkdf.Key(sha256.New, dk, nil, info, 32)
			secrets[info+" subkey "+r.tenant] = sub
		}
	}
	if len(secrets) < 4 {
		t.Fatalf("found only %d keys", len(secrets))
	}
	return secrets
}

// leaks reports every key that appears in text in any encoding.
func leaks(text []byte, secrets map[string][]byte) []string {
	var found []string
	for name, k := range secrets {
		for _, form := range []string{string(k), hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)),
			base64.StdEncoding.EncodeToString(k), base64.RawStdEncoding.EncodeToString(k),
			base64.URLEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), string(k[:16])} {
			if bytes.Contains(text, []byte(form)) {
				found = append(found, name)
				break
			}
		}
	}
	return found
}

// TestShreddingEndToEnd: after `relais tenant destroy-keys`, the API answers
// the stable problem "shredded" (410), the CLI says the data is shredded, an
// older backup restored under the restore contract (shredding records
// re-applied) is shredded too, and after a master-key rotation with the
// retired key deleted the backup's ciphertext cannot be decrypted at all.
// Then every log line, CLI output and problem document of the run is
// searched for key material (memory hygiene).
func TestShreddingEndToEnd(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv("RELAIS_KEYS_CACHE_TTL=1s", "RELAIS_LOG_LEVEL=debug")
	var transcript bytes.Buffer
	run := func(args ...string) result {
		t.Helper()
		r := ok(t, dir, env, "", args...)
		transcript.WriteString(r.stdout + r.stderr)
		return r
	}
	runFails := func(code int, want string, args ...string) {
		t.Helper()
		r := relais(t, dir, env, "", args...)
		transcript.WriteString(r.stdout + r.stderr)
		if r.code != code || !strings.Contains(r.stderr, want) {
			t.Fatalf("relais %v: exit %d, stderr %q; want %d and %q", args, r.code, r.stderr, code, want)
		}
	}
	run("tenant", "create", "--name", "Acme", "--slug", "acme")
	run("tenant", "create", "--name", "Beta", "--slug", "beta")
	run("seed", "--tenant", "acme", "--contacts", "40")
	run("seed", "--tenant", "beta", "--contacts", "10")
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(run("client", "create", "--tenant", "acme", "--name", "app", "--role", "editor", "--json").stdout), &cl); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "relais-data")
	secrets := keyMaterial(t, dataDir)
	backupDir, rawBackup := filepath.Join(dir, "backup"), filepath.Join(dir, "raw-backup")
	copyStore(t, dataDir, backupDir)
	copyStore(t, dataDir, rawBackup)

	https := freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	base := "https://" + https
	waitHealthy(t, srv, base)
	client := insecureClient()
	req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cl.ID, cl.Secret)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	var problems bytes.Buffer
	get := func(path string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		problems.Write(b)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return res.StatusCode, m
	}
	if code, _ := get("/api/v1/contacts"); code != 200 {
		t.Fatalf("contacts before shredding: %d", code)
	}
	get("/api/v1/contacts/no-such-id") // a problem document, for the search below

	// Bad input destroys nothing.
	runFails(2, "--confirm is required", "tenant", "destroy-keys", "acme")
	runFails(2, "nothing was destroyed", "tenant", "destroy-keys", "acme", "--confirm", "beta")
	if code, _ := get("/api/v1/contacts"); code != 200 {
		t.Fatalf("contacts after refused destruction: %d", code)
	}
	r := run("tenant", "destroy-keys", "acme", "--confirm", "acme", "--reason", "contract ended")
	if !strings.Contains(r.stdout, "crypto-shredded") {
		t.Fatalf("destroy-keys: %s", r.stdout)
	}
	// The API says so, with a stable code, once the 1 s key cache expires.
	deadline := time.Now().Add(15 * time.Second)
	var code int
	var body map[string]any
	for time.Now().Before(deadline) {
		if code, body = get("/api/v1/contacts"); code == http.StatusGone {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != http.StatusGone || body["code"] != "shredded" || body["type"] != "urn:relais:problem:shredded" {
		t.Fatalf("API after shredding: %d %v", code, body)
	}
	// The CLI too; the other tenant is untouched.
	runFails(1, "crypto-shredded", "contacts", "export", "--tenant", "acme", "--out", filepath.Join(dir, "x.csv"))
	run("contacts", "export", "--tenant", "beta", "--out", filepath.Join(dir, "beta.csv"))
	if st := run("keys", "status", "--tenant", "acme"); !strings.Contains(st.stdout, "SHREDDED") {
		t.Fatalf("status: %s", st.stdout)
	}

	// The older backup, restored: the restore re-applies the shredding
	// records of the live store (the contract in docs/architecture.md).
	ctx := context.Background()
	live, err := store.Open(ctx, store.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := keys.LoadFileKeyring(filepath.Join(dataDir, "master.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	records, err := (&tenants.Service{DB: live, Master: mk}).ShreddingRecords(ctx)
	live.Close()
	if err != nil || len(records) != 1 || records[0].Kind != "tenant" || records[0].Reason != "contract ended" {
		t.Fatalf("shredding records: %+v %v", records, err)
	}
	restored, err := store.Open(ctx, store.Options{DataDir: backupDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restored.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rs := &tenants.Service{DB: restored, Master: mk, Defaults: config.DefaultPolicy()}
	if err := rs.ReapplyShredding(ctx, records); err != nil {
		t.Fatal(err)
	}
	restored.Close()
	restoredEnv := cleanEnv("RELAIS_DATA_DIR="+backupDir, "RELAIS_MASTER_KEY_FILE="+filepath.Join(dataDir, "master.key"))
	if r := relais(t, dir, restoredEnv, "", "contacts", "export", "--tenant", "acme", "--out", filepath.Join(dir, "y.csv")); r.code == 0 || !strings.Contains(r.stderr, "crypto-shredded") {
		t.Fatalf("restored backup after re-applying shredding: %+v", r)
	}

	// The master key rotated and the retired key deleted: the raw backup
	// copy (no restore contract at all) no longer decrypts.
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	_ = srv.cmd.Wait()
	run("keys", "rotate-master")
	retired, _ := filepath.Glob(filepath.Join(dataDir, "master.key.retired-*"))
	if len(retired) != 1 {
		t.Fatalf("retired keys: %v", retired)
	}
	if err := os.Remove(retired[0]); err != nil {
		t.Fatal(err)
	}
	rawEnv := cleanEnv("RELAIS_DATA_DIR="+rawBackup, "RELAIS_MASTER_KEY_FILE="+filepath.Join(dataDir, "master.key"))
	leaked := filepath.Join(dir, "z.csv")
	if r := relais(t, dir, rawEnv, "", "contacts", "export", "--tenant", "acme", "--out", leaked); r.code == 0 || !strings.Contains(r.stderr, "authentication failed") {
		t.Fatalf("raw backup after master rotation: %+v", r)
	}
	if b, _ := os.ReadFile(leaked); bytes.Contains(b, []byte("@")) {
		t.Fatal("the raw backup's contacts were decrypted")
	}
	run("contacts", "export", "--tenant", "beta", "--out", filepath.Join(dir, "beta2.csv")) // live data fine
	// Platform keys were re-wrapped too: audit checkpoints are signed and
	// the server issues tokens without the retired master key.
	run("audit", "checkpoint", "--all")
	srv2 := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	waitHealthy(t, srv2, base)
	req, _ = http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cl.ID, cl.Secret)
	if res, err := client.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("token after master rotation: %v %v\n%s", res, err, srv2.stderr)
	} else {
		res.Body.Close()
	}
	transcript.WriteString(srv2.stderr.String())
	transcript.WriteString(srv.stderr.String())

	// Memory hygiene: no key, in any encoding, in any output of the run.
	all := append(append(transcript.Bytes(), problems.Bytes()...), []byte(srv.stderr.String())...)
	if len(leaks([]byte("x"+base64.StdEncoding.EncodeToString(secrets["master key"])), secrets)) != 1 {
		t.Fatal("the leak search does not find a planted key")
	}
	if found := leaks(all, secrets); len(found) > 0 {
		t.Fatalf("key material found in logs or outputs: %v", found)
	}
	if !strings.Contains(srv.stderr.String(), `"level"`) {
		t.Fatal("no server log captured")
	}
}

// TestCheckSecret: a connector's password is stored encrypted, listed masked,
// and confirmed (or not) by its check value without being shown (DATA-3).
func TestCheckSecret(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	const pw = "correct-horse-battery-staple"
	cfg, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "relais", "password": pw, "from": "news@acme.test"})
	cfgFile := filepath.Join(dir, "smtp.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, dir, env, "", "connector", "add", "--tenant", "acme", "--name", "mail", "--type", "smtp", "--config-file", cfgFile)
	if r := ok(t, dir, env, "", "connector", "list", "--tenant", "acme", "--json"); strings.Contains(r.stdout, pw) {
		t.Fatalf("listed in clear: %s", r.stdout)
	}
	r := ok(t, dir, env, pw+"\n", "keys", "check-secret", "--tenant", "acme", "--connector", "mail", "--field", "password")
	if !strings.Contains(r.stdout, "matches (check value ") || strings.Contains(r.stdout+r.stderr, pw) {
		t.Fatalf("check-secret: %+v", r)
	}
	kcv := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(r.stdout), "the secret matches (check value "), ")")
	bad := fails(t, dir, env, "wrong-password\n", 1, []string{"does NOT match", kcv}, "keys", "check-secret", "--tenant", "acme", "--connector", "mail", "--field", "password")
	if strings.Contains(bad.stderr, pw) || strings.Contains(bad.stderr, "wrong-password") {
		t.Fatalf("a secret in the error: %s", bad.stderr)
	}
	fails(t, dir, env, pw, 2, []string{"--field from", "no secret there"}, "keys", "check-secret", "--tenant", "acme", "--connector", "mail", "--field", "from.x")
	fails(t, dir, env, pw, 2, []string{"--connector"}, "keys", "check-secret", "--tenant", "acme", "--field", "password")
}

// TestPKCS11ProviderCLI: the binary with keys.provider = pkcs11 on a SoftHSM2
// token made here: a tenant's data key is wrapped by its own object on the
// token, rotation and shredding work, and a wrong PIN or a missing token stop
// the command with a clear error.
func TestPKCS11ProviderCLI(t *testing.T) {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("softhsm2 is not installed")
	}
	dir := t.TempDir()
	conf, err := keystest.InitSoftHSM(filepath.Join(dir, "hsm"), "relais", "4321")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"SOFTHSM2_CONF=" + conf, "RELAIS_KEYS_PROVIDER=pkcs11", "RELAIS_KEYS_PKCS11_MODULE=" + keystest.SoftHSMModule}
	env := cleanEnv(append(base, "RELAIS_KEYS_PKCS11_TOKEN_LABEL=relais", "RELAIS_KEYS_PKCS11_PIN=4321")...)
	newTenant(t, dir, env, "acme")
	newTenant(t, dir, env, "beta")
	ok(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "30")
	st := ok(t, dir, env, "", "keys", "status")
	if !strings.Contains(st.stdout, "pkcs11:relais/relais-platform") || !strings.Contains(st.stdout, "provider pkcs11") {
		t.Fatalf("status: %s", st.stdout)
	}
	ok(t, dir, env, "", "keys", "rotate", "--tenant", "acme")
	ok(t, dir, env, "", "keys", "rotate-master")
	ok(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", filepath.Join(dir, "a.csv"))
	ok(t, dir, env, "", "tenant", "destroy-keys", "beta", "--confirm", "beta")
	fails(t, dir, env, "", 1, []string{"crypto-shredded"}, "contacts", "export", "--tenant", "beta", "--out", filepath.Join(dir, "b.csv"))

	wrongPIN := cleanEnv(append(base, "RELAIS_KEYS_PKCS11_TOKEN_LABEL=relais", "RELAIS_KEYS_PKCS11_PIN=9999")...)
	r := fails(t, dir, wrongPIN, "", 1, []string{"wrong PIN"}, "tenant", "list")
	if strings.Contains(r.stderr, "9999") {
		t.Fatal("the PIN is in the error")
	}
	noToken := cleanEnv(append(base, "RELAIS_KEYS_PKCS11_TOKEN_LABEL=other", "RELAIS_KEYS_PKCS11_PIN=4321")...)
	fails(t, dir, noToken, "", 1, []string{`no token labelled "other"`, "softhsm2-util --init-token"}, "tenant", "list")
}

// TestVaultProviderCLI: the binary with keys.provider = vault against the
// transit test double over HTTPS (its CA in keys.vault.ca_file): each tenant
// gets its own transit key, destroy-keys deletes it, a sealed vault stops a
// command with a clear error, and the token never appears in any output.
func TestVaultProviderCLI(t *testing.T) {
	srv := transit.NewTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "vault-ca.pem")
	if err := os.WriteFile(ca, srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv("RELAIS_KEYS_PROVIDER=vault", "RELAIS_KEYS_VAULT_ADDRESS="+srv.URL, "RELAIS_KEYS_VAULT_CA_FILE="+ca,
		"RELAIS_KEYS_VAULT_TOKEN="+srv.Token)
	var out strings.Builder
	keep := func(r result) result { out.WriteString(r.stdout + r.stderr); return r }
	created := decode[map[string]any](t, keep(ok(t, dir, env, "", "tenant", "create", "--name", "Acme", "--slug", "acme", "--json")))
	acmeKey := "relais-tenant-" + created["id"].(string)
	keep(ok(t, dir, env, "", "tenant", "create", "--name", "Beta", "--slug", "beta"))
	keep(ok(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "20"))
	if !srv.HasKey(acmeKey) {
		t.Fatalf("no transit key %s", acmeKey)
	}
	keep(ok(t, dir, env, "", "keys", "rotate-master"))
	if srv.Versions(acmeKey) != 2 {
		t.Fatalf("transit key versions after rotate-master: %d", srv.Versions(acmeKey))
	}
	keep(ok(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", filepath.Join(dir, "a.csv")))
	keep(ok(t, dir, env, "", "tenant", "destroy-keys", "acme", "--confirm", "acme"))
	if srv.HasKey(acmeKey) {
		t.Fatal("the tenant's transit key survived destroy-keys")
	}
	keep(fails(t, dir, env, "", 1, []string{"crypto-shredded"}, "contacts", "export", "--tenant", "acme", "--out", filepath.Join(dir, "b.csv")))
	srv.Sealed.Store(true)
	keep(fails(t, dir, env, "", 1, []string{"sealed"}, "tenant", "list"))
	srv.Sealed.Store(false)
	bad := cleanEnv("RELAIS_KEYS_PROVIDER=vault", "RELAIS_KEYS_VAULT_ADDRESS="+srv.URL, "RELAIS_KEYS_VAULT_TOKEN="+srv.Token)
	keep(fails(t, dir, bad, "", 1, []string{"certificate"}, "tenant", "list")) // not trusted without the CA
	if strings.Contains(out.String(), srv.Token) {
		t.Fatal("the vault token appears in an output")
	}
}

// TestWrongMasterKey: with another master key in place, commands fail with a
// message naming the master key, rotations refuse to start, and nothing is
// lost: the right key back, everything reads.
func TestWrongMasterKey(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	ok(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "10")
	keyFile := filepath.Join(dir, "relais-data", "master.key")
	good, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if _, err := keys.LoadOrCreateFileMasterKey(other); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(other)
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.csv")
	fails(t, dir, env, "", 1, []string{"wrong master key"}, "contacts", "export", "--tenant", "acme", "--out", out)
	fails(t, dir, env, "", 1, []string{"wrong master key", "run the command again"}, "keys", "rotate-master")
	fails(t, dir, env, "", 1, []string{"wrong master key"}, "keys", "rotate", "--tenant", "acme")
	if err := os.WriteFile(keyFile, good, 0o600); err != nil {
		t.Fatal(err)
	}
	// The failed master rotation left a next key: harmless, the data reads.
	ok(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", out)
	if b, _ := os.ReadFile(out); bytes.Count(b, []byte("@")) < 10 {
		t.Fatal("export after restoring the right key is incomplete")
	}
}

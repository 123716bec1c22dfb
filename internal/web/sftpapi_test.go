package web

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/config"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
)

const sftpTestKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"

// TestSFTPAccountsAPI (XFER-1, XFER-2): an administrator adds, reads,
// lists and removes SFTP accounts; bad keys, networks and permissions are
// 422 naming the field; a duplicate name is 409; a manager (no sftp:admin)
// is refused; tenant B does not see tenant A's accounts.
func TestSFTPAccountsAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		svc := &sftpd.Service{DB: db, Tenants: e.ts, Blobs: sftpd.DirBlobs{Root: filepath.Join(t.TempDir(), "sftp")}, Config: config.Default().SFTP}
		e.srv = New(Options{DB: db, Tenants: e.ts, Identity: e.id, Access: e.acc, SFTP: svc, MaxBodyBytes: 64 << 10, ShutdownTimeout: time.Second, Version: "test"})
		admin, _ := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		mgr, _ := e.user(t, e.a.ID, "max@acme.example", "Max Manager", access.RoleManager)
		bAdmin, _ := e.user(t, e.b.ID, "bob@beta.example", "Bob Admin", access.RoleAdmin)
		as, ms, bs := e.session(t, e.a.ID, admin.ID), e.session(t, e.a.ID, mgr.ID), e.session(t, e.b.ID, bAdmin.ID)

		body, _ := json.Marshal(map[string]any{"name": "crm", "keys": []string{sftpTestKey}, "allow": []string{"203.0.113.0/24"},
			"permissions": []string{"upload"}, "import": map[string]any{"mapping": map[string]string{"Mail": "email"}}})
		res, b := e.call(t, as, "POST", "/api/v1/sftp/accounts", string(body))
		admWant(t, "add", res, b, 201, "")
		var a sftpd.Account
		admDecode(t, b, &a)
		if a.Name != "crm" || len(a.Keys) != 1 || !strings.HasPrefix(a.Keys[0].Fingerprint, "SHA256:") || a.Allow[0] != "203.0.113.0/24" {
			t.Fatalf("added %s", b)
		}
		res, b = e.call(t, as, "POST", "/api/v1/sftp/accounts", string(body))
		admWant(t, "duplicate", res, b, 409, problem.CodeConflict)
		for name, bad := range map[string]string{
			"keys[0]":     `{"name":"x1","keys":["ssh-dss AAAA"],"allow":["10.0.0.0/8"]}`,
			"allow":       `{"name":"x2","keys":["` + sftpTestKey + `"],"allow":["everywhere"]}`,
			"permissions": `{"name":"x3","keys":["` + sftpTestKey + `"],"allow":["10.0.0.1"],"permissions":["shell"]}`,
			"name":        `{"name":"../x","keys":["` + sftpTestKey + `"],"allow":["10.0.0.1"]}`,
		} {
			res, b := e.call(t, as, "POST", "/api/v1/sftp/accounts", bad)
			admWant(t, "bad "+name, res, b, 422, problem.CodeValidation)
			if !strings.Contains(string(b), `"field":"`+name+`"`) {
				t.Errorf("bad %s: %s", name, b)
			}
		}
		res, b = e.call(t, as, "GET", "/api/v1/sftp/accounts/crm", "")
		admWant(t, "get", res, b, 200, "")
		res, b = e.call(t, ms, "GET", "/api/v1/sftp/accounts", "")
		admWant(t, "manager", res, b, 403, problem.CodeForbidden)
		res, b = e.call(t, bs, "GET", "/api/v1/sftp/accounts", "")
		admWant(t, "tenant B list", res, b, 200, "")
		if strings.Contains(string(b), "crm") {
			t.Fatalf("tenant B sees A's account: %s", b)
		}
		res, b = e.call(t, bs, "GET", "/api/v1/sftp/accounts/"+a.ID, "")
		admWant(t, "tenant B get", res, b, 404, problem.CodeNotFound)
		res, b = e.call(t, as, "GET", "/api/v1/sftp/files?dir=outbox", "")
		admWant(t, "files", res, b, 200, "")
		res, b = e.call(t, as, "GET", "/api/v1/sftp/files?dir=etc", "")
		admWant(t, "files bad dir", res, b, 422, problem.CodeValidation)
		res, b = e.call(t, as, "DELETE", "/api/v1/sftp/accounts/crm", "")
		admWant(t, "remove", res, b, 204, "")
		res, b = e.call(t, as, "DELETE", "/api/v1/sftp/accounts/crm", "")
		admWant(t, "remove again", res, b, 404, problem.CodeNotFound)
	})
}

package web

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/problem"
)

// TestAuditAPI: an auditor searches the trail with filters and a cursor,
// reads the log's public key and latest checkpoint, verifies the log, and
// exports a period that verifies offline with only that key (and fails
// when altered); each read and export is itself in the trail; bad queries
// are 400; a viewer is refused; tenant B sees only its own log.
func TestAuditAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		e := newAdminEnv(t, db)
		admin, _ := e.user(t, e.a.ID, "alice@acme.example", "Alice Admin", access.RoleAdmin)
		aud, _ := e.user(t, e.a.ID, "audrey@acme.example", "Audrey Auditor", access.RoleAuditor)
		viewer, _ := e.user(t, e.a.ID, "vic@acme.example", "Vic Viewer", access.RoleViewer)
		as := e.session(t, e.a.ID, admin.ID)
		au := e.session(t, e.a.ID, aud.ID)
		for i := 0; i < 3; i++ {
			res, body := e.call(t, as, "POST", "/api/v1/users/"+viewer.ID+"/disable", "")
			admWant(t, "disable", res, body, 200, "")
			res, body = e.call(t, as, "POST", "/api/v1/users/"+viewer.ID+"/enable", "")
			admWant(t, "enable", res, body, 200, "")
		}

		// Search: filters and pages, newest first.
		var page audit.Page
		res, body := e.call(t, au, "GET", "/api/v1/audit/events?action=user.disable&actor_id="+admin.ID+"&limit=2", "")
		admWant(t, "search", res, body, 200, "")
		admDecode(t, body, &page)
		if len(page.Events) != 2 || page.Next == "" || page.Events[0].Action != "user.disable" || page.Events[0].Seq <= page.Events[1].Seq {
			t.Fatalf("first page: %s", body)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/events?action=user.disable&actor_id="+admin.ID+"&limit=2&cursor="+page.Next, "")
		admWant(t, "next page", res, body, 200, "")
		page = audit.Page{}
		admDecode(t, body, &page)
		if len(page.Events) != 1 || page.Next != "" {
			t.Fatalf("second page: %s", body)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/events?action=user.*&from=2000-01-01&to="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), "")
		admWant(t, "prefix and period", res, body, 200, "")
		admDecode(t, body, &page)
		if len(page.Events) < 6 {
			t.Fatalf("user.* events: %d", len(page.Events))
		}
		for _, q := range []string{"bogus=1", "from=yesterday", "limit=0", "limit=5000", "cursor=x", "outcome=a%27b", "from=2025-02-01&to=2025-01-01", "action=a&action=b"} {
			res, body := e.call(t, au, "GET", "/api/v1/audit/events?"+q, "")
			admWant(t, "bad query "+q, res, body, 400, problem.CodeValidation)
		}
		vs := e.session(t, e.a.ID, viewer.ID)
		for _, path := range []string{"/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/audit/pubkey", "/api/v1/audit/checkpoint"} {
			res, body := e.call(t, vs, "GET", path, "")
			admWant(t, "viewer "+path, res, body, 403, problem.CodeForbidden)
		}

		// Key, checkpoint, verification.
		var pk struct{ Key, Origin string }
		res, body = e.call(t, au, "GET", "/api/v1/audit/pubkey", "")
		admWant(t, "pubkey", res, body, 200, "")
		admDecode(t, body, &pk)
		if pk.Origin != "relais-audit/"+e.a.ID || !strings.HasPrefix(pk.Key, pk.Origin+"+") {
			t.Fatalf("pubkey: %s", body)
		}
		var cp audit.Checkpoint
		res, body = e.call(t, au, "GET", "/api/v1/audit/checkpoint", "")
		admWant(t, "checkpoint", res, body, 200, "")
		admDecode(t, body, &cp)
		if _, size, _, err := audit.OpenCheckpoint([]byte(cp.Note), pk.Key); err != nil || size != cp.Size || size < 10 {
			t.Fatalf("checkpoint %+v: %v", cp, err)
		}
		var rep audit.Report
		res, body = e.call(t, au, "GET", "/api/v1/audit/verify", "")
		admWant(t, "verify", res, body, 200, "")
		admDecode(t, body, &rep)
		if !rep.OK || rep.Checkpoints != 1 || !rep.KeyAuthenticated {
			t.Fatalf("verify: %s", body)
		}

		// Export: streamed JSON Lines that verify offline.
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?from=2000-01-01", "")
		admWant(t, "export", res, body, 200, "")
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jsonl") || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export headers: %v", res.Header)
		}
		er, err := audit.VerifyExport(bytes.NewReader(body), pk.Key)
		if err != nil || er.TenantID != e.a.ID || er.FirstSeq != 1 || er.Events < 10 {
			t.Fatalf("export: %+v %v", er, err)
		}
		altered := bytes.Replace(body, []byte(`"user.disable"`), []byte(`"user.enable"`), 1)
		if _, err := audit.VerifyExport(bytes.NewReader(altered), pk.Key); err == nil || !strings.Contains(err.Error(), "was altered") {
			t.Fatalf("altered export: %v", err)
		}
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?to=2000-01-01&from=2001-01-01", "")
		admWant(t, "export with to before from", res, body, 400, problem.CodeValidation)
		res, body = e.call(t, au, "GET", "/api/v1/audit/export?page=2", "")
		admWant(t, "export with an unknown parameter", res, body, 400, problem.CodeValidation)

		// Reading the trail is in the trail.
		counts := map[string]int{}
		for _, r := range admAudit(t, db, e.a.ID) {
			if r.ActorID == aud.ID {
				counts[r.Category+" "+r.Action]++
			}
		}
		if counts["access audit.search"] != 3 || counts["export audit.export"] != 1 || counts["access audit.verify"] != 1 {
			t.Fatalf("the auditor's reads recorded: %v", counts)
		}

		// Tenant B's auditor sees B's log only.
		bAud, _ := e.user(t, e.b.ID, "bert@beta.example", "Bert Auditor", access.RoleAuditor)
		bs := e.session(t, e.b.ID, bAud.ID)
		res, body = e.call(t, bs, "GET", "/api/v1/audit/export", "")
		admWant(t, "B export", res, body, 200, "")
		if bytes.Contains(body, []byte(e.a.ID)) || bytes.Contains(body, []byte(admin.ID)) {
			t.Fatalf("B's export shows A's log")
		}
		res, body = e.call(t, bs, "GET", "/api/v1/audit/events?actor_id="+admin.ID, "")
		admWant(t, "B searches for A's admin", res, body, 200, "")
		page = audit.Page{}
		admDecode(t, body, &page)
		if len(page.Events) != 0 {
			t.Fatalf("B sees A's events: %s", body)
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/app"
	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// Passwords for the tests. Each accepted one costs a PBKDF2 hash (600,000
// iterations), so the tests set few of them.
const (
	pw16 = "Correct-Horse-42"           // 16 characters, 4 classes: fine for a user, too short for an admin
	pw24 = "Staple-Battery-Horse-2024!" // long enough for a privileged account
)

// ok runs relais and fails the test unless it exits 0.
func ok(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	r := relais(t, dir, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("relais %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs relais and checks it exits with code, printing one
// `relais: ...` error line (after any report lines) that contains every want.
func fails(t *testing.T, dir string, env []string, stdin string, code int, want []string, args ...string) result {
	t.Helper()
	r := relais(t, dir, env, stdin, args...)
	if r.code != code {
		t.Fatalf("relais %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "relais: ") || strings.Count(r.stderr, "relais: ") != 1 {
		t.Errorf("relais %s: the error is not one `relais: ...` line: %q", strings.Join(args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("relais %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("--json output does not decode into %T: %v\n%s", v, err, r.stdout)
	}
	return v
}

// listedUser is the part of `user list --json` the tests read.
type listedUser struct {
	ID                 string   `json:"id"`
	Email              string   `json:"email"`
	Name               string   `json:"name"`
	Status             string   `json:"status"`
	Locked             bool     `json:"locked"`
	TOTPEnabled        bool     `json:"totp_enabled"`
	HasPassword        bool     `json:"has_password"`
	MustChangePassword bool     `json:"must_change_password"`
	Roles              []string `json:"roles"`
	Groups             []string `json:"groups"`
	GroupRoles         []string `json:"group_roles"`
}

func users(t *testing.T, dir string, env []string, tenant string) map[string]listedUser {
	t.Helper()
	out := map[string]listedUser{}
	for _, u := range decode[[]listedUser](t, ok(t, dir, env, "", "user", "list", "--tenant", tenant, "--json")) {
		out[u.Email] = u
	}
	return out
}

func newTenant(t *testing.T, dir string, env []string, slug string, extra ...string) result {
	t.Helper()
	return ok(t, dir, env, "", append([]string{"tenant", "create", "--name", strings.ToUpper(slug), "--slug", slug}, extra...)...)
}

// TestUserCreate: an initial password from stdin must meet the policy
// (weak ones refused with the policy's reasons, nothing created), and the
// 20-character rule applies to whoever would hold an administrative
// permission, by built-in or custom role; without a password an enrolment
// secret is printed; roles are checked before anything is created.
func TestUserCreate(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")

	// A weak password: every broken rule is named; nothing is created.
	fails(t, dir, env, "short\n", 1, []string{"password rejected", "at least 12 characters", "mix at least 3", "meets the tenant's policy"},
		"user", "create", "--tenant", "acme", "--email", "weak@acme.test", "--role", "editor", "--password-stdin")
	// 16 characters is enough for an editor, not for an admin...
	fails(t, dir, env, pw16, 1, []string{"at least 20 characters long for a privileged account"},
		"user", "create", "--tenant", "acme", "--email", "root@acme.test", "--role", "admin", "--password-stdin")
	// ...nor for a custom role that carries one administrative permission.
	ok(t, dir, env, "", "role", "create", "--tenant", "acme", "--name", "helpdesk", "--permission", "users:read,users:admin")
	fails(t, dir, env, pw16, 1, []string{"at least 20 characters long for a privileged account"},
		"user", "create", "--tenant", "acme", "--email", "desk@acme.test", "--role", "viewer", "--role", "helpdesk", "--password-stdin")
	if got := users(t, dir, env, "acme"); len(got) != 0 {
		t.Fatalf("refused users were created: %v", got)
	}
	r := ok(t, dir, env, pw16+"\n", "user", "create", "--tenant", "acme", "--email", "Bob@Acme.test", "--name", "Bob", "--role", "editor", "--password-stdin", "--json")
	bob := decode[map[string]any](t, r)
	if bob["email"] != "bob@acme.test" || bob["must_change_password"] != true || bob["has_password"] != true || bob["enrolment_token"] != nil {
		t.Fatalf("user create --password-stdin: %s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, pw16) {
		t.Fatal("the password was echoed")
	}

	// Without a password: a one-time enrolment secret and what to do with it.
	r = ok(t, dir, env, "", "user", "create", "--tenant", "acme", "--email", "carol@acme.test", "--role", "viewer")
	if !strings.Contains(r.stdout, "rse_") || !strings.Contains(r.stdout, "POST /api/v1/auth/enrol") || !strings.Contains(r.stdout, "shown once") {
		t.Fatalf("no enrolment secret and instruction:\n%s", r.stdout)
	}
	r = ok(t, dir, env, "", "user", "create", "--tenant", "acme", "--email", "dan@acme.test", "--role", "viewer", "--role", "auditor", "--json")
	dan := decode[createdUser](t, r)
	if !strings.HasPrefix(dan.EnrolmentToken, "rse_") || dan.EnrolmentExpiresAt == nil || dan.HasPassword || len(dan.Roles) != 2 {
		t.Fatalf("user create --json: %s", r.stdout)
	}

	// Unknown role: refused before anything is created.
	fails(t, dir, env, "", 1, []string{`unknown role "ghost"`, "nothing was created", "relais role list --tenant acme"},
		"user", "create", "--tenant", "acme", "--email", "eve@acme.test", "--role", "viewer", "--role", "ghost")
	fails(t, dir, env, "", 1, []string{"already exists", "relais user list --tenant acme"},
		"user", "create", "--tenant", "acme", "--email", "BOB@acme.test", "--role", "viewer")
	fails(t, dir, env, "", 1, []string{"--email: must be a plain email address"},
		"user", "create", "--tenant", "acme", "--email", "eve at acme", "--role", "viewer")
	fails(t, dir, env, "", 1, []string{"--password-stdin: standard input is empty"},
		"user", "create", "--tenant", "acme", "--email", "eve@acme.test", "--role", "viewer", "--password-stdin")

	got := users(t, dir, env, "acme")
	if len(got) != 3 || got["eve@acme.test"].ID != "" {
		t.Fatalf("users after the refusals: %v", got)
	}
	if b := got["bob@acme.test"]; b.Name != "Bob" || strings.Join(b.Roles, ",") != "editor" || !b.MustChangePassword {
		t.Fatalf("bob listed as %+v", b)
	}
	if d := got["dan@acme.test"]; strings.Join(d.Roles, ",") != "auditor,viewer" || d.HasPassword {
		t.Fatalf("dan listed as %+v", d)
	}
	r = ok(t, dir, env, "", "user", "list", "--tenant", "acme")
	for _, w := range []string{"EMAIL", "LAST LOGIN", "bob@acme.test", "never", "auditor, viewer"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("user list lacks %q:\n%s", w, r.stdout)
		}
	}
}

// TestUserCommandsBadInput: every mistake is one line saying what to do;
// usage mistakes exit 2 and touch nothing.
func TestUserCommandsBadInput(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"user", "create", "--tenant", "acme", "--email", "a@acme.test"}, 2, "--role is required"},
		{[]string{"user", "create", "--email", "a@acme.test"}, 2, "--tenant and --role are required"},
		{[]string{"user", "list"}, 2, "--tenant is required"},
		{[]string{"user", "unlock", "--tenant", "acme"}, 2, "--email is required"},
		{[]string{"user", "list", "--tenant", "acme", "--bogus"}, 2, "relais user list --help"},
		{[]string{"user", "import", "--tenant", "acme"}, 2, "give the CSV file"},
		{[]string{"client", "create", "--tenant", "acme", "--name", "ci"}, 2, "--role is required"},
		{[]string{"role", "grant", "--tenant", "acme", "--role", "viewer"}, 2, "either --email or --client"},
		{[]string{"group", "add-member", "--tenant", "acme", "--group", "g"}, 2, "--email is required"},
		{[]string{"access", "review"}, 2, "--tenant is required"},
		{[]string{"tenant", "create", "--name", "A", "--slug", "a1", "--admin-password-stdin"}, 2, "need --admin-email"},
	}
	for _, tc := range cases {
		fails(t, dir, env, "", tc.code, []string{tc.want}, tc.args...)
	}
	if _, err := os.Stat(filepath.Join(dir, "relais-data")); !os.IsNotExist(err) {
		t.Fatal("a usage error created the data directory")
	}
	newTenant(t, dir, env, "acme")
	fails(t, dir, env, "", 1, []string{`tenant not found: "ghost"`, "relais tenant list"}, "user", "list", "--tenant", "ghost")
	fails(t, dir, env, "", 1, []string{"no user nobody@acme.test in tenant acme", "relais user list --tenant acme"},
		"user", "disable", "--tenant", "acme", "--email", "nobody@acme.test")
	fails(t, dir, env, "", 1, []string{"no API client", "relais client list --tenant acme"}, "client", "disable", "--tenant", "acme", "--id", "rlc_x.y")
	fails(t, dir, env, "", 1, []string{`unknown permission "lists:burn"`, "relais role permissions"},
		"role", "create", "--tenant", "acme", "--name", "x", "--permission", "lists:burn")
	fails(t, dir, env, "", 1, []string{`no group "ghosts"`, "relais group list --tenant acme"},
		"group", "add-role", "--tenant", "acme", "--group", "ghosts", "--role", "viewer")
}

// TestUserLifecycleOverHTTPS proves the secrets and states the CLI sets
// against the running server: an enrolment secret sets a first password; a
// client secret gets a token at /oauth2/token until the client is disabled;
// a user locked by failed sign-ins signs in again after `user unlock`; and
// `user disable` kills its live session at once (ACC-5).
func TestUserLifecycleOverHTTPS(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	ok(t, dir, env, pw16, "user", "create", "--tenant", "acme", "--email", "bob@acme.test", "--role", "editor", "--password-stdin")
	erin := decode[createdUser](t, ok(t, dir, env, "", "user", "create", "--tenant", "acme", "--email", "erin@acme.test", "--role", "viewer", "--json"))
	cl := decode[map[string]any](t, ok(t, dir, env, "", "client", "create", "--tenant", "acme", "--name", "ci", "--role", "editor", "--json"))
	clientID, secret := cl["client_id"].(string), cl["client_secret"].(string)

	https := freePort(t)
	srv := startServe(t, dir, env, "--listen", https, "--metrics-listen", "")
	base := "https://" + https
	waitHealthy(t, srv, base)
	hc := insecureClient()
	post := func(path string, body any) *http.Response {
		t.Helper()
		b, _ := json.Marshal(body)
		res, err := hc.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	login := func(email, pw string) *http.Response {
		t.Helper()
		return post("/api/v1/auth/login", map[string]string{"tenant": "acme", "email": email, "password": pw})
	}

	// The enrolment secret sets a first password, once.
	if res := post("/api/v1/auth/enrol", map[string]string{"token": erin.EnrolmentToken, "password": pw16}); res.StatusCode != 200 {
		t.Fatalf("enrol with the printed secret: %d", res.StatusCode)
	}
	if res := login("erin@acme.test", pw16); res.StatusCode != 200 {
		t.Fatalf("sign-in after enrolment: %d", res.StatusCode)
	}

	// The client secret works, until the client is disabled.
	token := func() int {
		req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, secret)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := token(); code != 200 {
		t.Fatalf("token with the printed client secret: %d", code)
	}
	ok(t, dir, env, "", "client", "disable", "--tenant", "acme", "--id", clientID)
	if code := token(); code != 401 {
		t.Fatalf("token for a disabled client: %d", code)
	}

	// Failed sign-ins lock bob; `user unlock` lets him in again.
	locked := false
	for i := 0; i < 8 && !locked; i++ {
		locked = login("bob@acme.test", "Wrong-Password-123").StatusCode == http.StatusLocked
	}
	if !locked || login("bob@acme.test", pw16).StatusCode != http.StatusLocked {
		t.Fatal("bob was not locked by failed sign-ins")
	}
	if !users(t, dir, env, "acme")["bob@acme.test"].Locked {
		t.Fatal("user list does not show bob locked")
	}
	if r := ok(t, dir, env, "", "user", "unlock", "--tenant", "acme", "--email", "bob@acme.test"); !strings.Contains(r.stdout, "is unlocked") {
		t.Fatalf("unlock: %s", r.stdout)
	}
	res := login("bob@acme.test", pw16)
	if res.StatusCode != 200 {
		t.Fatalf("sign-in after unlock: %d", res.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "__Host-relais_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	me := func() int {
		req, _ := http.NewRequest("GET", base+"/api/v1/me", nil)
		req.AddCookie(session)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := me(); code != 200 {
		t.Fatalf("GET /api/v1/me with bob's session: %d", code)
	}

	// Disabling revokes the live session at once, and sign-in fails.
	r := ok(t, dir, env, "", "user", "disable", "--tenant", "acme", "--email", "bob@acme.test")
	if !strings.Contains(r.stdout, "sessions and API tokens are revoked") {
		t.Fatalf("disable: %s", r.stdout)
	}
	if code := me(); code != 401 {
		t.Fatalf("bob's session after disable: %d", code)
	}
	if code := login("bob@acme.test", pw16).StatusCode; code != 401 {
		t.Fatalf("sign-in of a disabled user: %d", code)
	}
	if u := users(t, dir, env, "acme")["bob@acme.test"]; u.Status != "disabled" {
		t.Fatalf("bob after disable: %+v", u)
	}
	ok(t, dir, env, "", "user", "enable", "--tenant", "acme", "--email", "bob@acme.test")
	if u := users(t, dir, env, "acme")["bob@acme.test"]; u.Status != "active" {
		t.Fatalf("bob after enable: %+v", u)
	}
	r = ok(t, dir, env, "", "user", "reset-totp", "--tenant", "acme", "--email", "bob@acme.test")
	if !strings.Contains(r.stdout, "second factor of bob@acme.test removed") {
		t.Fatalf("reset-totp: %s", r.stdout)
	}
}

func writeFile(t *testing.T, dir, name string, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUserImport: all or nothing. A file with bad lines is reported line by
// line and column by column and creates nothing; a dry run creates
// nothing; a good file creates its users with roles and groups and prints
// their enrolment secrets as CSV; BOM, ';' separators and CRLF are
// accepted; oversized files are refused whole.
func TestUserImport(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	ok(t, dir, env, "", "group", "create", "--tenant", "acme", "--name", "sales")
	ok(t, dir, env, "", "group", "add-role", "--tenant", "acme", "--group", "sales", "--role", "editor")
	ok(t, dir, env, "", "user", "create", "--tenant", "acme", "--email", "old@acme.test", "--role", "viewer")
	before := users(t, dir, env, "acme")

	// Two bad lines among good ones: both reported, nothing created.
	bad := writeFile(t, dir, "bad.csv", "email,name,groups,roles\n"+
		"alice@acme.test,Alice,sales,viewer\n"+
		"not-an-email,Bob,sales,viewer\n"+
		"carol@acme.test,Carol,,admin\n"+
		"dave@acme.test,Dave,sales,superuser\n")
	r := fails(t, dir, env, "", 1, []string{
		"bad.csv: line 3, column 1 (email): must be a plain email address",
		`bad.csv: line 5, column 4 (roles): unknown role "superuser"`,
		"2 line(s) are wrong", "nothing was created",
	}, "user", "import", "--tenant", "acme", bad)
	if strings.Contains(r.stderr, "line 2") || strings.Contains(r.stderr, "line 4") {
		t.Errorf("good lines reported: %s", r.stderr)
	}
	r = fails(t, dir, env, "", 1, nil, "user", "import", "--tenant", "acme", bad, "--json")
	report := decode[struct {
		Valid  bool          `json:"valid"`
		Errors []importIssue `json:"errors"`
	}](t, r)
	if report.Valid || len(report.Errors) != 2 || report.Errors[0].Line != 3 || report.Errors[0].Field != "email" ||
		report.Errors[1].Line != 5 || report.Errors[1].Column != 4 {
		t.Fatalf("JSON report: %s", r.stdout)
	}
	if got := users(t, dir, env, "acme"); len(got) != len(before) {
		t.Fatalf("a refused import created users: %v", got)
	}

	// Duplicates in the file and against the tenant; groups that do not exist.
	dup := writeFile(t, dir, "dup.csv", "email,roles,groups\n"+
		"alice@acme.test,viewer,\n"+
		"ALICE@acme.test,viewer,\n"+
		"old@acme.test,viewer,\n"+
		"erin@acme.test,viewer,support\n")
	fails(t, dir, env, "", 1, []string{
		"line 3, column 1 (email): duplicate: the same email is on line 2",
		"line 4, column 1 (email): a user with this email already exists in tenant acme",
		`line 5, column 3 (groups): no group "support"`, "--create-groups",
	}, "user", "import", "--tenant", "acme", dup)

	good := writeFile(t, dir, "good.csv", "email,name,groups,roles\n"+
		"alice@acme.test,Alice,sales,viewer\n"+
		`bob@acme.test,"Bob, Jr",sales;support,auditor|viewer`+"\n"+
		"\n"+
		"carol@acme.test,Carol,,admin\n")
	// A dry run validates and reports, and creates nothing.
	r = ok(t, dir, env, "", "user", "import", "--tenant", "acme", good, "--create-groups", "--dry-run")
	for _, w := range []string{"3 user(s) would be created", "nothing was created", "groups that would be created: support", "bob@acme.test"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, r.stdout)
		}
	}
	if got := users(t, dir, env, "acme"); len(got) != len(before) {
		t.Fatalf("a dry run created users: %v", got)
	}
	if strings.Contains(ok(t, dir, env, "", "group", "list", "--tenant", "acme").stdout, "support") {
		t.Fatal("a dry run created a group")
	}

	// The import: enrolment secrets as CSV, users with their roles and groups.
	r = ok(t, dir, env, "", "user", "import", "--tenant", "acme", good, "--create-groups")
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(recs) != 4 || strings.Join(recs[0], ",") != "email,enrolment_token" {
		t.Fatalf("import output is not the enrolment CSV: %v\n%s", err, r.stdout)
	}
	for _, rec := range recs[1:] {
		if !strings.HasPrefix(rec[1], "rse_") {
			t.Fatalf("no enrolment secret for %s: %q", rec[0], rec[1])
		}
	}
	if !strings.Contains(r.stderr, "created 3 user(s) and 1 group(s) (support)") || !strings.Contains(r.stderr, "/api/v1/auth/enrol") {
		t.Errorf("import summary: %s", r.stderr)
	}
	got := users(t, dir, env, "acme")
	if a := got["alice@acme.test"]; a.Name != "Alice" || strings.Join(a.Roles, ",") != "viewer" ||
		strings.Join(a.Groups, ",") != "sales" || strings.Join(a.GroupRoles, ",") != "sales -> editor" {
		t.Errorf("alice: %+v", a)
	}
	if b := got["bob@acme.test"]; b.Name != "Bob, Jr" || strings.Join(b.Roles, ",") != "auditor,viewer" || strings.Join(b.Groups, ",") != "sales,support" {
		t.Errorf("bob: %+v", b)
	}
	if c := got["carol@acme.test"]; strings.Join(c.Roles, ",") != "admin" || len(c.Groups) != 0 {
		t.Errorf("carol: %+v", c)
	}
	// Importing the same file again: every line already exists.
	fails(t, dir, env, "", 1, []string{"line 2, column 1 (email): a user with this email already exists", "line 5, column 1"},
		"user", "import", "--tenant", "acme", good)

	// BOM, ';' between columns, '|' between roles, CRLF, columns in another
	// order, from standard input, with --json.
	semi := "\xef\xbb\xbfRoles;Email;Name\r\nviewer|editor;gina@acme.test;Gina Müller\r\n"
	r = ok(t, dir, env, semi, "user", "import", "--tenant", "acme", "-", "--json")
	out := decode[struct {
		Created []importedUser `json:"created"`
	}](t, r)
	if len(out.Created) != 1 || out.Created[0].Email != "gina@acme.test" || !strings.HasPrefix(out.Created[0].EnrolmentToken, "rse_") {
		t.Fatalf("BOM/semicolon import: %s", r.stdout)
	}
	if g := users(t, dir, env, "acme")["gina@acme.test"]; g.Name != "Gina Müller" || strings.Join(g.Roles, ",") != "editor,viewer" {
		t.Fatalf("gina: %+v", g)
	}
	// With ';' between columns, roles joined by ';' give extra fields.
	fails(t, dir, env, "email;roles\nhal@acme.test;viewer;editor\n", 1, []string{"line 2: has 3 fields, the header has 2", "separate groups and roles with |"},
		"user", "import", "--tenant", "acme", "-")

	// Files that are refused whole.
	fails(t, dir, env, "", 1, []string{`unknown column "mail"`, "email, name, groups and roles"},
		"user", "import", "--tenant", "acme", writeFile(t, dir, "hdr.csv", "mail,name\nx@acme.test,X\n"))
	fails(t, dir, env, "", 1, []string{"line 2 is not valid UTF-8"},
		"user", "import", "--tenant", "acme", writeFile(t, dir, "latin1.csv", "email,name\nx@acme.test,M\xfcller\n"))
	var many strings.Builder
	many.WriteString("email\n")
	for i := range maxImportRows + 1 {
		fmt.Fprintf(&many, "u%d@acme.test\n", i)
	}
	fails(t, dir, env, "", 1, []string{"more than 10000 users", "split it"},
		"user", "import", "--tenant", "acme", writeFile(t, dir, "many.csv", many.String()))
	big := filepath.Join(dir, "big.csv")
	if err := os.WriteFile(big, append([]byte("email\n"), bytes.Repeat([]byte("a"), maxImportBytes)...), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, dir, env, "", 1, []string{"larger than 10 MB"}, "user", "import", "--tenant", "acme", big)
	fails(t, dir, env, "", 1, []string{"cannot open nope.csv", "check the path"}, "user", "import", "--tenant", "acme", "nope.csv")
	if got := users(t, dir, env, "acme"); len(got) != 5 {
		t.Fatalf("refused files changed the users: %d users", len(got))
	}
}

// TestImportUndoesAPartialImport: when a step fails after validation (here
// a role deleted between the check and the grants, as a concurrent change
// would), every user created so far is disabled and stripped of its roles
// and groups, and the groups the import created are deleted. Run in
// process: the binary offers no way to interleave a change.
func TestImportUndoesAPartialImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := app.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.DatabaseURL = t.TempDir(), ""
	a, err := app.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ten, err := a.Tenants.Create(ctx, "Acme", "acme")
	if err != nil {
		t.Fatal(err)
	}
	tc := &tenantCtx{ctx: operatorContext(ctx), a: a, t: ten}
	temp, err := a.Access.CreateRole(ctx, ten.ID, operatorActor, "temp", "", []access.Permission{access.ListsRead})
	if err != nil {
		t.Fatal(err)
	}
	f, issues, err := parseImport("users.csv", []byte("email,groups,roles\n"+
		"a@acme.test,newgroup,viewer\n"+
		"b@acme.test,newgroup,editor\n"+
		"c@acme.test,newgroup,viewer;temp\n"+
		"d@acme.test,,viewer\n"))
	if err != nil || len(issues) != 0 {
		t.Fatal(err, issues)
	}
	plans, newGroups, issues, err := tc.validateImport(f, true)
	if err != nil || len(issues) != 0 || len(plans) != 4 {
		t.Fatal(err, issues)
	}
	if err := a.Access.DeleteRole(ctx, ten.ID, operatorActor, temp.ID); err != nil {
		t.Fatal(err)
	}
	created, err := tc.runImport(plans, newGroups, io.Discard)
	var fe *importFailure
	if !errors.As(err, &fe) || created != nil {
		t.Fatalf("runImport: %v", err)
	}
	if fe.line != 4 || len(fe.undone) != 3 || len(fe.stuck) != 0 || len(fe.groupsRm) != 1 ||
		!strings.Contains(err.Error(), "import stopped at line 4") || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("failure report: %v", err)
	}
	us, err := a.Identity.ListUsers(ctx, ten.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 3 {
		t.Fatalf("%d users exist, want the 3 created before the failure", len(us))
	}
	for _, u := range us {
		if u.Status != identity.StatusDisabled {
			t.Errorf("%s is %s after the undo", u.Email, u.Status)
		}
	}
	review, err := a.Access.Review(ctx, ten.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range review {
		if len(e.Permissions) != 0 {
			t.Errorf("%s still holds %v", e.ID, e.Permissions)
		}
	}
	if gs, err := a.Access.ListGroups(ctx, ten.ID); err != nil || len(gs) != 0 {
		t.Fatalf("groups after the undo: %v %v", gs, err)
	}
}

// TestClientCommands: client create --json gives the id and the secret
// (rlk_, once: never in the listing); roles are checked first; a client's
// roles can be revoked; disable and enable.
func TestClientCommands(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	fails(t, dir, env, "", 1, []string{`unknown role "ghost"`}, "client", "create", "--tenant", "acme", "--name", "ci", "--role", "ghost")
	fails(t, dir, env, "", 1, []string{"--allow", "not a CIDR"}, "client", "create", "--tenant", "acme", "--name", "ci", "--role", "editor", "--allow", "10.0.0.300/8")
	if r := ok(t, dir, env, "", "client", "list", "--tenant", "acme", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("refused clients were created: %s", r.stdout)
	}
	r := ok(t, dir, env, "", "client", "create", "--tenant", "acme", "--name", "ci", "--role", "editor", "--allow", "10.0.0.0/8", "--json")
	cl := decode[map[string]any](t, r)
	id, secret := cl["client_id"].(string), cl["client_secret"].(string)
	if !strings.HasPrefix(id, "rlc_") || !strings.HasPrefix(secret, "rlk_") {
		t.Fatalf("client create --json: %s", r.stdout)
	}
	fails(t, dir, env, "", 1, []string{"already exists", "--name"}, "client", "create", "--tenant", "acme", "--name", "ci", "--role", "viewer")
	r = ok(t, dir, env, "", "client", "list", "--tenant", "acme")
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "editor") || !strings.Contains(r.stdout, "10.0.0.0/8") || strings.Contains(r.stdout, secret) {
		t.Fatalf("client list:\n%s", r.stdout)
	}
	listed := func() clientView {
		vs := decode[[]clientView](t, ok(t, dir, env, "", "client", "list", "--tenant", "acme", "--json"))
		if len(vs) != 1 {
			t.Fatalf("%d clients", len(vs))
		}
		return vs[0]
	}
	ok(t, dir, env, "", "role", "revoke", "--tenant", "acme", "--client", id, "--role", "editor")
	ok(t, dir, env, "", "client", "disable", "--tenant", "acme", "--id", id)
	if v := listed(); v.Status != "disabled" || len(v.Roles) != 0 {
		t.Fatalf("after revoke and disable: %+v", v)
	}
	ok(t, dir, env, "", "role", "grant", "--tenant", "acme", "--client", id, "--role", "viewer")
	ok(t, dir, env, "", "client", "enable", "--tenant", "acme", "--id", id)
	if v := listed(); v.Status != "active" || strings.Join(v.Roles, ",") != "viewer" {
		t.Fatalf("after grant and enable: %+v", v)
	}
}

// TestRolesAndGroups: custom roles, direct grants and group paths, as the
// listings and the access review show them.
func TestRolesAndGroups(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	newTenant(t, dir, env, "acme")
	if r := ok(t, dir, env, "", "role", "permissions"); !strings.Contains(r.stdout, "users:admin") {
		t.Fatalf("role permissions:\n%s", r.stdout)
	}
	ok(t, dir, env, "", "role", "create", "--tenant", "acme", "--name", "list keeper", "--permission", "lists:read", "--permission", "lists:write")
	fails(t, dir, env, "", 1, []string{"already exists"}, "role", "create", "--tenant", "acme", "--name", "List Keeper", "--permission", "lists:read")
	r := ok(t, dir, env, "", "role", "list", "--tenant", "acme")
	for _, w := range []string{"admin (built-in)", "permissions: all 28", "list keeper (custom)", "lists:read, lists:write"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("role list lacks %q:\n%s", w, r.stdout)
		}
	}
	ok(t, dir, env, "", "user", "create", "--tenant", "acme", "--email", "kim@acme.test", "--role", "viewer")
	ok(t, dir, env, "", "role", "grant", "--tenant", "acme", "--email", "kim@acme.test", "--role", "list keeper")
	ok(t, dir, env, "", "group", "create", "--tenant", "acme", "--name", "auditors")
	ok(t, dir, env, "", "group", "add-role", "--tenant", "acme", "--group", "auditors", "--role", "auditor")
	ok(t, dir, env, "", "group", "add-member", "--tenant", "acme", "--group", "auditors", "--email", "kim@acme.test")
	ok(t, dir, env, "", "role", "revoke", "--tenant", "acme", "--email", "kim@acme.test", "--role", "viewer")
	if k := users(t, dir, env, "acme")["kim@acme.test"]; strings.Join(k.Roles, ",") != "list keeper" ||
		strings.Join(k.Groups, ",") != "auditors" || strings.Join(k.GroupRoles, ",") != "auditors -> auditor" {
		t.Fatalf("kim: %+v", k)
	}
	if r := ok(t, dir, env, "", "group", "list", "--tenant", "acme"); !strings.Contains(r.stdout, "auditors  auditor  1") {
		t.Fatalf("group list:\n%s", r.stdout)
	}
	r = ok(t, dir, env, "", "access", "review", "--tenant", "acme")
	for _, w := range []string{"user kim@acme.test", "  group auditors -> role auditor: ", "  role list keeper: lists:read lists:write"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("access review lacks %q:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "role viewer") {
		t.Errorf("a revoked role is still in the review:\n%s", r.stdout)
	}
}

// reviewDoc is `access review --json`.
type reviewDoc struct {
	Principals []reviewLine `json:"principals"`
}

// TestTenantCreateWithAdmin: the first administrator is created with the
// tenant (enrolment secret, or a 20-character password from stdin) and the
// access review shows it, decrypted, holding "role admin"; a bad email or a
// weak password creates no tenant at all.
func TestTenantCreateWithAdmin(t *testing.T) {
	t.Parallel()
	dir, env := t.TempDir(), cleanEnv()
	r := newTenant(t, dir, env, "acme", "--admin-email", "Admin@Acme.test", "--admin-name", "Ada Admin", "--json")
	doc := decode[struct {
		Slug  string       `json:"slug"`
		Admin *createdUser `json:"admin"`
	}](t, r)
	if doc.Slug != "acme" || doc.Admin == nil || doc.Admin.Email != "admin@acme.test" || !strings.HasPrefix(doc.Admin.EnrolmentToken, "rse_") ||
		strings.Join(doc.Admin.Roles, ",") != "admin" {
		t.Fatalf("tenant create --admin-email --json: %s", r.stdout)
	}

	r = ok(t, dir, env, "", "access", "review", "--tenant", "acme")
	for _, w := range []string{"user admin@acme.test (Ada Admin)", "2fa=off", "last_login=never", "ADMINISTRATIVE", "\n  role admin: "} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("access review lacks %q:\n%s", w, r.stdout)
		}
	}
	rev := decode[reviewDoc](t, ok(t, dir, env, "", "access", "review", "--tenant", doc.Admin.TenantID, "--json"))
	if len(rev.Principals) != 1 || rev.Principals[0].Email != "admin@acme.test" || rev.Principals[0].Name != "Ada Admin" ||
		!rev.Principals[0].Administrative || len(rev.Principals[0].Grants) != 1 || rev.Principals[0].Grants[0].Path != "role admin" {
		t.Fatalf("access review --json: %+v", rev)
	}

	// Nothing remains when the administrator cannot be created.
	fails(t, dir, env, "", 1, []string{"--admin-email: must be a plain email address", "no tenant was created"},
		"tenant", "create", "--name", "Beta", "--slug", "beta", "--admin-email", "not an email")
	fails(t, dir, env, pw16, 1, []string{"at least 20 characters long for a privileged account", "no tenant was created"},
		"tenant", "create", "--name", "Beta", "--slug", "beta", "--admin-email", "root@beta.test", "--admin-password-stdin")
	if r := ok(t, dir, env, "", "tenant", "list"); strings.Contains(r.stdout, "beta") {
		t.Fatalf("a refused tenant exists:\n%s", r.stdout)
	}
	r = ok(t, dir, env, pw24, "tenant", "create", "--name", "Beta", "--slug", "beta", "--admin-email", "root@beta.test", "--admin-password-stdin")
	if !strings.Contains(r.stdout, "created tenant beta") || !strings.Contains(r.stdout, "must change it at first sign-in") || strings.Contains(r.stdout, "rse_") {
		t.Fatalf("tenant create --admin-password-stdin:\n%s", r.stdout)
	}
	if u := users(t, dir, env, "beta")["root@beta.test"]; !u.HasPassword || !u.MustChangePassword || strings.Join(u.Roles, ",") != "admin" {
		t.Fatalf("beta's administrator: %+v", u)
	}
}

// TestUsersPostgres runs the main paths on PostgreSQL, under row-level
// security: tenant with administrator, import, review, disable.
func TestUsersPostgres(t *testing.T) {
	t.Parallel()
	url := storetest.PostgresURL(t)
	dir, env := t.TempDir(), cleanEnv("RELAIS_DATABASE_URL="+url)
	newTenant(t, dir, env, "acme", "--admin-email", "admin@acme.test")
	newTenant(t, dir, env, "other", "--admin-email", "admin@other.test")
	csvFile := writeFile(t, dir, "users.csv", "email;name;groups;roles\nann@acme.test;Ann;ops;viewer\nben@acme.test;Ben;ops|sales;editor\n")
	fails(t, dir, env, "", 1, []string{`no group "ops"`}, "user", "import", "--tenant", "acme", csvFile)
	r := ok(t, dir, env, "", "user", "import", "--tenant", "acme", csvFile, "--create-groups")
	if strings.Count(r.stdout, "rse_") != 2 {
		t.Fatalf("import: %s", r.stdout)
	}
	rev := decode[reviewDoc](t, ok(t, dir, env, "", "access", "review", "--tenant", "acme", "--json"))
	emails := map[string]reviewLine{}
	for _, p := range rev.Principals {
		emails[p.Email] = p
	}
	if len(rev.Principals) != 3 || emails["admin@acme.test"].Grants[0].Path != "role admin" || emails["ben@acme.test"].Name != "Ben" {
		t.Fatalf("review on PostgreSQL: %+v", rev.Principals)
	}
	ok(t, dir, env, "", "user", "disable", "--tenant", "acme", "--email", "ann@acme.test")
	got := users(t, dir, env, "acme")
	if got["ann@acme.test"].Status != "disabled" || strings.Join(got["ben@acme.test"].Groups, ",") != "ops,sales" {
		t.Fatalf("users on PostgreSQL: %+v", got)
	}
	// The other tenant sees none of it.
	if o := users(t, dir, env, "other"); len(o) != 1 || o["admin@other.test"].ID == "" {
		t.Fatalf("other tenant's users: %+v", o)
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ctTenant prepares a data directory with a tenant acme.
func ctTenant(t *testing.T, slugs ...string) (string, []string) {
	t.Helper()
	dir, env := t.TempDir(), cleanEnv()
	if len(slugs) == 0 {
		slugs = []string{"acme"}
	}
	for _, s := range slugs {
		if r := relais(t, dir, env, "", "tenant", "create", "--name", s, "--slug", s); r.code != 0 {
			t.Fatalf("tenant %s: %+v", s, r)
		}
	}
	return dir, env
}

func countContacts(t *testing.T, dir string, env []string, slug string) int {
	t.Helper()
	r := relais(t, dir, env, "", "contacts", "count", "--tenant", slug)
	n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if r.code != 0 || err != nil {
		t.Fatalf("count: %+v", r)
	}
	return n
}

// TestContactsImportCommand: an import with bad lines completes (exit 0)
// with a summary and the per-line report; a long report is cut at 50 lines
// with the command that prints the rest; a file where every line fails, or
// an empty file, exits 1; a dry run writes nothing; running a file again
// updates the same contacts (one per address).
func TestContactsImportCommand(t *testing.T) {
	dir, env := ctTenant(t)
	writeFile(t, dir, "a.csv", "email,first_name,phone\nann@example.com,Ann,+33612345678\nnot-an-email,Bob,\ncid@example.com,Cid,0612345678\ndee@example.com,Dee,\n")
	r := relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "a.csv", "--consent", "email:granted")
	if r.code != 0 || !strings.Contains(r.stdout, "4 line(s): 2 created, 0 updated, 0 skipped, 2 failed") ||
		!strings.Contains(r.stdout, "line 3, column email: ") || !strings.Contains(r.stdout, "line 4, column phone: ") ||
		strings.Contains(r.stdout, "not-an-email") || r.stderr != "" {
		t.Fatalf("import with bad lines: %+v", r)
	}
	if n := countContacts(t, dir, env, "acme"); n != 2 {
		t.Fatalf("%d contacts", n)
	}
	// The same file again, with national numbers allowed: the same contacts
	// are updated, the fixed line is created.
	r = relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "a.csv", "--default-calling-code", "33")
	if r.code != 0 || !strings.Contains(r.stdout, "4 line(s): 1 created, 2 updated, 0 skipped, 1 failed") {
		t.Fatalf("second import: %+v", r)
	}
	if n := countContacts(t, dir, env, "acme"); n != 3 {
		t.Fatalf("%d contacts after the second import", n)
	}
	r = relais(t, dir, env, "", "contacts", "find", "--tenant", "acme", "--phone", "+33612345678")
	if r.code != 0 || !strings.Contains(r.stdout, "ann@example.com") || !strings.Contains(r.stdout, "cid@example.com") {
		t.Fatalf("find by phone: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "find", "--tenant", "acme", "--email", "ANN@example.com", "--json")
	var found []struct{ ID, Email string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &found) != nil || len(found) != 1 || found[0].Email != "ann@example.com" {
		t.Fatalf("find by email: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "show", "--tenant", "acme", found[0].ID)
	if r.code != 0 || !strings.Contains(r.stdout, "consent.email.marketing:") || !strings.Contains(r.stdout, "granted (import") {
		t.Fatalf("show: %+v", r)
	}

	// A long report: the first 50 lines, and where to get the rest.
	var b strings.Builder
	b.WriteString("email\nok@example.com\n")
	for i := range 60 {
		fmt.Fprintf(&b, "broken-%d\n", i)
	}
	writeFile(t, dir, "errs.csv", b.String())
	r = relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "errs.csv", "--json")
	var rep importReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Errors) != 50 || rep.ErrorsTotal != 60 ||
		rep.ErrorsCommand != "relais contacts import-errors --tenant acme --job "+rep.Job.ID {
		t.Fatalf("long report: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "import-errors", "--tenant", "acme", "--job", rep.Job.ID)
	if r.code != 0 || strings.Count(r.stdout, "column email") != 60 || !strings.HasPrefix(r.stdout, "line 3, column email") {
		t.Fatalf("import-errors: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "import-errors", "--tenant", "acme", "--job", rep.Job.ID, "--after", "60", "--limit", "1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "line 61, column email: ") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("import-errors page: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "imports", "--tenant", "acme")
	if r.code != 0 || !strings.Contains(r.stdout, rep.Job.ID) || !strings.Contains(r.stdout, "errs.csv") {
		t.Fatalf("imports: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "errs.csv")
	if r.code != 0 || !strings.Contains(r.stdout, "... 10 more: relais contacts import-errors --tenant acme --job ") {
		t.Fatalf("long report, text: %+v", r)
	}

	before := countContacts(t, dir, env, "acme")
	writeFile(t, dir, "new.csv", "email\nnew1@example.com\nnew2@example.com\nbroken\n")
	r = relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "new.csv", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing was written") || !strings.Contains(r.stdout, "2 would be created") ||
		!strings.Contains(r.stdout, "line 4, column email") {
		t.Fatalf("dry run: %+v", r)
	}
	if n := countContacts(t, dir, env, "acme"); n != before {
		t.Fatalf("the dry run wrote: %d -> %d", before, n)
	}

	// Nothing importable: exit 1, one line on stderr.
	writeFile(t, dir, "allbad.csv", "email\nx\ny\n")
	writeFile(t, dir, "empty.csv", "")
	writeFile(t, dir, "header.csv", "email\n")
	writeFile(t, dir, "nocol.csv", "first_name\nAnn\n")
	for _, tc := range []struct {
		file, want string
	}{
		{"allbad.csv", "no line of allbad.csv could be imported (all 2 failed)"},
		{"empty.csv", "empty.csv is empty"},
		{"header.csv", "has no contact lines"},
		{"nocol.csv", "nocol.csv cannot be imported: no column holds the email or the phone number"},
		{"missing.csv", "cannot open missing.csv"},
	} {
		r := relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", tc.file)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "relais: ") != 1 {
			t.Errorf("%s: %+v", tc.file, r)
		}
	}
	if n := countContacts(t, dir, env, "acme"); n != before {
		t.Fatalf("refused files wrote: %d -> %d", before, n)
	}
}

// TestContactsImportResumesAfterInterrupt: an import interrupted midway
// (SIGINT) records where it stopped; the same command resumes it and the
// tenant ends with exactly one contact per line.
func TestContactsImportResumesAfterInterrupt(t *testing.T) {
	dir, env := ctTenant(t)
	const lines = 150000
	var b strings.Builder
	b.WriteString("email,first_name\n")
	for i := range lines {
		fmt.Fprintf(&b, "person%d@example.com,Person %d\n", i, i)
	}
	writeFile(t, dir, "big.csv", b.String())

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "contacts", "import", "--tenant", "acme", "big.csv")
	cmd.Dir, cmd.Env = dir, env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Without a terminal, progress is a plain line every 2 seconds: the
	// first one says batches are committed; interrupt then.
	sc := bufio.NewScanner(stderr)
	var errLines []string
	interrupted := false
	for sc.Scan() {
		errLines = append(errLines, sc.Text())
		if !interrupted && strings.HasPrefix(sc.Text(), "importing big.csv: line ") {
			interrupted = true
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if !interrupted {
		t.Logf("the import finished before any progress line: nothing to interrupt (%v)", err)
	} else {
		var ee *exec.ExitError
		last := errLines[len(errLines)-1]
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(last, "was interrupted after line") ||
			!strings.Contains(last, "run the same command again to resume") || !strings.Contains(stdout.String(), ", interrupted") {
			t.Fatalf("interrupted import: %v\nstdout: %s\nstderr: %s", err, stdout.String(), strings.Join(errLines, "\n"))
		}
		n := countContacts(t, dir, env, "acme")
		if n == 0 || n >= lines {
			t.Fatalf("interrupted with %d of %d contacts: not midway", n, lines)
		}
		t.Logf("interrupted with %d of %d contacts imported", n, lines)
	}
	r := relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "big.csv")
	if r.code != 0 || (interrupted && !strings.Contains(r.stdout, "completed (resumed)")) {
		t.Fatalf("resumed import: %+v", r)
	}
	if n := countContacts(t, dir, env, "acme"); n != lines {
		t.Fatalf("%d contacts after the resumed import, want %d", n, lines)
	}
}

// TestContactsExportCommand: the file is created 0600, atomically (no
// temporary file left), replaces an older file; a pseudonymised export
// holds no plaintext address or name; --out - writes to standard output.
func TestContactsExportCommand(t *testing.T) {
	dir, env := ctTenant(t)
	if r := relais(t, dir, env, "", "seed", "--tenant", "acme", "--contacts", "40", "--seed", "5"); r.code != 0 {
		t.Fatalf("seed: %+v", r)
	}
	writeFile(t, dir, "plain.csv", "email,first_name,last_name,phone\nzoe.plain@example.com,Zoe,Plaintext,+33698765432\n")
	if r := relais(t, dir, env, "", "contacts", "import", "--tenant", "acme", "plain.csv", "--list", "Newsletter"); r.code != 0 {
		t.Fatalf("import: %+v", r)
	}
	sub := filepath.Join(dir, "exports")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(sub, "all.csv")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil { // #nosec G306 -- a loose file the export must replace
		t.Fatal(err)
	}
	r := relais(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--out", out, "--json")
	var sum exportSummary
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || sum.Count != 41 {
		t.Fatalf("export: %+v", r)
	}
	data, _ := os.ReadFile(out)
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode: %v %v", st.Mode(), err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 42 || !strings.Contains(string(data), "zoe.plain@example.com") {
		t.Fatalf("export: %d lines", lines)
	}
	entries, _ := os.ReadDir(sub)
	if len(entries) != 1 {
		t.Fatalf("files left beside the export: %v", entries)
	}

	pseudo := filepath.Join(sub, "pseudo.jsonl")
	r = relais(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--format", "jsonl", "--pseudonymise", "--out", pseudo)
	if r.code != 0 || !strings.Contains(r.stderr, "exported 41 contact(s) of tenant acme (jsonl, pseudonymised)") {
		t.Fatalf("pseudonymised export: %+v", r)
	}
	data, _ = os.ReadFile(pseudo)
	if st, _ := os.Stat(pseudo); st.Mode().Perm() != 0o600 {
		t.Fatalf("pseudonymised file mode %v", st.Mode())
	}
	if !strings.Contains(string(data), "email_token") || strings.Contains(string(data), "@") || strings.Contains(string(data), "Zoe") ||
		strings.Contains(string(data), "Plaintext") || strings.Contains(string(data), "+33698765432") || strings.Contains(string(data), "birth_date") {
		t.Fatalf("pseudonymised export shows personal data:\n%s", data)
	}

	r = relais(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--list", "Newsletter", "--out", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "zoe.plain@example.com") || !strings.HasPrefix(r.stdout, "id,email,") ||
		!strings.Contains(r.stderr, "to standard output") {
		t.Fatalf("export of a list to stdout: %+v", r)
	}
	n := strings.Count(r.stdout, "\n") - 1
	if c := relais(t, dir, env, "", "contacts", "count", "--tenant", "acme", "--list", "Newsletter"); strings.TrimSpace(c.stdout) != strconv.Itoa(n) {
		t.Fatalf("list export of %d lines, count says %s", n, c.stdout)
	}
	r = relais(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--list", "Nope", "--out", filepath.Join(sub, "x.csv"))
	if r.code != 1 || !strings.Contains(r.stderr, `no list "Nope" in tenant acme (its lists: Newsletter, Prospects, VIP)`) {
		t.Fatalf("unknown list: %+v", r)
	}
	r = relais(t, dir, env, "", "contacts", "export", "--tenant", "acme", "--filter", `email = "x"`, "--out", filepath.Join(sub, "x.csv"))
	if r.code != 1 || !strings.Contains(r.stderr, "--filter: at position 1") {
		t.Fatalf("bad filter: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(sub, "x.csv")); !os.IsNotExist(err) {
		t.Fatalf("a failed export left a file: %v", err)
	}
	if entries, _ := os.ReadDir(sub); len(entries) != 2 {
		t.Fatalf("files left by failed exports: %v", entries)
	}
}

// TestSeedIsReproducible: the same --seed gives the same contacts in two
// tenants (the first contact's email in a JSON Lines export); another seed
// gives others; seeding again updates instead of adding.
func TestSeedIsReproducible(t *testing.T) {
	dir, env := ctTenant(t, "one", "two", "three")
	first := func(slug string) string {
		t.Helper()
		r := relais(t, dir, env, "", "contacts", "export", "--tenant", slug, "--format", "jsonl", "--out", "-")
		var row struct {
			Email string `json:"email"`
		}
		line, _, _ := strings.Cut(r.stdout, "\n")
		if r.code != 0 || json.Unmarshal([]byte(line), &row) != nil || row.Email == "" {
			t.Fatalf("export of %s: %+v", slug, r)
		}
		return row.Email
	}
	for _, tc := range []struct{ slug, seed string }{{"one", "7"}, {"two", "7"}, {"three", "8"}} {
		r := relais(t, dir, env, "", "seed", "--tenant", tc.slug, "--contacts", "30", "--seed", tc.seed, "--json")
		var out struct{ Created, Updated int }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Created != 30 || r.stderr != "" {
			t.Fatalf("seed %s: %+v", tc.slug, r)
		}
	}
	if a, b := first("one"), first("two"); a != b {
		t.Fatalf("same seed, different first contact: %s / %s", a, b)
	}
	if a, c := first("one"), first("three"); a == c {
		t.Fatalf("different seeds, same first contact %s", a)
	}
	r := relais(t, dir, env, "", "seed", "--tenant", "one", "--contacts", "30", "--seed", "7")
	if r.code != 0 || !strings.Contains(r.stdout, "0 created, 30 updated") || !strings.Contains(r.stdout, "lists: Newsletter, VIP, Prospects") {
		t.Fatalf("seed again: %+v", r)
	}
	if n := countContacts(t, dir, env, "one"); n != 30 {
		t.Fatalf("%d contacts after seeding twice", n)
	}
}

// TestContactsCommandsBadInput: command-line mistakes exit 2 before
// anything is opened; an unknown tenant, contact or list exits 1; every
// failure is one `relais: ...` line.
func TestContactsCommandsBadInput(t *testing.T) {
	dir, env := ctTenant(t)
	writeFile(t, dir, "a.csv", "email\na@example.com\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"contacts", "import", "a.csv"}, 2, "--tenant is required"},
		{[]string{"contacts", "import", "--tenant", "acme"}, 2, "give the CSV file to import"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--mode", "merge"}, 2, "--mode must be upsert, add or blocklist"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--consent", "email:yes"}, 2, "--consent \"email:yes\""},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--default-calling-code", "France"}, 2, "--default-calling-code"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--map", "nothing"}, 2, "HEADER=TARGET"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--consent-wording", "Yes"}, 2, "give --consent too"},
		{[]string{"contacts", "import", "--tenant", "acme", "-"}, 2, "standard input cannot be imported"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--bogus"}, 2, "unknown flag"},
		{[]string{"contacts", "export", "--tenant", "acme"}, 2, "--out is required"},
		{[]string{"contacts", "export", "--tenant", "acme", "--out", "x", "--format", "xml"}, 2, "--format must be csv or jsonl"},
		{[]string{"contacts", "export", "--tenant", "acme", "--out", "."}, 2, "is a directory"},
		{[]string{"contacts", "count", "--tenant", "acme", "--list", "a", "--segment", "b"}, 2, "not both"},
		{[]string{"contacts", "find", "--tenant", "acme"}, 2, "give --email or --phone"},
		{[]string{"contacts", "show", "--tenant", "acme"}, 2, "give the contact's id"},
		{[]string{"contacts", "import-errors", "--tenant", "acme"}, 2, "--job is required"},
		{[]string{"seed", "--tenant", "acme", "--contacts", "0"}, 2, "--contacts must be 1 to 100000000"},
		{[]string{"seed", "--contacts", "5"}, 2, "--tenant is required"},
		{[]string{"contacts", "import", "--tenant", "ghost", "a.csv"}, 1, "relais tenant list"},
		{[]string{"contacts", "import", "--tenant", "acme", "a.csv", "--list", "Nope"}, 1, `--list: no list "Nope" in tenant acme (it has none)`},
		{[]string{"contacts", "show", "--tenant", "acme", "00000000-0000-7000-8000-000000000000"}, 1, "no contact 00000000-0000-7000-8000-000000000000 in tenant acme"},
		{[]string{"contacts", "find", "--tenant", "acme", "--email", "not an email"}, 1, "--email: "},
		{[]string{"contacts", "import-errors", "--tenant", "acme", "--job", "nope"}, 1, "no import job nope in tenant acme"},
	} {
		r := relais(t, dir, env, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
			continue
		}
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); strings.Count(r.stderr, "relais: ") != 1 || !strings.HasPrefix(lines[len(lines)-1], "relais: ") {
			t.Errorf("%v: not a one-line error: %q", tc.args, r.stderr)
		}
	}
	if n := countContacts(t, dir, env, "acme"); n != 0 {
		t.Fatalf("refused commands wrote %d contacts", n)
	}
}

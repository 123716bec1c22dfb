// Command vulnfilter reads govulncheck's JSON output (-format json) and
// fails when the code calls a vulnerable symbol, like govulncheck's text
// mode, except for advisories listed in an accept file with the reason
// they do not apply. Each line of the accept file is an advisory id, the
// module version the acceptance is for, and the reason:
//
//	GO-2026-6909 github.com/crewjam/saml@v0.6.3 fixed in v0.6.x; the database lists no fixed version
//
// An acceptance holds only for that exact module version: raising or
// lowering the module makes the finding fail again until it is reviewed.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

type message struct {
	Finding *struct {
		OSV   string  `json:"osv"`
		Trace []frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	acceptPath := flag.String("accept", "", "file of accepted advisories (id module@version reason)")
	flag.Parse()
	accepted, err := readAccept(*acceptPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnfilter:", err)
		os.Exit(2)
	}
	failed, err := filter(os.Stdin, os.Stdout, accepted)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnfilter:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func readAccept(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path) // #nosec G304 -- the Makefile names the file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || !strings.Contains(fields[1], "@") {
			return nil, fmt.Errorf("%s:%d: want `ID module@version reason`", path, n)
		}
		out[fields[0]+" "+fields[1]] = strings.Join(fields[2:], " ")
	}
	return out, sc.Err()
}

// filter reports the symbol-level findings; it returns true when one of
// them is not accepted.
func filter(r io.Reader, w io.Writer, accepted map[string]string) (bool, error) {
	dec := json.NewDecoder(r)
	seen := map[string]bool{}
	var lines []string
	failed := false
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("read govulncheck output: %w", err)
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 || m.Finding.Trace[0].Function == "" {
			continue // imported or required, not called: not a failure
		}
		top := m.Finding.Trace[0]
		key := m.Finding.OSV + " " + top.Module + "@" + top.Version
		if seen[key] {
			continue
		}
		seen[key] = true
		if reason, ok := accepted[key]; ok {
			lines = append(lines, fmt.Sprintf("accepted %s: %s", key, reason))
			continue
		}
		failed = true
		lines = append(lines, fmt.Sprintf("VULNERABLE %s: the code calls %s.%s (see https://pkg.go.dev/vuln/%s)", key, top.Package, top.Function, m.Finding.OSV))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if !failed {
		fmt.Fprintln(w, "vulnfilter: no unaccepted vulnerability is reachable")
	}
	return failed, nil
}

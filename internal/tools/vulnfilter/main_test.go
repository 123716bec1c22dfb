package main

import (
	"bytes"
	"strings"
	"testing"
)

const findings = `{"config":{"protocol_version":"v1.0.0"}}
{"finding":{"osv":"GO-2026-0001","trace":[{"module":"example.com/m","version":"v1.2.3","package":"example.com/m/p","function":"Parse"}]}}
{"finding":{"osv":"GO-2026-0002","trace":[{"module":"example.com/n","version":"v0.1.0","package":"example.com/n"}]}}
`

// TestFilter: a called vulnerable symbol fails unless accepted for that
// exact module version; an imported-only finding never fails.
func TestFilter(t *testing.T) {
	var out bytes.Buffer
	failed, err := filter(strings.NewReader(findings), &out, map[string]string{})
	if err != nil || !failed || !strings.Contains(out.String(), "VULNERABLE GO-2026-0001 example.com/m@v1.2.3") || strings.Contains(out.String(), "0002") {
		t.Fatalf("no acceptance: %v %v %s", failed, err, out.String())
	}
	out.Reset()
	failed, err = filter(strings.NewReader(findings), &out, map[string]string{"GO-2026-0001 example.com/m@v1.2.3": "fixed"})
	if err != nil || failed || !strings.Contains(out.String(), "accepted GO-2026-0001") {
		t.Fatalf("accepted: %v %v %s", failed, err, out.String())
	}
	out.Reset()
	failed, _ = filter(strings.NewReader(findings), &out, map[string]string{"GO-2026-0001 example.com/m@v1.2.2": "another version"})
	if !failed {
		t.Fatal("an acceptance for another version held")
	}
	if _, err := filter(strings.NewReader("{not json"), &out, nil); err == nil {
		t.Fatal("malformed input accepted")
	}
}

package password

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const corpusDir = "testdata/hibp"

// corpus is what testdata/hibp says about each password (see
// testdata/README.md).
var corpus = []struct {
	pw   string
	want int
	why  string
}{
	{"password123!", 126927, "uppercase suffix, LF, among padding lines"},
	{"Tr0ub4dor&3", 52, "lowercase suffix, CRLF"},
	{"correct horse battery staple", 3645, "blank lines in the range"},
	{"Relais-NotBreached-42", 0, "its suffix is only on a padding line (count 0)"},
	{"Missing-File-Pw-9", 0, "no range file for its prefix"},
}

func sha1Hex(pw string) string {
	s := sha1.Sum([]byte(pw))
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// TestFixtureCorpus recomputes the SHA-1 of the fixture passwords and checks
// that the files still hold what the tests rely on, so that a broken fixture
// fails here and not as a confusing checker failure.
func TestFixtureCorpus(t *testing.T) {
	for _, c := range []struct {
		pw, line string
		crlf     bool
	}{
		{"password123!", "3AA5619F2932733104EB8CEEF08F6FD2693:126927\n", false},
		{"Tr0ub4dor&3", "2e7a5ae6a49466a6ac578b98adba78c6aa6:52\r\n", true},
		{"correct horse battery staple", "AD6438836DBE526AA231ABDE2D0EEF74D42:3645\n", false},
		{"Relais-NotBreached-42", "24C6C3D7A709D9ECD1EBD9BE6FD67CD9114:0\n", false},
	} {
		h := sha1Hex(c.pw)
		body, err := os.ReadFile(filepath.Join(corpusDir, h[:5]))
		if err != nil {
			t.Fatalf("%q: %v", c.pw, err)
		}
		if suffix, _, _ := strings.Cut(c.line, ":"); strings.ToUpper(suffix) != h[5:] {
			t.Fatalf("%q: fixture line %q is not its suffix %s", c.pw, c.line, h[5:])
		}
		if !bytes.Contains(body, []byte(c.line)) {
			t.Errorf("%q: range %s lacks %q", c.pw, h[:5], c.line)
		}
		if got := bytes.Count(body, []byte("\r\n")) > 0; got != c.crlf {
			t.Errorf("%q: range %s CRLF = %v, want %v", c.pw, h[:5], got, c.crlf)
		}
		if !bytes.Contains(body, []byte(":0")) {
			t.Errorf("%q: range %s has no padding line", c.pw, h[:5])
		}
	}
	if _, err := os.Stat(filepath.Join(corpusDir, sha1Hex("Missing-File-Pw-9")[:5])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the missing-file fixture exists: %v", err)
	}
}

// TestRangeKey: the prefix and suffix are the uppercase SHA-1, split 5/35.
func TestRangeKey(t *testing.T) {
	p, s := rangeKey("password123!")
	if p != "ADDBD" || s != "3AA5619F2932733104EB8CEEF08F6FD2693" {
		t.Fatalf("rangeKey = %s, %s", p, s)
	}
}

// TestDirRangeChecker runs the fixture corpus through the offline checker.
func TestDirRangeChecker(t *testing.T) {
	d := DirRangeChecker{Dir: corpusDir}
	for _, c := range corpus {
		n, err := d.Breached(t.Context(), c.pw)
		if err != nil || n != c.want {
			t.Errorf("Breached(%q) = %d, %v; want %d (%s)", c.pw, n, err, c.want, c.why)
		}
	}
	body, err := d.Range(t.Context(), "addbd") // lowercase prefix accepted
	if err != nil || !bytes.Contains(body, []byte("3AA5619F2932733104EB8CEEF08F6FD2693:126927")) {
		t.Errorf("Range(addbd) = %d bytes, %v", len(body), err)
	}
}

// badPrefixes are refused before any file or request is touched: none of
// them is 5 hexadecimal digits, and some would walk out of the directory or
// change the URL.
var badPrefixes = []string{
	"", "ADDB", "ADDBD0", "GGGGG", "../..", "..", "/etc/", "ADD/D", "AD\\BD",
	"ADD.D", "AD BD", "ADDB\x00", "%2e%2e", "ADDB?", "ADDB#", "ÀDDBD", "ａｄｄｂｄ",
}

// TestDirRangeCheckerBadPrefix: path safety.
func TestDirRangeCheckerBadPrefix(t *testing.T) {
	d := DirRangeChecker{Dir: corpusDir}
	for _, p := range badPrefixes {
		if body, err := d.Range(t.Context(), p); body != nil || !errors.Is(err, ErrBadRange) {
			t.Errorf("Range(%q) = %d bytes, %v; want ErrBadRange", p, len(body), err)
		}
	}
}

// TestDirRangeCheckerErrors: every failure is an error, never a silent
// "not breached", and no error names the prefix (which is derived from the
// password).
func TestDirRangeCheckerErrors(t *testing.T) {
	const pw = "password123!"
	prefix := sha1Hex(pw)[:5]
	dir := t.TempDir()
	write := func(name string, body []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	write(prefix, bytes.Repeat([]byte("3AA5619F2932733104EB8CEEF08F6FD2693:1\n"), MaxRangeBody/38+1))
	oversized := DirRangeChecker{Dir: dir}
	for name, c := range map[string]struct {
		d   DirRangeChecker
		ctx context.Context
	}{
		"no directory":      {DirRangeChecker{}, t.Context()},
		"cancelled context": {DirRangeChecker{Dir: corpusDir}, cancelled},
		"oversized file":    {oversized, t.Context()},
	} {
		n, err := c.d.Breached(c.ctx, pw)
		if err == nil || n != 0 {
			t.Errorf("%s: Breached = %d, %v; want an error", name, n, err)
		} else if strings.Contains(err.Error(), prefix) {
			t.Errorf("%s: error %q names the prefix", name, err)
		}
	}

	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, prefix), []byte("3AA5619F2932733104EB8CEEF08F6FD2693:126927\nnot a line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := (DirRangeChecker{Dir: dir2}).Breached(t.Context(), pw); !errors.Is(err, ErrBadRange) || n != 0 {
		t.Errorf("malformed file: Breached = %d, %v; want ErrBadRange", n, err)
	}

	dir3 := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir3, prefix), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := (DirRangeChecker{Dir: dir3}).Breached(t.Context(), pw)
	if err == nil || n != 0 || strings.Contains(err.Error(), prefix) {
		t.Errorf("range is a directory: Breached = %d, %v; want an error without the prefix", n, err)
	}
}

// TestCountInRange is the range parser as a table.
func TestCountInRange(t *testing.T) {
	const suf = "3AA5619F2932733104EB8CEEF08F6FD2693"
	lower := strings.ToLower(suf)
	other := "0000000000000000000000000000000000A"
	for _, c := range []struct {
		name, body string
		want       int
		bad        bool
	}{
		{name: "empty body", body: ""},
		{name: "found", body: other + ":3\n" + suf + ":42\n", want: 42},
		{name: "found, last line without newline", body: other + ":3\n" + suf + ":42", want: 42},
		{name: "CRLF", body: other + ":3\r\n" + suf + ":42\r\n", want: 42},
		{name: "lowercase in body", body: lower + ":42\n", want: 42},
		{name: "padding line of the suffix", body: suf + ":0\n" + other + ":3\n"},
		{name: "absent", body: other + ":3\n"},
		{name: "blank lines", body: "\n\r\n" + suf + ":7\n\n", want: 7},
		{name: "duplicate lines add up", body: suf + ":7\n" + lower + ":3\n", want: 10},
		{name: "prefix of the suffix is not a match", body: suf[:34] + "0:5\n"},
		{name: "no colon", body: suf + "42\n", bad: true},
		{name: "short suffix", body: suf[:34] + ":42\n", bad: true},
		{name: "long suffix", body: suf + "0:42\n", bad: true},
		{name: "full hash instead of suffix", body: "ADDBD" + suf + ":42\n", bad: true},
		{name: "non-hex suffix", body: suf[:34] + "G:42\n", bad: true},
		{name: "negative count", body: suf + ":-1\n", bad: true},
		{name: "empty count", body: suf + ":\n", bad: true},
		{name: "count with sign", body: suf + ":+4\n", bad: true},
		{name: "count too large", body: suf + ":1000000000\n", bad: true},
		{name: "two colons", body: suf + ":4:2\n", bad: true},
		{name: "html error page", body: "<html><body>Too many requests</body></html>\n", bad: true},
	} {
		n, err := countInRange([]byte(c.body), suf)
		if c.bad {
			if !errors.Is(err, ErrBadRange) || n != 0 {
				t.Errorf("%s: = %d, %v; want ErrBadRange", c.name, n, err)
			}
			continue
		}
		if err != nil || n != c.want {
			t.Errorf("%s: = %d, %v; want %d", c.name, n, err, c.want)
		}
	}
}

// rangeServer serves testdata/hibp like the Pwned Passwords API (200 and an
// empty body for a prefix without a file) and records every request.
type rangeServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newRangeServer(t *testing.T) *rangeServer {
	rs := &rangeServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.reqs = append(rs.reqs, r.Clone(context.Background()))
		rs.mu.Unlock()
		prefix, ok := strings.CutPrefix(r.URL.Path, "/range/")
		if !ok || len(prefix) != 5 || strings.ContainsAny(prefix, "/.") {
			http.NotFound(w, r)
			return
		}
		body, err := os.ReadFile(filepath.Join(corpusDir, prefix))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *rangeServer) requests() []*http.Request {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]*http.Request(nil), rs.reqs...)
}

// TestHTTPRangeChecker runs the fixture corpus through the HTTP checker and
// proves the k-anonymity promise on the wire: each request is a GET of
// /range/ and 5 uppercase hexadecimal digits, with no query and no body,
// asks for padding, and carries no other part of the hash.
func TestHTTPRangeChecker(t *testing.T) {
	rs := newRangeServer(t)
	for _, base := range []string{rs.URL + "/range/", rs.URL + "/range"} {
		c := HTTPRangeChecker{BaseURL: base, Client: rs.Client()}
		for _, k := range corpus {
			n, err := c.Breached(t.Context(), k.pw)
			if err != nil || n != k.want {
				t.Errorf("base %s: Breached(%q) = %d, %v; want %d (%s)", base, k.pw, n, err, k.want, k.why)
			}
		}
	}
	reqs := rs.requests()
	if len(reqs) != 2*len(corpus) {
		t.Fatalf("%d requests, want %d", len(reqs), 2*len(corpus))
	}
	path := regexp.MustCompile(`^/range/[0-9A-F]{5}$`)
	for i, r := range reqs {
		full := sha1Hex(corpus[i%len(corpus)].pw)
		if r.Method != http.MethodGet || !path.MatchString(r.URL.Path) || r.URL.RawQuery != "" || r.ContentLength > 0 {
			t.Errorf("request %d: %s %s ?%s (%d bytes of body)", i, r.Method, r.URL.Path, r.URL.RawQuery, r.ContentLength)
		}
		if r.URL.Path != "/range/"+full[:5] {
			t.Errorf("request %d: path %s, want the prefix of %s", i, r.URL.Path, corpus[i%len(corpus)].pw)
		}
		if r.Header.Get("Add-Padding") != "true" {
			t.Errorf("request %d: Add-Padding = %q", i, r.Header.Get("Add-Padding"))
		}
		var dump strings.Builder
		r.Header.Write(&dump)
		dump.WriteString(r.URL.String())
		if s := strings.ToUpper(dump.String()); strings.Contains(s, full[5:]) || strings.Contains(s, full[5:15]) {
			t.Errorf("request %d carries more of the hash than the prefix: %s", i, dump.String())
		}
	}
}

// TestHTTPRangeCheckerFailures: every failure is an error, never a silent
// "not breached", and no error names the prefix.
func TestHTTPRangeCheckerFailures(t *testing.T) {
	const pw = "password123!"
	prefix := sha1Hex(pw)[:5]
	serve := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL + "/range/"
	}
	big := bytes.Repeat([]byte("3AA5619F2932733104EB8CEEF08F6FD2693:1\n"), MaxRangeBody/38+1)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	release := make(chan struct{})
	defer close(release)

	for name, c := range map[string]struct {
		checker HTTPRangeChecker
		ctx     context.Context
		bad     bool // ErrBadRange expected
	}{
		"server 500": {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})}},
		"server 429": {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "slow down", http.StatusTooManyRequests)
		})}},
		"oversized body, declared": {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		})}},
		"oversized body, chunked": {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			for rest := big; len(rest) > 0; rest = rest[min(4096, len(rest)):] {
				w.Write(rest[:min(4096, len(rest))])
				w.(http.Flusher).Flush()
			}
		})}},
		"malformed body": {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("<html>maintenance</html>"))
		})}, bad: true},
		"timeout": {checker: HTTPRangeChecker{Timeout: 50 * time.Millisecond, BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})}},
		"connection refused": {checker: HTTPRangeChecker{BaseURL: closed.URL + "/range/"}},
		"cancelled context":  {checker: HTTPRangeChecker{BaseURL: serve(func(w http.ResponseWriter, r *http.Request) {})}, ctx: cancelled},
		"invalid base URL":   {checker: HTTPRangeChecker{BaseURL: "http://[::1"}},
	} {
		ctx := c.ctx
		if ctx == nil {
			ctx = t.Context()
		}
		start := time.Now()
		n, err := c.checker.Breached(ctx, pw)
		if err == nil || n != 0 {
			t.Errorf("%s: Breached = %d, %v; want an error", name, n, err)
			continue
		}
		if c.bad != errors.Is(err, ErrBadRange) {
			t.Errorf("%s: error %v, ErrBadRange expected: %v", name, err, c.bad)
		}
		if strings.Contains(err.Error(), prefix) {
			t.Errorf("%s: error %q names the prefix", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
}

// TestHTTPRangeCheckerBadPrefix: a bad prefix is refused before any request.
func TestHTTPRangeCheckerBadPrefix(t *testing.T) {
	rs := newRangeServer(t)
	c := HTTPRangeChecker{BaseURL: rs.URL + "/range/", Client: rs.Client()}
	for _, p := range badPrefixes {
		if body, err := c.Range(t.Context(), p); body != nil || !errors.Is(err, ErrBadRange) {
			t.Errorf("Range(%q) = %d bytes, %v; want ErrBadRange", p, len(body), err)
		}
	}
	if n := len(rs.requests()); n != 0 {
		t.Errorf("%d requests sent for bad prefixes", n)
	}
	body, err := c.Range(t.Context(), "addbd")
	if err != nil || !bytes.Contains(body, []byte("3AA5619F2932733104EB8CEEF08F6FD2693:126927")) {
		t.Errorf("Range(addbd) = %d bytes, %v", len(body), err)
	}
	if reqs := rs.requests(); len(reqs) != 1 || reqs[0].URL.Path != "/range/ADDBD" {
		t.Errorf("Range(addbd) did not request /range/ADDBD")
	}
}

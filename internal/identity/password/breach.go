package password

import (
	"context"
	"crypto/sha1" // #nosec G505 -- the Have I Been Pwned range API is keyed by SHA-1; nothing is protected by it
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Breach check (AUTH-11) in the k-anonymity range format of Have I Been
// Pwned's Pwned Passwords: the SHA-1 of the password, in uppercase
// hexadecimal, is split into a 5-digit prefix, the only part that leaves the
// process, and a 35-digit suffix. The range of a prefix is a text body of
// lines "SUFFIX:COUNT", one per breached password hash with that prefix.
// Lines end in LF or CRLF; lines with a count of 0 are padding (sent when
// the request asks for it, to hide the size of the range) and never match.
const (
	// HIBPRangeURL is the base URL of the Pwned Passwords range API, used
	// when HTTPRangeChecker.BaseURL is empty.
	HIBPRangeURL = "https://api.pwnedpasswords.com/range/"
	// MaxRangeBody bounds the size of a range body, read from the network
	// or from a file (2 MiB; real ranges, padded, are under 64 KiB).
	MaxRangeBody = 2 << 20
	// DefaultBreachTimeout bounds a range request when
	// HTTPRangeChecker.Timeout is zero.
	DefaultBreachTimeout = 10 * time.Second

	prefixLen = 5
	suffixLen = 35
	userAgent = "relais-password-breach-check"
)

// ErrBadRange reports a range body, or a range prefix, that is not in the
// range format.
var ErrBadRange = errors.New("malformed breach range")

// BreachChecker tells how many times a password appears in a corpus of
// breached passwords; zero means it was not found. An error means the check
// could not be made: the caller decides whether to accept the password then.
type BreachChecker interface {
	// Breached returns the number of times pw appears in the corpus.
	Breached(ctx context.Context, pw string) (count int, err error)
}

// Compile-time checks that both checkers implement BreachChecker.
var (
	_ BreachChecker = HTTPRangeChecker{}
	_ BreachChecker = DirRangeChecker{}
)

// HTTPRangeChecker checks passwords against a range API over HTTP: Have I
// Been Pwned's, or a mirror serving the same format. Only the 5-digit
// prefix of the password's SHA-1 is sent; the request asks for padding
// (header "Add-Padding: true"), so that the size of the response does not
// narrow the prefix down further. The zero value queries Have I Been Pwned.
type HTTPRangeChecker struct {
	// BaseURL is the URL the prefix is appended to, after a '/' if it does
	// not end with one; empty means HIBPRangeURL.
	BaseURL string
	// Client sends the requests; nil means a client with the timeout below.
	Client *http.Client
	// Timeout bounds each request, on top of the context's own deadline;
	// zero means DefaultBreachTimeout.
	Timeout time.Duration
}

// Breached implements [BreachChecker].
func (c HTTPRangeChecker) Breached(ctx context.Context, pw string) (int, error) {
	prefix, suffix := rangeKey(pw)
	body, err := c.fetch(ctx, prefix)
	if err != nil {
		return 0, fmt.Errorf("password: breach check over http: %w", err)
	}
	n, err := countInRange(body, suffix)
	if err != nil {
		return 0, fmt.Errorf("password: breach check over http: %w", err)
	}
	return n, nil
}

// Range returns the range body of prefix, 5 hexadecimal digits in either
// case. It is what Breached uses, exposed for tools that mirror a corpus.
func (c HTTPRangeChecker) Range(ctx context.Context, prefix string) ([]byte, error) {
	p, err := checkPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("password: http range: %w", err)
	}
	body, err := c.fetch(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("password: http range: %w", err)
	}
	return body, nil
}

// fetch gets the range of a checked prefix. Its errors never contain the
// URL, which holds the prefix.
func (c HTTPRangeChecker) fetch(ctx context.Context, prefix string) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultBreachTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	base := c.BaseURL
	if base == "" {
		base = HIBPRangeURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/"+prefix, nil)
	if err != nil {
		return nil, errors.New("invalid base URL")
	}
	req.Header.Set("Add-Padding", "true")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "text/plain")
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: timeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // drop the URL, keep the cause
		}
		return nil, fmt.Errorf("range request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("range request: status %s", resp.Status)
	}
	if resp.ContentLength > MaxRangeBody {
		return nil, fmt.Errorf("range body of %d bytes, at most %d", resp.ContentLength, MaxRangeBody)
	}
	return readRange(resp.Body)
}

// DirRangeChecker checks passwords against an offline corpus in the range
// format: a directory holding one file per prefix, named by the prefix in
// uppercase (as written by Have I Been Pwned's downloader). A missing file
// means the prefix has no breached password.
type DirRangeChecker struct {
	// Dir is the corpus directory.
	Dir string
}

// Breached implements [BreachChecker].
func (d DirRangeChecker) Breached(ctx context.Context, pw string) (int, error) {
	prefix, suffix := rangeKey(pw)
	body, err := d.read(ctx, prefix)
	if err != nil {
		return 0, fmt.Errorf("password: breach check in directory: %w", err)
	}
	n, err := countInRange(body, suffix)
	if err != nil {
		return 0, fmt.Errorf("password: breach check in directory: %w", err)
	}
	return n, nil
}

// Range returns the range body of prefix, 5 hexadecimal digits in either
// case (anything else is refused, so that no prefix can name a file outside
// Dir); a missing file gives an empty body.
func (d DirRangeChecker) Range(ctx context.Context, prefix string) ([]byte, error) {
	p, err := checkPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("password: directory range: %w", err)
	}
	body, err := d.read(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("password: directory range: %w", err)
	}
	return body, nil
}

// read reads the range file of a checked prefix. Its errors never contain
// the file name, which is the prefix.
func (d DirRangeChecker) read(ctx context.Context, prefix string) ([]byte, error) {
	if d.Dir == "" {
		return nil, errors.New("no corpus directory configured")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.Dir, prefix)) // #nosec G304 -- prefix is checked to be 5 hex digits; Dir is the operator's setting
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err // drop the path, keep the cause
		}
		return nil, fmt.Errorf("open range file: %w", err)
	}
	defer f.Close()
	body, err := readRange(f)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	return body, nil
}

// readRange reads a range body of at most MaxRangeBody bytes.
func readRange(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxRangeBody+1))
	if err != nil {
		return nil, fmt.Errorf("read range body: %w", err)
	}
	if len(body) > MaxRangeBody {
		return nil, fmt.Errorf("range body larger than %d bytes", MaxRangeBody)
	}
	return body, nil
}

// rangeKey splits the uppercase hexadecimal SHA-1 of pw into its 5-digit
// prefix and 35-digit suffix.
func rangeKey(pw string) (prefix, suffix string) {
	sum := sha1.Sum([]byte(pw)) // #nosec G401 -- required by the HIBP range format (k-anonymity lookup), not used for protection
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	return h[:prefixLen], h[prefixLen:]
}

// checkPrefix returns prefix in uppercase if it is 5 hexadecimal digits.
func checkPrefix(prefix string) (string, error) {
	if len(prefix) != prefixLen || !isHex(prefix) {
		return "", fmt.Errorf("%w: prefix is not %d hexadecimal digits", ErrBadRange, prefixLen)
	}
	return strings.ToUpper(prefix), nil
}

// countInRange returns the count of suffix (35 uppercase hexadecimal digits)
// in a range body. Suffixes in the body may be in either case; padding lines
// (count 0) and blank lines are skipped; any other line that is not
// SUFFIX:COUNT makes the whole body an error, since a corrupt corpus should
// be noticed rather than half read. Every line is read and compared in
// constant time, whether or not the suffix was already found.
func countInRange(body []byte, suffix string) (int, error) {
	want := []byte(suffix)
	count, lineNo := 0, 0
	for line := range strings.Lines(string(body)) {
		lineNo++
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		s, c, ok := strings.Cut(line, ":")
		if !ok || len(s) != suffixLen || !isHex(s) {
			return 0, fmt.Errorf("%w: line %d is not SUFFIX:COUNT", ErrBadRange, lineNo)
		}
		n, err := parseCount(c)
		if err != nil {
			return 0, fmt.Errorf("%w: line %d: %w", ErrBadRange, lineNo, err)
		}
		if n == 0 {
			continue // padding
		}
		if subtle.ConstantTimeCompare([]byte(strings.ToUpper(s)), want) == 1 {
			count += n
		}
	}
	return count, nil
}

// parseCount reads a count: decimal digits only, at most 9 of them.
func parseCount(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errors.New("count is not a number below 10^9")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("count is not a number below 10^9")
		}
	}
	return strconv.Atoi(s)
}

// isHex reports whether s is made of hexadecimal digits, in either case.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

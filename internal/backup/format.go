package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"
)

// Format is the version of the backup format written in every manifest.
const Format = "relais-backup/v1"

// Kinds of backup points.
const (
	KindFull        = "full"
	KindIncremental = "incremental"
)

// Header is the clear part of a point's manifest: enough to list points and
// find the key, authenticated (as the additional data of the encrypted
// body) but not secret. It holds nothing personal.
type Header struct {
	Format   string `json:"format"`
	TenantID string `json:"tenant_id"`
	// TenantSlug is the tenant's slug at the point (to find its backups
	// by slug when the tenant is gone from the store).
	TenantSlug string `json:"tenant_slug"`
	SetID      string `json:"set_id"`
	PointID    string `json:"point_id"`
	Seq        int    `json:"seq"`      // 0 for the full, 1, 2... for its incrementals
	Kind       string `json:"kind"`     // full or incremental
	Parent     string `json:"parent"`   // the previous point of the set ("" for the full)
	TakenAt    int64  `json:"taken_at"` // Unix microseconds of the snapshot
	Dialect    string `json:"dialect"`
	// Schema is the store's migration version at the point (0 in points
	// written before it was recorded). A set continues with incrementals
	// only while it stays the same: a migration may move rows between
	// tables without recording them as changes.
	Schema int64 `json:"schema,omitempty"`
	// SetKey is the set's random 256-bit key sealed by the tenant's field
	// cipher (AES-256-GCM under the tenant data key, bound to the tenant,
	// the key version and the set id).
	SetKey []byte `json:"set_key"`
	// OtherSetKeys are the sealed keys of earlier sets whose chunks this
	// point reuses (by set id).
	OtherSetKeys map[string][]byte `json:"other_set_keys,omitempty"`
	// AddrKey is the tenant's chunk-address key (HMAC), sealed like SetKey;
	// the same in every set of the target.
	AddrKey []byte `json:"addr_key"`
	// TenantKeys are the tenant's data keys as stored (wrapped by the
	// master key, bound to the tenant id): a restore into a store that
	// does not have the tenant needs them to open SetKey.
	TenantKeys []WrappedKey `json:"tenant_keys"`
}

// WrappedKey is a tenant_keys row.
type WrappedKey struct {
	Version     int    `json:"version"`
	MasterKeyID string `json:"master_key_id"`
	Wrapped     []byte `json:"wrapped"`
	State       string `json:"state"`
}

// Body is the encrypted part of a manifest.
type Body struct {
	Tenant    TenantInfo   `json:"tenant"`
	Watermark string       `json:"watermark"`
	Tables    []TableEntry `json:"tables"`
	PGP       *ObjectRef   `json:"pgp,omitempty"`
}

// TenantInfo is the tenant row at the point.
type TenantInfo struct {
	ID        string `json:"id"`
	Slug      string `json:"slug"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	CreatedAt int64  `json:"created_at"`
	UpdatedAt int64  `json:"updated_at"`
}

// TableEntry describes one table in a point: the chunks holding its rows
// (all of them in a full point; the changed ones in an incremental) and
// deletes, and the table's row count and content checksum at the point
// (for restore tests).
type TableEntry struct {
	Name     string     `json:"name"`
	Columns  []column   `json:"columns"`
	PK       []string   `json:"pk"`
	Whole    bool       `json:"whole"` // rows are the whole table (full point, or an untracked table)
	Chunks   []ChunkRef `json:"chunks"`
	Deletes  []ChunkRef `json:"deletes"`
	Rows     int64      `json:"rows"`
	Checksum string     `json:"checksum"`
}

// ChunkRef names a chunk object and its plaintext length. Set, when not
// empty, is the earlier set that stores it.
type ChunkRef struct {
	ID    string `json:"id"`
	Set   string `json:"set,omitempty"`
	Size  int64  `json:"size"`
	Count int    `json:"count"`
}

// ObjectRef names an object by its SHA-256.
type ObjectRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Point is a backup point as listed.
type Point struct {
	Header
	Object string `json:"object"`
}

// Time is the point's snapshot time.
func (p Point) Time() time.Time { return time.UnixMicro(p.TakenAt).UTC() }

// appendValue appends v, of the given kind, in the neutral encoding: a JSON
// value (text as a string, bytes as standard base64, int and float as
// numbers, bool, null).
func appendValue(dst []byte, kind string, v any) ([]byte, error) {
	if v == nil {
		return append(dst, "null"...), nil
	}
	switch kind {
	case kindBytes:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		default:
			return nil, fmt.Errorf("bytes column holds %T", v)
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	case kindInt:
		switch x := v.(type) {
		case int64:
			return strconv.AppendInt(dst, x, 10), nil
		case int32:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case int:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case bool:
			if x {
				return append(dst, '1'), nil
			}
			return append(dst, '0'), nil
		case float64:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case []byte:
			return append(dst, x...), nil
		case string:
			return append(dst, x...), nil
		}
		return nil, fmt.Errorf("int column holds %T", v)
	case kindBool:
		switch x := v.(type) {
		case bool:
			return strconv.AppendBool(dst, x), nil
		case int64:
			return strconv.AppendBool(dst, x != 0), nil
		}
		return nil, fmt.Errorf("bool column holds %T", v)
	case kindFloat:
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, errors.New("float column holds NaN or infinity")
			}
			return strconv.AppendFloat(dst, x, 'g', -1, 64), nil
		case int64:
			return strconv.AppendInt(dst, x, 10), nil
		}
		return nil, fmt.Errorf("float column holds %T", v)
	default:
		switch x := v.(type) {
		case string:
			return appendJSONString(dst, x), nil
		case []byte:
			return appendJSONString(dst, string(x)), nil
		case int64:
			return appendJSONString(dst, strconv.FormatInt(x, 10)), nil
		}
		return nil, fmt.Errorf("text column holds %T", v)
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (RFC 8259), escaping quotes,
// backslashes and control characters; invalid UTF-8 is refused by the
// caller's data (the stores keep valid text).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// decodeValue turns a decoded JSON value back into a Go value for the
// store, by kind.
func decodeValue(kind string, raw json.RawMessage) (any, error) {
	if bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	switch kind {
	case kindBytes:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return b, nil
	case kindInt:
		return strconv.ParseInt(string(raw), 10, 64)
	case kindBool:
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case kindFloat:
		return strconv.ParseFloat(string(raw), 64)
	default:
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
}

// checksum is an order-independent digest of a table's rows: the sum
// modulo 2^256 of SHA-256 of each row's neutral encoding (big-endian
// integers). It is the same for the same rows in either dialect, whatever
// order they are read in.
type checksum struct {
	sum   [4]uint64 // little-endian limbs
	rows  int64
	canon map[string]string // canonical JSON of recent values
}

// canonical is canonicalJSON with a small cache: the same attribute
// objects recur across rows.
func (c *checksum) canonical(v any) (any, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return v, false
	}
	if len(s) < 3 || (s[0] != '{' && s[0] != '[') {
		return v, false
	}
	if isCanonicalJSON(s) {
		return v, true
	}
	if out, ok := c.canon[s]; ok {
		return out, true
	}
	out, ok := canonicalJSON(s)
	if !ok {
		return v, false
	}
	if c.canon == nil || len(c.canon) > 4096 {
		c.canon = map[string]string{}
	}
	c.canon[s] = out.(string)
	return out, true
}

// addRow adds a row given its encoding and values: rows with JSON text
// are re-encoded with that text in canonical form first.
func (c *checksum) addRow(line []byte, t *table, vals []any) ([32]byte, error) {
	var canon []any
	for i, col := range t.Columns {
		if col.Kind != kindText {
			continue
		}
		if v, ok := c.canonical(vals[i]); ok {
			if canon == nil {
				canon = append([]any(nil), vals...)
			}
			canon[i] = v
		}
	}
	if canon != nil {
		l, err := encodeRow(nil, t, canon)
		if err != nil {
			return [32]byte{}, err
		}
		line = l
	}
	return c.add(line), nil
}

// addValues encodes a row's values into line (a scratch buffer, returned
// for reuse) and adds the row: the sum of a table read back from a store,
// or of the rows a restore writes.
func (c *checksum) addValues(line []byte, t *table, vals []any) ([]byte, error) {
	line, err := encodeRow(line[:0], t, vals)
	if err != nil {
		return line, err
	}
	_, err = c.addRow(line, t, vals)
	return line, err
}

// merge adds the rows summed in o (the sum of a union of rows is the sum
// of their sums).
func (c *checksum) merge(o *checksum) {
	var carry uint64
	for i := range 4 {
		c.sum[i], carry = bits.Add64(c.sum[i], o.sum[i], carry)
	}
	c.rows += o.rows
}

func (c *checksum) add(line []byte) [32]byte {
	h := sha256.Sum256(line)
	var carry uint64
	for i := range 4 {
		limb := binary.BigEndian.Uint64(h[24-8*i:])
		c.sum[i], carry = bits.Add64(c.sum[i], limb, carry)
	}
	c.rows++
	return h
}

func (c *checksum) String() string {
	b := make([]byte, 32)
	for i := range 4 {
		binary.BigEndian.PutUint64(b[24-8*i:], c.sum[i])
	}
	return fmt.Sprintf("%x", b)
}

// parseLine decodes one chunk line (a JSON array of neutral values) by
// kind, without reflection: the fast path for restores. Strings with
// escapes go through encoding/json.
func parseLine(line []byte, kinds []string) ([]any, error) {
	var lp lineParser
	return lp.parse(line, string(line), kinds)
}

// lineParser parses the lines of one chunk with few allocations: the
// values of every row go into one array, text values are substrings of
// the line's string (a substring of the whole chunk's, copied once), and
// blobs are decoded into one buffer (sized for the chunk, so the slices
// handed out stay valid).
type lineParser struct {
	vals  []any
	blobs []byte
}

// parse decodes line, whose text is also str, and returns its values
// (valid as long as the parser's buffers are not reset).
func (lp *lineParser) parse(line []byte, str string, kinds []string) ([]any, error) {
	first := len(lp.vals)
	out := lp.vals
	defer func() { lp.vals = out }()
	fail := func(err error) ([]any, error) {
		out = out[:first]
		return nil, err
	}
	i := 0
	skip := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	skip()
	if i >= len(line) || line[i] != '[' {
		return fail(errors.New("not a JSON array"))
	}
	i++
	for k := 0; ; k++ {
		skip()
		if i < len(line) && line[i] == ']' && k == 0 && len(kinds) == 0 {
			i++
			break
		}
		if k >= len(kinds) {
			return fail(errors.New("too many values"))
		}
		start := i
		var raw []byte
		if i < len(line) && line[i] == '"' {
			i++
			escaped := false
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' {
					escaped = true
					i++
				}
				i++
			}
			if i >= len(line) {
				return fail(errors.New("unterminated string"))
			}
			i++
			raw = line[start:i]
			if !escaped {
				s := raw[1 : len(raw)-1]
				switch kinds[k] {
				case kindBytes:
					need := base64.StdEncoding.DecodedLen(len(s))
					if need == 0 {
						out = append(out, []byte{}) // empty, not NULL
						goto next
					}
					if cap(lp.blobs)-len(lp.blobs) < need {
						lp.blobs = make([]byte, 0, max(need, 64<<10))
					}
					b := lp.blobs[len(lp.blobs) : len(lp.blobs)+need]
					n, err := base64.StdEncoding.Decode(b, s)
					if err != nil {
						return fail(err)
					}
					lp.blobs = lp.blobs[:len(lp.blobs)+n]
					out = append(out, b[:n:n])
				case kindText:
					out = append(out, str[start+1:i-1])
				default:
					v, err := decodeValue(kinds[k], raw)
					if err != nil {
						return fail(err)
					}
					out = append(out, v)
				}
				goto next
			}
			if kinds[k] == kindText {
				// Escapes: the simple ones are undone here, anything else
				// (\u, bytes that are not UTF-8) by encoding/json.
				if v, ok := unescapeSimple(raw[1 : len(raw)-1]); ok {
					out = append(out, v)
					goto next
				}
			}
		} else {
			for i < len(line) && line[i] != ',' && line[i] != ']' && line[i] != ' ' {
				i++
			}
			raw = line[start:i]
		}
		if kinds[k] == kindInt {
			if v, ok := parseSmallInt(raw); ok {
				out = append(out, v)
				goto next
			}
		}
		{
			v, err := decodeValue(kinds[k], raw)
			if err != nil {
				return fail(err)
			}
			out = append(out, v)
		}
	next:
		skip()
		if i >= len(line) {
			return fail(errors.New("unterminated array"))
		}
		if line[i] == ']' {
			i++
			break
		}
		if line[i] != ',' {
			return fail(errors.New("expected a comma"))
		}
		i++
	}
	skip()
	if i != len(line) || len(out)-first != len(kinds) {
		return fail(fmt.Errorf("%d values, want %d", len(out)-first, len(kinds)))
	}
	return out[first:len(out):len(out)], nil
}

// parseSmallInt parses an optional minus sign and 1 to 18 decimal digits
// (what strconv.ParseInt returns for them, without its string); false for
// anything else, which the caller hands to strconv.
func parseSmallInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// unescapeSimple returns the JSON string body s (between its quotes)
// unescaped, when it holds only the escapes \" \\ \/ \b \f \n \r \t, no
// control character and valid UTF-8: then encoding/json would return
// exactly that. False otherwise (a \u escape, invalid UTF-8, which
// encoding/json replaces, or a malformed string), for encoding/json.
func unescapeSimple(s []byte) (string, bool) {
	if !utf8.Valid(s) {
		return "", false
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' {
			return "", false
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return "", false
		}
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default:
			return "", false
		}
	}
	return string(out), true
}

// isCanonicalJSON reports whether s is already in the form canonicalJSON
// gives (what encoding/json writes for the decoded value): no whitespace,
// object keys strictly increasing, strings without escapes or characters
// that encoding/json escapes, numbers as JSON numbers. It is the fast path
// of the checksum: stored JSON is usually written by encoding/json, and
// checking it costs a scan instead of a decode and an encode. A false
// answer only sends s to canonicalJSON.
func isCanonicalJSON(s string) bool {
	i, ok := canonValue(s, 0, 0)
	return ok && i == len(s)
}

// canonValue checks the value starting at s[i] and returns the index after it.
func canonValue(s string, i, depth int) (int, bool) {
	if i >= len(s) || depth > 32 {
		return i, false
	}
	switch c := s[i]; {
	case c == '{':
		i++
		if i < len(s) && s[i] == '}' {
			return i + 1, true
		}
		prev := ""
		for first := true; ; first = false {
			start := i
			var ok bool
			if i, ok = canonString(s, i); !ok {
				return i, false
			}
			key := s[start+1 : i-1]
			if !first && key <= prev {
				return i, false
			}
			prev = key
			if i >= len(s) || s[i] != ':' {
				return i, false
			}
			if i, ok = canonValue(s, i+1, depth+1); !ok {
				return i, false
			}
			if i >= len(s) {
				return i, false
			}
			if s[i] == '}' {
				return i + 1, true
			}
			if s[i] != ',' {
				return i, false
			}
			i++
		}
	case c == '[':
		i++
		if i < len(s) && s[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = canonValue(s, i, depth+1); !ok || i >= len(s) {
				return i, false
			}
			if s[i] == ']' {
				return i + 1, true
			}
			if s[i] != ',' {
				return i, false
			}
			i++
		}
	case c == '"':
		return canonString(s, i)
	case c == 't':
		return i + 4, len(s) >= i+4 && s[i:i+4] == "true"
	case c == 'f':
		return i + 5, len(s) >= i+5 && s[i:i+5] == "false"
	case c == 'n':
		return i + 4, len(s) >= i+4 && s[i:i+4] == "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return canonNumber(s, i)
	}
	return i, false
}

// canonString accepts a string of printable ASCII other than '"', '\\',
// '<', '>' and '&', or valid UTF-8 other than U+2028 and U+2029.
func canonString(s string, i int) (int, bool) {
	if i >= len(s) || s[i] != '"' {
		return i, false
	}
	i++
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20 || c == '\\' || c == '<' || c == '>' || c == '&':
			return i, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
				return i, false
			}
			i += size
		}
	}
	return i, false
}

// canonNumber accepts a JSON number (RFC 8259 grammar), which
// encoding/json keeps as written when decoded with UseNumber.
func canonNumber(s string, i int) (int, bool) {
	if s[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

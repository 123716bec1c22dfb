package backup

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestEncodingRoundTrip: values of every kind, with awkward text, survive
// encodeRow then parseLine, and the line is valid JSON.
func TestEncodingRoundTrip(t *testing.T) {
	tb := &table{Columns: []column{{"a", kindText}, {"b", kindBytes}, {"c", kindInt}, {"d", kindBool}, {"e", kindFloat}, {"f", kindText}, {"g", kindBytes}}}
	rows := [][]any{
		{"plain", []byte{0, 1, 2, 255}, int64(-42), true, 1.5, nil, nil},
		{"quote \" back \\ nl \n tab \t ctl \x01 é 漢字 \u2028", []byte{}, int64(9007199254740993), false, 0.0, "{\"k\": [1, 2]}", []byte("x")},
	}
	kinds := []string{kindText, kindBytes, kindInt, kindBool, kindFloat, kindText, kindBytes}
	for _, r := range rows {
		line, err := encodeRow(nil, tb, r)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(line) {
			t.Fatalf("invalid JSON: %s", line)
		}
		got, err := parseLine(line, kinds)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, r)
		}
	}
	for _, bad := range []string{``, `[`, `["a"`, `[1,2,3,4,5,6,7,8]`, `{"a":1}`, `["a" "b"]`, `["\"]`} {
		if _, err := parseLine([]byte(bad), kinds); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// One parser for a chunk's lines (as a restore uses it): each row
	// keeps its own values while the next ones are parsed into the same
	// buffers, a bad line in between included.
	var chunk []byte
	for _, r := range append(rows, rows...) {
		line, err := encodeRow(nil, tb, r)
		if err != nil {
			t.Fatal(err)
		}
		chunk = append(append(chunk, line...), '\n')
	}
	text := string(chunk)
	lp := lineParser{vals: make([]any, 0, 3), blobs: make([]byte, 0, 4)} // too small: they grow
	var got [][]any
	for off := 0; off < len(chunk); {
		end := off
		for chunk[end] != '\n' {
			end++
		}
		vals, err := lp.parse(chunk[off:end], text[off:end], kinds)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, vals)
		if _, err := lp.parse([]byte(`["x",1]`), `["x",1]`, kinds); err == nil {
			t.Fatal("bad line accepted")
		}
		off = end + 1
	}
	if want := append(rows, rows...); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows of one parser:\n got %#v\nwant %#v", got, want)
	}
}

// TestCanonicalJSONFastPath: text the fast path takes as canonical is
// exactly what canonicalJSON gives, and text in any other form (spacing,
// key order, duplicate keys, invalid JSON) or with escapes goes the slow
// way (which may keep it as is: the fast path is conservative).
func TestCanonicalJSONFastPath(t *testing.T) {
	canonical := []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"é漢字"}}`,
		`{"country":"US","loyalty_points":2966,"vip":false}`,
		`[1,-0,1.5e-3,2E+7,"x",{},[]]`,
		`{"":0,"a":{"b":{"c":[{"d":-12.25}]}}}`,
	}
	for _, s := range canonical {
		if !isCanonicalJSON(s) {
			t.Errorf("%s: not taken as canonical", s)
		}
		if out, ok := canonicalJSON(s); !ok || out != s {
			t.Errorf("%s: canonicalJSON gives %v", s, out)
		}
	}
	other := []string{
		`{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a": 1}`, `[1, 2]`, `{"a":"<b>"}`, `{"a":"x\"y"}`,
		`{"a":"\u00e9"}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":tru}`, `{"a":1`, `[1,]`, `{"a":1}x`,
		`{"a":"` + "\u2028" + `"}`, `{"a":"` + "\xff" + `"}`, `[nul]`, `{"a":1e}`, `{"a":-}`,
	}
	for _, s := range other {
		if isCanonicalJSON(s) {
			t.Errorf("%s: taken as canonical", s)
		}
	}
}

// TestParserFastPaths: the parser's own integer parsing and unescaping
// give what strconv and encoding/json give, and hand them what they do
// not handle themselves (malformed input is still refused).
func TestParserFastPaths(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "007", "-42", "123456789012345678", "-123456789012345678", "9223372036854775807",
		"-9223372036854775808", "9223372036854775808", "+5", "-", "", "1e3", "1.5", "12a", " 1", "null"} {
		want, werr := strconv.ParseInt(s, 10, 64)
		if got, ok := parseSmallInt([]byte(s)); ok && (werr != nil || got != want) {
			t.Errorf("parseSmallInt(%q) = %d, strconv %d, %v", s, got, want, werr)
		}
		got, gerr := decodeValue(kindInt, []byte(s))
		if s == "null" {
			continue
		}
		if (gerr != nil) != (werr != nil) || (werr == nil && got != want) {
			t.Errorf("decodeValue(%q) = %v, %v; strconv %d, %v", s, got, gerr, want, werr)
		}
	}
	for _, body := range []string{``, `plain`, `a\"b`, `a\\b`, `a\/b`, `\b\f\n\r\t`, `{\"k\":[1,2]}`, `é 漢字 ` + "\u2028",
		`\u00e9`, `\ud83d\ude00`, `\ud800`, "bad \xff utf-8", `trailing\`, `\x`, "ctl \x01", `a"b`} {
		raw := []byte(`"` + body + `"`)
		var want string
		werr := json.Unmarshal(raw, &want)
		got, ok := unescapeSimple([]byte(body))
		if ok && (werr != nil || got != want) {
			t.Errorf("unescapeSimple(%q) = %q, encoding/json %q, %v", body, got, want, werr)
		}
		// Through the parser, for a string with escapes (one without is
		// taken as it is): the same value or the same refusal.
		if !strings.Contains(body, `\`) {
			continue
		}
		vals, perr := parseLine([]byte(`[`+string(raw)+`]`), []string{kindText})
		if (perr != nil) != (werr != nil) || (perr == nil && vals[0] != want) {
			t.Errorf("parseLine(%s) = %v, %v; encoding/json %q, %v", raw, vals, perr, want, werr)
		}
	}
}

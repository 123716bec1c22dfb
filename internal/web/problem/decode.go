package problem

import (
	"bufio"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxBodyBytes is the body limit [DecodeJSON] applies when given a
// limit of zero or less: 1 MiB.
const DefaultMaxBodyBytes int64 = 1 << 20

// DecodeJSON decodes the JSON body of r into dst, a non-nil pointer, and
// returns nil, or returns the problem to send (it writes nothing to w
// itself; w is needed to limit the body). It requires:
//
//   - Content-Type application/json, optionally with charset=utf-8, else
//     415 unsupported_media_type;
//   - a body of at most maxBytes bytes (DefaultMaxBodyBytes if maxBytes <=
//     0), else 413 body_too_large; the connection is then closed after the
//     response;
//   - exactly one JSON value, not null, with only the fields dst knows:
//     otherwise 400 bad_json (empty body, malformed JSON with its byte
//     offset, trailing data), 400 unknown_field naming the field, or 400
//     validation_failed naming the field and the expected type.
//
// After a problem, dst may be partly filled and must not be used.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, maxBytes int64) *Problem {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBodyBytes
	}
	if p := checkContentType(r.Header.Get("Content-Type")); p != nil {
		return p
	}
	if r.ContentLength > maxBytes {
		return tooLarge(maxBytes)
	}
	if r.Body == nil {
		return badJSON("the request body is empty; send a JSON object")
	}
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, maxBytes)}
	br := bufio.NewReader(body)

	// Skip leading white space to learn the first byte of the value.
	var skipped int64
	var first byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			if p := readProblem(err, maxBytes); p != nil {
				return p
			}
			return badJSON("the request body is empty; send a JSON object")
		}
		if b == ' ' || b == '\t' || b == '\n' || b == '\r' {
			skipped++
			continue
		}
		_ = br.UnreadByte()
		first = b
		break
	}

	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err, skipped+dec.InputOffset(), skipped, body.n, maxBytes)
	}
	if first == 'n' { // the only valid JSON value starting with n is null
		return badJSON("the request body is null; send a JSON object")
	}
	end := skipped + dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		if p := readProblem(err, maxBytes); p != nil {
			return p
		}
		return badJSON(fmt.Sprintf("unexpected data after the JSON value, which ends at byte offset %d; send exactly one JSON value", end))
	}
	return nil
}

func checkContentType(ct string) *Problem {
	const want = "Content-Type must be application/json (with charset=utf-8, if a charset is given)"
	p := &Problem{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType}
	if strings.TrimSpace(ct) == "" {
		p.Detail = want + "; the request has no Content-Type"
		return p
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		p.Detail = want + "; the request's Content-Type is malformed"
		return p
	}
	if mt != "application/json" {
		p.Detail = fmt.Sprintf("%s; got %s", want, quoteShort(mt))
		return p
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			p.Detail = fmt.Sprintf("%s; got parameter %s", want, quoteShort(k+"="+v))
			return p
		}
	}
	return nil
}

// readProblem maps a body read failure to a problem; nil means err is not
// one (io.EOF, a syntax error...).
func readProblem(err error, maxBytes int64) *Problem {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge(maxBytes)
	}
	return nil
}

// decodeProblem maps a Decode error to a problem. offset is the decoder's
// position, skipped the white space before the value, read the body bytes
// read so far. Byte offsets in details count from 0.
func decodeProblem(err error, offset, skipped, read, maxBytes int64) *Problem {
	if p := readProblem(err, maxBytes); p != nil {
		return p
	}
	var (
		syntax  *json.SyntaxError
		typ     *json.UnmarshalTypeError
		invalid *json.InvalidUnmarshalError
		timeErr *time.ParseError
	)
	unknown, isUnknown := unknownField(err)
	switch {
	case errors.Is(err, io.EOF):
		return badJSON("the request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badJSON(fmt.Sprintf("malformed JSON: the body ends after %d bytes, before the JSON value is complete", read))
	case errors.As(err, &syntax):
		// Offset counts the bytes read up to and including the bad one.
		return badJSON(fmt.Sprintf("malformed JSON at byte offset %d: %s", skipped+max(syntax.Offset-1, 0), syntax.Error()))
	case isUnknown:
		return &Problem{
			Status: http.StatusBadRequest,
			Code:   CodeUnknownField,
			Detail: fmt.Sprintf("unknown field %s; remove it or check its spelling", quoteShort(unknown)),
			Errors: []FieldError{{Field: shorten(unknown), Message: "unknown field"}},
		}
	case errors.As(err, &typ):
		want, got := describeType(typ.Type), describeValue(typ.Value)
		if typ.Field == "" {
			return &Problem{
				Status: http.StatusBadRequest,
				Code:   CodeBadJSON,
				Detail: fmt.Sprintf("the request body must be %s, not %s", want, got),
			}
		}
		msg := fmt.Sprintf("must be %s, not %s", want, got)
		return &Problem{
			Status: http.StatusBadRequest,
			Code:   CodeValidation,
			Detail: fmt.Sprintf("field %s %s", quoteShort(typ.Field), msg),
			Errors: []FieldError{{Field: typ.Field, Message: msg}},
		}
	case errors.As(err, &timeErr):
		return &Problem{
			Status: http.StatusBadRequest,
			Code:   CodeValidation,
			Detail: fmt.Sprintf("a timestamp before byte offset %d is not in RFC 3339 format (for example 2026-03-01T12:00:00Z)", offset),
		}
	case errors.As(err, &invalid):
		// A programming error: dst is not a non-nil pointer.
		return &Problem{
			Status: http.StatusInternalServerError,
			Code:   CodeInternal,
			Detail: "the server could not decode the request; this is a bug, please report it with the request id",
		}
	default:
		// A value's own decoder (UnmarshalJSON) refused it, or the
		// body could not be read. Its text may hold internals: not shown.
		return badJSON(fmt.Sprintf("a value before byte offset %d could not be decoded; check its format", offset))
	}
}

// unknownField extracts the field name from encoding/json's
// `json: unknown field "name"` error, which has no type of its own.
func unknownField(err error) (string, bool) {
	const prefix = "json: unknown field "
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return "", false
	}
	name, uerr := strconv.Unquote(msg[len(prefix):])
	if uerr != nil {
		return "", false
	}
	return name, true
}

// describeType names, for a person, what JSON a Go type accepts.
func describeType(t reflect.Type) string {
	if t == nil {
		return "a different value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 timestamp string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return fmt.Sprintf("an integer from %d to %d", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return fmt.Sprintf("an integer from 0 to %d", uint64(1)<<t.Bits()-1)
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64-encoded string"
		}
		return "an array"
	case reflect.Array:
		return fmt.Sprintf("an array of %d elements", t.Len())
	case reflect.Map, reflect.Struct:
		if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
			return "a string"
		}
		return "an object"
	case reflect.Interface:
		return "a JSON value"
	}
	return "a different value"
}

// describeValue names the JSON value encoding/json found ("string",
// "number", "number 1.5", "bool", "array", "object").
func describeValue(v string) string {
	switch {
	case v == "string":
		return "a string"
	case v == "bool":
		return "true or false"
	case v == "array":
		return "an array"
	case v == "object":
		return "an object"
	case v == "number":
		return "a number"
	case strings.HasPrefix(v, "number "):
		n := strings.TrimPrefix(v, "number ")
		if len(n) <= 32 && strings.Trim(n, "0123456789+-.eE") == "" {
			return "the number " + n
		}
		return "a number"
	}
	return "a different value"
}

// quoteShort quotes s for a detail, cut to 64 characters.
func quoteShort(s string) string { return strconv.Quote(shorten(s)) }

// shorten cuts client-supplied text to 64 characters before it is echoed.
func shorten(s string) string {
	const limit = 64
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit]) + "…"
	}
	return s
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func badJSON(detail string) *Problem {
	return &Problem{Status: http.StatusBadRequest, Code: CodeBadJSON, Detail: detail}
}

func tooLarge(maxBytes int64) *Problem {
	return &Problem{
		Status: http.StatusRequestEntityTooLarge,
		Code:   CodeBodyTooLarge,
		Detail: fmt.Sprintf("the request body is larger than the %d-byte limit; send a smaller body or split the request", maxBytes),
	}
}

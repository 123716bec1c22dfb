package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Funcs returns the helpers templates may call besides the built-ins, as a
// new map each time:
//
//	default D V    V, or D when V is empty (nil, "", 0, false, empty list)
//	upper V        V in upper case
//	lower V        V in lower case
//	trim V         V without leading and trailing white space
//	truncate N V   the first N characters of V
//	date L V       V formatted with the Go layout L ("2006-01-02"); V is a
//	               time, an RFC 3339 text, a "2006-01-02" text or Unix seconds
//
// They return plain strings, never trusted HTML: in an HTML part their
// results are escaped like any merge value. They are pipeline-friendly:
// {{.contact.first_name | default "there" | upper}}.
func Funcs() map[string]any {
	return map[string]any{
		"default":  fnDefault,
		"upper":    func(v any) string { return strings.ToUpper(toString(v)) },
		"lower":    func(v any) string { return strings.ToLower(toString(v)) },
		"trim":     func(v any) string { return strings.TrimSpace(toString(v)) },
		"truncate": fnTruncate,
		"date":     fnDate,
	}
}

// builtins are text/template's own functions a template may use. "call" is
// left out on purpose: it would call any function value found in the data.
func builtins() map[string]bool {
	return map[string]bool{
		"and": true, "or": true, "not": true, "len": true, "index": true, "slice": true,
		"print": true, "printf": true, "println": true, "eq": true, "ne": true, "lt": true,
		"le": true, "gt": true, "ge": true, "html": true, "js": true, "urlquery": true,
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(v)
	}
}

func fnDefault(def, v any) any {
	if isEmpty(v) {
		return def
	}
	return v
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x) == ""
	case bool:
		return !x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.Array, reflect.String:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	default:
		return rv.IsZero()
	}
}

func fnTruncate(n int, v any) string {
	s := toString(v)
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

var errNotDate = errors.New("the value is not a date (expected an RFC 3339 time, a 2006-01-02 date or Unix seconds)")

// fnDate formats a date. Its errors never repeat the value (it may be
// personal data).
func fnDate(layout string, v any) (string, error) {
	t, err := asTime(v)
	if err != nil {
		return "", err
	}
	return t.Format(layout), nil
}

func asTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case *time.Time:
		if x != nil {
			return *x, nil
		}
	case string:
		s := strings.TrimSpace(x)
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		if t, err := time.Parse("2006-01-02", s); err == nil {
			return t, nil
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return unixSeconds(float64(n))
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return unixSeconds(f)
		}
	case float64:
		return unixSeconds(x)
	case float32:
		return unixSeconds(float64(x))
	case int:
		return unixSeconds(float64(x))
	case int64:
		return unixSeconds(float64(x))
	case int32:
		return unixSeconds(float64(x))
	}
	return time.Time{}, errNotDate
}

func unixSeconds(f float64) (time.Time, error) {
	// Years 0001 to 9999: what a date layout can print.
	if math.IsNaN(f) || f < -62135596800 || f > 253402300799 {
		return time.Time{}, errNotDate
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

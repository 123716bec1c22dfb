package smshttp

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/connectors"
)

// parsePath splits a dotted path ("messages.0.id"); "" gives nil.
func parsePath(field, raw string) ([]string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	parts := strings.Split(raw, ".")
	for _, p := range parts {
		if p == "" {
			return nil, connectors.ConfigError(field, "%q has an empty path element", raw)
		}
	}
	return parts, nil
}

// lookup follows path through decoded JSON: object keys, and array indexes
// for arrays.
func lookup(v any, path []string) (any, bool) {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[p]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// scalar returns a JSON string, number or boolean as text.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// lookupString is lookup then scalar; a nil path gives "", false.
func lookupString(v any, path []string) (string, bool) {
	if path == nil {
		return "", false
	}
	x, ok := lookup(v, path)
	if !ok {
		return "", false
	}
	return scalar(x)
}

// setPath sets a dotted field in a JSON object, making the intermediate
// objects.
func setPath(root map[string]any, name, value string) {
	parts := strings.Split(name, ".")
	m := root
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}

// decodeJSON decodes b keeping numbers exact (operator ids can be long
// integers).
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errTrailing
	}
	return v, nil
}

// jsonMarshal encodes v without escaping <, > and & (an SMS text is sent
// as written).
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

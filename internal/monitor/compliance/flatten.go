package compliance

import (
	"encoding/json"
	"fmt"
)

// flatten turns a value into dotted keys and printed values.
func flatten(v any) map[string]string {
	raw, _ := json.Marshal(v) // policies always encode
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	out := map[string]string{}
	var walk func(prefix string, x any)
	walk = func(prefix string, x any) {
		if mm, ok := x.(map[string]any); ok {
			for k, v := range mm {
				walk(prefix+k+".", v)
			}
			return
		}
		out[prefix] = fmt.Sprint(x)
	}
	walk("", m)
	return out
}

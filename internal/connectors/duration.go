package connectors

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration that reads and writes as text ("30s",
// "1m30s") in connector configurations, so that a stored configuration is
// readable and a number without a unit is refused instead of being taken as
// nanoseconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String prints the duration in Go's form ("30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It accepts Go
// durations ("500ms", "30s", "2m") and refuses negative values.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (examples: 500ms, 30s, 2m)", s)
	}
	*d = Duration(v)
	return nil
}

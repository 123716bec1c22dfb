package forward

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
)

// Syslog message constants (RFC 5424). Facility 13 is "log audit";
// severity 5 is "notice". SDID uses 32473, the private enterprise number
// IANA reserves for documentation (RFC 5612): an operator who needs a
// registered one can map it in the receiver.
const (
	syslogFacility = 13
	syslogSeverity = 5
	syslogSDID     = "relais@32473"
	syslogApp      = "relais"
	// maxSyslogMsgID is RFC 5424's MSGID limit.
	maxSyslogMsgID = 32
)

// syslogFrame returns the RFC 5424 formatter with RFC 5425 / RFC 6587
// octet-counted framing ("LEN SP MSG"), so a message may hold any byte.
func syslogFrame(hostname string) func(audit.Record) ([]byte, error) {
	host := headerField(hostname, 255)
	return func(r audit.Record) ([]byte, error) {
		msg, err := syslogMessage(host, r)
		if err != nil {
			return nil, err
		}
		return append([]byte(strconv.Itoa(len(msg))+" "), msg...), nil
	}
}

// syslogMessage formats one event:
//
//	<109>1 2026-11-28T09:00:00.123456Z host relais - user.login [relais@32473 tenant="..." seq="7" ...] BOM{json}
//
// The structured data carries the header fields a receiver filters on; the
// message is the event as JSON (UTF-8, so it starts with the BOM).
func syslogMessage(host string, r audit.Record) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s [%s", syslogFacility*8+syslogSeverity,
		r.At.UTC().Format("2006-01-02T15:04:05.000000Z"), host, syslogApp,
		headerField(r.Action, maxSyslogMsgID), syslogSDID)
	for _, p := range [][2]string{
		{"tenant", r.TenantID}, {"seq", strconv.FormatInt(r.Seq, 10)}, {"category", r.Category},
		{"actor_type", r.ActorType}, {"actor_id", r.ActorID}, {"object_type", r.ObjectType},
		{"object_id", r.ObjectID}, {"ip", r.IP}, {"request_id", r.RequestID},
		{"leaf", hex.EncodeToString(r.LeafHash)},
	} {
		if p[1] == "" {
			continue
		}
		fmt.Fprintf(&b, " %s=\"%s\"", p[0], sdEscape(p[1]))
	}
	b.WriteString("] \ufeff")
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("syslog: encode event %d: %w", r.Seq, err)
	}
	b.Write(body)
	return []byte(b.String()), nil
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func headerField(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// sdEscape escapes a structured-data parameter value (RFC 5424 §6.3.3):
// '"', '\' and ']' take a backslash.
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}

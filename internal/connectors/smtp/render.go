package smtp

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/relais-dev/relais/internal/connectors"
)

// reserved reports whether a header (lower-case name) is set by the
// renderer and so cannot be given in Message.Headers.
func reserved(lower string) bool {
	switch lower {
	case "bcc", "cc", "content-disposition", "content-transfer-encoding",
		"content-type", "date", "dkim-signature", "from", "message-id",
		"mime-version", "received", "reply-to", "return-path", "sender",
		"subject", "to":
		return true
	}
	return false
}

// maxWord bounds an unbreakable run of characters in a header value, so
// that no header line can exceed RFC 5322's 998 characters.
const maxWord = 900

// prepared is a message ready for the wire.
type prepared struct {
	envFrom   string
	rcpt      string
	messageID string
	// sig is the DKIM-Signature header field (with its CRLF), or empty.
	sig string
	// data is the message, CRLF line endings, ending with CRLF.
	data []byte
}

// renderer turns connectors.Messages into RFC 5322 / MIME messages.
type renderer struct {
	defaultFrom *mail.Address
	envFrom     string
	dkimKey     crypto.Signer
	dkimDomain  string
	dkimSel     string
	now         func() time.Time
}

// badMessage is a Permanent error about the message itself.
func badMessage(format string, args ...any) error {
	return connectors.Permanent(fmt.Errorf("smtp: message refused: "+format, args...))
}

// prepare renders m into buf (reset first) and signs it. Errors are
// Permanent: the message itself cannot be sent.
func (r *renderer) prepare(buf *bytes.Buffer, m *connectors.Message) (prepared, error) {
	var p prepared
	if err := checkRef(m.Ref); err != nil {
		return p, err
	}
	if m.Channel != "" && m.Channel != connectors.ChannelEmail {
		return p, badMessage("channel %q: this connector sends email", m.Channel)
	}
	from := r.defaultFrom
	if m.From != "" {
		a, err := parseAddress(m.From)
		if err != nil {
			return p, badMessage("From: %v", err)
		}
		from = a
	}
	if from == nil {
		return p, badMessage("no From address (set it on the message or in the connector's from setting)")
	}
	to, err := parseAddress(m.To)
	if err != nil {
		return p, badMessage("To: %v", err)
	}
	var replyTo *mail.Address
	if m.ReplyTo != "" {
		if replyTo, err = parseAddress(m.ReplyTo); err != nil {
			return p, badMessage("Reply-To: %v", err)
		}
	}
	domain := strings.ToLower(from.Address[strings.LastIndexByte(from.Address, '@')+1:])
	p.messageID = "<" + m.Ref + "@" + domain + ">"
	p.rcpt = to.Address
	p.envFrom = r.envFrom
	if p.envFrom == "" {
		p.envFrom = from.Address
	}
	for _, s := range [...]string{m.Subject, m.Text, m.HTML} {
		if !utf8.ValidString(s) {
			return p, badMessage("subject or body is not valid UTF-8")
		}
	}
	subject, err := headerText(m.Subject)
	if err != nil {
		return p, badMessage("Subject: %v", err)
	}
	extra, err := extraHeaders(m.Headers)
	if err != nil {
		return p, err
	}

	buf.Reset()
	writeField(buf, "Date", r.now().Format(time.RFC1123Z))
	writeField(buf, "From", from.String())
	writeField(buf, "To", to.String())
	if replyTo != nil {
		writeField(buf, "Reply-To", replyTo.String())
	}
	writeField(buf, "Subject", subject)
	writeField(buf, "Message-ID", p.messageID)
	for _, h := range extra {
		writeField(buf, h[0], h[1])
	}
	buf.WriteString("MIME-Version: 1.0\r\n")
	switch {
	case m.Text != "" && m.HTML != "":
		sum := sha256.Sum256([]byte(m.Ref))
		// "=_" never occurs in quoted-printable text, so the boundary
		// cannot appear in a part.
		boundary := "=_relais_" + hex.EncodeToString(sum[:12])
		writeField(buf, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary}))
		buf.WriteString("\r\n")
		buf.WriteString("This is a multi-part message in MIME format.\r\n")
		writePart(buf, boundary, "text/plain; charset=utf-8", m.Text)
		writePart(buf, boundary, "text/html; charset=utf-8", m.HTML)
		buf.WriteString("--" + boundary + "--\r\n")
	case m.HTML != "":
		buf.WriteString("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		writeQP(buf, m.HTML)
	default:
		buf.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		writeQP(buf, m.Text)
	}
	p.data = buf.Bytes()

	if r.dkimKey != nil {
		keys := []string{"From", "From", "To", "Subject", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}
		if replyTo != nil {
			keys = append(keys, "Reply-To")
		}
		for _, h := range extra {
			keys = append(keys, h[0])
			if strings.HasPrefix(strings.ToLower(h[0]), "list-unsubscribe") {
				keys = append(keys, h[0])
			}
		}
		s, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 r.dkimDomain,
			Selector:               r.dkimSel,
			Signer:                 r.dkimKey,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             keys,
		})
		if err != nil {
			return p, connectors.Permanent(fmt.Errorf("smtp: DKIM signer: %w", err))
		}
		if _, err := s.Write(p.data); err != nil {
			_ = s.Close()
			return p, connectors.Permanent(fmt.Errorf("smtp: DKIM signing: %w", err))
		}
		if err := s.Close(); err != nil {
			return p, connectors.Permanent(fmt.Errorf("smtp: DKIM signing: %w", err))
		}
		p.sig = s.Signature()
	}
	return p, nil
}

// checkRef requires Ref to be usable as the left part of a Message-ID
// (RFC 5322 dot-atom-text).
func checkRef(ref string) error {
	if ref == "" {
		return badMessage("empty Ref")
	}
	if len(ref) > 200 {
		return badMessage("Ref longer than 200 characters")
	}
	if ref[0] == '.' || ref[len(ref)-1] == '.' || strings.Contains(ref, "..") {
		return badMessage("Ref %q cannot be the left part of a Message-ID", ref)
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0 {
			continue
		}
		return badMessage("Ref %q cannot be the left part of a Message-ID", ref)
	}
	return nil
}

// headerText encodes an unstructured header value: as is when it is
// printable ASCII, otherwise as RFC 2047 encoded-words. Line breaks are
// refused (header injection).
func headerText(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", errors.New("contains a line break")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 && s[i] != '\t' || s[i] >= 0x7f {
			return mime.QEncoding.Encode("utf-8", s), nil
		}
	}
	for w := range strings.FieldsSeq(s) {
		if len(w) > maxWord {
			return "", fmt.Errorf("a word longer than %d characters", maxWord)
		}
	}
	return s, nil
}

// extraHeaders validates Message.Headers and returns them sorted by name.
func extraHeaders(h map[string]string) ([][2]string, error) {
	if len(h) == 0 {
		return nil, nil
	}
	out := make([][2]string, 0, len(h))
	seen := make(map[string]bool, len(h))
	for name, value := range h {
		if name == "" || len(name) > 76 {
			return nil, badMessage("header name %q: empty or too long", name)
		}
		for i := 0; i < len(name); i++ {
			if name[i] <= ' ' || name[i] >= 0x7f || name[i] == ':' {
				return nil, badMessage("header name %q: not a field name", name)
			}
		}
		lower := strings.ToLower(name)
		if reserved(lower) {
			return nil, badMessage("header %q is set by the connector and cannot be given", name)
		}
		if seen[lower] {
			return nil, badMessage("header %q given twice", name)
		}
		seen[lower] = true
		v, err := headerText(value)
		if err != nil {
			return nil, badMessage("header %q: %v", name, err)
		}
		out = append(out, [2]string{name, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out, nil
}

// writeField writes "Name: value" folded at spaces so that lines stay
// within 78 characters where the value allows (RFC 5322 2.1.1; RFC 2047
// wants lines with encoded-words within 76, which 75-character words
// after a folding space meet).
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(":")
	n := len(name) + 1
	for w := range strings.SplitSeq(value, " ") {
		if n+1+len(w) > 78 && w != "" {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

func writePart(b *bytes.Buffer, boundary, contentType, body string) {
	b.WriteString("\r\n--")
	b.WriteString(boundary)
	b.WriteString("\r\nContent-Type: ")
	b.WriteString(contentType)
	b.WriteString("\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	writeQP(b, body)
}

// writeQP writes body quoted-printable (RFC 2045 6.7) with CRLF line
// endings, ending with CRLF: line breaks (LF or CRLF) become CRLF; "=",
// control characters, bytes above 126, a lone CR and a space or tab before
// a line break are encoded; lines are cut with soft breaks at 76
// characters. Runs of plain characters are copied at once, which makes it
// several times faster than mime/quotedprintable for mostly-ASCII text.
func writeQP(b *bytes.Buffer, body string) {
	const hexdig = "0123456789ABCDEF"
	n, run := 0, 0 // n: length of the current output line; run: start of the pending plain run
	for i := 0; i < len(body); {
		// Fast path: plain characters that fit on the line, including a
		// space or tab that is not followed by a line break.
		for i < len(body) && n < 75 {
			c := body[i]
			if c-33 <= 93 && c != '=' {
				i++
				n++
				continue
			}
			if (c == ' ' || c == '\t') && i+1 < len(body) && body[i+1] != '\n' && body[i+1] != '\r' {
				i++
				n++
				continue
			}
			break
		}
		if i == len(body) {
			break
		}
		c := body[i]
		if c == '\n' || c == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			b.WriteString(body[run:i])
			b.WriteString("\r\n")
			n = 0
			if c == '\r' {
				i++
			}
			i++
			run = i
			continue
		}
		plain := c-33 <= 93 && c != '='
		if c == ' ' || c == '\t' {
			atEOL := i+1 == len(body) || body[i+1] == '\n' || body[i+1] == '\r' && i+2 < len(body) && body[i+2] == '\n'
			plain = !atEOL
		}
		w := 1
		if !plain {
			w = 3
		}
		if n+w > 75 { // keep room for the "=" of a soft break
			b.WriteString(body[run:i])
			b.WriteString("=\r\n")
			n = 0
			run = i
		}
		if !plain {
			b.WriteString(body[run:i])
			b.WriteByte('=')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
			run = i + 1
		}
		n += w
		i++
	}
	b.WriteString(body[run:])
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
}

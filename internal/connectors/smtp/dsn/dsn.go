// Package dsn reads delivery status notifications (bounces): RFC 3464
// reports (multipart/report; report-type=delivery-status), including the
// UTF-8 form of RFC 6533 (message/global-delivery-status), as mail servers
// send them back to the envelope sender of a message Relais sent.
//
// [Parse] returns, for each recipient the report is about, its action
// (failed, delayed, delivered, relayed, expanded), its status code
// (RFC 3463: 5.x.x permanent, 4.x.x transient) and diagnostic, and the
// Message-ID of the original message, read from the report's third part
// (the returned message or its headers). Only well-formed reports are
// accepted: free-text bounces that do not follow RFC 3464 are refused with
// ErrNotDSN, so that guessing never marks a message bounced.
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
)

// Limits on hostile input.
const (
	// MaxSize bounds a report read by Parse.
	MaxSize = 1 << 20
	// MaxRecipients bounds the per-recipient blocks of one report.
	MaxRecipients = 100
	maxParts      = 10
)

// ErrNotDSN is returned for a message that is not a delivery status
// notification in the RFC 3464 form.
var ErrNotDSN = errors.New("dsn: not a delivery status notification (RFC 3464)")

// Recipient is one recipient's delivery status.
type Recipient struct {
	// FinalRecipient is the address the report is about (lower-cased).
	FinalRecipient string
	// Action is failed, delayed, delivered, relayed or expanded.
	Action string
	// Status is the RFC 3463 status code, e.g. 5.1.1.
	Status string
	// Diagnostic is the remote server's answer, when given.
	Diagnostic string
}

// Permanent reports whether the status is a permanent failure (5.x.x).
func (r Recipient) Permanent() bool { return strings.HasPrefix(r.Status, "5.") }

// Report is a parsed notification.
type Report struct {
	// MessageID is the original message's Message-ID, without angle
	// brackets ("" when the report does not return it).
	MessageID  string
	Recipients []Recipient
}

var (
	statusRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
	actions  = map[string]bool{"failed": true, "delayed": true, "delivered": true, "relayed": true, "expanded": true}
)

// Parse reads one notification (a whole RFC 5322 message).
func Parse(r io.Reader) (Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return Report{}, fmt.Errorf("dsn: read: %w", err)
	}
	if len(raw) > MaxSize {
		return Report{}, fmt.Errorf("dsn: report larger than %d bytes", MaxSize)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrNotDSN, err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") || params["boundary"] == "" {
		return Report{}, ErrNotDSN
	}
	var rep Report
	found := false
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; ; i++ {
		if i >= maxParts {
			return Report{}, fmt.Errorf("dsn: more than %d parts", maxParts)
		}
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Report{}, fmt.Errorf("%w: %v", ErrNotDSN, err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			if found {
				return Report{}, errors.New("dsn: two delivery-status parts")
			}
			if rep.Recipients, err = parseStatus(p); err != nil {
				return Report{}, err
			}
			found = true
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			if id, err := originalMessageID(p); err == nil {
				rep.MessageID = id
			}
		}
	}
	if !found {
		return Report{}, fmt.Errorf("%w: no delivery-status part", ErrNotDSN)
	}
	return rep, nil
}

// parseStatus reads the delivery-status body: one block of per-message
// fields, then one block per recipient, separated by blank lines.
func parseStatus(r io.Reader) ([]Recipient, error) {
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(r, MaxSize)))
	if _, err := tp.ReadMIMEHeader(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("dsn: per-message fields: %w", err)
	}
	var out []Recipient
	for {
		h, err := tp.ReadMIMEHeader()
		if len(h) > 0 {
			if len(out) == MaxRecipients {
				return nil, fmt.Errorf("dsn: more than %d recipients", MaxRecipients)
			}
			rc, perr := recipient(h)
			if perr != nil {
				return nil, perr
			}
			out = append(out, rc)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dsn: per-recipient fields: %w", err)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dsn: no recipient in the report")
	}
	return out, nil
}

func recipient(h textproto.MIMEHeader) (Recipient, error) {
	rc := Recipient{
		Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
		Status:     strings.TrimSpace(h.Get("Status")),
		Diagnostic: strings.TrimSpace(h.Get("Diagnostic-Code")),
	}
	// Final-Recipient: rfc822; jane@example.test (the address type, then
	// the address; utf-8 for RFC 6533).
	fr := h.Get("Final-Recipient")
	typ, addr, ok := strings.Cut(fr, ";")
	typ = strings.ToLower(strings.TrimSpace(typ))
	if !ok || (typ != "rfc822" && typ != "utf-8") {
		return Recipient{}, fmt.Errorf("dsn: Final-Recipient %q is not an rfc822 address", fr)
	}
	rc.FinalRecipient = strings.ToLower(strings.Trim(strings.TrimSpace(addr), "<>"))
	if !strings.Contains(rc.FinalRecipient, "@") {
		return Recipient{}, fmt.Errorf("dsn: Final-Recipient %q is not an address", fr)
	}
	if !actions[rc.Action] {
		return Recipient{}, fmt.Errorf("dsn: unknown Action %q", rc.Action)
	}
	// "5.1.1 (user unknown)": the code is the first word.
	rc.Status, _, _ = strings.Cut(rc.Status, " ")
	if !statusRE.MatchString(rc.Status) {
		return Recipient{}, fmt.Errorf("dsn: Status %q is not an RFC 3463 code", rc.Status)
	}
	if len(rc.Diagnostic) > 500 {
		rc.Diagnostic = rc.Diagnostic[:500]
	}
	return rc, nil
}

// originalMessageID reads the Message-ID of the returned message (or of
// its returned headers).
func originalMessageID(r io.Reader) (string, error) {
	h, err := textproto.NewReader(bufio.NewReader(io.LimitReader(r, MaxSize))).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	id := strings.TrimSpace(h.Get("Message-Id"))
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || len(id) < 5 {
		return "", errors.New("dsn: no Message-ID in the returned message")
	}
	return id[1 : len(id)-1], nil
}

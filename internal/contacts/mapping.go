package contacts

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Import column targets (values of ImportOptions.Mapping).
const (
	ColEmail        = "email"
	ColPhone        = "phone"
	ColFirstName    = "first_name"
	ColLastName     = "last_name"
	ColLocale       = "locale"
	ColTimeZone     = "timezone"
	ColConsentEmail = "consent.email" // granted/yes/true/1, withdrawn/no/false/0, pending, or empty
	ColConsentSMS   = "consent.sms"
	ColIgnore       = "-" // the column is read and ignored
	// "attr.<key>" (or just "<key>") maps a column to a declared attribute.
)

// autoTargets maps usual header names (lower-case, spaces and dashes as _)
// to targets.
var autoTargets = map[string]string{
	"email": ColEmail, "e_mail": ColEmail, "mail": ColEmail, "email_address": ColEmail, "courriel": ColEmail,
	"phone": ColPhone, "mobile": ColPhone, "telephone": ColPhone, "phone_number": ColPhone, "mobile_phone": ColPhone, "tel": ColPhone,
	"first_name": ColFirstName, "firstname": ColFirstName, "given_name": ColFirstName, "prenom": ColFirstName,
	"last_name": ColLastName, "lastname": ColLastName, "surname": ColLastName, "family_name": ColLastName, "nom": ColLastName,
	"locale": ColLocale, "language": ColLocale, "lang": ColLocale,
	"timezone": ColTimeZone, "time_zone": ColTimeZone, "tz": ColTimeZone,
	"consent_email": ColConsentEmail, "email_consent": ColConsentEmail, "optin_email": ColConsentEmail, "email_optin": ColConsentEmail,
	"consent_sms": ColConsentSMS, "sms_consent": ColConsentSMS, "optin_sms": ColConsentSMS, "sms_optin": ColConsentSMS,
	"consent.email": ColConsentEmail, "consent.sms": ColConsentSMS,
}

func normHeader(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	return strings.NewReplacer(" ", "_", "-", "_").Replace(h)
}

// column is one mapped column of the file.
type column struct {
	name   string // header name, for error reports
	target string // a Col* constant, or "attr"
	attr   AttributeDef
}

// resolveMapping maps each header column to a target: the explicit mapping
// first, then usual names, "attr.<key>" and declared attribute keys. An
// unmapped column is an error unless ignoreUnknown.
func resolveMapping(headers []string, explicit map[string]string, sc schema, ignoreUnknown bool) ([]column, error) {
	byName := map[string]string{}
	for k, v := range explicit {
		byName[strings.ToLower(strings.TrimSpace(k))] = v
	}
	cols := make([]column, len(headers))
	used := map[string]string{}
	var unknown []string
	for i, h := range headers {
		t, ok := byName[strings.ToLower(h)]
		if ok {
			delete(byName, strings.ToLower(h))
		} else {
			n := normHeader(h)
			switch {
			case autoTargets[n] != "":
				t = autoTargets[n]
			case strings.HasPrefix(n, "attr."):
				t = n
			case sc[n].Key != "":
				t = "attr." + n
			default:
				if ignoreUnknown {
					t = ColIgnore
				} else {
					unknown = append(unknown, h)
					continue
				}
			}
		}
		c := column{name: h, target: t}
		switch t {
		case ColEmail, ColPhone, ColFirstName, ColLastName, ColLocale, ColTimeZone, ColConsentEmail, ColConsentSMS, ColIgnore:
		default:
			key := strings.TrimPrefix(t, "attr.")
			d, ok := sc[key]
			if !ok {
				return nil, fmt.Errorf("%w: column %q maps to %q, which is neither a contact field (email, phone, first_name, last_name, locale, timezone, consent.email, consent.sms, -) nor a declared attribute", ErrBadFile, h, t)
			}
			c.target, c.attr = "attr", d
			t = "attr." + key
		}
		if t != ColIgnore {
			if prev, dup := used[t]; dup {
				return nil, fmt.Errorf("%w: columns %q and %q both map to %s", ErrBadFile, prev, h, t)
			}
			used[t] = h
		}
		cols[i] = c
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: column(s) %s are not contact fields nor declared attributes: map them, declare the attributes, or ignore unknown columns", ErrBadFile, quoteList(unknown))
	}
	if len(byName) > 0 {
		var missing []string
		for k := range byName {
			missing = append(missing, k)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: the mapping names column(s) %s, which the header does not have", ErrBadFile, quoteList(missing))
	}
	if used[ColEmail] == "" && used[ColPhone] == "" {
		return nil, fmt.Errorf("%w: no column holds the email or the phone number (name one email or phone, or map it)", ErrBadFile)
	}
	return cols, nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// parseConsentCell reads a consent column: "" means no change.
func parseConsentCell(s string) (ConsentStatus, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return "", true
	case "granted", "yes", "y", "true", "1", "oui", "opt-in", "optin":
		return ConsentGranted, true
	case "withdrawn", "no", "n", "false", "0", "non", "opt-out", "optout":
		return ConsentWithdrawn, true
	case "pending":
		return ConsentPending, true
	}
	return "", false
}

// lineError is a per-line error of an import: the column (header name, or
// "" for the whole line) and the rule broken, never the value.
type lineError struct {
	column, reason string
}

// mapRecord validates one CSV record against the mapping. defaultCC is the
// default country calling code for national phone numbers.
func mapRecord(fields []string, cols []column, defaultCC, purpose string, tz tzCache) (validated, []ConsentInput, *lineError) {
	var v validated
	if len(fields) != len(cols) {
		return v, nil, &lineError{reason: fmt.Sprintf("%d fields, the header has %d", len(fields), len(cols))}
	}
	var consents []ConsentInput
	for i, c := range cols {
		f := fields[i]
		if c.target == ColIgnore {
			continue
		}
		if !utf8.ValidString(f) {
			return v, nil, &lineError{column: c.name, reason: "not valid UTF-8: save the file as UTF-8"}
		}
		if strings.TrimSpace(f) == "" {
			continue
		}
		var err error
		switch c.target {
		case ColEmail:
			v.email, err = NormaliseEmail(f)
		case ColPhone:
			v.phone, err = NormalisePhone(f, defaultCC)
		case ColFirstName:
			v.first, err = validateName("first_name", f)
		case ColLastName:
			v.last, err = validateName("last_name", f)
		case ColLocale:
			v.locale, err = normaliseLocale(f)
		case ColTimeZone:
			v.tz, err = tz.validate(f)
		case ColConsentEmail, ColConsentSMS:
			st, ok := parseConsentCell(f)
			if !ok {
				return v, nil, &lineError{column: c.name, reason: "must be granted, withdrawn or pending (or yes/no, true/false, 1/0), or empty"}
			}
			ch := ChannelEmail
			if c.target == ColConsentSMS {
				ch = ChannelSMS
			}
			consents = append(consents, ConsentInput{Channel: ch, Purpose: purpose, Status: st, Source: SourceImport})
		case "attr":
			var val any
			if val, err = c.attr.parseText(f); err == nil {
				if c.attr.Personal {
					if v.personal == nil {
						v.personal = map[string]any{}
					}
					v.personal[c.attr.Key] = val
				} else {
					if v.plain == nil {
						v.plain = map[string]any{}
					}
					v.plain[c.attr.Key] = val
				}
			}
		}
		if err != nil {
			msg := err.Error()
			if ve, ok := err.(*ValidationError); ok {
				msg = ve.Message
			}
			return v, nil, &lineError{column: c.name, reason: msg}
		}
	}
	if v.email == "" && v.phone == "" {
		return v, nil, &lineError{reason: "no email address nor phone number"}
	}
	return v, consents, nil
}

package contacts

import (
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relais-dev/relais/internal/identity"
)

// NormalisePhone validates a phone number and returns it in E.164 form
// ("+" and 8 to 15 digits, the first not 0). Spaces, dashes, dots and
// parentheses are ignored, as is a "(0)" after the country code
// ("+33 (0)6 12 34 56 78"); "00" is read as the international prefix "+".
// A national number (starting with 0 or another digit) is accepted only when
// defaultCallingCode (e.g. "33") is given: its leading trunk 0 is dropped and
// the calling code prepended. The error never repeats the number.
func NormalisePhone(raw, defaultCallingCode string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", invalid("phone", "is empty")
	}
	if len(s) > 40 {
		return "", invalid("phone", "is longer than 40 characters")
	}
	s = strings.Replace(s, "(0)", "", 1)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' && i == 0:
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", invalid("phone", "may hold only digits, a leading +, spaces, dashes, dots and parentheses")
		}
	}
	n := b.String()
	switch {
	case strings.HasPrefix(n, "+"):
		n = n[1:]
	case strings.HasPrefix(n, "00"):
		n = n[2:]
	case defaultCallingCode != "":
		cc := strings.TrimPrefix(defaultCallingCode, "+")
		if !isDigits(cc) || len(cc) > 3 || cc[0] == '0' {
			return "", invalid("phone", "the default country calling code must be 1 to 3 digits, e.g. 33")
		}
		n = cc + strings.TrimPrefix(n, "0")
	default:
		return "", invalid("phone", "must be in international format: + then the country code and number, e.g. +33612345678")
	}
	if len(n) < 8 || len(n) > 15 || !isDigits(n) || n[0] == '0' {
		return "", invalid("phone", "must be an E.164 number: + then 8 to 15 digits, not starting with 0")
	}
	return "+" + n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// NormaliseEmail validates an email address and returns its canonical form
// (trimmed, lower-case), the one whose blind index is stored. It is
// identity.NormaliseEmail, with the error as a *ValidationError of this
// package.
func NormaliseEmail(raw string) (string, error) {
	e, err := identity.NormaliseEmail(raw)
	if err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return "", invalid("email", "%s", ve.Message)
		}
		return "", invalid("email", "must be an email address")
	}
	return e, nil
}

// maxNameRunes bounds first and last names.
const maxNameRunes = 200

func validateName(field, raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if !utf8.ValidString(s) {
		return "", invalid(field, "must be valid UTF-8")
	}
	if utf8.RuneCountInString(s) > maxNameRunes {
		return "", invalid(field, "must be at most %d characters", maxNameRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", invalid(field, "must not contain control characters")
		}
	}
	return s, nil
}

var localeRE = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,3}$`)

// normaliseLocale accepts a BCP 47-like tag ("fr", "fr-FR", "pt_BR") and
// returns it with "-" separators, the language lower-case and a two-letter
// region upper-case.
func normaliseLocale(raw string) (string, error) {
	s := strings.ReplaceAll(strings.TrimSpace(raw), "_", "-")
	if s == "" {
		return "", nil
	}
	if !localeRE.MatchString(s) {
		return "", invalid("locale", "must be a language tag such as fr or fr-FR")
	}
	parts := strings.Split(s, "-")
	parts[0] = strings.ToLower(parts[0])
	for i := 1; i < len(parts); i++ {
		if len(parts[i]) == 2 {
			parts[i] = strings.ToUpper(parts[i])
		}
	}
	return strings.Join(parts, "-"), nil
}

var tzRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$`)

// tzCache remembers time zones already checked, within one import or one
// call (time.LoadLocation reads a file each time).
type tzCache map[string]bool

func (c tzCache) validate(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", nil
	}
	if ok, seen := c[s]; seen {
		if !ok {
			return "", invalid("timezone", "must be an IANA time zone such as Europe/Paris")
		}
		return s, nil
	}
	ok := len(s) <= 64 && tzRE.MatchString(s) && s != "Local"
	if ok {
		_, err := time.LoadLocation(s)
		ok = err == nil
	}
	if len(c) < 1000 {
		c[s] = ok
	}
	if !ok {
		return "", invalid("timezone", "must be an IANA time zone such as Europe/Paris")
	}
	return s, nil
}

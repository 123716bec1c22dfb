package password

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Policy presets, as they appear in [Policy.Preset].
const (
	// PresetSeed names the policy of the seed document ([Seed]).
	PresetSeed = "seed"
	// PresetNIST names the NIST SP 800-63B policy ([NIST]).
	PresetNIST = "nist"
)

// DefaultPrivilegedMinLength is the minimum length of a privileged
// account's password under AUTH-10, used by [Policy.Check] when it is given
// no figure of its own.
const DefaultPrivilegedMinLength = 20

// minIdentityPart is the shortest part of a name or email local part that
// [Policy.Check] looks for in a password; shorter parts ("jo", "li") would
// refuse too many good passwords.
const minIdentityPart = 4

// Violation codes, stable: the API and the UI key their messages on them.
const (
	CodeTooShort         = "too_short"
	CodeTooLong          = "too_long"
	CodeTooFewClasses    = "too_few_classes"
	CodeContainsIdentity = "contains_identity"
	CodeNotUTF8          = "not_utf8"
)

// Policy is a password policy (AUTH-10). Lengths are counted in Unicode code
// points (runes), without normalisation: the same visible text typed as
// composed or decomposed characters may count differently.
//
// The zero Policy accepts any valid UTF-8 password up to [MaxPasswordBytes];
// start from [Seed] or [NIST] instead.
type Policy struct {
	// MinLength is the minimum number of code points.
	MinLength int
	// MinClasses is the minimum number of character classes among
	// lowercase, uppercase, digit and symbol; 0 disables the rule, and a
	// value above 4 can never be met.
	MinClasses int
	// MaxLength is the maximum number of code points; 0 leaves only the
	// [MaxPasswordBytes] bound.
	MaxLength int
	// Preset names the preset the policy came from, if any.
	Preset string
}

// Seed returns the policy of the seed document (AUTH-10): at least 12 code
// points, at least 3 of the 4 character classes, at most 128 code points.
// Privileged accounts need 20 (see [Policy.Check]).
func Seed() Policy {
	return Policy{MinLength: 12, MinClasses: 3, MaxLength: 128, Preset: PresetSeed}
}

// NIST returns a policy after NIST SP 800-63B-4 for passwords used as a
// single factor: at least 15 code points, no composition rule, at most 128
// code points. Pair it with the breach check ([BreachChecker]), which that
// guideline also requires.
func NIST() Policy {
	return Policy{MinLength: 15, MinClasses: 0, MaxLength: 128, Preset: PresetNIST}
}

// Violation is one rule a password breaks.
type Violation struct {
	// Code is one of the Code* constants.
	Code string
	// Message says, in English, what the rule asks; it never quotes the
	// password.
	Message string
}

// Check returns every rule of p that pw breaks, in a stable order
// (not_utf8, too_short, too_long, too_few_classes, contains_identity), or
// nil when pw complies.
//
// When privileged is true the minimum length is the larger of p.MinLength
// and privilegedMin, or of p.MinLength and [DefaultPrivilegedMinLength] when
// privilegedMin is zero or negative.
//
// context holds what identifies the user (email address, name, user name):
// pw must not contain, case-insensitively, any part of at least 4 code points
// of it. An email address gives its local part, whole and split at every
// character that is not a letter or a digit ('.', '_', '-', '+'); a name
// gives its words, split the same way.
//
// Character classes: a lowercase letter, an uppercase letter, a digit (in
// any script), and a symbol, which is anything else (punctuation, space,
// letters without case).
//
// A pw that is not valid UTF-8 is reported as not_utf8; the other rules are
// still checked, each invalid byte counting as one code point.
func (p Policy) Check(pw string, privileged bool, privilegedMin int, context []string) []Violation {
	var vs []Violation
	if !utf8.ValidString(pw) {
		vs = append(vs, Violation{CodeNotUTF8, "must be valid UTF-8 text"})
	}
	n := utf8.RuneCountInString(pw)
	minLen := p.MinLength
	if privileged {
		if privilegedMin <= 0 {
			privilegedMin = DefaultPrivilegedMinLength
		}
		minLen = max(minLen, privilegedMin)
	}
	if n < minLen {
		msg := fmt.Sprintf("must be at least %d characters long", minLen)
		if privileged {
			msg = fmt.Sprintf("must be at least %d characters long for a privileged account", minLen)
		}
		vs = append(vs, Violation{CodeTooShort, msg})
	}
	if (p.MaxLength > 0 && n > p.MaxLength) || len(pw) > MaxPasswordBytes {
		limit := fmt.Sprintf("%d bytes", MaxPasswordBytes)
		if p.MaxLength > 0 {
			limit = fmt.Sprintf("%d characters (and %d bytes)", p.MaxLength, MaxPasswordBytes)
		}
		vs = append(vs, Violation{CodeTooLong, "must be at most " + limit + " long"})
	}
	if p.MinClasses > 0 && classes(pw) < p.MinClasses {
		vs = append(vs, Violation{CodeTooFewClasses, fmt.Sprintf(
			"must mix at least %d of: lowercase letters, uppercase letters, digits, symbols", p.MinClasses)})
	}
	if containsIdentity(pw, context) {
		vs = append(vs, Violation{CodeContainsIdentity, "must not contain your name or email address"})
	}
	return vs
}

// classes counts the character classes present in pw.
func classes(pw string) int {
	var lower, upper, digit, symbol int
	for _, r := range pw {
		switch {
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsDigit(r):
			digit = 1
		default:
			symbol = 1
		}
	}
	return lower + upper + digit + symbol
}

// containsIdentity reports whether pw contains, case-insensitively, a part
// of at least minIdentityPart code points of one of the context strings.
func containsIdentity(pw string, context []string) bool {
	folded := strings.ToLower(pw)
	for _, c := range context {
		for _, part := range identityParts(c) {
			if utf8.RuneCountInString(part) >= minIdentityPart && strings.Contains(folded, strings.ToLower(part)) {
				return true
			}
		}
	}
	return false
}

// identityParts splits an identity string into the parts to look for: for
// an email address, its local part and the pieces of it; for anything else,
// its words.
func identityParts(s string) []string {
	s = strings.TrimSpace(s)
	var parts []string
	if local, _, ok := strings.Cut(s, "@"); ok {
		s = local
		parts = append(parts, local)
	}
	words := strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	return append(parts, words...)
}

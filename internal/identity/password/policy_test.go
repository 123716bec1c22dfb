package password

import (
	"slices"
	"strings"
	"testing"
)

func codes(vs []Violation) []string {
	var cs []string
	for _, v := range vs {
		cs = append(cs, v.Code)
	}
	return cs
}

type policyCase struct {
	name       string
	pw         string
	privileged bool
	privMin    int
	context    []string
	want       []string // codes, in order; nil when the password complies
}

func runPolicyCases(t *testing.T, p Policy, cases []policyCase) {
	t.Helper()
	for _, c := range cases {
		vs := p.Check(c.pw, c.privileged, c.privMin, c.context)
		if got := codes(vs); !slices.Equal(got, c.want) {
			t.Errorf("%s preset, %s: Check = %v, want %v", p.Preset, c.name, got, c.want)
		}
		for _, v := range vs {
			if v.Message == "" {
				t.Errorf("%s: violation %s has no message", c.name, v.Code)
			}
			if len(c.pw) >= 4 && strings.Contains(v.Message, c.pw) {
				t.Errorf("%s: message %q quotes the password", c.name, v.Message)
			}
		}
	}
}

// TestPresets pins the figures of both presets.
func TestPresets(t *testing.T) {
	if got, want := Seed(), (Policy{MinLength: 12, MinClasses: 3, MaxLength: 128, Preset: "seed"}); got != want {
		t.Errorf("Seed() = %+v, want %+v", got, want)
	}
	if got, want := NIST(), (Policy{MinLength: 15, MinClasses: 0, MaxLength: 128, Preset: "nist"}); got != want {
		t.Errorf("NIST() = %+v, want %+v", got, want)
	}
	if DefaultPrivilegedMinLength != 20 {
		t.Errorf("DefaultPrivilegedMinLength = %d", DefaultPrivilegedMinLength)
	}
}

// TestCheckSeed is AUTH-10 as a table: 12 code points, 3 classes of 4, 20
// for privileged accounts, no identity in the password, every violation
// reported at once.
func TestCheckSeed(t *testing.T) {
	email := []string{"jean.dupont+news@example.com", "Jean Dupont"}
	runPolicyCases(t, Seed(), []policyCase{
		{name: "compliant, 3 classes", pw: "correcthorse7B"},
		{name: "compliant, lower digit symbol", pw: "abcdefghij1!"},
		{name: "compliant, exactly 12, 4 classes", pw: "Abcdefghi1!x"},
		{name: "11 code points, 4 classes", pw: "Abcdefgh1!x", want: []string{CodeTooShort}},
		{name: "empty", pw: "", want: []string{CodeTooShort, CodeTooFewClasses}},
		{name: "one class", pw: "abcdefghijklmnop", want: []string{CodeTooFewClasses}},
		{name: "two classes", pw: "abcdefghijk1", want: []string{CodeTooFewClasses}},
		{name: "spaces count as symbols", pw: "horse battery 9", want: nil},
		{name: "128 code points", pw: strings.Repeat("aB1", 42) + "aB", want: nil},
		{name: "129 code points", pw: strings.Repeat("aB1", 43), want: []string{CodeTooLong}},
		// Length is in code points, not bytes: 11 two-byte letters are 22
		// bytes but still too short; 12 are enough.
		{name: "11 accented code points", pw: "É" + strings.Repeat("é", 9) + "1", want: []string{CodeTooShort}},
		{name: "12 accented code points", pw: "É" + strings.Repeat("é", 10) + "1", want: nil},
		// No normalisation: a decomposed "é" (e + U+0301) is 2 code points,
		// and the combining mark counts as a symbol.
		{name: "decomposed accents counted as 2", pw: "Ae\u0301e\u0301e\u0301e\u0301e\u03011", want: nil},
		{name: "uncased letters are symbols", pw: "密码密码密码密码ab12", want: nil},
		{name: "privileged 19", pw: "Abcdefghijklmnop1!x", privileged: true, want: []string{CodeTooShort}},
		{name: "privileged 20", pw: "Abcdefghijklmnop1!xy", privileged: true},
		{name: "privileged, explicit 25", pw: "Abcdefghijklmnop1!xyzabc", privileged: true, privMin: 25, want: []string{CodeTooShort}},
		{name: "privileged min below policy min", pw: "Abcdefgh1!x", privileged: true, privMin: 8, want: []string{CodeTooShort}},
		{name: "privileged min ignored when not privileged", pw: "Abcdefghi1!x", privMin: 30},
		{name: "contains email local part piece", pw: "Dupont-2024-xyz", context: email, want: []string{CodeContainsIdentity}},
		{name: "contains first name, other case", pw: "myJEANpass-2024", context: email, want: []string{CodeContainsIdentity}},
		{name: "contains whole local part", pw: "x jean.dupont+news 9", context: email, want: []string{CodeContainsIdentity}},
		{name: "contains plus tag", pw: "Newsletter-2024x", context: email, want: []string{CodeContainsIdentity}},
		{name: "domain is not identity", pw: "Example-2024-xyz", context: email},
		{name: "parts under 4 code points ignored", pw: "Li-Wu-2024-xyzw", context: []string{"li.wu@example.com", "Li Wu"}},
		{name: "no context", pw: "Dupont-2024-xyz", context: nil},
		{name: "empty context entries", pw: "Dupont-2024-xyz", context: []string{"", "  ", "@"}},
		{name: "everything at once", pw: "jean\xff", privileged: true, context: email,
			want: []string{CodeNotUTF8, CodeTooShort, CodeTooFewClasses, CodeContainsIdentity}},
		{name: "invalid UTF-8 alone", pw: "Abcdefghij1!\xc3", want: []string{CodeNotUTF8}},
	})
}

// TestCheckNIST: 15 code points, no composition rule.
func TestCheckNIST(t *testing.T) {
	runPolicyCases(t, NIST(), []policyCase{
		{name: "15 lowercase letters", pw: "abcdefghijklmno"},
		{name: "14 mixed", pw: "Abcdefghijk1!x", want: []string{CodeTooShort}},
		{name: "128", pw: strings.Repeat("a", 128)},
		{name: "129", pw: strings.Repeat("a", 129), want: []string{CodeTooLong}},
		{name: "privileged 19", pw: strings.Repeat("a", 19), privileged: true, want: []string{CodeTooShort}},
		{name: "privileged 20", pw: strings.Repeat("a", 20), privileged: true},
		{name: "identity", pw: "correct horse dupont", context: []string{"Jean Dupont"}, want: []string{CodeContainsIdentity}},
	})
}

// TestCheckHashingBound: whatever MaxLength says, a password the hasher
// would refuse (over 1024 bytes) is too_long; the zero Policy keeps only
// that bound.
func TestCheckHashingBound(t *testing.T) {
	p := Policy{MinLength: 12, MaxLength: 1000}
	runPolicyCases(t, p, []policyCase{
		{name: "300 four-byte runes", pw: strings.Repeat("🔑", 300), want: []string{CodeTooLong}},
		{name: "256 four-byte runes", pw: strings.Repeat("🔑", 256)},
	})
	runPolicyCases(t, Policy{}, []policyCase{
		{name: "zero policy, empty", pw: ""},
		{name: "zero policy, 1024 bytes", pw: strings.Repeat("a", 1024)},
		{name: "zero policy, 1025 bytes", pw: strings.Repeat("a", 1025), want: []string{CodeTooLong}},
	})
}

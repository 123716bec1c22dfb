package filter_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/contacts/filter"
	"github.com/relais-dev/relais/internal/store"
)

var schema = map[string]filter.Attribute{
	"country":    {Type: filter.TypeString},
	"points":     {Type: filter.TypeNumber},
	"vip":        {Type: filter.TypeBool},
	"since":      {Type: filter.TypeDate},
	"birth_date": {Type: filter.TypeDate, Personal: true},
}

func compile(t testing.TB, d store.Dialect, src string) (filter.Compiled, error) {
	t.Helper()
	return filter.ParseAndCompile(src, filter.Options{Dialect: d, Attributes: schema, FirstParam: 2})
}

var (
	placeholderRE = regexp.MustCompile(`\$(\d+)`)
	literalRE     = regexp.MustCompile(`'[^']*'`)
	// The only SQL literals the compiler writes: JSON type names and
	// boolean JSON texts, all constants of the compiler.
	allowedLiterals = map[string]bool{"'integer'": true, "'real'": true, "'text'": true, "'true'": true, "'false'": true,
		"'number'": true, "'string'": true}
)

// checkSafe asserts the invariants of compiled SQL: placeholders only in
// the range of the arguments, no literal but the compiler's constants, no
// quote, comment or statement separator, and no text of the filter's values.
func checkSafe(t testing.TB, src string, c filter.Compiled) {
	t.Helper()
	for _, m := range placeholderRE.FindAllStringSubmatch(c.SQL, -1) {
		n, _ := strconv.Atoi(m[1])
		if n < 2 || n >= 2+len(c.Args) {
			t.Fatalf("%q: placeholder $%d outside $2..$%d in %s", src, n, 1+len(c.Args), c.SQL)
		}
	}
	for _, l := range literalRE.FindAllString(c.SQL, -1) {
		if !allowedLiterals[l] {
			t.Fatalf("%q: literal %s in %s", src, l, c.SQL)
		}
	}
	rest := literalRE.ReplaceAllString(c.SQL, "")
	if strings.ContainsAny(rest, "'\";\\") || strings.Contains(rest, "--") || strings.Contains(rest, "/*") {
		t.Fatalf("%q: unsafe character in %s", src, c.SQL)
	}
	for _, a := range c.Args {
		if s, ok := a.(string); ok && len(s) > 3 && strings.Contains(c.SQL, s) && !strings.HasPrefix(s, "$.") {
			t.Fatalf("%q: value %q appears in the SQL %s", src, s, c.SQL)
		}
	}
}

func TestCompileValid(t *testing.T) {
	for _, src := range []string{
		`status = "active" AND consent.email = "granted" AND attr.country IN ("FR","BE") AND created_at > 2026-01-01`,
		`NOT (attr.points >= 10.5 OR attr.vip = true) and locale != "fr-FR"`,
		`attr.since < 2000-01-01 OR updated_at <= 2026-01-01T10:00:00+02:00`,
		`consent.sms.alerts IN ("pending", "withdrawn") AND has_phone = true AND list NOT IN ("a", "b")`,
		`attr.country = "'; DROP TABLE contacts; --"`,
		`attr.country = "\" OR 1=1 --"`,
		`attr.points = -3`,
		`((((status = "bounced"))))`,
	} {
		for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
			c, err := compile(t, d, src)
			if err != nil {
				t.Fatalf("%s %q: %v", d, src, err)
			}
			checkSafe(t, src, c)
		}
	}
}

func TestCompileArguments(t *testing.T) {
	c, err := filter.ParseAndCompile(`attr.country IN ("FR", "BE") AND created_at = 2026-01-02`,
		filter.Options{Dialect: store.SQLite, Attributes: schema, FirstParam: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"$.country", "FR", "BE", int64(1767312000000000), int64(1767398400000000)}
	if len(c.Args) != len(want) {
		t.Fatalf("args %v", c.Args)
	}
	for i := range want {
		if c.Args[i] != want[i] {
			t.Fatalf("arg %d: %v, want %v", i, c.Args[i], want[i])
		}
	}
	if !strings.Contains(c.SQL, "$5") || !strings.Contains(c.SQL, "$9") || strings.Contains(c.SQL, "$10") || strings.Contains(c.SQL, "$4") {
		t.Fatalf("numbering: %s", c.SQL)
	}
}

func TestParseErrorsArePositioned(t *testing.T) {
	cases := map[string]struct {
		pos  int
		want string
	}{
		`status = "x" OR 1=1 --`:       {17, "expected a field name"},
		`status = "active" AND`:        {22, "expected a field name"},
		`status ~ "a"`:                 {8, "unexpected character"},
		`status = 'a'`:                 {10, "double quotes"},
		`status = "a`:                  {10, "not closed"},
		`attr.country IN ("a" "b")`:    {22, "expected , or )"},
		`attr.points > 1.2.3`:          {15, "not a number"},
		`created_at > 2026-02-30`:      {14, "not a valid date"},
		`status = "a" extra`:           {14, "expected AND, OR or the end"},
		`status NOT = "a"`:             {12, "expected IN after NOT"},
		`attr.birth_date = 2000-01-01`: {1, "personal data"},
		`attr.nope = "x"`:              {1, "unknown attribute"},
		`nope = "x"`:                   {1, "unknown field"},
	}
	for src, c := range cases {
		_, err := compile(t, store.SQLite, src)
		var fe *filter.Error
		if !errors.As(err, &fe) || fe.Pos != c.pos || !strings.Contains(fe.Msg, c.want) {
			t.Errorf("%q: got %v, want position %d ~%q", src, err, c.pos, c.want)
		}
	}
}

func TestLimits(t *testing.T) {
	long := `status = "` + strings.Repeat("a", filter.MaxLength) + `"`
	deep := strings.Repeat("(", filter.MaxDepth+1) + `status = "active"` + strings.Repeat(")", filter.MaxDepth+1)
	wide := `status = "active"` + strings.Repeat(` OR status = "active"`, filter.MaxNodes)
	in := `attr.country IN ("a"` + strings.Repeat(`, "a"`, filter.MaxInValues) + `)`
	str := `attr.country = "` + strings.Repeat("a", filter.MaxStringLen+1) + `"`
	for name, src := range map[string]string{"long": long, "deep": deep, "wide": wide, "in": in, "string": str, "utf8": "status = \"\xff\""} {
		if _, err := compile(t, store.SQLite, src); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzCompile: whatever the input, the compiler either refuses it or
// produces SQL that satisfies checkSafe.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{`status = "active"`, `attr.country IN ("FR","BE") AND NOT attr.vip = true`, `created_at > 2026-01-01`,
		`consent.email.x = "granted" OR list = "l"`, `attr.points <= -1.5`, `"'; --`, `((`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
			c, err := compile(t, d, src)
			if err != nil {
				var fe *filter.Error
				if !errors.As(err, &fe) {
					t.Fatalf("%q: error of type %T", src, err)
				}
				continue
			}
			checkSafe(t, src, c)
		}
	})
}

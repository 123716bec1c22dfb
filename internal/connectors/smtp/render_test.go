package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// checkQP encodes s and checks the result: it decodes (with the standard
// library) to s with line breaks as CRLF, has only CRLF line ends, lines
// of at most 76 characters, printable ASCII only, no trailing space.
func checkQP(t *testing.T, s string) {
	t.Helper()
	var b bytes.Buffer
	writeQP(&b, s)
	enc := b.Bytes()
	if err := writeLines(bufioDiscard(), enc); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(enc), "\r\n"), "\r\n") {
		if len(line) > 76 {
			t.Fatalf("%q: line of %d characters: %q", s, len(line), line)
		}
		if strings.HasSuffix(line, " ") || strings.HasSuffix(line, "\t") {
			t.Fatalf("%q: trailing white space: %q", s, line)
		}
		for i := 0; i < len(line); i++ {
			if line[i] < 32 && line[i] != '\t' || line[i] > 126 {
				t.Fatalf("%q: byte %#x in %q", s, line[i], line)
			}
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatalf("%q: decode: %v (%q)", s, err, enc)
	}
	want := strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(want, "\r\n") {
		want += "\r\n"
	}
	if string(dec) != want {
		t.Fatalf("round trip of %q:\n got %q\nwant %q\n enc %q", s, dec, want, enc)
	}
}

// TestQuotedPrintable checks the encoder on edge cases and random text.
func TestQuotedPrintable(t *testing.T) {
	for _, s := range []string{
		"", "a", "=", "a=b", " ", "trailing space ", "trailing tab\t", "space before break \nnext",
		"lone\rcr", "cr at end\r", "crlf\r\nline", strings.Repeat("x", 200), strings.Repeat("=", 100),
		strings.Repeat("é", 60), strings.Repeat("abc ", 40) + "\n", ".\n..\n", "\n\n\n", "x\r\n\r\n",
		strings.Repeat("a", 74) + "é", strings.Repeat("a", 75) + " b", strings.Repeat("a", 75) + " \nb",
	} {
		checkQP(t, s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", " ", "\t", "=", "\n", "\r", "\r\n", "é", "🎉", ".", "\x00", "\x7f", "<p>"}
	for range 3000 {
		var sb strings.Builder
		for range r.IntN(300) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		checkQP(t, sb.String())
	}
}

// FuzzQuotedPrintable runs the same checks on fuzzed input.
func FuzzQuotedPrintable(f *testing.F) {
	f.Add("héllo = world \r\n.")
	f.Fuzz(func(t *testing.T, s string) { checkQP(t, s) })
}

func bufioDiscard() *bufio.Writer { return bufio.NewWriter(io.Discard) }

// TestQueueID reads the queue id of common relays' answers to the end of
// data.
func TestQueueID(t *testing.T) {
	for reply, want := range map[string]string{
		"2.0.0 Ok: queued as 4Bc1xQ2z9Nz1234":             "4Bc1xQ2z9Nz1234",  // Postfix
		"2.0.0 OK: queued as Q1f":                         "Q1f",              // go-smtp sink
		"OK id=1uBxYz-0004Ab-3F":                          "1uBxYz-0004Ab-3F", // Exim
		"2.0.0 OK  1767225600 d2-20020a05":                "",
		"Ok":                                              "",
		"queued as " + strings.Repeat("x", 200):           "",
		"2.6.0 <a@b> Queued mail for delivery, queued as": "",
	} {
		if got := queueID(reply); got != want {
			t.Errorf("queueID(%q) = %q, want %q", reply, got, want)
		}
	}
}

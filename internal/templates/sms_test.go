package templates_test

import (
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/templates"
)

// TestSMSSegments: GSM-7 with the extension table counting 2, UCS-2 with
// surrogate pairs counting 2, the single/multi-part boundaries (160/161,
// 70/71) and the rule that a two-unit character never straddles two parts.
func TestSMSSegments(t *testing.T) {
	r := strings.Repeat
	cases := []struct {
		name     string
		text     string
		enc      string
		chars    int
		segments int
	}{
		{"empty", "", templates.EncodingGSM7, 0, 0},
		{"plain", "Hello world", templates.EncodingGSM7, 11, 1},
		{"GSM accents and symbols", "Ça coûte", templates.EncodingUCS2, 8, 1}, // û is not GSM
		{"GSM basic non-ASCII", "Ça va? Très bien: 5£ @ ÄÖÑÜ§¿ΔΩ", templates.EncodingGSM7, 31, 1},
		{"newline counts 1", "a\nb", templates.EncodingGSM7, 3, 1},
		{"euro counts 2", "5€", templates.EncodingGSM7, 3, 1},
		{"caret and braces count 2", "^{}[]~|\\", templates.EncodingGSM7, 16, 1},
		{"160 septets: one part", r("a", 160), templates.EncodingGSM7, 160, 1},
		{"161 septets: two parts", r("a", 161), templates.EncodingGSM7, 161, 2},
		{"306 septets: two parts", r("a", 306), templates.EncodingGSM7, 306, 2},
		{"307 septets: three parts", r("a", 307), templates.EncodingGSM7, 307, 3},
		{"80 euros: 160 septets, one part", r("€", 80), templates.EncodingGSM7, 160, 1},
		{"159 + euro: 161 septets", r("a", 159) + "€", templates.EncodingGSM7, 161, 2},
		{"extension char not split across parts", r("a", 152) + "€" + r("a", 152), templates.EncodingGSM7, 306, 3},
		{"backtick forces UCS-2", "a`b", templates.EncodingUCS2, 3, 1},
		{"emoji: UCS-2, counts 2", "Hi 😀", templates.EncodingUCS2, 5, 1},
		{"70 units: one part", r("ж", 70), templates.EncodingUCS2, 70, 1},
		{"71 units: two parts", r("ж", 71), templates.EncodingUCS2, 71, 2},
		{"134 units: two parts", r("ж", 134), templates.EncodingUCS2, 134, 2},
		{"135 units: three parts", r("ж", 135), templates.EncodingUCS2, 135, 3},
		{"69 + emoji: 71 units", r("ж", 69) + "😀", templates.EncodingUCS2, 71, 2},
		{"emoji not split across parts", r("ж", 66) + "😀" + r("ж", 66), templates.EncodingUCS2, 134, 3},
		{"one emoji among GSM text", r("a", 60) + "😀", templates.EncodingUCS2, 62, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc, chars, segs := templates.SMSSegments(c.text)
			if enc != c.enc || chars != c.chars || segs != c.segments {
				t.Errorf("SMSSegments = %s, %d chars, %d segments; want %s, %d, %d", enc, chars, segs, c.enc, c.chars, c.segments)
			}
		})
	}
}

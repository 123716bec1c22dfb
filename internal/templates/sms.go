package templates

import "unicode/utf8"

// SMS encodings.
const (
	EncodingGSM7 = "GSM-7"
	EncodingUCS2 = "UCS-2"
)

// asciiSeptets gives, for each ASCII code, how many septets GSM-7 uses
// for it: 1 for the GSM 03.38 default alphabet, 2 for its extension table
// (form feed ^ { } \ [ ~ ] |, sent as escape + character), 0 when GSM-7
// cannot carry it (control characters other than LF, CR and FF; the
// backtick).
const asciiSeptets = "00000000001021000000000000000000" +
	"11111111111111111111111111111111" +
	"11111111111111111111111111122221" +
	"01111111111111111111111111122220"

// gsmSeptets returns how many septets r takes in GSM-7, or 0 when GSM-7
// cannot carry it.
func gsmSeptets(r rune) int {
	if r < utf8.RuneSelf {
		return int(asciiSeptets[r] - '0')
	}
	switch r {
	case '£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å', 'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 'Æ', 'æ', 'ß', 'É', '¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§', '¿', 'ä', 'ö', 'ñ', 'ü', 'à':
		return 1
	case '€':
		return 2
	}
	return 0
}

// SMSSegments reports how an SMS text is sent: its encoding (EncodingGSM7
// when every character is in the GSM 03.38 alphabet or its extension table,
// EncodingUCS2 otherwise), its length in that encoding's units (septets for
// GSM-7, where an extension character such as € or ^ counts 2; UTF-16 code
// units for UCS-2, where an emoji outside the BMP counts 2), and the number
// of segments: one up to 160 septets or 70 units, beyond that parts of 153
// septets or 67 units (the rest is the concatenation header). A two-unit
// character is never split across parts, as phones require. An empty text is
// 0 characters in 0 segments.
func SMSSegments(text string) (encoding string, chars int, segments int) {
	septets, units, gsm := 0, 0, true
	for _, r := range text {
		units += utf16Units(r)
		if gsm {
			if n := gsmSeptets(r); n > 0 {
				septets += n
			} else {
				gsm = false
			}
		}
	}
	single, multi, width := 160, 153, gsmSeptets
	encoding, chars = EncodingGSM7, septets
	if !gsm {
		single, multi, width = 70, 67, utf16Units
		encoding, chars = EncodingUCS2, units
	}
	switch {
	case chars == 0:
		return encoding, 0, 0
	case chars <= single:
		return encoding, chars, 1
	}
	segments, used := 1, 0
	for _, r := range text {
		w := width(r)
		if used+w > multi {
			segments++
			used = 0
		}
		used += w
	}
	return encoding, chars, segments
}

func utf16Units(r rune) int {
	if r >= 0x10000 && r <= utf8.MaxRune {
		return 2
	}
	return 1
}

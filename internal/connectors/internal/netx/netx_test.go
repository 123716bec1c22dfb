package netx

import (
	"net/http"
	"strings"
	"testing"

	"github.com/relais-dev/relais/internal/connectors"
)

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.255.0.9": true, "::1": true, "[::1]": true, "localhost": true, "LocalHost.": true,
		"::ffff:127.0.0.1": true,
		"128.0.0.1":        false, "10.0.0.1": false, "0.0.0.0": false, "::": false, "localhost.example": false,
		"127.0.0.1.nip.io": false, "": false, "example.com": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", host, got)
		}
	}
}

func TestMaskSecret(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "short": "********", "fifteen-chars-x": "********", "sixteen-chars-xy": "********s-xy",
		"********WXYZ": "********WXYZ", "pässwörd-ünicode-ÄÖÜß": "********ÄÖÜß",
	} {
		if got := MaskSecret(in); got != want {
			t.Errorf("MaskSecret(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClassifyStatus(t *testing.T) {
	for code, want := range map[int]string{
		200: "ok", 204: "ok", 301: "permanent", 400: "permanent", 401: "temporary", 403: "temporary", 404: "permanent",
		408: "temporary", 409: "permanent", 422: "permanent", 429: "temporary", 500: "temporary", 502: "temporary", 503: "temporary",
	} {
		resp := &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{}}
		err := ClassifyStatus("POST https://x", resp, []byte("  answer\x00 body "))
		got := "ok"
		if err != nil {
			got = "permanent"
			if connectors.IsTemporary(err) {
				got = "temporary"
			}
			if !strings.Contains(err.Error(), "answer  body") {
				t.Errorf("%d: body not quoted cleanly: %v", code, err)
			}
		}
		if got != want {
			t.Errorf("%d: %s, want %s", code, got, want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	if u, err := CheckURL("url", "https://api.example/v1?key=secret"); err != nil || SafeURL(u) != "https://api.example/v1?..." {
		t.Errorf("SafeURL: %v %v", u, err)
	}
	for _, bad := range []string{"", "api.example/v1", "http://api.example/", "https://user@api.example/", "https://api.example/#x", "https://api.example:99999/"} {
		if _, err := CheckURL("url", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

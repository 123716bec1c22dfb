package tlsconf

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRedirectHandler(t *testing.T) {
	h := RedirectHandler("8443")
	for _, tc := range []struct {
		method, url, host, want string
	}{
		{"GET", "http://h:80/x?y=1", "", "https://h:8443/x?y=1"},
		{"HEAD", "http://h/x", "", "https://h:8443/x"},
		{"POST", "http://h:80/api/v1/send?a=b&c=%20d", "", "https://h:8443/api/v1/send?a=b&c=%20d"},
		{"GET", "http://h/", "Relais.Example:80", "https://relais.example:8443/"},
		{"GET", "http://h/p%2Fq", "[::1]:80", "https://[::1]:8443/p%2Fq"},
		{"GET", "http://h/", "[::1]", "https://[::1]:8443/"},
		{"GET", "http://h/", "127.0.0.1:8080", "https://127.0.0.1:8443/"},
		{"GET", "http://h//evil.example/", "h", "https://h:8443//evil.example/"},
		{"OPTIONS", "http://h/", "h", "https://h:8443/"},
	} {
		r := httptest.NewRequest(tc.method, tc.url, strings.NewReader("secret body"))
		if tc.host != "" {
			r.Host = tc.host
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusPermanentRedirect {
			t.Errorf("%s %s: status %d, want 308", tc.method, tc.url, w.Code)
		}
		if got := w.Header().Get("Location"); got != tc.want {
			t.Errorf("%s %s (Host %q): Location %q, want %q", tc.method, tc.url, tc.host, got, tc.want)
		}
		if w.Body.Len() != 0 {
			t.Errorf("%s %s: body %q, want none", tc.method, tc.url, w.Body)
		}
		if w.Header().Get("Strict-Transport-Security") != "" {
			t.Errorf("HSTS set on plain HTTP")
		}
	}
}

func TestRedirectDefaultPort(t *testing.T) {
	for _, port := range []string{"443", ""} {
		w := httptest.NewRecorder()
		RedirectHandler(port).ServeHTTP(w, httptest.NewRequest("GET", "http://h:80/x?y=1", nil))
		if got := w.Header().Get("Location"); got != "https://h/x?y=1" {
			t.Errorf("port %q: Location %q", port, got)
		}
	}
}

func TestRedirectBadHost(t *testing.T) {
	h := RedirectHandler("8443")
	for _, host := range []string{"", "bad host", "a<b>", "evil.example/x", "h:http", "h:99999", "user@h", "[fe80::1%25eth0]", "a..b", "h\r\nX: y"} {
		r := httptest.NewRequest("GET", "http://h/x", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("Host %q: status %d, want 400", host, w.Code)
		}
		if w.Header().Get("Location") != "" {
			t.Errorf("Host %q: Location set", host)
		}
		if strings.Contains(w.Body.String(), host) && host != "" {
			t.Errorf("Host %q echoed in the body", host)
		}
	}
}

func TestRedirectBadPortPanics(t *testing.T) {
	for _, p := range []string{"0", "65536", "https", "08443", "-1"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("port %q: no panic", p)
				}
			}()
			RedirectHandler(p)
		}()
	}
}

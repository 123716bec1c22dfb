package secheaders

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// want is the exact header set of the specification, written out here
// rather than taken from Headers, so a change to a value fails the test.
var want = map[string]string{
	"Strict-Transport-Security":  "max-age=63072000; includeSubDomains",
	"Content-Security-Policy":    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":     "nosniff",
	"Referrer-Policy":            "no-referrer",
	"X-Frame-Options":            "DENY",
	"Cross-Origin-Opener-Policy": "same-origin",
	"Permissions-Policy":         "camera=(), microphone=(), geolocation=()",
}

// recoverer is a minimal panic-recovery middleware, standing in for the
// server's own: it answers 500 after a panic.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func TestHeadersOnEveryResponse(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})
	mux.HandleFunc("POST /only-post", func(w http.ResponseWriter, r *http.Request) {})

	handlers := map[string]http.Handler{
		"recover outside": recoverer(Middleware(mux)),
		"recover inside":  Middleware(recoverer(mux)),
	}
	for hname, h := range handlers {
		// Through a real server too, so the headers survive the
		// net/http machinery (404 from the mux, 405, panics).
		srv := httptest.NewServer(h)
		for _, tc := range []struct {
			method, path string
			status       int
		}{
			{"GET", "/ok", 200},
			{"GET", "/missing", 404},
			{"GET", "/only-post", 405},
			{"GET", "/panic", 500},
			{"HEAD", "/ok", 200},
		} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
			check(t, hname+" recorder "+tc.method+" "+tc.path, w.Code, tc.status, w.Header())

			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			check(t, hname+" server "+tc.method+" "+tc.path, resp.StatusCode, tc.status, resp.Header)
		}
		srv.Close()
	}
}

func check(t *testing.T, name string, got, wantStatus int, h http.Header) {
	t.Helper()
	if got != wantStatus {
		t.Errorf("%s: status %d, want %d", name, got, wantStatus)
	}
	for k, v := range want {
		if vs := h.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("%s: %s = %q, want exactly %q", name, k, vs, v)
		}
	}
}

func TestHeadersList(t *testing.T) {
	hs := Headers()
	if len(hs) != len(want) {
		t.Fatalf("Headers has %d entries, want %d", len(hs), len(want))
	}
	for _, h := range hs {
		if want[h.Name] != h.Value {
			t.Errorf("%s = %q, want %q", h.Name, h.Value, want[h.Name])
		}
	}
	hs[0].Value = "changed"
	if Headers()[0].Value == "changed" {
		t.Error("Headers returns shared state")
	}
}

// TestHandlerChangeStaysInItsResponse: the values of one response share an
// array; a handler adding to or replacing one header must change neither
// the other headers nor the next response's.
func TestHandlerChangeStaysInItsResponse(t *testing.T) {
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/change" {
			w.Header().Add("X-Frame-Options", "SAMEORIGIN")
			w.Header()["Content-Security-Policy"][0] = "changed"
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/change", nil))
	if got := rec.Header().Values("X-Frame-Options"); len(got) != 2 || got[0] != "DENY" {
		t.Fatalf("X-Frame-Options after Add = %q", got)
	}
	if got := rec.Header().Get("Cross-Origin-Opener-Policy"); got != want["Cross-Origin-Opener-Policy"] {
		t.Fatalf("a neighbouring header changed: %q", got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	for name, v := range want {
		if got := rec.Header().Values(name); len(got) != 1 || got[0] != v {
			t.Fatalf("next response %s = %q, want %q", name, got, v)
		}
	}
}

// wantAPI is the API set (OWASP REST Security Cheat Sheet), written out.
var wantAPI = map[string]string{
	"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
	"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":    "nosniff",
	"Referrer-Policy":           "no-referrer",
	"X-Frame-Options":           "DENY",
}

// TestSplit: API requests get exactly the API set, every other request the
// full set, error responses included.
func TestSplit(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {})
	h := Split(func(r *http.Request) bool { return len(r.URL.Path) >= 5 && r.URL.Path[:5] == "/api/" }, mux)
	for _, tc := range []struct {
		path   string
		status int
		want   map[string]string
	}{
		{"/api/ok", 200, wantAPI},
		{"/api/missing", 404, wantAPI},
		{"/page", 200, want},
		{"/missing", 404, want},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, rec.Code, tc.status)
		}
		for k, v := range tc.want {
			if got := rec.Header().Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s: %s = %q, want %q", tc.path, k, got, v)
			}
		}
		if len(tc.want) == len(wantAPI) {
			for _, k := range []string{"Cross-Origin-Opener-Policy", "Permissions-Policy"} {
				if rec.Header().Get(k) != "" {
					t.Errorf("%s: %s set on an API response", tc.path, k)
				}
			}
		}
	}
	if len(APIHeaders()) != len(wantAPI) {
		t.Fatalf("APIHeaders has %d entries, want %d", len(APIHeaders()), len(wantAPI))
	}
}

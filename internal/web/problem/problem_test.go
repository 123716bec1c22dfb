package problem

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func decodeBody(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, w.Body)
	}
	return m
}

func TestWrite(t *testing.T) {
	r := httptest.NewRequest("POST", "/v1/contacts", nil)
	r = r.WithContext(WithRequestID(r.Context(), "req-123"))
	w := httptest.NewRecorder()
	w.Header().Set("Allow", "GET")
	Write(w, r, Problem{
		Status: http.StatusUnprocessableEntity,
		Code:   CodeValidation,
		Detail: "2 fields are invalid",
		Errors: []FieldError{{Field: "email", Message: "must be an email address"}},
	})
	if w.Code != 422 {
		t.Errorf("status = %d", w.Code)
	}
	for k, v := range map[string]string{
		"Content-Type":  "application/problem+json",
		"Cache-Control": "no-store",
		"Allow":         "GET",
	} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	m := decodeBody(t, w)
	want := map[string]any{
		"type":       "urn:relais:problem:validation_failed",
		"title":      "Unprocessable Entity",
		"status":     float64(422),
		"detail":     "2 fields are invalid",
		"code":       "validation_failed",
		"request_id": "req-123",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	errs, _ := m["errors"].([]any)
	if len(errs) != 1 || errs[0].(map[string]any)["field"] != "email" || errs[0].(map[string]any)["message"] != "must be an email address" {
		t.Errorf("errors = %v", m["errors"])
	}
	if _, ok := m["instance"]; ok {
		t.Error("empty instance was written")
	}
}

func TestWriteDefaults(t *testing.T) {
	w := httptest.NewRecorder()
	Write(w, httptest.NewRequest("GET", "/", nil), Problem{})
	m := decodeBody(t, w)
	if w.Code != 500 || m["type"] != "about:blank" || m["title"] != "Internal Server Error" || m["status"] != float64(500) {
		t.Errorf("defaults: %d %v", w.Code, m)
	}
	for _, k := range []string{"code", "request_id", "errors", "detail"} {
		if _, ok := m[k]; ok {
			t.Errorf("empty %s was written", k)
		}
	}
	// Explicit Type, Title and RequestID are kept; 2xx is not a problem.
	w = httptest.NewRecorder()
	Write(w, httptest.NewRequest("GET", "/", nil), Problem{Type: "https://example.org/x", Title: "X", Status: 200, RequestID: "r1", Code: CodeNotFound})
	m = decodeBody(t, w)
	if w.Code != 500 || m["type"] != "https://example.org/x" || m["title"] != "X" || m["request_id"] != "r1" {
		t.Errorf("explicit fields: %d %v", w.Code, m)
	}
	p := New(404, CodeNotFound, "no such contact")
	if p.Status != 404 || p.Code != "not_found" || p.Detail != "no such contact" {
		t.Errorf("New = %+v", p)
	}
}

func TestRequestID(t *testing.T) {
	if RequestID(context.Background()) != "" {
		t.Error("id in empty context")
	}
	if got := RequestID(WithRequestID(context.Background(), "abc")); got != "abc" {
		t.Errorf("RequestID = %q", got)
	}
}

type address struct {
	City string `json:"city"`
	Zip  string `json:"zip"`
}

type contact struct {
	Email    string            `json:"email"`
	Age      int               `json:"age"`
	Score    uint8             `json:"score"`
	Tags     []string          `json:"tags"`
	Address  address           `json:"address"`
	Born     time.Time         `json:"born"`
	Attrs    map[string]string `json:"attrs"`
	Verified bool              `json:"verified"`
	Ratio    float64           `json:"ratio"`
}

func decodeReq(body, contentType string, max int64) (*Problem, contact) {
	r := httptest.NewRequest("POST", "/v1/contacts", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	var c contact
	return DecodeJSON(httptest.NewRecorder(), r, &c, max), c
}

func TestDecodeJSONOK(t *testing.T) {
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"} {
		p, c := decodeReq(" \n{\"email\":\"a@b.example\",\"age\":42,\"address\":{\"city\":\"Paris\"},\"born\":\"2000-01-02T03:04:05Z\"}\n\t ", ct, 0)
		if p != nil {
			t.Fatalf("%s: %+v", ct, *p)
		}
		if c.Email != "a@b.example" || c.Age != 42 || c.Address.City != "Paris" || c.Born.Year() != 2000 {
			t.Errorf("decoded %+v", c)
		}
	}
}

// internals are fragments that must never reach a client.
var internals = []string{"json:", "Go ", "cannot unmarshal", "struct", "problem.", "contact", "address.City", "main.", "reflect", "time.Time", "int64", "uint8", "float64", "[]string", "map["}

func TestDecodeJSONProblems(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		max            int64
		status         int
		code           string
		detail         []string // fragments the detail must contain
		field          string   // expected Errors[0].Field, if any
	}{
		{"no content type", "", `{}`, 0, 415, CodeUnsupportedMediaType, []string{"application/json", "no Content-Type"}, ""},
		{"text/plain", "text/plain", `{}`, 0, 415, CodeUnsupportedMediaType, []string{`got "text/plain"`}, ""},
		{"form", "application/x-www-form-urlencoded", `a=b`, 0, 415, CodeUnsupportedMediaType, nil, ""},
		{"latin1", "application/json; charset=latin1", `{}`, 0, 415, CodeUnsupportedMediaType, []string{"charset=latin1"}, ""},
		{"malformed content type", "application/json; ;;=", `{}`, 0, 415, CodeUnsupportedMediaType, []string{"malformed"}, ""},
		{"too large", "application/json", `{"email":"` + strings.Repeat("x", 100) + `"}`, 50, 413, CodeBodyTooLarge, []string{"50-byte limit"}, ""},
		{"too large in trailing data", "application/json", `{}` + strings.Repeat(" ", 10) + strings.Repeat("x", 100), 50, 413, CodeBodyTooLarge, nil, ""},
		{"unknown field", "application/json", `{"email":"a@b.example","nmae":"x"}`, 0, 400, CodeUnknownField, []string{`unknown field "nmae"`}, "nmae"},
		{"unknown nested field", "application/json", `{"address":{"town":"x"}}`, 0, 400, CodeUnknownField, []string{`"town"`}, "town"},
		{"malformed", "application/json", `{"email": "a", }`, 0, 400, CodeBadJSON, []string{"malformed JSON at byte offset 15", "invalid character '}'"}, ""},
		{"malformed after whitespace", "application/json", "   {\"email\" 1}", 0, 400, CodeBadJSON, []string{"byte offset 12"}, ""},
		{"truncated", "application/json", `{"email": "a"`, 0, 400, CodeBadJSON, []string{"ends after 13 bytes, before the JSON value is complete"}, ""},
		{"trailing object", "application/json", `{"email":"a"}{"email":"b"}`, 0, 400, CodeBadJSON, []string{"unexpected data after the JSON value, which ends at byte offset 13"}, ""},
		{"trailing garbage", "application/json", "{}\n garbage", 0, 400, CodeBadJSON, []string{"unexpected data after"}, ""},
		{"empty", "application/json", ``, 0, 400, CodeBadJSON, []string{"empty"}, ""},
		{"whitespace only", "application/json", " \r\n\t", 0, 400, CodeBadJSON, []string{"empty"}, ""},
		{"null", "application/json", ` null `, 0, 400, CodeBadJSON, []string{"null"}, ""},
		{"array body", "application/json", `[1,2]`, 0, 400, CodeBadJSON, []string{"must be an object, not an array"}, ""},
		{"string for int", "application/json", `{"age":"forty"}`, 0, 400, CodeValidation, []string{`field "age" must be an integer, not a string`}, "age"},
		{"fraction for int", "application/json", `{"age":1.5}`, 0, 400, CodeValidation, []string{`"age" must be an integer, not the number 1.5`}, "age"},
		{"overflow uint8", "application/json", `{"score":300}`, 0, 400, CodeValidation, []string{`"score" must be an integer from 0 to 255, not the number 300`}, "score"},
		{"number for string", "application/json", `{"email":5}`, 0, 400, CodeValidation, []string{`"email" must be a string, not a number`}, "email"},
		{"object for array", "application/json", `{"tags":{}}`, 0, 400, CodeValidation, []string{`"tags" must be an array, not an object`}, "tags"},
		{"nested", "application/json", `{"address":{"city":true}}`, 0, 400, CodeValidation, []string{`field "address.city" must be a string, not true or false`}, "address.city"},
		{"string for bool", "application/json", `{"verified":"yes"}`, 0, 400, CodeValidation, []string{`"verified" must be true or false, not a string`}, "verified"},
		{"array for map", "application/json", `{"attrs":[]}`, 0, 400, CodeValidation, []string{`"attrs" must be an object, not an array`}, "attrs"},
		{"number for time", "application/json", `{"born":1}`, 0, 400, CodeBadJSON, []string{"could not be decoded"}, ""},
		{"bad time", "application/json", `{"born":"yesterday"}`, 0, 400, CodeValidation, []string{"RFC 3339"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := decodeReq(tc.body, tc.ct, tc.max)
			if p == nil {
				t.Fatal("no problem")
			}
			if p.Status != tc.status || p.Code != tc.code {
				t.Errorf("got %d %s, want %d %s (detail %q)", p.Status, p.Code, tc.status, tc.code, p.Detail)
			}
			for _, d := range tc.detail {
				if !strings.Contains(p.Detail, d) {
					t.Errorf("detail %q lacks %q", p.Detail, d)
				}
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Errorf("errors = %+v, want field %q", p.Errors, tc.field)
			}
			all := p.Detail
			for _, e := range p.Errors {
				all += " " + e.Field + " " + e.Message
			}
			for _, bad := range internals {
				if strings.Contains(all, bad) {
					t.Errorf("problem leaks %q: %q", bad, all)
				}
			}
			// And it writes as a problem document.
			w := httptest.NewRecorder()
			Write(w, httptest.NewRequest("POST", "/", nil), *p)
			if w.Code != tc.status || w.Header().Get("Content-Type") != ContentType {
				t.Errorf("Write: %d %s", w.Code, w.Header().Get("Content-Type"))
			}
		})
	}
}

// TestDecodeJSONContentLength: a declared length over the limit is refused
// before reading.
func TestDecodeJSONContentLength(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = 1 << 30
	var c contact
	if p := DecodeJSON(httptest.NewRecorder(), r, &c, 1024); p == nil || p.Status != 413 {
		t.Fatalf("got %+v, want 413", p)
	}
}

// TestDecodeJSONLongUnknownField: a huge unknown key is cut before echoing.
func TestDecodeJSONLongUnknownField(t *testing.T) {
	key := strings.Repeat("k", 5000)
	p, _ := decodeReq(`{"`+key+`":1}`, "application/json", 0)
	if p == nil || p.Code != CodeUnknownField {
		t.Fatalf("got %+v", p)
	}
	if len(p.Detail) > 200 || len(p.Errors[0].Field) > 100 {
		t.Errorf("detail of %d bytes, field of %d bytes: client text not cut", len(p.Detail), len(p.Errors[0].Field))
	}
}

// TestDecodeJSONBadDestination: a non-pointer destination is a server bug,
// reported as 500 without details.
func TestDecodeJSONBadDestination(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "application/json")
	var c contact
	p := DecodeJSON(httptest.NewRecorder(), r, c, 0)
	if p == nil || p.Status != 500 || p.Code != CodeInternal {
		t.Fatalf("got %+v", p)
	}
	for _, bad := range internals {
		if strings.Contains(p.Detail, bad) {
			t.Errorf("detail leaks %q: %q", bad, p.Detail)
		}
	}
}

// TestDecodeJSONOverServer: through a real server, the 413 closes the
// connection and the problem reaches the client.
func TestDecodeJSONOverServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c contact
		if p := DecodeJSON(w, r, &c, 64); p != nil {
			Write(w, r, *p)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// Chunked body, so the limit is found while reading.
	pr := strings.NewReader(`{"email":"` + strings.Repeat("x", 1000) + `"}`)
	req, err := http.NewRequest("POST", srv.URL, struct{ *strings.Reader }{pr})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 || p.Code != CodeBodyTooLarge || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("got %d %+v", resp.StatusCode, p)
	}
}

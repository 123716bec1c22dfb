// Package problem writes API errors as RFC 9457 problem documents
// ("application/problem+json") with a stable machine-readable code, and
// decodes JSON request bodies strictly, turning every decoding failure into
// such a problem.
//
// A handler typically does:
//
//	var in sendRequest
//	if p := problem.DecodeJSON(w, r, &in, problem.DefaultMaxBodyBytes); p != nil {
//		problem.Write(w, r, *p)
//		return
//	}
//	...
//	problem.Write(w, r, problem.New(http.StatusConflict, problem.CodeConflict, "a campaign with this name already exists"))
//
// Clients should branch on Code (or the equivalent Type), never on Title or
// Detail, which are for people and may change. Details never carry Go
// internals (type names, package paths, raw library errors).
package problem

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
)

// Stable problem codes. A code never changes meaning once released; the
// problem's Type is "urn:relais:problem:" followed by the code.
const (
	CodeBadJSON              = "bad_json"               // 400: the body is not one well-formed JSON value
	CodeUnknownField         = "unknown_field"          // 400: the body has a field the endpoint does not know
	CodeBodyTooLarge         = "body_too_large"         // 413: the body exceeds the endpoint's limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: the Content-Type is not accepted
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodeValidation           = "validation_failed"      // 400 or 422: fields are wrong; see Errors
	CodeConflict             = "conflict"               // 409
	CodeUnauthorized         = "unauthenticated"        // 401: no or invalid credentials
	CodeForbidden            = "forbidden"              // 403: authenticated but not allowed
	CodeInternal             = "internal"               // 500
	CodeUnavailable          = "unavailable"            // 503
	CodeRateLimited          = "rate_limited"           // 429
	CodeShredded             = "shredded"               // 410: the tenant's (or the contact's) keys were destroyed; its data is unreadable for good
)

// TypePrefix is the prefix of the Type of a problem that has a Code.
const TypePrefix = "urn:relais:problem:"

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// FieldError is one problem with one field of the request.
type FieldError struct {
	// Field is the JSON path of the field, dot-separated ("address.city").
	Field string `json:"field"`
	// Message says what is wrong, in a sentence without the field name.
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document with Relais extensions (Code,
// RequestID, Errors).
type Problem struct {
	// Type is a URI identifying the problem type; [Write] fills it from
	// Code ("urn:relais:problem:<code>"), or "about:blank" without a code.
	Type string `json:"type"`
	// Title is a short summary of the problem type; [Write] defaults it to
	// the HTTP status text.
	Title string `json:"title"`
	// Status is the HTTP status code; [Write] uses 500 when it is not
	// between 400 and 599.
	Status int `json:"status"`
	// Detail explains this occurrence to a person.
	Detail string `json:"detail,omitempty"`
	// Instance is a URI reference identifying this occurrence, if any.
	Instance string `json:"instance,omitempty"`
	// Code is the stable machine-readable code, one of the Code constants.
	Code string `json:"code,omitempty"`
	// RequestID ties the problem to server logs; [Write] fills it from the
	// request context (see [WithRequestID]).
	RequestID string `json:"request_id,omitempty"`
	// Errors lists per-field problems, for validation failures.
	Errors []FieldError `json:"errors,omitempty"`
}

// New returns a problem with the given status, code and detail; [Write]
// fills in the rest.
func New(status int, code, detail string) Problem {
	return Problem{Status: status, Code: code, Detail: detail}
}

type requestIDKey struct{}

// WithRequestID returns a copy of ctx carrying the request id, which
// [Write] puts in every problem written for a request with that context.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Write sends p as the response: status p.Status, Content-Type
// application/problem+json, Cache-Control no-store, and the JSON document
// with defaults filled in (Type from Code, Title from the status, RequestID
// from r's context). It must be called before anything else is written to
// w. Headers already set on w (Allow for a 405, Retry-After for a 429 or
// 503, security headers) are kept.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Status < 400 || p.Status > 599 {
		p.Status = http.StatusInternalServerError
	}
	if p.Type == "" {
		if p.Code == "" {
			p.Type = "about:blank"
		} else {
			p.Type = TypePrefix + p.Code
		}
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
		if p.Title == "" {
			p.Title = "Error"
		}
	}
	if p.RequestID == "" && r != nil {
		p.RequestID = RequestID(r.Context())
	}
	body, err := json.Marshal(p)
	if err != nil {
		// Unreachable: Problem holds only strings and ints.
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, _ = w.Write(body) // the client may be gone; nothing useful to do
}

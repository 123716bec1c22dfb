// Package transit is an in-process stand-in for the HashiCorp Vault /
// OpenBao transit secrets engine, serving over httptest the endpoints that
// Relais's Vault provider uses, with their documented request and answer
// shapes (see docs/architecture.md, "Vault / OpenBao transit"). No real Vault
// can run here (it is not packaged for Debian), so this fake stands in for it;
// it keeps aes256-gcm96 keys with versions and associated data like transit.
//
// It also plays the failures a provider must survive: a sealed server
// (Sealed), a slow one (Delay), one answering garbage (Garbage).
package transit

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a fake transit engine mounted at "transit".
type Server struct {
	*httptest.Server
	// Token is the token it accepts; RoleID and SecretID log in by AppRole
	// and get a fresh token.
	Token, RoleID, SecretID string

	Sealed  atomic.Bool
	Garbage atomic.Bool
	// Delay (nanoseconds) is slept before answering.
	Delay atomic.Int64

	mu     sync.Mutex
	keys   map[string]*key
	tokens map[string]bool
	// Calls counts requests per path prefix ("encrypt", "decrypt", ...).
	calls map[string]int
}

type key struct {
	versions        [][]byte // versions[i] is version i+1
	deletionAllowed bool
}

// New starts a server over plain HTTP (for keys.VaultOptions.AllowHTTP);
// close it with Close.
func New() *Server {
	s := newServer()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS starts a server over HTTPS, as a real Vault is reached; CAPEM gives
// the certificate to trust.
func NewTLS() *Server {
	s := newServer()
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

func newServer() *Server {
	s := &Server{Token: "root-token", RoleID: "relais-role", SecretID: "relais-secret",
		keys: map[string]*key{}, tokens: map[string]bool{}, calls: map[string]int{}}
	s.tokens[s.Token] = true
	return s
}

// CAPEM is the PEM certificate of a NewTLS server.
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// Calls returns how many requests an operation ("encrypt", ...) received.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// HasKey reports whether the named transit key exists.
func (s *Server) HasKey(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[name]
	return ok
}

// Versions returns how many versions the named key has.
func (s *Server) Versions(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[name]; ok {
		return len(k.versions)
	}
	return 0
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Read the body before any delay, so that the server notices a client
	// that gives up (and Close does not wait for the delay).
	var in map[string]any
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(w, http.StatusBadRequest, "failed to parse JSON input")
			return
		}
	}
	if d := s.Delay.Load(); d > 0 {
		select {
		case <-time.After(time.Duration(d)):
		case <-r.Context().Done():
			return
		}
	}
	if s.Garbage.Load() {
		_, _ = w.Write([]byte("<html>proxy error</html>"))
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if path == "sys/health" {
		if s.Sealed.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			reply(w, map[string]any{"sealed": true})
			return
		}
		reply(w, map[string]any{"initialized": true, "sealed": false})
		return
	}
	if s.Sealed.Load() {
		fail(w, http.StatusServiceUnavailable, "Vault is sealed")
		return
	}
	if path == "auth/approle/login" {
		if in["role_id"] != s.RoleID || in["secret_id"] != s.SecretID {
			fail(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
		tok := "s." + base64.RawURLEncoding.EncodeToString(newKey()[:12])
		s.mu.Lock()
		s.tokens[tok] = true
		s.mu.Unlock()
		reply(w, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 3600}})
		return
	}
	s.mu.Lock()
	ok := s.tokens[r.Header.Get("X-Vault-Token")]
	s.mu.Unlock()
	if !ok {
		fail(w, http.StatusForbidden, "permission denied")
		return
	}
	parts := strings.Split(path, "/")
	if len(parts) < 3 || parts[0] != "transit" {
		fail(w, http.StatusNotFound, "no handler for route")
		return
	}
	op, name := parts[1], parts[2]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	switch {
	case op == "encrypt" && r.Method == http.MethodPost:
		k, ok := s.keys[name]
		if !ok { // upsert, as transit does for a token with create capability
			k = &key{versions: [][]byte{newKey()}}
			s.keys[name] = k
		}
		pt, err1 := base64.StdEncoding.DecodeString(str(in["plaintext"]))
		ad, err2 := base64.StdEncoding.DecodeString(str(in["associated_data"]))
		if err1 != nil || err2 != nil {
			fail(w, http.StatusBadRequest, "failed to base64-decode plaintext")
			return
		}
		v := len(k.versions)
		aead := gcm(k.versions[v-1])
		nonce := make([]byte, 12)
		_, _ = rand.Read(nonce)
		ct := aead.Seal(nonce, nonce, pt, ad)
		reply(w, map[string]any{"data": map[string]any{"ciphertext": "vault:v" + strconv.Itoa(v) + ":" + base64.StdEncoding.EncodeToString(ct), "key_version": v}})
	case op == "decrypt" && r.Method == http.MethodPost:
		k, ok := s.keys[name]
		if !ok {
			fail(w, http.StatusBadRequest, "encryption key not found")
			return
		}
		c := str(in["ciphertext"])
		rest, found := strings.CutPrefix(c, "vault:v")
		vs, b64, found2 := strings.Cut(rest, ":")
		v, err := strconv.Atoi(vs)
		if !found || !found2 || err != nil || v < 1 || v > len(k.versions) {
			fail(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
			return
		}
		raw, err1 := base64.StdEncoding.DecodeString(b64)
		ad, err2 := base64.StdEncoding.DecodeString(str(in["associated_data"]))
		if err1 != nil || err2 != nil || len(raw) < 12+16 {
			fail(w, http.StatusBadRequest, "invalid ciphertext: could not decode")
			return
		}
		pt, err := gcm(k.versions[v-1]).Open(nil, raw[:12], raw[12:], ad)
		if err != nil {
			fail(w, http.StatusBadRequest, "cipher: message authentication failed")
			return
		}
		reply(w, map[string]any{"data": map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)}})
	case op == "keys" && len(parts) == 4 && parts[3] == "rotate" && r.Method == http.MethodPost:
		k, ok := s.keys[name]
		if !ok {
			k = &key{}
			s.keys[name] = k
		}
		k.versions = append(k.versions, newKey())
		w.WriteHeader(http.StatusNoContent)
	case op == "keys" && len(parts) == 4 && parts[3] == "config" && r.Method == http.MethodPost:
		k, ok := s.keys[name]
		if !ok {
			fail(w, http.StatusNotFound, "no such key")
			return
		}
		if b, ok := in["deletion_allowed"].(bool); ok {
			k.deletionAllowed = b
		}
		w.WriteHeader(http.StatusNoContent)
	case op == "keys" && len(parts) == 3 && r.Method == http.MethodDelete:
		k, ok := s.keys[name]
		if !ok {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !k.deletionAllowed {
			fail(w, http.StatusBadRequest, "deletion is not allowed for this key")
			return
		}
		for _, v := range k.versions {
			clear(v)
		}
		delete(s.keys, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusNotFound, "unsupported path")
	}
}

func str(v any) string { s, _ := v.(string); return s }

func gcm(k []byte) cipher.AEAD {
	b, err := aes.NewCipher(k)
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
}

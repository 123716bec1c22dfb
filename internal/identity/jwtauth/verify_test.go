package jwtauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/maphash"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestIssueVerifyRoundTrip(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		ctx := context.Background()
		e.clk.Advance(1500 * time.Millisecond) // not on a whole second
		tok, exp, err := e.iss.Issue(ctx, goodRequest())
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		now := e.clk.Now().Truncate(time.Second)
		if !exp.Equal(now.Add(DefaultLifetime)) {
			t.Fatalf("exp = %v, want %v", exp, now.Add(DefaultLifetime))
		}
		h, _, _ := segments(t, tok)
		if h["alg"] != "EdDSA" || h["typ"] != "at+jwt" || h["kid"] != currentKey(t, e.node).kid {
			t.Fatalf("header = %v", h)
		}
		c := mustVerify(t, e.node, tok)
		if c.Tenant != "acme" || c.Subject != "svc-1" || c.ClientID != "cli-1" || c.Version != 3 ||
			c.Scope != "contacts:read messages:send" || !slices.Equal(c.Scopes(), []string{"contacts:read", "messages:send"}) ||
			c.Issuer != DefaultIssuer || !slices.Equal(c.Audience, []string{DefaultAudience}) || c.ID == "" ||
			!c.ExpiresAt.Equal(exp) || !c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) {
			t.Fatalf("claims = %+v", c)
		}

		// A second verification is served from the cache, as a copy the
		// caller may change without affecting the next one.
		c.Tenant, c.Audience[0] = "evil", "evil"
		c2 := mustVerify(t, e.node, tok)
		if c2.Tenant != "acme" || c2.Audience[0] != DefaultAudience {
			t.Fatalf("cached claims were altered through a returned copy: %+v", c2)
		}
		if e.ver.cache.len() != 1 {
			t.Fatalf("cache holds %d entries, want 1", e.ver.cache.len())
		}

		// Every token has its own jti; a custom lifetime is honoured.
		req := goodRequest()
		req.Lifetime = MaxLifetime
		tok2, exp2, err := e.iss.Issue(ctx, req)
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		if c3 := mustVerify(t, e.node, tok2); c3.ID == c2.ID || !exp2.Equal(now.Add(MaxLifetime)) {
			t.Fatalf("second token: jti %q (first %q), exp %v", c3.ID, c2.ID, exp2)
		}

		// Issuer and audience are configurable, and pinned on both sides.
		custom := Config{Issuer: "https://relais.example", Audience: "reports-api"}
		ci := NewIssuer(e.ks, custom)
		tok3, _, err := ci.Issue(ctx, goodRequest())
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		if _, err := NewVerifier(e.ks, custom).Verify(ctx, tok3); err != nil {
			t.Fatalf("custom config: %v", err)
		}
		refused(t, e.node, tok3, ErrInvalid)
		if _, err := NewVerifier(e.ks, custom).Verify(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Fatalf("default token on custom verifier: %v", err)
		}
	})
}

func TestIssueValidatesRequest(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		long := make([]string, 200)
		for i := range long {
			long[i] = strings.Repeat("s", 20) + string(rune('a'+i%26)) + strings.Repeat("x", i)
		}
		cases := map[string]func(*IssueRequest){
			"no tenant":         func(r *IssueRequest) { r.Tenant = "" },
			"no subject":        func(r *IssueRequest) { r.Subject = "" },
			"no client id":      func(r *IssueRequest) { r.ClientID = "" },
			"long tenant":       func(r *IssueRequest) { r.Tenant = strings.Repeat("t", 257) },
			"bad UTF-8":         func(r *IssueRequest) { r.Subject = "\xff" },
			"version 0":         func(r *IssueRequest) { r.Version = 0 },
			"negative lifetime": func(r *IssueRequest) { r.Lifetime = -time.Second },
			"lifetime too long": func(r *IssueRequest) { r.Lifetime = MaxLifetime + time.Second },
			"scope with space":  func(r *IssueRequest) { r.Scopes = []string{"a b"} },
			"scope with quote":  func(r *IssueRequest) { r.Scopes = []string{`a"`} },
			"empty scope":       func(r *IssueRequest) { r.Scopes = []string{""} },
			"repeated scope":    func(r *IssueRequest) { r.Scopes = []string{"a", "a"} },
			"token too large":   func(r *IssueRequest) { r.Scopes = long },
		}
		for name, mutate := range cases {
			req := goodRequest()
			mutate(&req)
			if tok, _, err := e.iss.Issue(context.Background(), req); err == nil {
				t.Errorf("%s: issued %d bytes", name, len(tok))
			}
		}
	})
}

// TestVerifyRefusesAlgNone crafts an unsigned token by hand, with a known kid.
func TestVerifyRefusesAlgNone(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		kid := currentKey(t, e.node).kid
		payload := b64json(t, goodClaims(e.clk.Now()))
		for _, alg := range []string{"none", "None", "NONE", ""} {
			tok := b64json(t, map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}) + "." + payload + "."
			refused(t, e.node, tok, ErrInvalid)
		}
		// Header without alg at all.
		refused(t, e.node, b64json(t, map[string]any{"typ": "at+jwt", "kid": kid})+"."+payload+".", ErrInvalid)
	})
}

// TestVerifyRefusesHS256KeyConfusion signs with HMAC using the public key
// (raw, and as published in the JWKS) as the secret: the classic attack on
// verifiers that let the token choose the algorithm.
func TestVerifyRefusesHS256KeyConfusion(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		x := jwksKeys(t, e.ks)[0]["x"]
		header := map[string]any{"kid": k.kid, "typ": "at+jwt"}
		for _, secret := range [][]byte{[]byte(k.pub), []byte(x), []byte(base64.StdEncoding.EncodeToString(k.pub))} {
			for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS512} {
				refused(t, e.node, signToken(t, m, secret, header, goodClaims(e.clk.Now())), ErrInvalid)
			}
		}
	})
}

func TestVerifyRefusesForeignKeyWithKnownKid(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		kid := currentKey(t, e.node).kid
		_, foreign, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tok := signToken(t, jwt.SigningMethodEdDSA, foreign, map[string]any{"kid": kid, "typ": "at+jwt"}, goodClaims(e.clk.Now()))
		refused(t, e.node, tok, ErrInvalid)
	})
}

func TestVerifyRefusesUnknownKid(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		now := e.clk.Now()
		// Signed by the real key, but naming a kid that does not exist,
		// naming none, or naming one that is absurdly long or not a string.
		for _, kid := range []any{randomID(), nil, "", strings.Repeat("k", 65), 42} {
			tok := signToken(t, jwt.SigningMethodEdDSA, k.priv, map[string]any{"kid": kid, "typ": "at+jwt"}, goodClaims(now))
			refused(t, e.node, tok, ErrInvalid)
		}
	})
}

// TestVerifyChecksClaimsAndHeader signs variations with the real key: each
// must be refused with the right sentinel, for the right reason.
func TestVerifyChecksClaimsAndHeader(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		now := e.clk.Now()
		cases := []struct {
			name   string
			header map[string]any
			claims func(jwt.MapClaims)
			want   error // nil: accepted
		}{
			{"baseline", nil, nil, nil},
			{"typ application/at+jwt", map[string]any{"typ": "application/at+jwt"}, nil, nil},
			{"typ AT+JWT", map[string]any{"typ": "AT+JWT"}, nil, nil},
			{"aud as string", nil, func(c jwt.MapClaims) { c["aud"] = DefaultAudience }, nil},
			{"wrong audience", nil, func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }, ErrInvalid},
			{"no audience", nil, func(c jwt.MapClaims) { delete(c, "aud") }, ErrInvalid},
			{"wrong issuer", nil, func(c jwt.MapClaims) { c["iss"] = "evil" }, ErrInvalid},
			{"no issuer", nil, func(c jwt.MapClaims) { delete(c, "iss") }, ErrInvalid},
			{"expired", nil, func(c jwt.MapClaims) {
				c["iat"], c["nbf"], c["exp"] = now.Add(-16*time.Minute).Unix(), now.Add(-16*time.Minute).Unix(), now.Add(-time.Minute).Unix()
			}, ErrExpired},
			{"expired and wrong audience", nil, func(c jwt.MapClaims) {
				c["exp"], c["aud"] = now.Add(-time.Minute).Unix(), "other-api"
			}, ErrInvalid},
			{"not yet valid", nil, func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }, ErrInvalid},
			{"issued in the future", nil, func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() }, ErrInvalid},
			{"no exp", nil, func(c jwt.MapClaims) { delete(c, "exp") }, ErrInvalid},
			{"no iat", nil, func(c jwt.MapClaims) { delete(c, "iat") }, ErrInvalid},
			{"no jti", nil, func(c jwt.MapClaims) { delete(c, "jti") }, ErrInvalid},
			{"no sub", nil, func(c jwt.MapClaims) { delete(c, "sub") }, ErrInvalid},
			{"no tenant", nil, func(c jwt.MapClaims) { delete(c, "tenant") }, ErrInvalid},
			{"no client_id", nil, func(c jwt.MapClaims) { delete(c, "client_id") }, ErrInvalid},
			{"no ver", nil, func(c jwt.MapClaims) { delete(c, "ver") }, ErrInvalid},
			{"lifetime over an hour", nil, func(c jwt.MapClaims) { c["exp"] = now.Add(MaxLifetime + time.Minute).Unix() }, ErrInvalid},
			{"exp not a number", nil, func(c jwt.MapClaims) { c["exp"] = "tomorrow" }, ErrMalformed},
			{"typ JWT", map[string]any{"typ": "JWT"}, nil, ErrInvalid},
			{"no typ", map[string]any{"typ": nil}, nil, ErrInvalid},
			{"crit header", map[string]any{"crit": []string{"exp"}}, nil, ErrInvalid},
		}
		for _, tc := range cases {
			claims := goodClaims(now)
			if tc.claims != nil {
				tc.claims(claims)
			}
			header := map[string]any{"kid": k.kid, "typ": "at+jwt"}
			for h, v := range tc.header {
				header[h] = v
			}
			tok := signToken(t, jwt.SigningMethodEdDSA, k.priv, header, claims)
			_, err := e.ver.Verify(context.Background(), tok)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("%s: refused: %v", tc.name, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

func TestVerifyRefusesTamperedToken(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		tok := issue(t, e.node, goodRequest())
		_, payload, parts := segments(t, tok)

		payload["tenant"] = "other-tenant"
		refused(t, e.node, parts[0]+"."+b64json(t, payload)+"."+parts[2], ErrInvalid)

		// Signature removed, or borrowed from another token.
		refused(t, e.node, parts[0]+"."+parts[1]+".", ErrInvalid)
		other := strings.Split(issue(t, e.node, goodRequest()), ".")
		refused(t, e.node, parts[0]+"."+parts[1]+"."+other[2], ErrInvalid)

		// The genuine token still verifies: nothing above was cached.
		mustVerify(t, e.node, tok)
	})
}

func TestVerifyRefusesOversizedAndMalformed(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		tok := issue(t, e.node, goodRequest())
		parts := strings.Split(tok, ".")
		for name, bad := range map[string]string{
			"empty":             "",
			"one byte too long": tok + strings.Repeat("A", MaxTokenBytes+1-len(tok)),
			"huge":              strings.Repeat("A", 1<<20),
			"one segment":       "abc",
			"two segments":      parts[0] + "." + parts[1],
			"four segments":     tok + ".x",
			"bad base64":        "!!!." + parts[1] + "." + parts[2],
			"padded base64":     parts[0] + "==." + parts[1] + "." + parts[2],
			"header not JSON":   base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2],
			"payload not JSON":  parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("[")) + "." + parts[2],
		} {
			if c, err := e.ver.Verify(context.Background(), bad); !errors.Is(err, ErrMalformed) || c != nil {
				t.Errorf("%s: %v, want %v", name, err, ErrMalformed)
			}
		}
	})
}

// TestVerifyLeeway: 30 seconds of clock skew are tolerated, not more.
func TestVerifyLeeway(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		k := currentKey(t, e.node)
		now := e.clk.Now()
		sign := func(mut func(jwt.MapClaims)) string {
			c := goodClaims(now)
			mut(c)
			return signToken(t, jwt.SigningMethodEdDSA, k.priv, map[string]any{"kid": k.kid, "typ": "at+jwt"}, c)
		}
		mustVerify(t, e.node, sign(func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() }))
		mustVerify(t, e.node, sign(func(c jwt.MapClaims) {
			c["nbf"], c["iat"] = now.Add(20*time.Second).Unix(), now.Add(20*time.Second).Unix()
		}))
		refused(t, e.node, sign(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }), ErrExpired)
		refused(t, e.node, sign(func(c jwt.MapClaims) { c["nbf"] = now.Add(31 * time.Second).Unix() }), ErrInvalid)
	})
}

// TestVerifiedCache: a cached result never outlives the token, is reused for
// at most a minute, and the cache stays bounded.
func TestVerifiedCache(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		req := goodRequest()
		req.Lifetime = 5 * time.Minute
		tok := issue(t, e.node, req)
		mustVerify(t, e.node, tok)
		if e.ver.cache.get(tok, e.clk.Now()) == nil {
			t.Fatal("verified token not cached")
		}
		e.clk.Advance(verifiedTTL)
		if e.ver.cache.get(tok, e.clk.Now()) != nil {
			t.Fatal("cache entry reused for more than a minute")
		}
		mustVerify(t, e.node, tok) // full verification again, cached again
		e.clk.Advance(5*time.Minute + Leeway + time.Second)
		refused(t, e.node, tok, ErrExpired) // the cached entry must not answer

		// Bounded: a full cache first drops what has expired, then all.
		now := e.clk.Now()
		c := newVerifiedCache(4)
		claims := &Claims{}
		for i := range 4 {
			until := now.Add(time.Minute)
			if i < 2 {
				until = now.Add(time.Second)
			}
			c.put(string(rune('a'+i)), claims, until, now)
		}
		later := now.Add(2 * time.Second)
		c.put("j", claims, later.Add(time.Minute), later)
		if c.len() != 3 {
			t.Fatalf("after dropping expired entries: %d entries, want 3", c.len())
		}
		c.put("k", claims, later.Add(time.Minute), later)
		c.put("l", claims, later.Add(time.Minute), later)
		if c.len() != 1 {
			t.Fatalf("full cache with nothing expired: %d entries, want 1 (cleared, then the new one)", c.len())
		}
		c.put("m", claims, later, later) // already due: not stored
		if c.len() != 1 {
			t.Fatalf("an already expired result was cached")
		}
	})
}

// TestVerifyOnlyCachesSuccess: refused tokens leave nothing behind.
func TestVerifyOnlyCachesSuccess(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		for range 20 {
			refused(t, e.node, signToken(t, jwt.SigningMethodHS256, []byte("k"), map[string]any{"kid": randomID(), "typ": "at+jwt"}, goodClaims(e.clk.Now())), ErrInvalid)
		}
		if n := e.ver.cache.len(); n != 0 {
			t.Fatalf("cache holds %d entries after refusals", n)
		}
	})
}

func TestClaimsJSONNames(t *testing.T) {
	b, err := json.Marshal(Claims{Tenant: "t", Scope: "s", Version: 2, ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"tenant":"t"`, `"scope":"s"`, `"ver":2`, `"client_id":"c"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

// TestAlgorithmPinnedBeforeKeyLookup: a token with another algorithm is
// refused before its kid is looked up, so it cannot even make a node reload
// its keys.
func TestAlgorithmPinnedBeforeKeyLookup(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		ensure(t, e.ks)
		mustVerify(t, e.node, issue(t, e.node, goodRequest()))
		e.mono.Advance(time.Hour)
		before := e.ks.reloads.Load()
		claims := b64json(t, goodClaims(e.clk.Now()))
		for _, tok := range []string{
			b64json(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": randomID()}) + "." + claims + ".",
			signToken(t, jwt.SigningMethodHS256, []byte("secret"), map[string]any{"kid": randomID(), "typ": "at+jwt"}, goodClaims(e.clk.Now())),
		} {
			_, err := e.ver.Verify(context.Background(), tok)
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, jwt.ErrTokenSignatureInvalid) || !strings.Contains(err.Error(), "signing method") {
				t.Fatalf("other algorithm: %v", err)
			}
		}
		if got := e.ks.reloads.Load(); got != before {
			t.Fatalf("a token with another algorithm made the node reload its keys")
		}
	})
}

// TestVerifiedCacheComparesTokens: an entry answers only the token it was
// stored for, byte for byte, even when another token's hash would find it
// (a collision of the 64-bit keyed hash, made here by hand).
func TestVerifiedCacheComparesTokens(t *testing.T) {
	now := time.Now()
	c := newVerifiedCache(10)
	claims := &Claims{Tenant: "acme"}
	tok := strings.Repeat("ab.", 200)
	c.put(tok, claims, now.Add(time.Minute), now)
	if c.get(tok, now) != claims {
		t.Fatal("stored token not found")
	}
	// Tokens differing in their last byte, one byte shorter or longer, or empty.
	for _, other := range []string{tok[:len(tok)-1] + "x", tok[:len(tok)-1], tok + ".", ""} {
		if c.get(other, now) != nil {
			t.Fatalf("token of %d bytes answered by another's entry", len(other))
		}
	}
	// A forged collision: the other token's key holding the first token.
	other := tok[:len(tok)-1] + "x"
	e, _ := c.entries.Load(maphash.String(c.seed, tok))
	c.entries.Store(maphash.String(c.seed, other), e)
	if c.get(other, now) != nil {
		t.Fatal("a hash collision answered another token's claims")
	}
}

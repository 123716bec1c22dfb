package signature_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/connectors/signature"
)

// TestVector pins the format against an independent computation.
func TestVector(t *testing.T) {
	secret := []byte("whsec-test-vector-0001")
	body := []byte(`{"id":"01J9","channel":"sms"}`)
	at := time.Unix(1767225600, 0)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("1767225600." + string(body)))
	want := "t=1767225600,v1=" + hex.EncodeToString(mac.Sum(nil))
	if got := signature.Sign(secret, at, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if got, err := signature.Verify(secret, want, body, at.Add(4*time.Minute), 0); err != nil || !got.Equal(at) {
		t.Fatalf("Verify = %v, %v", got, err)
	}
}

// TestVerify covers rotation (several v1), unknown schemes, and every
// refusal.
func TestVerify(t *testing.T) {
	secret, old := []byte("current-secret-0123456789"), []byte("previous-secret-0123456789")
	body := []byte("payload")
	now := time.Now()
	good := signature.Sign(secret, now, body)
	ts := strconv.FormatInt(now.Unix(), 10)
	oldSig := signature.Sign(old, now, body)
	rotated := oldSig + "," + good[len("t="+ts+","):] + ",v2=whatever"
	if _, err := signature.Verify(secret, rotated, body, now, 0); err != nil {
		t.Errorf("rotation: %v", err)
	}
	for _, tc := range []struct {
		name, header string
		body         []byte
		now          time.Time
		want         error
	}{
		{"missing", "", body, now, signature.ErrMissing},
		{"no v1", "t=" + ts, body, now, signature.ErrMalformed},
		{"no t", good[len("t="+ts+","):], body, now, signature.ErrMalformed},
		{"bad hex", "t=" + ts + ",v1=zz", body, now, signature.ErrMalformed},
		{"two t", "t=1," + good, body, now, signature.ErrMalformed},
		{"not key=value", good + ",junk", body, now, signature.ErrMalformed},
		{"tampered", good, []byte("payload!"), now, signature.ErrMismatch},
		{"wrong secret", oldSig, body, now, signature.ErrMismatch},
		{"stale", good, body, now.Add(5*time.Minute + time.Second), signature.ErrStale},
		{"future", good, body, now.Add(-5*time.Minute - time.Second), signature.ErrStale},
	} {
		if _, err := signature.Verify(secret, tc.header, tc.body, tc.now, 0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

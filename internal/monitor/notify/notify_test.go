package notify_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/monitor/notify"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

var key = []byte("0123456789abcdef0123456789abcdef")

// TestSignatureRefusesTamperingAndReplay: a changed body, another key, a
// stale or future timestamp, and a malformed header are all refused.
func TestSignatureRefusesTamperingAndReplay(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	body := []byte(`{"event":"firing"}`)
	sig := notify.Sign(key, now, body)
	if err := notify.Verify(key, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	for name, c := range map[string]struct {
		key, body []byte
		header    string
		at        time.Time
	}{
		"changed body":  {key, []byte(`{"event":"resolved"}`), sig, now},
		"other key":     {[]byte("another key of thirty-two bytes!"), body, sig, now},
		"replayed late": {key, body, sig, now.Add(10 * time.Minute)},
		"from future":   {key, body, sig, now.Add(-10 * time.Minute)},
		"no signature":  {key, body, "t=" + sig[2:12], now},
		"garbage":       {key, body, "v1=zz,t=x", now},
		"empty":         {key, body, "", now},
	} {
		if err := notify.Verify(c.key, c.header, c.body, c.at, 5*time.Minute); !errors.Is(err, notify.ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
}

// TestWebhookPost: headers set, a non-2xx answer is an error, no key or a
// non-HTTP URL refuses to send.
func TestWebhookPost(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	status := http.StatusNoContent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	w := &notify.Webhook{Key: key}
	if err := w.Post(context.Background(), srv.URL, "alert-1/firing", map[string]string{"event": "firing"}); err != nil {
		t.Fatal(err)
	}
	if got.Header.Get("X-Relais-Event") != "alert-1/firing" || notify.Verify(key, got.Header.Get("X-Relais-Signature"), gotBody, time.Now(), time.Minute) != nil {
		t.Fatalf("headers %v", got.Header)
	}
	status = http.StatusInternalServerError
	if err := w.Post(context.Background(), srv.URL, "e", map[string]string{}); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("500 accepted: %v", err)
	}
	if err := (&notify.Webhook{}).Post(context.Background(), srv.URL, "e", nil); err == nil {
		t.Fatal("sent without a key")
	}
	if err := w.Post(context.Background(), "file:///etc/passwd", "e", nil); err == nil {
		t.Fatal("non-HTTP URL accepted")
	}
}

// TestEmailRefusesHeaderInjection: recipients and subjects cannot add
// header lines; a real SMTP sink receives a clean message.
func TestEmailRefusesHeaderInjection(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: smtpsink.TLSNone})
	e := &notify.Email{Addr: sink.Addr(), From: "relais@relais.test"}
	ctx := context.Background()
	for _, bad := range []string{"a@b.test\r\nBcc: x@evil.test", "no-at-sign", "a@b.test, c@d.test"} {
		if err := e.Send(ctx, []string{bad}, "s", "b"); err == nil {
			t.Errorf("recipient %q accepted", bad)
		}
	}
	if err := e.Send(ctx, []string{"ops@relais.test"}, "alert\r\nBcc: x@evil.test", "body"); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].Header.Get("Bcc") != "" || len(msgs[0].To) != 1 {
		t.Fatalf("messages %+v", msgs)
	}
	if (&notify.Email{}).Send(ctx, []string{"ops@relais.test"}, "s", "b") == nil {
		t.Fatal("sent without a relay")
	}
}

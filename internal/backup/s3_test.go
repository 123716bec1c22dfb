package backup

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/testkit/storetest"
)

// s3Server starts a real S3 protocol server on loopback: gofakes3 with its
// in-memory backend, the lightest S3 implementation served as a Go module
// here (versitygw is not; MinIO's server is not a library). It implements
// the S3 REST API minio-go speaks (PUT, multipart, GET, HEAD, list v2,
// DELETE) but does not check request signatures, so the credentials are
// only carried. fail, when it returns true for a request, answers it with
// a 500 error or drops the connection.
func s3Server(t *testing.T, fail func(*http.Request) (drop, fail bool)) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("backups"); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail != nil {
			drop, bad := fail(r)
			if drop {
				if hj, ok := w.(http.Hijacker); ok {
					c, _, err := hj.Hijack()
					if err == nil {
						_ = c.Close()
						return
					}
				}
			}
			if bad {
				http.Error(w, "<Error><Code>InternalError</Code></Error>", http.StatusInternalServerError)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test-access")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
	return "s3://backups/relais?endpoint=" + strings.TrimPrefix(srv.URL, "http://") + "&tls=false&retries=1"
}

// TestS3Target: backup, incremental, verify and restore through an S3
// server; a server that fails or drops connections during a backup gives a
// clear error and leaves the previous good point untouched.
func TestS3Target(t *testing.T) {
	var failing atomic.Int32 // 1: 500 on chunk uploads, 2: drop them
	url := s3Server(t, func(r *http.Request) (bool, bool) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/chunks/") {
			return false, false
		}
		switch failing.Load() {
		case 1:
			return false, true
		case 2:
			return true, false
		}
		return false, false
	})
	target, err := OpenTarget(url)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	mk := newMaster(t)
	db := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	e := setup(t, db, mk, clk, 20)
	if _, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []int32{1, 2} {
		clk.Add(time.Hour)
		if _, err := e.contacts.Create(bg, e.acme.ID, contacts.NewContact{Email: "s3-" + string(rune('a'+mode)) + "@example.net"}); err != nil {
			t.Fatal(err)
		}
		failing.Store(mode)
		_, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
		failing.Store(0)
		if err == nil || !strings.Contains(err.Error(), "upload") {
			t.Fatalf("mode %d: backup through a failing server: %v", mode, err)
		}
		pts, err := e.svc.List(bg, e.acme.ID, target)
		if err != nil || len(pts) != 1 {
			t.Fatalf("mode %d: points after a failed backup: %d %v", mode, len(pts), err)
		}
		if _, err := e.svc.Verify(bg, e.acme.ID, target); err != nil {
			t.Fatalf("mode %d: the previous point no longer verifies: %v", mode, err)
		}
	}
	// The changes of the failed runs are still in the change log: the next
	// incremental has them.
	clk.Add(time.Hour)
	want := dump(t, db, e.acme.ID)
	p, err := e.svc.Run(bg, e.acme.ID, target, RunOptions{})
	if err != nil || p.Kind != KindIncremental {
		t.Fatalf("incremental after failures: %+v %v", p.Header, err)
	}
	if _, err := e.svc.Verify(bg, e.acme.ID, target); err != nil {
		t.Fatal(err)
	}
	dest := storetest.OpenSQLite(t, storetest.Options{Now: clk.Now})
	if _, err := e.svc.Restore(bg, e.acme.ID, target, RestoreOptions{IntoSlug: "acme", Dest: dest}); err != nil {
		t.Fatal(err)
	}
	compareDumps(t, want, dump(t, dest, e.acme.ID))
}

// TestOpenTarget: target URLs are checked.
func TestOpenTarget(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
	for _, bad := range []string{"dir://relative/path", "dir:relative", "ftp://x/y", "s3://bucket/p",
		"s3://bucket/p?endpoint=s3.example.net&tls=false", "s3://bucket/p?endpoint=127.0.0.1:9000&retries=99"} {
		if _, err := OpenTarget(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	for _, good := range []string{"dir:///var/backups/relais", "s3://bucket/p?endpoint=s3.example.net", "s3://bucket?endpoint=[::1]:9000&tls=false"} {
		if _, err := OpenTarget(good); err != nil {
			t.Errorf("%s refused: %v", good, err)
		}
	}
	d := &DirTarget{Root: t.TempDir()}
	for _, n := range []string{"../x", "/abs", "a/../../b"} {
		if err := d.Put(bg, n, strings.NewReader("x"), 1); err == nil {
			t.Errorf("object name %q accepted", n)
		}
	}
	if _, err := d.Get(bg, "nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing object: %v", err)
	}
}

package forward_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/audit/forward"
	"github.com/relais-dev/relais/internal/keys"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/testkit/storetest"
	"github.com/relais-dev/relais/internal/web/tlsconf"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// nastyID is an object id with every character RFC 5424 structured data
// must escape.
const nastyID = `a"b]c\d`

func newTenant(t *testing.T, db *store.DB, id string) {
	t.Helper()
	ctx := context.Background()
	if err := db.Platform(ctx, func(p *store.PlatformTx) error {
		_, err := p.Exec(ctx, `INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $1, $1, 'active', 1, 1)`, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func appendN(t *testing.T, db *store.DB, tenant string, n int) {
	t.Helper()
	ctx := audit.WithMeta(context.Background(), audit.Meta{
		Actor: audit.Actor{Type: audit.ActorUser, ID: "u-1"}, IP: "192.0.2.7", RequestID: "req-1"})
	for i := 0; i < n; i++ {
		if err := db.Tenant(tenant).Tx(ctx, func(tx *store.Tx) error {
			_, err := audit.Append(ctx, tx, audit.Event{
				Category: audit.CategoryChange, Action: "contact.update", ObjectType: "contact", ObjectID: nastyID,
				Changes: []audit.Change{{Field: "status", Before: "a", After: fmt.Sprint(i)}, {Field: "email", Personal: true}},
			})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func service(t *testing.T, db *store.DB) *audit.Service {
	t.Helper()
	mk, err := keys.LoadOrCreateFileMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &audit.Service{DB: db, Master: mk}
}

// tlsFiles makes a self-signed certificate for 127.0.0.1 and returns the
// server certificate and the path of its PEM (the receivers' CA file).
func tlsFiles(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	dir := t.TempDir()
	cert, _, _, err := tlsconf.LoadOrCreateSelfSigned(dir, []string{"127.0.0.1"}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return cert, filepath.Join(dir, filepath.FromSlash(tlsconf.SelfSignedCertFile))
}

// receiver is a stream log receiver on loopback (a syslog or GELF TCP
// input), real sockets and real TLS; it splits frames and keeps them.
type receiver struct {
	ln    net.Listener
	mu    sync.Mutex
	msgs  []string
	split func(*bufio.Reader) (string, error)
	wg    sync.WaitGroup
}

func listen(t *testing.T, addr string, cert *tls.Certificate, split func(*bufio.Reader) (string, error)) *receiver {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the address may still be in TIME_WAIT after a restart
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	}
	r := &receiver{ln: ln, split: split}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { _ = c.Close() }()
				br := bufio.NewReader(c)
				for {
					m, err := r.split(br)
					if err != nil {
						return
					}
					r.mu.Lock()
					r.msgs = append(r.msgs, m)
					r.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *receiver) addr() string { return r.ln.Addr().String() }
func (r *receiver) close()       { _ = r.ln.Close() }

// wait returns the messages once n have arrived (delivery is asynchronous
// on the receiving side only: Send has returned already).
func (r *receiver) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([]string(nil), r.msgs...)
		r.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("receiver has %d messages, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// octetCounted reads one RFC 6587 octet-counted frame: "LEN SP MSG".
func octetCounted(br *bufio.Reader) (string, error) {
	lenText, err := br.ReadString(' ')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenText, " "))
	if err != nil || n <= 0 || n > 1<<20 {
		return "", fmt.Errorf("bad frame length %q", lenText)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

func nulTerminated(br *bufio.Reader) (string, error) {
	s, err := br.ReadString(0)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(s, "\x00"), nil
}

var syslogLine = regexp.MustCompile(`^<109>1 (\S+) testhost relais - (\S+) \[relais@32473 (.*?[^\\])\] \x{feff}(\{.*\})$`)

// drain runs rounds until nothing is left to send.
func drain(t *testing.T, s *audit.Service, o audit.ForwardOptions) int {
	t.Helper()
	total := 0
	for i := 0; i < 100; i++ {
		sent := 0
		for _, r := range s.ForwardOnce(context.Background(), o) {
			if r.Err != nil {
				t.Fatalf("sink %s: %v", r.Sink, r.Err)
			}
			sent += r.Sent
		}
		if sent == 0 {
			return total
		}
		total += sent
	}
	t.Fatal("forwarding never caught up")
	return 0
}

func TestSyslogOverTLSDeliversEveryEventInOrder(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		for _, tn := range []string{"t-a", "t-b"} {
			newTenant(t, db, tn)
			appendN(t, db, tn, 25)
		}
		cert, caFile := tlsFiles(t)
		rcv := listen(t, "127.0.0.1:0", &cert, octetCounted)
		sink, err := forward.Open("tls://"+rcv.addr(), forward.Options{CAFile: caFile, Hostname: "testhost"})
		if err != nil {
			t.Fatal(err)
		}
		s := service(t, db)
		opts := audit.ForwardOptions{Sinks: []audit.Sink{sink}, Batch: 10}
		if n := drain(t, s, opts); n != 50 {
			t.Fatalf("sent %d events, want 50", n)
		}
		msgs := rcv.wait(t, 50)
		next := map[string]int64{"t-a": 1, "t-b": 1}
		for _, m := range msgs {
			g := syslogLine.FindStringSubmatch(m)
			if g == nil {
				t.Fatalf("not an RFC 5424 message of ours: %q", m)
			}
			if _, err := time.Parse(time.RFC3339Nano, g[1]); err != nil {
				t.Fatalf("timestamp %q: %v", g[1], err)
			}
			if g[2] != "contact.update" {
				t.Fatalf("MSGID %q", g[2])
			}
			if !strings.Contains(g[3], `object_id="a\"b\]c\\d"`) {
				t.Fatalf("structured data does not escape the object id: %s", g[3])
			}
			var rec audit.Record
			if err := json.Unmarshal([]byte(g[4]), &rec); err != nil {
				t.Fatalf("message body: %v", err)
			}
			if rec.Seq != next[rec.TenantID] {
				t.Fatalf("tenant %s: got seq %d, want %d (order or completeness broken)", rec.TenantID, rec.Seq, next[rec.TenantID])
			}
			if !strings.Contains(g[3], fmt.Sprintf(`tenant="%s" seq="%d"`, rec.TenantID, rec.Seq)) {
				t.Fatalf("structured data does not name the event: %s", g[3])
			}
			if strings.Contains(string(rec.Details), `"email"`) && !strings.Contains(string(rec.Details), `"personal":true`) {
				t.Fatalf("personal field forwarded with a value: %s", rec.Details)
			}
			next[rec.TenantID]++
		}
		if next["t-a"] != 26 || next["t-b"] != 26 {
			t.Fatalf("not every event arrived: %v", next)
		}
		// Caught up: nothing is sent twice.
		if n := drain(t, s, opts); n != 0 {
			t.Fatalf("a caught-up forwarder sent %d events again", n)
		}
	})
}

// A receiver that is down delays forwarding, reports the lag, loses
// nothing, and gets everything once it is back.
func TestSinkDownLosesNothingAndReportsLag(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "t-a")
		appendN(t, db, "t-a", 12)
		rcv := listen(t, "127.0.0.1:0", nil, octetCounted)
		addr := rcv.addr()
		rcv.close() // down from the start
		sink, err := forward.Open("tcp://"+addr, forward.Options{Hostname: "testhost", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s := service(t, db)
		later := time.Now().Add(time.Hour)
		opts := audit.ForwardOptions{Sinks: []audit.Sink{sink}, Batch: 5, Now: func() time.Time { return later }}
		res := s.ForwardOnce(context.Background(), opts)
		if len(res) != 1 || res[0].Err == nil || res[0].Sent != 0 {
			t.Fatalf("a down receiver must fail the round: %+v", res)
		}
		if res[0].Lag < 59*time.Minute {
			t.Fatalf("lag %v does not show the undelivered hour", res[0].Lag)
		}
		appendN(t, db, "t-a", 3) // the trail goes on meanwhile
		rcv = listen(t, addr, nil, octetCounted)
		if n := drain(t, s, opts); n != 15 {
			t.Fatalf("sent %d after recovery, want 15", n)
		}
		msgs := rcv.wait(t, 15)
		for i, m := range msgs {
			if !strings.Contains(m, fmt.Sprintf(`seq="%d"`, i+1)) {
				t.Fatalf("message %d out of order or missing: %.120s", i, m)
			}
		}
	})
}

// A receiver whose certificate the CA file does not vouch for gets
// nothing, and the cursor does not move.
func TestUntrustedReceiverGetsNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "t-a")
		appendN(t, db, "t-a", 3)
		cert, _ := tlsFiles(t)
		_, otherCA := tlsFiles(t)
		rcv := listen(t, "127.0.0.1:0", &cert, octetCounted)
		sink, err := forward.Open("tls://"+rcv.addr(), forward.Options{CAFile: otherCA})
		if err != nil {
			t.Fatal(err)
		}
		s := service(t, db)
		opts := audit.ForwardOptions{Sinks: []audit.Sink{sink}}
		res := s.ForwardOnce(context.Background(), opts)
		if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "certificate") {
			t.Fatalf("untrusted receiver accepted: %+v", res)
		}
		// Trusting it now, every event is still to send.
		good, err := forward.Open("tls://"+rcv.addr(), forward.Options{CAFile: caOf(t, cert)})
		if err != nil {
			t.Fatal(err)
		}
		opts.Sinks = []audit.Sink{good}
		if n := drain(t, s, opts); n != 3 {
			t.Fatalf("sent %d, want 3", n)
		}
	})
}

func caOf(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGELFOverTCPAndHTTP(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "t-a")
		appendN(t, db, "t-a", 7)
		s := service(t, db)

		rcv := listen(t, "127.0.0.1:0", nil, nulTerminated)
		tcpSink, err := forward.Open("gelf+tcp://"+rcv.addr(), forward.Options{Hostname: "testhost"})
		if err != nil {
			t.Fatal(err)
		}

		// The HTTP input fails its first posts, then acknowledges.
		var posts atomic.Int32
		var mu sync.Mutex
		var got []map[string]any
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if posts.Add(1) <= 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			var m map[string]any
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		}))
		defer srv.Close()
		httpSink, err := forward.Open("gelf+https://"+strings.TrimPrefix(srv.URL, "https://")+"/gelf",
			forward.Options{Hostname: "testhost", CAFile: caOf(t, srv.TLS.Certificates[0])})
		if err != nil {
			t.Fatal(err)
		}
		opts := audit.ForwardOptions{Sinks: []audit.Sink{tcpSink, httpSink}}
		res := s.ForwardOnce(context.Background(), opts)
		if res[0].Err != nil || res[0].Sent != 7 {
			t.Fatalf("GELF TCP: %+v", res[0])
		}
		if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "503") {
			t.Fatalf("a refusing GELF HTTP input must fail the round: %+v", res[1])
		}
		for i := 0; i < 2; i++ { // posts 2 and 3 fail too; the cursor stays
			if r := s.ForwardOnce(context.Background(), audit.ForwardOptions{Sinks: []audit.Sink{httpSink}}); r[0].Err == nil || r[0].Sent != 0 {
				t.Fatalf("round %d: %+v", i, r[0])
			}
		}
		if n := drain(t, s, opts); n != 7 {
			t.Fatalf("sent %d after the input recovered, want 7", n)
		}
		for i, m := range rcv.wait(t, 7) {
			var g map[string]any
			if err := json.Unmarshal([]byte(m), &g); err != nil {
				t.Fatalf("GELF frame: %v", err)
			}
			if g["version"] != "1.1" || g["host"] != "testhost" || g["_seq"] != float64(i+1) || g["_object_id"] != nastyID {
				t.Fatalf("GELF message %d: %v", i, g)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		seen := map[float64]bool{}
		for _, g := range got {
			seen[g["_seq"].(float64)] = true
		}
		for i := 1; i <= 7; i++ {
			if !seen[float64(i)] {
				t.Fatalf("GELF HTTP never acknowledged event %d (got %v)", i, seen)
			}
		}
	})
}

// The background loop keeps forwarding new events, and backs off from a
// failing sink without stopping the healthy one.
func TestForwardLoopKeepsUp(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		newTenant(t, db, "t-a")
		s := service(t, db)
		rcv := listen(t, "127.0.0.1:0", nil, octetCounted)
		good, err := forward.Open("tcp://"+rcv.addr(), forward.Options{Hostname: "testhost"})
		if err != nil {
			t.Fatal(err)
		}
		dead := listen(t, "127.0.0.1:0", nil, octetCounted)
		deadAddr := dead.addr()
		dead.close()
		bad, err := forward.Open("tcp://"+deadAddr, forward.Options{Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var failures atomic.Int32
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- s.Forward(ctx, audit.ForwardOptions{Sinks: []audit.Sink{bad, good}, Every: 20 * time.Millisecond,
				Observe: func(sink string, _ time.Duration, _ int, err error) {
					if err != nil {
						failures.Add(1)
					}
				}})
		}()
		appendN(t, db, "t-a", 4)
		rcv.wait(t, 4)
		appendN(t, db, "t-a", 2)
		rcv.wait(t, 6)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if failures.Load() == 0 {
			t.Fatal("the dead sink's failures were not observed")
		}
	})
}

func TestOpenRefusesBadURLs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.pem")
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		url, ca, want string
	}{
		{"udp://logs:514", "", "unknown scheme"},
		{"tls://user:secret@logs:6514", "", "no credentials"},
		{"tls://logs", "", "host:port"},
		{"tcp://logs:514/path", "", "no path"},
		{"gelf+https:///gelf", "", "needs a host"},
		{"tls://logs:6514", missing, "read CA file"},
		{"tls://logs:6514", junk, "no PEM certificate"},
		{"::not a url", "", "invalid URL"},
	} {
		_, err := forward.Open(c.url, forward.Options{CAFile: c.ca})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q): %v, want an error saying %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error repeats the URL's password: %v", err)
		}
	}
}

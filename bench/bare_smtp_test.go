package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relais-dev/relais/internal/router"
)

// The bare SMTP reference of the campaign benchmark (issue 5: "a bare SMTP
// client pushing pre-rendered messages into the same kind of sink"): a
// minimal client written for the benchmark, with no connector, pool,
// outcome or retry logic. Each of its connections dials the sink, says
// EHLO, STARTTLS (TLS verified against the sink's certificate), EHLO again,
// then sends message after message: MAIL, RCPT and DATA in one write when
// the sink offers PIPELINING (one at a time otherwise), then the message
// and the end of data in one write, and reads the answer. The messages are
// rendered once, before the clock starts (RFC 5322 / MIME, multipart
// text and HTML in quoted-printable, the campaign's List-Unsubscribe
// headers, the connector's header set); only To and Message-ID differ
// from one message to the next, written in front of the shared bytes.

// bareMessage is the pre-rendered part of the reference's messages: the
// fields after To and Message-ID, and the body, CRLF line endings,
// dot-stuffed.
func bareMessage(c router.Content) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("Date: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("From: <news@acme.example>\r\n")
	b.WriteString("Subject: " + c.Subject + "\r\n")
	keys := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + ": " + c.Headers[k] + "\r\n")
	}
	const boundary = "=_relais_bench_0123456789abcdef01234567"
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, part := range []struct{ ctype, text string }{{"text/plain", c.Text}, {"text/html", c.HTML}} {
		b.WriteString("--" + boundary + "\r\nContent-Type: " + part.ctype + "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		text := strings.ReplaceAll(strings.ReplaceAll(part.text, "\r\n", "\n"), "\n", "\r\n")
		if _, err := w.Write([]byte(text)); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		body := qp.Bytes()
		if !bytes.HasSuffix(body, []byte("\r\n")) {
			body = append(body, '\r', '\n')
		}
		b.Write(body)
	}
	b.WriteString("--" + boundary + "--\r\n")
	// Dot-stuffed once here (RFC 5321 4.5.2): the bytes go on the wire as
	// they are.
	data := bytes.ReplaceAll(b.Bytes(), []byte("\r\n."), []byte("\r\n.."))
	for _, line := range bytes.Split(data, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			return nil, fmt.Errorf("bare message: a bare CR or LF in %q", line)
		}
	}
	return data, nil
}

// bareConns is how many connections the bare client opens (4, the
// connector's pool; RELAIS_BENCH_BARE_CONNS to change it).
func bareConns() int {
	if n, err := strconv.Atoi(os.Getenv("RELAIS_BENCH_BARE_CONNS")); err == nil && n > 0 {
		return n
	}
	return 4
}

// barePush sends n messages (body: bareMessage's bytes) to the sink at
// addr over conns connections and returns when the last one is
// acknowledged.
func barePush(ctx context.Context, addr string, roots *x509.CertPool, body []byte, n, conns int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for w := 0; w < conns; w++ {
		wg.Go(func() {
			errs[w] = bareConn(ctx, addr, roots, body, n, &next)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bareReply reads one SMTP reply (all its lines) and checks its code.
func bareReply(r *bufio.Reader, want int) (string, error) {
	var last string
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		if len(line) < 4 {
			return "", fmt.Errorf("short reply %q", line)
		}
		last = string(line)
		if line[3] != '-' {
			break
		}
	}
	code, err := strconv.Atoi(last[:3])
	if err != nil {
		return "", fmt.Errorf("bad reply %q", last)
	}
	if code != want {
		return "", fmt.Errorf("reply %q, want %d", strings.TrimSpace(last), want)
	}
	return last, nil
}

// bareEHLO says EHLO and returns the extensions announced.
func bareEHLO(w *bufio.Writer, r *bufio.Reader) (map[string]bool, error) {
	if _, err := w.WriteString("EHLO bench.relais.test\r\n"); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	ext := map[string]bool{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if len(line) < 4 || !strings.HasPrefix(line, "250") {
			return nil, fmt.Errorf("EHLO: %q", line)
		}
		if f := strings.Fields(line[4:]); len(f) > 0 {
			ext[strings.ToUpper(f[0])] = true
		}
		if line[3] != '-' {
			return ext, nil
		}
	}
}

func bareConn(ctx context.Context, addr string, roots *x509.CertPool, body []byte, n int, next *atomic.Int64) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	r, w := bufio.NewReader(raw), bufio.NewWriter(raw)
	if _, err := bareReply(r, 220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	ext, err := bareEHLO(w, r)
	if err != nil {
		return err
	}
	if !ext["STARTTLS"] {
		return errors.New("the sink offers no STARTTLS")
	}
	if _, err := w.WriteString("STARTTLS\r\n"); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if _, err := bareReply(r, 220); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	// A message (about 5 kB) leaves in one write: one TLS record.
	r, w = bufio.NewReaderSize(tc, 4096), bufio.NewWriterSize(tc, 16<<10)
	if ext, err = bareEHLO(w, r); err != nil {
		return err
	}
	pipelining := ext["PIPELINING"]
	if pipelining && os.Getenv("RELAIS_BENCH_BARE_DEEP") == "1" {
		return bareDeep(w, r, body, n, next)
	}
	for {
		i := int(next.Add(1)) - 1
		if i >= n {
			break
		}
		rcpt := "bare." + strconv.Itoa(i) + "@example.com"
		envelope := [...]string{"MAIL FROM:<news@acme.example>\r\n", "RCPT TO:<" + rcpt + ">\r\n", "DATA\r\n"}
		codes := [...]int{250, 250, 354}
		for k, cmd := range envelope {
			if _, err := w.WriteString(cmd); err != nil {
				return err
			}
			if !pipelining {
				if err := w.Flush(); err != nil {
					return err
				}
				if _, err := bareReply(r, codes[k]); err != nil {
					return err
				}
			}
		}
		if pipelining {
			if err := w.Flush(); err != nil {
				return err
			}
			for _, c := range codes {
				if _, err := bareReply(r, c); err != nil {
					return err
				}
			}
		}
		_, _ = w.WriteString("To: <" + rcpt + ">\r\nMessage-ID: <bare-" + strconv.Itoa(i) + "@acme.example>\r\n")
		_, _ = w.Write(body)
		_, _ = w.WriteString(".\r\n")
		if err := w.Flush(); err != nil {
			return err
		}
		if _, err := bareReply(r, 250); err != nil {
			return fmt.Errorf("end of data: %w", err)
		}
	}
	_, _ = w.WriteString("QUIT\r\n")
	_ = w.Flush()
	return nil
}

// bareDeep is the experiment RELAIS_BENCH_BARE_DEEP=1: the envelope of the
// next message leaves in the same write as the data of the current one
// (RFC 2920 allows message data first in a group), so that a message costs
// one write and one wait instead of two.
func bareDeep(w *bufio.Writer, r *bufio.Reader, body []byte, n int, next *atomic.Int64) error {
	envelope := func(i int) {
		_, _ = w.WriteString("MAIL FROM:<news@acme.example>\r\nRCPT TO:<bare." + strconv.Itoa(i) + "@example.com>\r\nDATA\r\n")
	}
	readEnvelope := func() error {
		for _, c := range [...]int{250, 250, 354} {
			if _, err := bareReply(r, c); err != nil {
				return err
			}
		}
		return nil
	}
	i := int(next.Add(1)) - 1
	if i >= n {
		return nil
	}
	envelope(i)
	if err := w.Flush(); err != nil {
		return err
	}
	if err := readEnvelope(); err != nil {
		return err
	}
	for i < n {
		_, _ = w.WriteString("To: <bare." + strconv.Itoa(i) + "@example.com>\r\nMessage-ID: <bare-" + strconv.Itoa(i) + "@acme.example>\r\n")
		_, _ = w.Write(body)
		_, _ = w.WriteString(".\r\n")
		j := int(next.Add(1)) - 1
		if j < n {
			envelope(j)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if _, err := bareReply(r, 250); err != nil {
			return fmt.Errorf("end of data: %w", err)
		}
		if j < n {
			if err := readEnvelope(); err != nil {
				return err
			}
		}
		i = j
	}
	_, _ = w.WriteString("QUIT\r\n")
	return w.Flush()
}

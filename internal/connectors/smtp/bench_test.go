package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/smtp"
	"github.com/relais-dev/relais/internal/testkit/smtpsink"
)

// benchBodies are the text and HTML parts of a campaign email whose
// rendered form is about 4.5 kB.
type benchBodies struct{ text, html string }

func newBenchBodies() benchBodies {
	return benchBodies{
		text: strings.Repeat("Dear subscriber, our summer selection is here with new arrivals every week.\n", 19),
		html: "<html><body>" + strings.Repeat("<p>Dear subscriber, our <b>summer selection</b> is here with new arrivals.</p>\n", 28) + "</body></html>",
	}
}

// message returns the campaign email for one Ref, with its
// List-Unsubscribe headers.
func (bb benchBodies) message(ref string) connectors.Message {
	return connectors.Message{
		Ref:     ref,
		Channel: connectors.ChannelEmail,
		To:      "subscriber@example.test",
		From:    "Acme News <news@acme.test>",
		Subject: "Our summer selection is here",
		Text:    bb.text,
		HTML:    bb.html,
		Headers: map[string]string{
			"List-Unsubscribe":      "<https://acme.test/u/" + ref + ">",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		},
	}
}

// renderedBench sends one bench message through the connector and
// returns the bytes the sink received: the pre-rendered message the bare
// client sends.
func renderedBench(b *testing.B) []byte {
	sink := smtpsink.Start(b, smtpsink.Options{TLS: smtpsink.TLSNone})
	c := newConnector(b, sinkConfig(sink, smtp.TLSNone))
	mustOK(b, c.Send(context.Background(), []connectors.Message{newBenchBodies().message("render")}))
	return sink.Messages()[0].Data
}

// BenchmarkSMTPPool measures the connector end to end (rendering the MIME
// message from a connectors.Message, optional DKIM, the pool, pipelined
// transactions) into the in-process sink on loopback, in batches of 1,000.
// Compare with BenchmarkBareSMTPClient, which pushes the same ~4.5 kB of
// pre-rendered bytes over one connection with go-smtp's client.
func BenchmarkSMTPPool(b *testing.B) {
	edKey, _ := ed25519PEM(b)
	rsaKey, _ := rsaPEM(b, 2048)
	for _, tc := range []struct {
		name string
		tls  string
		pool int
		dkim string
	}{
		{"plain,pool=1", smtp.TLSNone, 1, ""},
		{"plain,pool=4", smtp.TLSNone, 4, ""},
		{"starttls,pool=4", smtp.TLSStartTLS, 4, ""},
		{"plain,pool=4,dkim=ed25519", smtp.TLSNone, 4, edKey},
		{"plain,pool=4,dkim=rsa2048", smtp.TLSNone, 4, rsaKey},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sink := smtpsink.Start(b, smtpsink.Options{TLS: tc.tls, Discard: true})
			cfg := sinkConfig(sink, tc.tls)
			cfg.PoolSize = tc.pool
			if tc.dkim != "" {
				cfg.DKIM = &smtp.DKIMConfig{Domain: "acme.test", Selector: "bench", PrivateKeyPEM: tc.dkim}
			}
			c := newConnector(b, cfg)
			ctx := context.Background()
			// Warm the pool.
			bb := newBenchBodies()
			mustOK(b, c.Send(ctx, []connectors.Message{bb.message("warm")}))
			batch := make([]connectors.Message, 0, smtp.MaxBatch)
			sent := 0
			b.ResetTimer()
			start := time.Now()
			for sent < b.N {
				batch = batch[:0]
				for i := 0; i < smtp.MaxBatch && sent+i < b.N; i++ {
					batch = append(batch, bb.message(fmt.Sprintf("b%d", sent+i)))
				}
				for _, o := range c.Send(ctx, batch) {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
				}
				sent += len(batch)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			if err := sink.WaitFor(b.N+1, 10*time.Second); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkBareSMTPClient is the reference: go-smtp's client sending the
// same pre-rendered bytes, one message after the other (MAIL, RCPT, DATA
// in lock-step, as net/smtp does) on one plaintext loopback connection to
// the same sink.
func BenchmarkBareSMTPClient(b *testing.B) {
	data := renderedBench(b)
	b.Logf("pre-rendered message: %d bytes", len(data))
	sink := smtpsink.Start(b, smtpsink.Options{TLS: smtpsink.TLSNone, Discard: true})
	c, err := gosmtp.Dial(sink.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("relais.test"); err != nil {
		b.Fatal(err)
	}
	to := []string{"subscriber@example.test"}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := c.SendMail("news@acme.test", to, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if err := sink.WaitFor(b.N, 10*time.Second); err != nil {
		b.Fatal(err)
	}
}

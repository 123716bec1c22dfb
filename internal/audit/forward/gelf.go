package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/relais-dev/relais/internal/audit"
)

// gelfMessage is one event as a GELF 1.1 message. Additional fields start
// with "_"; "_id" is reserved by GELF and not used.
func gelfMessage(host string, r audit.Record) ([]byte, error) {
	short := r.Action
	if r.ObjectType != "" {
		short += " " + r.ObjectType
		if r.ObjectID != "" {
			short += "/" + r.ObjectID
		}
	}
	m := map[string]any{
		"version":       "1.1",
		"host":          host,
		"short_message": short,
		"timestamp":     float64(r.At.UnixMicro()) / 1e6,
		"level":         syslogSeverity,
		"_tenant_id":    r.TenantID,
		"_seq":          r.Seq,
		"_category":     r.Category,
		"_action":       r.Action,
		"_actor_type":   r.ActorType,
		"_actor_id":     r.ActorID,
		"_object_type":  r.ObjectType,
		"_object_id":    r.ObjectID,
		"_ip":           r.IP,
		"_user_agent":   r.UserAgent,
		"_request_id":   r.RequestID,
		"_leaf_hash":    fmt.Sprintf("%x", r.LeafHash),
	}
	if len(r.Details) > 0 {
		m["full_message"] = string(r.Details)
	}
	if r.PurgedAt != nil {
		m["_purged"] = true
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("gelf: encode event %d: %w", r.Seq, err)
	}
	return b, nil
}

// gelfFrame frames GELF messages for a TCP input: each ends with a NUL
// byte (JSON never holds a raw NUL, so the frame is unambiguous).
func gelfFrame(hostname string) func(audit.Record) ([]byte, error) {
	return func(r audit.Record) ([]byte, error) {
		b, err := gelfMessage(hostname, r)
		if err != nil {
			return nil, err
		}
		return append(b, 0), nil
	}
}

// gelfHTTP posts each message to a GELF HTTP input, which acknowledges it
// (2xx): the one transport with end-to-end acknowledgement.
type gelfHTTP struct {
	name   string
	url    string
	host   string
	client *http.Client
}

func newGELFHTTP(name string, u *url.URL, tc *tls.Config, o Options) *gelfHTTP {
	target := *u
	target.Scheme = strings.TrimPrefix(u.Scheme, "gelf+")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil
	return &gelfHTTP{name: name, url: target.String(), host: o.Hostname,
		client: &http.Client{Transport: tr, Timeout: o.Timeout}}
}

func (g *gelfHTTP) Name() string { return g.name }

func (g *gelfHTTP) Send(ctx context.Context, recs []audit.Record) error {
	for _, r := range recs {
		b, err := gelfMessage(g.host, r)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("gelf: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := g.client.Do(req)
		if err != nil {
			return fmt.Errorf("gelf: post event %d: %w", r.Seq, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("gelf: post event %d: receiver answered %s", r.Seq, resp.Status)
		}
	}
	return nil
}

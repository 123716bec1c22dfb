package privacy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"regexp"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// CertificateFormat names the destruction certificate format.
const CertificateFormat = "relais-destruction-certificate/1"

// Certificate states what a destruction destroyed, how and when (REV-3).
type Certificate struct {
	Format           string           `json:"format"`
	TenantID         string           `json:"tenant_id"`
	TenantSlug       string           `json:"tenant_slug"`
	TenantName       string           `json:"tenant_name"`
	RequestedAt      time.Time        `json:"requested_at"`
	RequestedBy      string           `json:"requested_by,omitempty"`
	ConfirmedAt      time.Time        `json:"confirmed_at"`
	DestroyedAt      time.Time        `json:"destroyed_at"`
	Rows             map[string]int64 `json:"rows_deleted"`
	TotalRows        int64            `json:"total_rows_deleted"`
	RemainingRows    int64            `json:"remaining_rows"`
	Methods          []string         `json:"methods"`
	KeysShredded     []string         `json:"keys_shredded"`
	BackupSets       []BackupSet      `json:"backup_sets"`
	Backups          string           `json:"backups"`
	PlatformAuditSeq int64            `json:"platform_audit_seq"`
}

// SignedCertificate is the certificate with its signature: SignedNote is a
// golang.org/x/mod/sumdb/note whose text is the certificate's JSON (as in
// Certificate, compact) and a newline, signed with the platform key (the
// operator audit log's Ed25519 key); VerifierKey opens it.
type SignedCertificate struct {
	Certificate json.RawMessage `json:"certificate"`
	SignedNote  string          `json:"signed_note"`
	VerifierKey string          `json:"verifier_key"`
}

func (s *Service) signCertificate(ctx context.Context, c Certificate) (*SignedCertificate, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	signed, vkey, err := s.Audit.SignNote(ctx, "", string(body)+"\n")
	if err != nil {
		return nil, fmt.Errorf("privacy: sign the certificate (the destruction itself is done; run `relais tenant destroy --tenant %s --out FILE` again to re-issue it): %w", c.TenantID, err)
	}
	sc := &SignedCertificate{Certificate: body, SignedNote: string(signed), VerifierKey: vkey}
	sum := sha256.Sum256(signed)
	err = s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		out, err := json.Marshal(sc)
		if err != nil {
			return err
		}
		if _, err := p.Exec(ctx, `UPDATE tenant_destructions SET certificate = $2 WHERE tenant_id = $1`, c.TenantID, string(out)); err != nil {
			return err
		}
		_, err = audit.Append(ctx, p.Tenant(""), audit.Event{Category: audit.CategoryAdmin, Action: "tenant.destroy.certificate", ObjectType: "tenant", ObjectID: c.TenantID,
			Details: map[string]any{"certificate_sha256": hex.EncodeToString(sum[:]), "verifier_key": vkey}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// StoredCertificate returns the certificate of a destroyed tenant (by id
// or slug), re-signing it if the signature step did not complete.
func (s *Service) StoredCertificate(ctx context.Context, ref string) (*SignedCertificate, error) {
	var raw string
	var d Destruction
	err := s.DB.Platform(ctx, func(p *store.PlatformTx) error {
		var err error
		if d, _, err = getDestruction(ctx, p, ref); err != nil {
			return err
		}
		return p.QueryRow(ctx, `SELECT certificate FROM tenant_destructions WHERE tenant_id = $1`, d.TenantID).Scan(&raw)
	})
	if err != nil {
		return nil, err
	}
	if d.State != DestroyDone {
		return nil, fmt.Errorf("%w: the tenant is not destroyed (%s)", ErrInvalid, d.State)
	}
	var sc SignedCertificate
	if err := json.Unmarshal([]byte(raw), &sc); err == nil && sc.SignedNote != "" {
		return &sc, nil
	}
	var c Certificate
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, fmt.Errorf("privacy: stored certificate: %w", err)
	}
	return s.signCertificate(ctx, c)
}

// WriteJSON writes the signed certificate as an indented JSON document.
func (sc *SignedCertificate) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sc)
}

var certHTML = template.Must(template.New("cert").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Destruction certificate: {{.C.TenantSlug}}</title>
<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}td,th{border:1px solid #999;padding:.2em .5em;text-align:left}table{border-collapse:collapse}</style></head>
<body><h1>Certificate of destruction</h1>
<p>Every piece of data of the tenant <strong>{{.C.TenantName}}</strong> ({{.C.TenantSlug}}, id {{.C.TenantID}}) was destroyed on {{.C.DestroyedAt.Format "2006-01-02 15:04:05 MST"}}.</p>
<p>Requested {{.C.RequestedAt.Format "2006-01-02 15:04:05 MST"}}{{if .C.RequestedBy}} by {{.C.RequestedBy}}{{end}}; confirmed {{.C.ConfirmedAt.Format "2006-01-02 15:04:05 MST"}}.</p>
<h2>Methods</h2><ul>{{range .C.Methods}}<li>{{.}}</li>{{end}}</ul>
<h2>Keys shredded</h2><ul>{{range .C.KeysShredded}}<li>{{.}}</li>{{end}}</ul>
<h2>Backups</h2><p>{{.C.Backups}}</p>{{if .C.BackupSets}}<table><tr><th>Set</th><th>Target</th><th>Taken</th><th>Expires</th><th>Action</th></tr>{{range .C.BackupSets}}<tr><td>{{.ID}}</td><td>{{.Target}}</td><td>{{.TakenAt.Format "2006-01-02"}}</td><td>{{.ExpiresAt.Format "2006-01-02"}}</td><td>{{.Action}}</td></tr>{{end}}</table>{{end}}
<h2>Rows deleted</h2><table><tr><th>Table</th><th>Rows</th></tr>{{range $k, $v := .C.Rows}}<tr><td>{{$k}}</td><td>{{$v}}</td></tr>{{end}}<tr><th>Total</th><th>{{.C.TotalRows}}</th></tr></table>
<p>Rows of the tenant remaining after deletion: {{.C.RemainingRows}}. Recorded in the operator audit trail at sequence {{.C.PlatformAuditSeq}}.</p>
<h2>Signature</h2><p>Signed with the platform key <code>{{.S.VerifierKey}}</code>. Check it with <code>relais certificate verify FILE</code>.</p>
<pre>{{.S.SignedNote}}</pre>
<script type="application/json" id="relais-certificate">{{.JSON}}</script>
</body></html>
`))

// WriteHTML writes the certificate as an HTML page that embeds the signed
// JSON (which `relais certificate verify` reads).
func (sc *SignedCertificate) WriteHTML(w io.Writer) error {
	var c Certificate
	if err := json.Unmarshal(sc.Certificate, &c); err != nil {
		return err
	}
	js, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	return certHTML.Execute(w, map[string]any{"C": c, "S": sc, "JSON": template.JS(js)}) // #nosec G203 -- js is json.Marshal output, which escapes <, > and &
}

var embedded = regexp.MustCompile(`(?s)<script type="application/json" id="relais-certificate">(.*?)</script>`)

// VerifyCertificate checks a certificate file (JSON, or the HTML page
// embedding it): the note's signature under its verifier key, or under
// trustedKey when given (the platform's verifier key: a certificate signed
// by any other key fails), and that the certificate shown is the one signed.
func VerifyCertificate(file []byte, trustedKey string) (Certificate, error) {
	if m := embedded.FindSubmatch(file); m != nil {
		file = m[1]
	}
	var sc SignedCertificate
	if err := json.Unmarshal(file, &sc); err != nil {
		return Certificate{}, fmt.Errorf("%w: not a certificate file: %v", ErrBadCertificate, err)
	}
	key := sc.VerifierKey
	if trustedKey != "" {
		key = trustedKey
	}
	text, err := audit.OpenNote([]byte(sc.SignedNote), key)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, sc.Certificate); err != nil {
		return Certificate{}, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	if compact.String()+"\n" != text {
		return Certificate{}, fmt.Errorf("%w: the certificate differs from the signed text", ErrBadCertificate)
	}
	var c Certificate
	if err := json.Unmarshal([]byte(text), &c); err != nil || c.Format != CertificateFormat {
		return Certificate{}, fmt.Errorf("%w: unknown format", ErrBadCertificate)
	}
	return c, nil
}

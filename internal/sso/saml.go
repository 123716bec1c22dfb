package sso

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// MaxSAMLResponseBytes caps a posted SAMLResponse (base64) before it is
// decoded or parsed; real responses are a few KiB.
const MaxSAMLResponseBytes = 256 << 10

// SAMLURL is the base of a provider's SAML endpoints: <base>/metadata is
// the SP entity id and metadata, <base>/acs the assertion consumer service.
func SAMLURL(base, tenantSlug, provider string) string {
	return base + "/sso/" + url.PathEscape(tenantSlug) + "/" + url.PathEscape(provider) + "/saml"
}

// serviceProvider builds the SAML service provider of a provider, with the
// service's clock fixed at the time of the call.
func (s *Service) serviceProvider(ctx context.Context, t tenants.Tenant, p Provider) (*saml.ServiceProvider, error) {
	c, err := s.Keyring.Crypto(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	der, err := c.Open("sso.sp_key", p.spKeyEnc)
	if err != nil {
		return nil, fmt.Errorf("decrypt SAML SP key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("SAML SP key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("SAML SP key: not ECDSA")
	}
	cert, err := x509.ParseCertificate(p.spCert)
	if err != nil {
		return nil, fmt.Errorf("SAML SP certificate: %w", err)
	}
	md, err := samlsp.ParseMetadata([]byte(p.Config.IdPMetadata))
	if err != nil {
		return nil, fmt.Errorf("IdP metadata of %s: %w", p.Name, err)
	}
	base := SAMLURL(p.Config.BaseURL, t.Slug, p.Name)
	mdURL, err := url.Parse(base + "/metadata")
	if err != nil {
		return nil, err
	}
	acsURL, err := url.Parse(base + "/acs")
	if err != nil {
		return nil, err
	}
	return &saml.ServiceProvider{
		EntityID: mdURL.String(), Key: key, Certificate: cert, MetadataURL: *mdURL, AcsURL: *acsURL,
		IDPMetadata:                      md,
		AllowIDPInitiated:                p.Config.AllowIdPInitiated,
		AuthnNameIDFormat:                saml.EmailAddressNameIDFormat,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		RejectSHA1Signatures:             true,
		RejectUnknownConditions:          true,
		RequireSignedResponseForCBC:      true,
		Clock:                            dsig.NewFakeClockAt(s.now()),
		ReplayCache:                      &replayCache{ctx: ctx, db: s.DB, tenantID: t.ID, providerID: p.ID, now: s.now()},
	}, nil
}

// samlRedirect makes an AuthnRequest for the HTTP-Redirect binding and
// returns the IdP URL and the request id.
func samlRedirect(sp *saml.ServiceProvider) (string, string, error) {
	loc := sp.GetSSOBindingLocation(saml.HTTPRedirectBinding)
	if loc == "" {
		return "", "", errors.New("the IdP metadata has no HTTP-Redirect SingleSignOnService")
	}
	req, err := sp.MakeAuthenticationRequest(loc, saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		return "", "", fmt.Errorf("SAML AuthnRequest: %w", err)
	}
	u, err := req.Redirect("", sp)
	if err != nil {
		return "", "", fmt.Errorf("SAML AuthnRequest: %w", err)
	}
	return u.String(), req.ID, nil
}

// SPMetadata returns the SAML service provider metadata of a provider
// (entity id, ACS URL, certificate), to give to the IdP.
func (s *Service) SPMetadata(ctx context.Context, tenantRef, providerName string) ([]byte, error) {
	t, err := s.tenant(ctx, tenantRef)
	if err != nil {
		return nil, err
	}
	p, err := s.GetProvider(ctx, t.ID, providerName)
	if err != nil {
		return nil, err
	}
	if p.Kind != KindSAML || p.Name != providerName {
		return nil, fmt.Errorf("%w: SAML provider %q", ErrNotFound, truncate(providerName, 60))
	}
	sp, err := s.serviceProvider(ctx, t, p)
	if err != nil {
		return nil, err
	}
	b, err := xml.MarshalIndent(sp.Metadata(), "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}

// replayCache remembers accepted assertion ids in the store until they
// expire, so every node refuses a replay.
type replayCache struct {
	ctx                  context.Context
	db                   *store.DB
	tenantID, providerID string
	now                  time.Time
}

func (r *replayCache) Consume(id string, expiresAt time.Time) error {
	if id == "" || len(id) > 256 {
		return errors.New("assertion id missing or too long")
	}
	return r.db.Tenant(r.tenantID).Tx(r.ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(r.ctx, `DELETE FROM sso_replay WHERE tenant_id = $1 AND expires_at < $2`, micros(r.now.Add(-24*time.Hour))); err != nil {
			return err
		}
		res, err := tx.Exec(r.ctx, `INSERT INTO sso_replay (tenant_id, provider_id, assertion_id, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			r.providerID, id, micros(expiresAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return saml.ErrAssertionReplayed
		}
		return nil
	})
}

// checkXMLShape refuses what no IdP needs to send and attacks use: a
// DOCTYPE (entity expansion), processing instructions other than the
// declaration, and comments anywhere (a comment inside a NameID changes
// the text an XML reader sees without changing the signed canonical
// form).
func checkXMLShape(raw []byte) error {
	doc := etree.NewDocument()
	doc.ReadSettings.Permissive = false
	if err := doc.ReadFromBytes(raw); err != nil {
		return fmt.Errorf("malformed XML: %w", err)
	}
	var walk func(tokens []etree.Token, depth int) error
	walk = func(tokens []etree.Token, depth int) error {
		if depth > 64 {
			return errors.New("XML nested too deep")
		}
		for _, tok := range tokens {
			switch x := tok.(type) {
			case *etree.Comment:
				return errors.New("XML comment in the response")
			case *etree.Directive:
				return errors.New("XML directive (DOCTYPE) in the response")
			case *etree.ProcInst:
				if depth > 0 || x.Target != "xml" {
					return errors.New("XML processing instruction in the response")
				}
			case *etree.Element:
				if err := walk(x.Child, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(doc.Child, 0)
}

// SAMLResponse finishes a SAML sign-in: form is the posted form of the
// ACS (SAMLResponse, RelayState), flowCookie the browser's flow cookie
// (empty for an IdP-initiated sign-in, refused unless the provider allows
// it). Any failure is audited and answered with ErrRefused; no session is
// started.
func (s *Service) SAMLResponse(ctx context.Context, tenantRef, providerName string, form url.Values, flowCookie string, c identity.Client) (Result, error) {
	t, p, err := s.loginProvider(ctx, tenantRef, providerName, KindSAML, c)
	if err != nil {
		return Result{}, err
	}
	at := attempt{s: s, t: t, p: p, c: c}
	if form.Get("SAMLart") != "" || form.Get("SigAlg") != "" || form.Get("Signature") != "" {
		return Result{}, at.refuse(ctx, "unsupported_binding")
	}
	b64 := form.Get("SAMLResponse")
	if b64 == "" {
		return Result{}, at.refuse(ctx, "no_response")
	}
	if len(b64) > MaxSAMLResponseBytes {
		return Result{}, at.refuse(ctx, "response_too_large")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Result{}, at.refuse(ctx, "response_not_base64")
	}
	if err := checkXMLShape(raw); err != nil {
		return Result{}, at.refuse(ctx, "response_shape: "+err.Error())
	}
	var ids []string
	returnTo := "/"
	if flowCookie != "" {
		f, ok, err := s.consumeFlow(ctx, t.ID, flowCookie)
		if err != nil {
			return Result{}, err
		}
		if ok && f.providerID == p.ID && f.requestID != "" {
			ids, returnTo = []string{f.requestID}, f.returnTo
		}
	}
	if len(ids) == 0 && !p.Config.AllowIdPInitiated {
		return Result{}, at.refuse(ctx, "unsolicited_response")
	}
	sp, err := s.serviceProvider(ctx, t, p)
	if err != nil {
		return Result{}, err
	}
	as, err := sp.ParseXMLResponse(raw, ids, sp.AcsURL)
	if err != nil {
		reason := err.Error()
		var ire *saml.InvalidResponseError
		if errors.As(err, &ire) && ire.PrivateErr != nil {
			reason = ire.PrivateErr.Error()
		}
		if errors.Is(err, saml.ErrAssertionReplayed) || strings.Contains(reason, saml.ErrAssertionReplayed.Error()) {
			return Result{}, at.refuse(ctx, "assertion_replayed")
		}
		return Result{}, at.refuse(ctx, "assertion_invalid: "+truncate(reason, 200))
	}
	if as.Subject != nil && as.Subject.NameID != nil {
		at.subject = strings.TrimSpace(as.Subject.NameID.Value)
	}
	// Our own clock-skew bound, tighter than the library's.
	now, skew := s.now(), time.Duration(p.Config.ClockSkewSeconds)*time.Second
	if d := now.Sub(as.IssueInstant); d > skew+saml.MaxIssueDelay || d < -skew {
		return Result{}, at.refuse(ctx, "clock_skew")
	}
	if as.Conditions != nil {
		if !as.Conditions.NotOnOrAfter.IsZero() && !now.Before(as.Conditions.NotOnOrAfter.Add(skew)) {
			return Result{}, at.refuse(ctx, "assertion_expired")
		}
		if !as.Conditions.NotBefore.IsZero() && now.Add(skew).Before(as.Conditions.NotBefore) {
			return Result{}, at.refuse(ctx, "assertion_not_yet_valid")
		}
	}
	claims := Claims{}
	for _, st := range as.AttributeStatements {
		for _, a := range st.Attributes {
			var vals []string
			for _, v := range a.Values {
				if v.Value != "" {
					vals = append(vals, strings.TrimSpace(v.Value))
				}
			}
			for _, n := range []string{a.Name, a.FriendlyName} {
				if n != "" {
					claims[n] = append(claims[n], vals...)
				}
			}
		}
	}
	claims["nameid"] = []string{at.subject}
	if len(claims[p.Config.EmailClaim]) == 0 && strings.Contains(at.subject, "@") {
		claims[p.Config.EmailClaim] = []string{at.subject}
	}
	mfa := false
	for _, st := range as.AuthnStatements {
		if ref := st.AuthnContext.AuthnContextClassRef; ref != nil {
			claims["authn_context"] = append(claims["authn_context"], ref.Value)
			if slices.Contains(p.Config.MFAValues, ref.Value) {
				mfa = true
			}
		}
	}
	at.claims, at.idpMFA = claims, mfa
	return at.finish(ctx, returnTo)
}

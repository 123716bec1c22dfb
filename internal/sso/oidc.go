package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/relais-dev/relais/internal/identity"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// discoveryTTL is how long a provider's discovery document is reused.
const discoveryTTL = time.Hour

type cachedProvider struct {
	p  *oidc.Provider
	at time.Time
}

// oidcProvider returns the discovered provider of an issuer (cached).
func (s *Service) oidcProvider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.discovery[issuer]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < discoveryTTL {
		return c.p, nil
	}
	// The provider keeps its context for later key-set fetches: not the
	// request's, which ends with the request.
	pctx := oidc.ClientContext(context.WithoutCancel(ctx), s.httpClient())
	p, err := oidc.NewProvider(pctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: OIDC discovery of %s: %w", ErrUnavailable, issuer, err)
	}
	s.mu.Lock()
	if s.discovery == nil {
		s.discovery = map[string]cachedProvider{}
	}
	s.discovery[issuer] = cachedProvider{p: p, at: now}
	s.mu.Unlock()
	return p, nil
}

func (s *Service) forgetDiscovery(issuer string) {
	s.mu.Lock()
	delete(s.discovery, issuer)
	s.mu.Unlock()
}

func (s *Service) oauthConfig(ctx context.Context, t tenants.Tenant, p Provider, op *oidc.Provider) (*oauth2.Config, error) {
	cfg := &oauth2.Config{ClientID: p.Config.ClientID, Endpoint: op.Endpoint(), Scopes: p.Config.Scopes,
		RedirectURL: CallbackURL(p.Config.BaseURL, t.Slug, p.Name)}
	if len(p.secretEnc) > 0 {
		c, err := s.Keyring.Crypto(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		if cfg.ClientSecret, err = c.OpenString("sso.client_secret", p.secretEnc); err != nil {
			return nil, fmt.Errorf("decrypt client secret: %w", err)
		}
	}
	return cfg, nil
}

// CallbackURL is the OIDC redirect URI of a provider, to register at the
// identity provider.
func CallbackURL(base, tenantSlug, provider string) string {
	return base + "/sso/" + url.PathEscape(tenantSlug) + "/" + url.PathEscape(provider) + "/oidc/callback"
}

// Start is a started sign-in.
type Start struct {
	// URL is where to send the browser.
	URL string
	// FlowSecret goes in the flow cookie, to be presented at the end.
	FlowSecret string
	// Kind is the provider's kind (the SAML flow cookie must survive a
	// cross-site POST: SameSite=None; the OIDC one is SameSite=Lax).
	Kind string
}

// Begin starts a sign-in with a tenant's provider. returnTo is where to
// go afterwards (a local path, see SafeReturnTo).
func (s *Service) Begin(ctx context.Context, tenantRef, providerName, returnTo string, c identity.Client) (Start, error) {
	t, err := s.tenant(ctx, tenantRef)
	if err != nil {
		return Start{}, err
	}
	p, err := s.GetProvider(ctx, t.ID, providerName)
	if err != nil {
		return Start{}, err
	}
	if !p.Enabled || p.Name != providerName {
		return Start{}, fmt.Errorf("%w: provider %q", ErrNotFound, truncate(providerName, 60))
	}
	secret := newSecret(prefixFlow, t.ID)
	var to, requestID string
	switch p.Kind {
	case KindOIDC:
		op, err := s.oidcProvider(ctx, p.Config.Issuer)
		if err != nil {
			return Start{}, err
		}
		cfg, err := s.oauthConfig(ctx, t, p, op)
		if err != nil {
			return Start{}, err
		}
		to = cfg.AuthCodeURL(secret, oidc.Nonce(derive(secret, "nonce")), oauth2.S256ChallengeOption(derive(secret, "pkce")))
	case KindSAML:
		sp, err := s.serviceProvider(ctx, t, p)
		if err != nil {
			return Start{}, err
		}
		u, id, err := samlRedirect(sp)
		if err != nil {
			return Start{}, err
		}
		to, requestID = u, id
	}
	now := s.now()
	err = s.DB.Tenant(t.ID).Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sso_flows WHERE tenant_id = $1 AND expires_at < $2`, micros(now.Add(-time.Hour))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sso_flows (tenant_id, id_hash, provider_id, request_id, return_to, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			hashSecret(secret), p.ID, requestID, SafeReturnTo(returnTo), micros(now), micros(now.Add(FlowTTL)))
		return err
	})
	if err != nil {
		return Start{}, fmt.Errorf("start sign-in: %w", err)
	}
	return Start{URL: to, FlowSecret: secret, Kind: p.Kind}, nil
}

// flow is a consumed pending sign-in.
type flow struct {
	providerID, requestID, returnTo string
}

// consumeFlow marks a flow used (once) and returns it; ok is false when it
// is unknown, used, expired, or another tenant's.
func (s *Service) consumeFlow(ctx context.Context, tenantID, secret string) (flow, bool, error) {
	tid, ok := splitSecret(prefixFlow, secret)
	if !ok || tid != tenantID {
		return flow{}, false, nil
	}
	var f flow
	err := s.DB.Tenant(tenantID).Tx(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `UPDATE sso_flows SET used_at = $3 WHERE tenant_id = $1 AND id_hash = $2 AND used_at IS NULL AND expires_at > $3
			RETURNING provider_id, request_id, return_to`, hashSecret(secret), micros(s.now())).Scan(&f.providerID, &f.requestID, &f.returnTo)
	})
	if errors.Is(err, store.ErrNotFound) {
		return flow{}, false, nil
	}
	return f, err == nil, err
}

// Result is a finished single sign-on.
type Result struct {
	identity.LoginResult
	// ReturnTo is the local path to go to.
	ReturnTo string
}

// OIDCCallback finishes an OpenID Connect sign-in: the browser came back
// with query (code, state) and the flow cookie. Any failure is audited and
// answered with ErrRefused (or ErrNotFound for an unknown tenant or
// provider); no session is started.
func (s *Service) OIDCCallback(ctx context.Context, tenantRef, providerName string, query url.Values, flowCookie string, c identity.Client) (Result, error) {
	t, p, err := s.loginProvider(ctx, tenantRef, providerName, KindOIDC, c)
	if err != nil {
		return Result{}, err
	}
	at := attempt{s: s, t: t, p: p, c: c}
	if e := query.Get("error"); e != "" {
		return Result{}, at.refuse(ctx, "idp_error: "+truncate(e, 60))
	}
	state := query.Get("state")
	if state == "" || flowCookie == "" || subtle.ConstantTimeCompare([]byte(state), []byte(flowCookie)) != 1 {
		return Result{}, at.refuse(ctx, "state_mismatch")
	}
	f, ok, err := s.consumeFlow(ctx, t.ID, state)
	if err != nil {
		return Result{}, err
	}
	if !ok || f.providerID != p.ID {
		return Result{}, at.refuse(ctx, "flow_unknown_or_expired")
	}
	code := query.Get("code")
	if code == "" || len(code) > 2048 {
		return Result{}, at.refuse(ctx, "no_code")
	}
	op, err := s.oidcProvider(ctx, p.Config.Issuer)
	if err != nil {
		return Result{}, at.refuse(ctx, "discovery_failed")
	}
	cfg, err := s.oauthConfig(ctx, t, p, op)
	if err != nil {
		return Result{}, err
	}
	hctx := oidc.ClientContext(ctx, s.httpClient())
	tok, err := cfg.Exchange(hctx, code, oauth2.VerifierOption(derive(state, "pkce")))
	if err != nil {
		return Result{}, at.refuse(ctx, "code_exchange_failed")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Result{}, at.refuse(ctx, "no_id_token")
	}
	v := op.Verifier(&oidc.Config{ClientID: p.Config.ClientID, SupportedSigningAlgs: p.Config.Algorithms, Now: s.now})
	idt, err := v.Verify(hctx, raw)
	if err != nil {
		return Result{}, at.refuse(ctx, "id_token_invalid: "+truncate(err.Error(), 200))
	}
	at.subject = idt.Subject
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(derive(state, "nonce"))) != 1 {
		return Result{}, at.refuse(ctx, "nonce_mismatch")
	}
	var rawClaims map[string]any
	if err := idt.Claims(&rawClaims); err != nil {
		return Result{}, at.refuse(ctx, "claims_unreadable")
	}
	claims := flatten(rawClaims)
	if p.Config.Userinfo {
		ui, err := op.UserInfo(hctx, oauth2.StaticTokenSource(tok))
		if err != nil || ui.Subject != idt.Subject {
			return Result{}, at.refuse(ctx, "userinfo_failed")
		}
		var uc map[string]any
		if err := ui.Claims(&uc); err == nil {
			for k, v := range flatten(uc) {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	if ev, ok := rawClaims["email_verified"].(bool); ok && !ev {
		return Result{}, at.refuse(ctx, "email_not_verified")
	}
	mfa := false
	for _, v := range append(slices.Clone(claims["amr"]), claims["acr"]...) {
		if slices.Contains(p.Config.MFAValues, v) {
			mfa = true
		}
	}
	at.claims, at.idpMFA = claims, mfa
	return at.finish(ctx, f.returnTo)
}

// flatten turns JSON claims into string lists.
func flatten(raw map[string]any) Claims {
	out := Claims{}
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = []string{x}
		case bool:
			out[k] = []string{strconv.FormatBool(x)}
		case float64:
			out[k] = []string{strconv.FormatFloat(x, 'f', -1, 64)}
		case []any:
			for _, e := range x {
				switch y := e.(type) {
				case string:
					out[k] = append(out[k], y)
				case float64:
					out[k] = append(out[k], strconv.FormatFloat(y, 'f', -1, 64))
				case bool:
					out[k] = append(out[k], strconv.FormatBool(y))
				}
			}
		}
	}
	return out
}

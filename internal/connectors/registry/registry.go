// Package registry opens connectors from their stored JSON configuration
// and masks their secrets for display.
//
//	c, err := registry.Open("smtp", raw)         // strict decoding, then validation
//	shown, err := registry.Redact("smtp", raw)   // secrets masked (DATA-3)
//
// Decoding is strict: an unknown field is an error that names it (with
// its path, "dkim.selektor") and lists the accepted ones, field names must
// match exactly, and a value of the wrong type names its field. Every
// error wraps connectors.ErrConfig and never contains a secret.
//
// It lives in its own package because it imports every connector package,
// which all import package connectors.
package registry

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/connectors"
	"github.com/relais-dev/relais/internal/connectors/internal/netx"
	"github.com/relais-dev/relais/internal/connectors/smshttp"
	"github.com/relais-dev/relais/internal/connectors/smtp"
	"github.com/relais-dev/relais/internal/connectors/webhook"
)

// Connector types.
const (
	TypeSMTP    = "smtp"
	TypeSMSHTTP = "sms-http"
	TypeWebhook = "webhook"
)

// Mask is what a secret is replaced by (followed by at most its last 4
// characters).
const Mask = netx.Mask

// CallbackParser is implemented by connectors that take in delivery
// receipts (sms-http): the callback endpoint type-asserts the opened
// connector to it. See smshttp.Connector.ParseCallback for the contract
// (which errors to acknowledge, when to call ForgetCallback).
type CallbackParser interface {
	ParseCallback(r *http.Request, now time.Time) ([]connectors.Receipt, error)
	ForgetCallback(r *http.Request)
}

var _ CallbackParser = (*smshttp.Connector)(nil)

// Types returns the connector types, sorted.
func Types() []string {
	return []string{TypeSMSHTTP, TypeSMTP, TypeWebhook}
}

// Open decodes raw strictly as the configuration of kind, validates it and
// returns the connector.
func Open(kind string, raw json.RawMessage) (connectors.Connector, error) {
	switch kind {
	case TypeSMTP:
		var cfg smtp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		return smtp.New(cfg)
	case TypeSMSHTTP:
		var cfg smshttp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		return smshttp.New(cfg)
	case TypeWebhook:
		var cfg webhook.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		return webhook.New(cfg)
	}
	return nil, unknownType(kind)
}

// Validate decodes raw strictly as the configuration of kind and validates
// it, without opening anything.
func Validate(kind string, raw json.RawMessage) error {
	switch kind {
	case TypeSMTP:
		var cfg smtp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return err
		}
		return cfg.Validate()
	case TypeSMSHTTP:
		var cfg smshttp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return err
		}
		return cfg.Validate()
	case TypeWebhook:
		var cfg webhook.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return err
		}
		return cfg.Validate()
	}
	return unknownType(kind)
}

// Redact decodes raw strictly as the configuration of kind and returns it
// with every secret (SMTP password and DKIM key, SMS token, secret fields
// and callback secret, webhook secret) replaced by "********" followed by
// at most its last 4 characters (none for short secrets and keys), for
// display (DATA-3). Fields left empty stay empty. It does not validate.
func Redact(kind string, raw json.RawMessage) (json.RawMessage, error) {
	var v any
	switch kind {
	case TypeSMTP:
		var cfg smtp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		v = cfg.Redacted()
	case TypeSMSHTTP:
		var cfg smshttp.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		v = cfg.Redacted()
	case TypeWebhook:
		var cfg webhook.Config
		if err := netx.DecodeStrict(raw, &cfg); err != nil {
			return nil, err
		}
		v = cfg.Redacted()
	default:
		return nil, unknownType(kind)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, connectors.ConfigError("config", "cannot encode: %v", err)
	}
	return b, nil
}

// IsMasked reports whether a secret value is a mask returned by Redact: a
// form or API that shows a redacted configuration and gets it back
// unchanged must keep the stored secret rather than store the mask.
func IsMasked(s string) bool { return netx.IsMasked(s) }

func unknownType(kind string) error {
	return connectors.ConfigError("type", "%q is not a connector type (known: %s)", kind, strings.Join(Types(), ", "))
}

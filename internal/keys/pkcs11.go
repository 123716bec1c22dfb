//go:build cgo

package keys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// PKCS11Available reports whether this binary can talk to an HSM (it was
// built with cgo).
const PKCS11Available = true

// PKCS11 is the HSM provider: AES-256 key objects that never leave the token
// (CKA_SENSITIVE, not CKA_EXTRACTABLE), one per tenant and version, used with
// CKM_AES_GCM. Destroying a tenant's objects shreds the tenant. One logged-in
// session is shared under a lock. It is safe for concurrent use.
//
// Wrapped format: 0x01 || uint32(key version) || IV (12 bytes) || AES-GCM
// ciphertext and tag (16 bytes); the additional data is the 5-byte header
// followed by the caller's aad.
type PKCS11 struct {
	o       PKCS11Options
	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	session pkcs11.SessionHandle
	closed  bool
}

const pkcs11HeaderSize = 5

// OpenPKCS11 loads the module, finds the token by label, opens a session and
// logs in. A missing module, token or wrong PIN fails here with a message that
// says which.
func OpenPKCS11(o PKCS11Options) (*PKCS11, error) {
	if o.Module == "" || o.TokenLabel == "" {
		return nil, errors.New("keys: pkcs11: set the module path and the token label")
	}
	if o.PIN == "" {
		return nil, errors.New("keys: pkcs11: no PIN: set RELAIS_KEYS_PKCS11_PIN (or keys.pkcs11.pin_file)")
	}
	if o.KeyLabelPrefix == "" {
		o.KeyLabelPrefix = "relais-"
	}
	c := pkcs11.New(o.Module)
	if c == nil {
		return nil, fmt.Errorf("keys: pkcs11: cannot load the module %s (is the HSM library installed?)", o.Module)
	}
	// The library's state is per process: finalise it on failure only if
	// this call initialised it.
	ours := true
	if err := c.Initialize(); err != nil {
		if !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			c.Destroy()
			return nil, fmt.Errorf("keys: pkcs11: initialise %s: %w", o.Module, err)
		}
		ours = false
	}
	fail := func(err error) (*PKCS11, error) {
		if ours {
			_ = c.Finalize()
		}
		c.Destroy()
		return nil, err
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		return fail(fmt.Errorf("keys: pkcs11: list slots: %w", err))
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == o.TokenLabel {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fail(fmt.Errorf("keys: pkcs11: no token labelled %q in %s (initialise one, e.g. softhsm2-util --init-token --free --label %s)", o.TokenLabel, o.Module, o.TokenLabel))
	}
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fail(fmt.Errorf("keys: pkcs11: open session on token %q: %w", o.TokenLabel, err))
	}
	if err := c.Login(sh, pkcs11.CKU_USER, o.PIN); err != nil && !isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = c.CloseSession(sh)
		if isCKR(err, pkcs11.CKR_PIN_INCORRECT) {
			return fail(fmt.Errorf("keys: pkcs11: wrong PIN for token %q", o.TokenLabel))
		}
		return fail(fmt.Errorf("keys: pkcs11: log in to token %q: %w", o.TokenLabel, err))
	}
	return &PKCS11{o: o, ctx: c, session: sh}, nil
}

func isCKR(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// Close logs out and unloads the module.
func (p *PKCS11) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	_ = p.ctx.Logout(p.session)
	_ = p.ctx.CloseSession(p.session)
	_ = p.ctx.Finalize()
	p.ctx.Destroy()
	return nil
}

type pkcs11Key struct {
	p     *PKCS11
	label string
}

func (p *PKCS11) platform() *pkcs11Key {
	return &pkcs11Key{p: p, label: p.o.KeyLabelPrefix + "platform"}
}

// ForTenant returns the tenant's key objects.
func (p *PKCS11) ForTenant(tenantID string) MasterKey {
	return &pkcs11Key{p: p, label: p.o.KeyLabelPrefix + "tenant-" + tenantID}
}

// ID is "pkcs11:<token>/<platform label>".
func (p *PKCS11) ID() string { return p.platform().ID() }

// Wrap wraps under the platform key.
func (p *PKCS11) Wrap(ctx context.Context, pt, aad []byte) ([]byte, error) {
	return p.platform().Wrap(ctx, pt, aad)
}

// Unwrap unwraps under the platform key.
func (p *PKCS11) Unwrap(ctx context.Context, w, aad []byte) ([]byte, error) {
	return p.platform().Unwrap(ctx, w, aad)
}

// Rotate makes a new version of the platform key.
func (p *PKCS11) Rotate(ctx context.Context) (string, error) { return p.platform().Rotate(ctx) }

// String describes the provider without the PIN.
func (p *PKCS11) String() string { return "keys.PKCS11(" + p.o.TokenLabel + ")" }

// Format prints the token label only (never the PIN), for every verb.
func (p *PKCS11) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue makes [log/slog] record no PIN.
func (p *PKCS11) LogValue() slog.Value { return slog.StringValue(p.String()) }

func (k *pkcs11Key) ID() string { return "pkcs11:" + k.p.o.TokenLabel + "/" + k.label }

// objects returns the key objects of the label by version (locked).
func (k *pkcs11Key) objects() (map[uint32][]pkcs11.ObjectHandle, error) {
	c, sh := k.p.ctx, k.p.session
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.label),
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, fmt.Errorf("find key objects: %w", err)
	}
	var hs []pkcs11.ObjectHandle
	for {
		batch, _, err := c.FindObjects(sh, 64)
		if err != nil {
			_ = c.FindObjectsFinal(sh)
			return nil, fmt.Errorf("find key objects: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		hs = append(hs, batch...)
	}
	if err := c.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("find key objects: %w", err)
	}
	out := map[uint32][]pkcs11.ObjectHandle{}
	for _, h := range hs {
		attrs, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil || len(attrs) != 1 || len(attrs[0].Value) != 4 {
			continue
		}
		v := binary.BigEndian.Uint32(attrs[0].Value)
		out[v] = append(out[v], h)
	}
	return out, nil
}

// generate makes version v of the key (locked).
func (k *pkcs11Key) generate(v uint32) (pkcs11.ObjectHandle, error) {
	id := binary.BigEndian.AppendUint32(nil, v)
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	h, err := k.p.ctx.GenerateKey(k.p.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
	if err != nil {
		return 0, fmt.Errorf("generate key %s v%d: %w", k.label, v, err)
	}
	return h, nil
}

func latest(objs map[uint32][]pkcs11.ObjectHandle) uint32 {
	var m uint32
	for v := range objs {
		m = max(m, v)
	}
	return m
}

func (k *pkcs11Key) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.p.mu.Lock()
	if k.p.closed {
		k.p.mu.Unlock()
		return errors.New("pkcs11 provider closed")
	}
	return nil
}

func (k *pkcs11Key) Wrap(ctx context.Context, pt, aad []byte) ([]byte, error) {
	if len(pt) > maxWrapPlaintext {
		return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %d bytes to wrap, at most %d", k.ID(), len(pt), maxWrapPlaintext)
	}
	if err := k.lock(ctx); err != nil {
		return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %w", k.ID(), err)
	}
	defer k.p.mu.Unlock()
	objs, err := k.objects()
	if err != nil {
		return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %w", k.ID(), err)
	}
	v := latest(objs)
	var h pkcs11.ObjectHandle
	if v == 0 {
		v = 1
		if h, err = k.generate(v); err != nil {
			return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %w", k.ID(), err)
		}
	} else {
		h = objs[v][0]
	}
	out := make([]byte, pkcs11HeaderSize+gcmNonceSize, pkcs11HeaderSize+gcmNonceSize+len(pt)+gcmTagSize)
	out[0] = wrapVersion1
	binary.BigEndian.PutUint32(out[1:], v)
	iv := out[pkcs11HeaderSize:]
	_, _ = rand.Read(iv)
	params := pkcs11.NewGCMParams(iv, wrapAD(out[:pkcs11HeaderSize], aad), gcmTagSize*8)
	defer params.Free()
	c, sh := k.p.ctx, k.p.session
	if err := c.EncryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
		return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %w", k.ID(), err)
	}
	ct, err := c.Encrypt(sh, pt)
	if err != nil {
		return nil, fmt.Errorf("keys: pkcs11 wrap with %s: %w", k.ID(), err)
	}
	return append(out, ct...), nil
}

func (k *pkcs11Key) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < pkcs11HeaderSize+gcmNonceSize+gcmTagSize || len(wrapped) > maxWrapped+4 || wrapped[0] != wrapVersion1 {
		return nil, fmt.Errorf("keys: pkcs11 unwrap with %s: not a wrapped key of this provider: %w", k.ID(), ErrFormat)
	}
	v := binary.BigEndian.Uint32(wrapped[1:pkcs11HeaderSize])
	if err := k.lock(ctx); err != nil {
		return nil, fmt.Errorf("keys: pkcs11 unwrap with %s: %w", k.ID(), err)
	}
	defer k.p.mu.Unlock()
	objs, err := k.objects()
	if err != nil {
		return nil, fmt.Errorf("keys: pkcs11 unwrap with %s: %w", k.ID(), err)
	}
	hs := objs[v]
	if len(hs) == 0 {
		return nil, fmt.Errorf("keys: pkcs11 unwrap with %s: no key version %d on the token (destroyed?): %w", k.ID(), v, ErrDecrypt)
	}
	iv := wrapped[pkcs11HeaderSize : pkcs11HeaderSize+gcmNonceSize]
	c, sh := k.p.ctx, k.p.session
	for _, h := range hs {
		params := pkcs11.NewGCMParams(append([]byte(nil), iv...), wrapAD(wrapped[:pkcs11HeaderSize], aad), gcmTagSize*8)
		err := c.DecryptInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h)
		if err != nil {
			params.Free()
			return nil, fmt.Errorf("keys: pkcs11 unwrap with %s: %w", k.ID(), err)
		}
		pt, err := c.Decrypt(sh, wrapped[pkcs11HeaderSize+gcmNonceSize:])
		params.Free()
		if err == nil {
			return pt, nil
		}
	}
	return nil, fmt.Errorf("keys: pkcs11 unwrap with %s (wrong key, wrong binding, or altered): %w", k.ID(), ErrDecrypt)
}

// Rotate generates the next version of the key.
func (k *pkcs11Key) Rotate(ctx context.Context) (string, error) {
	if err := k.lock(ctx); err != nil {
		return "", fmt.Errorf("keys: pkcs11 rotate %s: %w", k.ID(), err)
	}
	defer k.p.mu.Unlock()
	objs, err := k.objects()
	if err != nil {
		return "", fmt.Errorf("keys: pkcs11 rotate %s: %w", k.ID(), err)
	}
	if _, err := k.generate(latest(objs) + 1); err != nil {
		return "", fmt.Errorf("keys: pkcs11 rotate %s: %w", k.ID(), err)
	}
	return k.ID(), nil
}

// Destroy destroys every version of the key on the token.
func (k *pkcs11Key) Destroy(ctx context.Context) error {
	if err := k.lock(ctx); err != nil {
		return fmt.Errorf("keys: pkcs11 destroy %s: %w", k.ID(), err)
	}
	defer k.p.mu.Unlock()
	objs, err := k.objects()
	if err != nil {
		return fmt.Errorf("keys: pkcs11 destroy %s: %w", k.ID(), err)
	}
	for _, hs := range objs {
		for _, h := range hs {
			if err := k.p.ctx.DestroyObject(k.p.session, h); err != nil {
				return fmt.Errorf("keys: pkcs11 destroy %s: %w", k.ID(), err)
			}
		}
	}
	return nil
}

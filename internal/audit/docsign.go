package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/relais-dev/relais/internal/store"
)

// SignNote signs a document (text: UTF-8, ending in a newline) with the
// log's signing key, tenant id "" being the operator's log, whose key is the
// platform key; the key is created on first use. It returns the signed note
// (golang.org/x/mod/sumdb/note) and the verifier key that opens it
// (OpenNote). Signed reports (purge reports, destruction certificates)
// use it, so that they are checked with the same key as the trail.
func (s *Service) SignNote(ctx context.Context, tenantID, text string) (signed []byte, vkey string, err error) {
	err = s.inLog(ctx, tenantID, func(tx *store.Tx) error {
		k, err := ensureKey(ctx, tx, s.Master)
		if err != nil {
			return err
		}
		signer, err := k.open(ctx, s.Master)
		if err != nil {
			return err
		}
		if signed, err = note.Sign(&note.Note{Text: text}, signer); err != nil {
			return fmt.Errorf("audit: sign: %w", err)
		}
		vkey, err = k.verifierKey()
		return err
	})
	return signed, vkey, err
}

// OpenNote verifies a note signed by SignNote with a verifier key and
// returns its text.
func OpenNote(signed []byte, vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("audit: verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("audit: the signature does not verify: %w", err)
	}
	return n.Text, nil
}

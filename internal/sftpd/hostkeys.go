package sftpd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// HostKeyFiles are the names of the host keys in the host-key directory
// (OpenSSH private-key format, 0600).
var hostKeyFiles = []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key"}

// LoadOrCreateHostKeys loads the server's Ed25519 and ECDSA P-256 host keys
// from dir (0700), creating the missing ones on first start. Several nodes
// share the same host keys by sharing (or copying) these files. It returns
// the signers and whether a key was created.
func LoadOrCreateHostKeys(dir string) ([]ssh.Signer, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("sftpd: host key directory: %w", err)
	}
	created := false
	var out []ssh.Signer
	for _, name := range hostKeyFiles {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p) // #nosec G304 -- the operator's data directory
		if errors.Is(err, os.ErrNotExist) {
			if data, err = newHostKey(name); err != nil {
				return nil, false, err
			}
			if err = writeNew(p, data); errors.Is(err, os.ErrExist) {
				data, err = os.ReadFile(p) // #nosec G304 -- another process created it first
			}
			if err != nil {
				return nil, false, fmt.Errorf("sftpd: write host key %s: %w", p, err)
			}
			created = true
		} else if err != nil {
			return nil, false, fmt.Errorf("sftpd: read host key %s: %w", p, err)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("sftpd: host key %s is readable by others (mode %o): chmod 600 it", p, fi.Mode().Perm())
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("sftpd: host key %s: %w", p, err)
		}
		out = append(out, signer)
	}
	return out, created, nil
}

func newHostKey(name string) ([]byte, error) {
	var key crypto.PrivateKey
	var err error
	if name == "ssh_host_ed25519_key" {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "relais sftp host key")
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

// writeNew creates path with data, 0600, without replacing an existing
// file: it writes a temporary file and hard-links it into place.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hostkey-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}

package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ReadRecipients reads OpenPGP public keys (armored or binary) from a file.
func ReadRecipients(path string) (openpgp.EntityList, error) {
	f, err := os.Open(path) // #nosec G304 -- an operator-given key file
	if err != nil {
		return nil, fmt.Errorf("backup: OpenPGP recipients: %w", err)
	}
	defer func() { _ = f.Close() }()
	el, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		if _, serr := f.Seek(0, io.SeekStart); serr != nil {
			return nil, serr
		}
		if el, err = openpgp.ReadKeyRing(f); err != nil {
			return nil, fmt.Errorf("backup: OpenPGP recipients in %s: %w", path, err)
		}
	}
	if len(el) == 0 || len(el) > 16 {
		return nil, fmt.Errorf("backup: OpenPGP recipients in %s: give 1 to 16 keys", path)
	}
	return el, nil
}

// pgpWriter streams a point as a tar encrypted to OpenPGP recipients
// (packet.Config: AES-256, no AEAD mode, so that every stock gpg opens it).
type pgpWriter struct {
	name   string
	pw     *io.PipeWriter
	enc    io.WriteCloser
	tw     *tar.Writer
	hash   hash.Hash
	count  *countWriter
	done   chan error
	n      map[string]int
	b      *builder
	closed bool
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (b *builder) startPGP(ctx context.Context, to openpgp.EntityList) error {
	name := strings.TrimSuffix(manifestName(b.h), ".manifest") + ".tar.pgp"
	pr, pw := io.Pipe()
	p := &pgpWriter{name: name, pw: pw, hash: sha256.New(), done: make(chan error, 1), n: map[string]int{}, b: b}
	p.count = &countWriter{w: io.MultiWriter(pw, p.hash)}
	go func() {
		err := b.t.Put(ctx, name, pr, -1)
		_ = pr.CloseWithError(err)
		p.done <- err
	}()
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256, DefaultHash: 0}
	enc, err := openpgp.Encrypt(p.count, to, nil, &openpgp.FileHints{IsBinary: true, FileName: "relais-backup.tar"}, cfg)
	if err != nil {
		_ = pw.CloseWithError(err)
		<-p.done
		return fmt.Errorf("backup: OpenPGP: %w", err)
	}
	p.enc, p.tw = enc, tar.NewWriter(enc)
	b.pgp = p
	return nil
}

func (p *pgpWriter) file(name string, data []byte) error {
	if err := p.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg,
		ModTime: p.b.s.now()}); err != nil {
		return fmt.Errorf("backup: OpenPGP copy: %w", err)
	}
	if _, err := p.tw.Write(data); err != nil {
		return fmt.Errorf("backup: OpenPGP copy: %w", err)
	}
	return nil
}

func (p *pgpWriter) add(table string, plain []byte) error {
	p.n[table]++
	return p.file(fmt.Sprintf("tables/%s/%06d.jsonl", table, p.n[table]), plain)
}

func (b *builder) finishPGP() error {
	p := b.pgp
	man, err := json.MarshalIndent(struct {
		Header Header `json:"header"`
		Body   Body   `json:"body"`
	}{b.h, b.body}, "", "  ")
	if err == nil {
		err = p.file("manifest.json", man)
	}
	if err == nil {
		err = p.tw.Close()
	}
	if err == nil {
		err = p.enc.Close()
	}
	if err != nil {
		_ = p.pw.CloseWithError(err)
		<-p.done
		return err
	}
	_ = p.pw.Close()
	if err := <-p.done; err != nil {
		return err
	}
	b.body.PGP = &ObjectRef{Name: p.name, SHA256: hex.EncodeToString(p.hash.Sum(nil)), Size: p.count.n}
	return nil
}

func (b *builder) abortPGP(err error) {
	if err == nil {
		err = fmt.Errorf("backup aborted")
	}
	_ = b.pgp.pw.CloseWithError(err)
	<-b.pgp.done
	_ = b.t.Delete(context.Background(), b.pgp.name)
}

package privacy

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The AES-256-GCM stream format of exports (and of the export's own
// scratch files): a 20-byte header, "RLSAGCM1", the chunk size (uint32, big
// endian) and an 8-byte random nonce prefix; then chunks of at most chunk
// size bytes of plaintext, each sealed with AES-256-GCM under the nonce
// prefix || uint32(index | lastFlag) with the header as associated data.
// The final chunk, possibly empty, carries lastFlag (1<<31), so a cut or
// extended stream fails to open, and chunks cannot be reordered.
const (
	streamMagic = "RLSAGCM1"
	streamChunk = 64 << 10
	lastFlag    = uint32(1) << 31
	headerSize  = 8 + 4 + 8
)

// ErrBadStream reports an encrypted stream that is cut, altered, or
// opened with the wrong key.
var ErrBadStream = errors.New("privacy: the encrypted stream is cut, altered, or the key is wrong")

type gcmWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	header []byte
	buf    []byte
	n      uint32
	closed bool
}

// NewAESWriter returns a writer that encrypts to w with the 32-byte key in
// the stream format above. Close writes the final chunk; it does not close w.
func NewAESWriter(w io.Writer, key []byte) (io.WriteCloser, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	h := make([]byte, headerSize)
	copy(h, streamMagic)
	binary.BigEndian.PutUint32(h[8:], streamChunk)
	if _, err := rand.Read(h[12:]); err != nil {
		return nil, err
	}
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &gcmWriter{w: w, aead: aead, header: h, buf: make([]byte, 0, streamChunk)}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("privacy: an AES-256 key is 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (g *gcmWriter) nonce(last bool) []byte {
	n := make([]byte, 12)
	copy(n, g.header[12:20])
	c := g.n
	if last {
		c |= lastFlag
	}
	binary.BigEndian.PutUint32(n[8:], c)
	return n
}

func (g *gcmWriter) flush(last bool) error {
	if g.n >= lastFlag-1 {
		return errors.New("privacy: encrypted stream too long")
	}
	ct := g.aead.Seal(nil, g.nonce(last), g.buf, g.header)
	g.n++
	g.buf = g.buf[:0]
	_, err := g.w.Write(ct)
	return err
}

func (g *gcmWriter) Write(p []byte) (int, error) {
	if g.closed {
		return 0, errors.New("privacy: write after close")
	}
	total := len(p)
	for len(p) > 0 {
		if len(g.buf) == streamChunk {
			if err := g.flush(false); err != nil {
				return total - len(p), err
			}
		}
		n := min(streamChunk-len(g.buf), len(p))
		g.buf = append(g.buf, p[:n]...)
		p = p[n:]
	}
	return total, nil
}

func (g *gcmWriter) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	return g.flush(true)
}

type gcmReader struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	header []byte
	chunk  int
	n      uint32
	plain  []byte
	done   bool
}

// NewAESReader opens a stream written by NewAESWriter. Reading returns
// ErrBadStream for a cut, altered or wrongly keyed stream, never unverified
// plaintext.
func NewAESReader(r io.Reader, key []byte) (io.Reader, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(r, h); err != nil || string(h[:8]) != streamMagic {
		return nil, fmt.Errorf("%w: not an AES-256-GCM export stream", ErrBadStream)
	}
	chunk := int(binary.BigEndian.Uint32(h[8:]))
	if chunk <= 0 || chunk > 16<<20 {
		return nil, fmt.Errorf("%w: bad chunk size", ErrBadStream)
	}
	return &gcmReader{r: bufio.NewReaderSize(r, chunk+aead.Overhead()+1), aead: aead, header: h, chunk: chunk}, nil
}

func (g *gcmReader) Read(p []byte) (int, error) {
	for len(g.plain) == 0 {
		if g.done {
			return 0, io.EOF
		}
		buf := make([]byte, g.chunk+g.aead.Overhead())
		n, err := io.ReadFull(g.r, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, err
		}
		buf = buf[:n]
		_, perr := g.r.Peek(1)
		last := errors.Is(perr, io.EOF)
		nonce := make([]byte, 12)
		copy(nonce, g.header[12:20])
		c := g.n
		if last {
			c |= lastFlag
		}
		binary.BigEndian.PutUint32(nonce[8:], c)
		pt, oerr := g.aead.Open(nil, nonce, buf, g.header)
		if oerr != nil {
			return 0, ErrBadStream
		}
		g.n++
		g.plain = pt
		g.done = last
	}
	n := copy(p, g.plain)
	g.plain = g.plain[n:]
	return n, nil
}

// ReadPGPRecipients reads OpenPGP public keys (armored or binary) from a
// file, for NewPGPWriter.
func ReadPGPRecipients(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- a key file named by the operator
	if err != nil {
		return nil, fmt.Errorf("privacy: read the OpenPGP key %s: %w", path, err)
	}
	list, err := ParsePGPRecipients(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return list, nil
}

// ParsePGPRecipients reads OpenPGP public keys (armored or binary) from
// bytes, for NewPGPWriter. Keys that cannot encrypt are refused.
func ParsePGPRecipients(b []byte) (openpgp.EntityList, error) {
	list, err := readKeyRing(b)
	if err != nil {
		return nil, fmt.Errorf("privacy: the OpenPGP key: %w", err)
	}
	if len(list) == 0 {
		return nil, errors.New("privacy: no OpenPGP key")
	}
	for _, e := range list {
		if _, ok := e.EncryptionKey(time.Now()); !ok {
			return nil, errors.New("privacy: the OpenPGP key has no valid encryption subkey")
		}
	}
	return list, nil
}

func readKeyRing(b []byte) (openpgp.EntityList, error) {
	if bytes.Contains(b[:min(len(b), 100)], []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(b))
}

type pgpWriter struct {
	plain io.WriteCloser
	arm   io.WriteCloser
}

func (p *pgpWriter) Write(b []byte) (int, error) { return p.plain.Write(b) }
func (p *pgpWriter) Close() error {
	if err := p.plain.Close(); err != nil {
		return err
	}
	if p.arm != nil {
		return p.arm.Close()
	}
	return nil
}

// NewPGPWriter encrypts to the recipients' OpenPGP keys (a binary OpenPGP
// message, what `gpg --decrypt` reads), with AES-256 and integrity
// protection. Close finishes the message; it does not close w.
func NewPGPWriter(w io.Writer, to openpgp.EntityList, fileName string) (io.WriteCloser, error) {
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256, DefaultCompressionAlgo: packet.CompressionNone}
	pw, err := openpgp.Encrypt(w, to, nil, &openpgp.FileHints{IsBinary: true, FileName: fileName}, cfg)
	if err != nil {
		return nil, fmt.Errorf("privacy: OpenPGP encryption: %w", err)
	}
	return &pgpWriter{plain: pw}, nil
}

// NewPGPReader decrypts an OpenPGP message with the private keys of a key
// file (unprotected), checking its integrity at EOF.
func NewPGPReader(r io.Reader, identityFile string) (io.Reader, error) {
	b, err := os.ReadFile(identityFile) // #nosec G304 -- a key file named by the operator
	if err != nil {
		return nil, fmt.Errorf("privacy: read the OpenPGP identity %s: %w", identityFile, err)
	}
	keyring, err := readKeyRing(b)
	if err != nil {
		return nil, fmt.Errorf("privacy: the OpenPGP identity %s: %w", identityFile, err)
	}
	br := bufio.NewReader(r)
	if head, _ := br.Peek(20); bytes.HasPrefix(head, []byte("-----BEGIN PGP")) {
		blk, err := armor.Decode(br)
		if err != nil {
			return nil, fmt.Errorf("privacy: OpenPGP armor: %w", err)
		}
		r = blk.Body
	} else {
		r = br
	}
	md, err := openpgp.ReadMessage(r, keyring, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("privacy: open the OpenPGP message: %w", err)
	}
	return md.UnverifiedBody, nil
}

package sftpd

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Files are encrypted at rest in a seekable chunked format:
//
//	magic    "RELAIS-SFTP-1\n"
//	uint16   length of the sealed file key (big endian)
//	sealed   a random 256-bit file key, sealed with the tenant's field
//	         cipher (field "sftp.file_key"), so that the tenant key (and only
//	         it) opens the file, and destroying it makes the file unreadable
//	chunks   AES-256-GCM under the file key of 64 KiB of plaintext each (the
//	         last may be shorter, even empty), nonce = 11-byte big-endian
//	         chunk counter || 1 byte last-chunk flag (the STREAM
//	         construction, as in age), associated data = the blob key
//
// The last-chunk flag makes a truncated file fail to open; the blob key as
// associated data makes a file moved to another tenant's or file's place
// fail; the counter makes reordered chunks fail. Chunks are independent, so
// reads at any offset decrypt one or two chunks (the SFTP download and the
// contact import both seek).
const (
	sealMagic    = "RELAIS-SFTP-1\n"
	chunkSize    = 64 << 10
	tagSize      = 16
	fileKeyField = "sftp.file_key"
	maxSealedKey = 1024
)

// errCorrupt reports a stored file that does not decrypt.
var errCorrupt = errors.New("sftpd: stored file is corrupt or was made with another key")

// keySealer is the tenant's field cipher (tenants.Crypto).
type keySealer interface {
	Seal(field string, plaintext []byte) ([]byte, error)
	Open(field string, ciphertext []byte) ([]byte, error)
}

func newChunkAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func chunkNonce(n uint64, last bool) []byte {
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[3:11], n)
	if last {
		nonce[11] = 1
	}
	return nonce
}

// sealWriter encrypts a stream. Close writes the last chunk; without it
// the output does not open.
type sealWriter struct {
	w    io.Writer
	aead cipher.AEAD
	ad   []byte
	n    uint64
	buf  []byte
	out  []byte
}

// newSealWriter writes the header and returns the encrypting writer.
func newSealWriter(w io.Writer, ks keySealer, blobKey string) (*sealWriter, error) {
	key := make([]byte, 32)
	rand.Read(key) // never fails
	defer clear(key)
	sealed, err := ks.Seal(fileKeyField, key)
	if err != nil {
		return nil, fmt.Errorf("sftpd: seal the file key: %w", err)
	}
	if len(sealed) > maxSealedKey {
		return nil, errors.New("sftpd: sealed file key too long")
	}
	aead, err := newChunkAEAD(key)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, 0, len(sealMagic)+2+len(sealed))
	hdr = append(hdr, sealMagic...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(sealed))) // #nosec G115 -- bounded by maxSealedKey above
	hdr = append(hdr, sealed...)
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return &sealWriter{w: w, aead: aead, ad: []byte(blobKey), buf: make([]byte, 0, chunkSize),
		out: make([]byte, 0, chunkSize+tagSize)}, nil
}

func (s *sealWriter) flush(last bool) error {
	s.out = s.aead.Seal(s.out[:0], chunkNonce(s.n, last), s.buf, s.ad)
	s.n++
	s.buf = s.buf[:0]
	_, err := s.w.Write(s.out)
	return err
}

// Write encrypts p. A full chunk is written once more data follows it, so
// that the last chunk is known when Close comes.
func (s *sealWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(s.buf) == chunkSize {
			if err := s.flush(false); err != nil {
				return total - len(p), err
			}
		}
		k := copy(s.buf[len(s.buf):chunkSize], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
	}
	return total, nil
}

// Close writes the last chunk.
func (s *sealWriter) Close() error { return s.flush(true) }

// sealedSize is the stored size of a plaintext of n bytes with a header
// of h bytes.
func sealedSize(h, n int64) int64 {
	chunks := n/chunkSize + 1
	if n > 0 && n%chunkSize == 0 {
		chunks = n / chunkSize
	}
	return h + n + chunks*tagSize
}

// openReader decrypts a stored file at any offset.
type openReader struct {
	r      io.ReaderAt
	aead   cipher.AEAD
	ad     []byte
	hdr    int64
	chunks int64
	size   int64 // plaintext

	mu     sync.Mutex
	cached int64 // index of the chunk in plain, -1 when none
	plain  []byte
	ct     []byte
}

// newOpenReader reads the header of a stored file of total bytes.
func newOpenReader(r io.ReaderAt, total int64, ks keySealer, blobKey string) (*openReader, error) {
	fixed := int64(len(sealMagic) + 2)
	if total < fixed {
		return nil, errCorrupt
	}
	head := make([]byte, fixed)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("sftpd: read the file header: %w", err)
	}
	if !bytes.Equal(head[:len(sealMagic)], []byte(sealMagic)) {
		return nil, errCorrupt
	}
	kl := int64(binary.BigEndian.Uint16(head[len(sealMagic):]))
	if kl > maxSealedKey || total < fixed+kl+tagSize {
		return nil, errCorrupt
	}
	sealed := make([]byte, kl)
	if _, err := r.ReadAt(sealed, fixed); err != nil {
		return nil, fmt.Errorf("sftpd: read the file header: %w", err)
	}
	key, err := ks.Open(fileKeyField, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	defer clear(key)
	aead, err := newChunkAEAD(key)
	if err != nil {
		return nil, errCorrupt
	}
	o := &openReader{r: r, aead: aead, ad: []byte(blobKey), hdr: fixed + kl, cached: -1}
	body := total - o.hdr
	o.chunks = (body + chunkSize + tagSize - 1) / (chunkSize + tagSize)
	lastLen := body - (o.chunks-1)*(chunkSize+tagSize)
	if lastLen < tagSize {
		return nil, errCorrupt
	}
	o.size = body - o.chunks*tagSize
	// Check the last chunk now: a truncated file fails at open, not half-way.
	o.mu.Lock()
	err = o.load(o.chunks - 1)
	o.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Size is the plaintext size.
func (o *openReader) Size() int64 { return o.size }

// load decrypts chunk i into o.plain; o.mu is held.
func (o *openReader) load(i int64) error {
	if o.cached == i {
		return nil
	}
	off := o.hdr + i*(chunkSize+tagSize)
	n := int64(chunkSize + tagSize)
	if i == o.chunks-1 {
		n = o.hdr + (o.size + o.chunks*tagSize) - off
	}
	if cap(o.ct) < int(n) {
		o.ct = make([]byte, n)
	}
	ct := o.ct[:n]
	if _, err := o.r.ReadAt(ct, off); err != nil && !(errors.Is(err, io.EOF) && int64(len(ct)) == n) {
		return fmt.Errorf("sftpd: read the stored file: %w", err)
	}
	pt, err := o.aead.Open(o.plain[:0], chunkNonce(uint64(i), i == o.chunks-1), ct, o.ad) // #nosec G115 -- i >= 0
	if err != nil {
		o.cached = -1
		return errCorrupt
	}
	o.plain, o.cached = pt, i
	return nil
}

// ReadAt decrypts len(p) bytes at off.
func (o *openReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("sftpd: negative offset")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= o.size {
			return n, io.EOF
		}
		i := pos / chunkSize
		if err := o.load(i); err != nil {
			return n, err
		}
		n += copy(p[n:], o.plain[pos-i*chunkSize:])
	}
	return n, nil
}

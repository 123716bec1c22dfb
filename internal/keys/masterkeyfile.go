package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// masterKeyHeader is the first line of a master key file.
const masterKeyHeader = "relais-master-key-v1\n"

// maxMasterKeyFile bounds how much of a supposed master key file is read.
// A valid file is 66 bytes.
const maxMasterKeyFile = 1024

// LoadFileMasterKey reads the master key file at path and never creates one;
// nodes that share a key made elsewhere should use it, so that a missing file
// is an error (wrapping [fs.ErrNotExist]) and not a new key.
//
// The file holds the line "relais-master-key-v1", then the standard base64
// encoding (with padding) of 32 random bytes on one line. It must be a
// regular file that neither group nor others can access (mode 0600 or 0400);
// a file that is too open is refused, with the chmod command that fixes it.
func LoadFileMasterKey(path string) (*FileMasterKey, error) {
	// Stat before opening, so that a FIFO or device is refused without
	// blocking on open; check the opened file again below.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: %w", err)
	}
	if err := checkKeyFileInfo(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path) // #nosec G304 -- the operator names the master key file; it is checked to be a private regular file before and after opening
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: %w", err)
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: %w", err)
	}
	if err := checkKeyFileInfo(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMasterKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: read %s: %w", path, err)
	}
	defer clear(data)
	key, err := parseMasterKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: %s: %w", path, err)
	}
	defer clear(key)
	mk, err := newFileMasterKey(key)
	if err != nil {
		return nil, fmt.Errorf("keys: load master key: %s: %w", path, err)
	}
	return mk, nil
}

// checkKeyFileInfo refuses anything but a regular file closed to group and
// others.
func checkKeyFileInfo(path string, fi fs.FileInfo) error {
	if fi.IsDir() {
		return fmt.Errorf("keys: load master key: %s is a directory, not a key file", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("keys: load master key: %s is not a regular file (mode %s)", path, fi.Mode())
	}
	// Windows has no Unix permission bits to check.
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("keys: load master key: %s has permissions %#o, open to group or others; restrict it with: chmod 600 %s",
			path, fi.Mode().Perm(), path)
	}
	return nil
}

// parseMasterKeyFile returns the 32 key bytes in data, the contents of a
// master key file. Its errors never quote data.
func parseMasterKeyFile(data []byte) ([]byte, error) {
	if len(data) > maxMasterKeyFile {
		return nil, fmt.Errorf("larger than %d bytes, not a relais master key file: %w", maxMasterKeyFile, ErrFormat)
	}
	rest, ok := bytes.CutPrefix(data, []byte(masterKeyHeader))
	if !ok {
		return nil, fmt.Errorf("first line is not %q, not a relais master key file: %w", masterKeyHeader[:len(masterKeyHeader)-1], ErrFormat)
	}
	line, ok := bytes.CutSuffix(rest, []byte("\n"))
	if !ok || bytes.IndexAny(line, "\r\n") >= 0 {
		return nil, fmt.Errorf("want exactly two lines, each ending in a newline: %w", ErrFormat)
	}
	enc := base64.StdEncoding.Strict()
	if enc.DecodedLen(len(line)) > maxMasterKeyFile {
		return nil, fmt.Errorf("second line is too long: %w", ErrFormat)
	}
	key := make([]byte, enc.DecodedLen(len(line)))
	n, err := enc.Decode(key, line)
	if err != nil || n != keySize {
		clear(key)
		// The decoder's error would quote a byte of the line: leave it out.
		return nil, fmt.Errorf("second line is not the base64 of %d bytes: %w", keySize, ErrFormat)
	}
	key = key[:n]
	var zero [keySize]byte
	if bytes.Equal(key, zero[:]) {
		return nil, fmt.Errorf("key is all zero bytes, a placeholder and not a key: %w", ErrFormat)
	}
	return key, nil
}

// LoadOrCreateFileMasterKey reads the master key file at path as
// [LoadFileMasterKey] does or, when path does not exist, creates it with 32
// bytes from [crypto/rand], mode 0600, and any missing parent directories with
// mode 0700.
//
// Creation is atomic: the key is written and synced in a temporary file in
// the same directory, then hard-linked to path, which fails if path appeared
// meanwhile; the key then in place is loaded. So a reader never sees a
// partial file, and processes racing to create the key all end up with one
// key. An existing file is never overwritten, even if it is refused.
func LoadOrCreateFileMasterKey(path string) (*FileMasterKey, error) {
	mk, err := LoadFileMasterKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return mk, err
	}
	if err := createMasterKeyFile(path); err != nil {
		return nil, err
	}
	return LoadFileMasterKey(path)
}

// createMasterKeyFile writes a new key to path unless path exists. It is not
// an error if another process or goroutine created path first.
func createMasterKeyFile(path string) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: create master key: %w", err)
	}

	// os.CreateTemp creates the file with mode 0600.
	tmp, err := os.CreateTemp(dir, ".relais-master-key-*.tmp")
	if err != nil {
		return fmt.Errorf("keys: create master key: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if cerr := tmp.Close(); cerr != nil && err == nil && !errors.Is(cerr, os.ErrClosed) {
			err = fmt.Errorf("keys: create master key: %w", cerr)
		}
		// After the link, path holds the key; the temporary name goes.
		if rerr := os.Remove(tmpName); rerr != nil && err == nil {
			err = fmt.Errorf("keys: create master key: %w", rerr)
		}
	}()

	var key [keySize]byte
	rand.Read(key[:]) // never fails: crypto/rand.Read crashes the program instead
	content := make([]byte, 0, len(masterKeyHeader)+base64.StdEncoding.EncodedLen(keySize)+1)
	content = append(content, masterKeyHeader...)
	content = base64.StdEncoding.AppendEncode(content, key[:])
	content = append(content, '\n')
	clear(key[:])
	_, werr := tmp.Write(content)
	clear(content)
	if werr != nil {
		return fmt.Errorf("keys: create master key: write %s: %w", tmpName, werr)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("keys: create master key: sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys: create master key: close %s: %w", tmpName, err)
	}

	// Link rather than rename: rename would replace a key that another
	// process created in the meantime, and leave the two with different keys.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // someone else won the race; load their key
		}
		return fmt.Errorf("keys: create master key (the directory's file system must support hard links; or create the key file yourself): %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("keys: create master key: %w", err)
	}
	return nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be synced there
	}
	d, err := os.Open(dir) // #nosec G304 -- dir is the directory of the operator-named key file, opened read-only only to fsync it
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

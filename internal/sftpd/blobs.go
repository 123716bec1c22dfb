package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
)

// Blobs stores the encrypted contents of exchanged files under opaque keys
// ("<tenant id>/<file id>"). Which files exist, their names and states live
// in the store (sftp_files), so any node that shares the blobs (a shared
// directory, or an object store behind this interface) and the database
// serves the same tree: the service runs active-active (XFER-3).
type Blobs interface {
	// Create starts a blob; it becomes visible only at Commit.
	Create(ctx context.Context, key string) (BlobWriter, error)
	// Open reads a committed blob.
	Open(ctx context.Context, key string) (Blob, error)
	// Remove deletes a blob; removing a missing blob is not an error.
	Remove(ctx context.Context, key string) error
}

// BlobWriter is a blob being written.
type BlobWriter interface {
	io.Writer
	// Commit makes the blob durable and visible under its key.
	Commit() error
	// Abort discards it.
	Abort() error
}

// Blob is a committed blob.
type Blob interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

var blobKeyRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}/[A-Za-z0-9-]{1,64}$`)

func checkBlobKey(key string) error {
	if !blobKeyRE.MatchString(key) {
		return fmt.Errorf("sftpd: bad blob key %q", key)
	}
	return nil
}

// DirBlobs keeps blobs as files in a directory (one sub-directory per
// tenant, 0700, files 0600), written to a temporary name, synced, then
// renamed into place, so a reader on any node never sees a partial blob.
// All access goes through an os.Root: no path leaves Root.
type DirBlobs struct {
	Root string
}

func (d DirBlobs) open() (*os.Root, error) {
	if err := os.MkdirAll(d.Root, 0o700); err != nil {
		return nil, fmt.Errorf("sftpd: create the file directory: %w", err)
	}
	r, err := os.OpenRoot(d.Root)
	if err != nil {
		return nil, fmt.Errorf("sftpd: open the file directory: %w", err)
	}
	return r, nil
}

type dirWriter struct {
	root      *os.Root
	f         *os.File
	tmp, name string
	done      bool
}

// Create implements Blobs.
func (d DirBlobs) Create(_ context.Context, key string) (BlobWriter, error) {
	if err := checkBlobKey(key); err != nil {
		return nil, err
	}
	r, err := d.open()
	if err != nil {
		return nil, err
	}
	dir, file := path.Split(key)
	if err := r.MkdirAll(path.Clean(dir), 0o700); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("sftpd: create the tenant's file directory: %w", err)
	}
	tmp := dir + ".tmp-" + file
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("sftpd: create a file: %w", err)
	}
	return &dirWriter{root: r, f: f, tmp: tmp, name: key}, nil
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *dirWriter) Commit() error {
	if w.done {
		return errors.New("sftpd: blob already finished")
	}
	w.done = true
	defer func() { _ = w.root.Close() }()
	if err := w.f.Sync(); err != nil {
		_ = w.f.Close()
		_ = w.root.Remove(w.tmp)
		return fmt.Errorf("sftpd: sync a file: %w", err)
	}
	if err := w.f.Close(); err != nil {
		_ = w.root.Remove(w.tmp)
		return fmt.Errorf("sftpd: close a file: %w", err)
	}
	if err := w.root.Rename(w.tmp, w.name); err != nil {
		_ = w.root.Remove(w.tmp)
		return fmt.Errorf("sftpd: commit a file: %w", err)
	}
	return nil
}

func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	defer func() { _ = w.root.Close() }()
	_ = w.f.Close()
	return w.root.Remove(w.tmp)
}

type dirBlob struct {
	*os.File
	size int64
}

func (b dirBlob) Size() int64 { return b.size }

// Open implements Blobs.
func (d DirBlobs) Open(_ context.Context, key string) (Blob, error) {
	if err := checkBlobKey(key); err != nil {
		return nil, err
	}
	r, err := d.open()
	if err != nil {
		return nil, err
	}
	defer func() { _ = r.Close() }()
	f, err := r.Open(key)
	if err != nil {
		return nil, fmt.Errorf("sftpd: open a stored file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sftpd: open a stored file: %w", err)
	}
	return dirBlob{File: f, size: fi.Size()}, nil
}

// Remove implements Blobs.
func (d DirBlobs) Remove(_ context.Context, key string) error {
	if err := checkBlobKey(key); err != nil {
		return err
	}
	r, err := d.open()
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	if err := r.Remove(key); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sftpd: remove a stored file: %w", err)
	}
	return nil
}

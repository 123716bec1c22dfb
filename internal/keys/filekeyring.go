package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// File names beside the master key file at path:
//
//	path                    the current master key
//	path + ".next"          a rotation in progress: the new key
//	path + ".retired-<id>"  an older key, still able to unwrap (old backups)
const (
	nextSuffix    = ".next"
	retiredSuffix = ".retired-"
)

// FileKeyring is the key-file [MasterKey] provider with rotation: it wraps
// under the current key file and unwraps under any of the current, the next
// (a rotation in progress) and the retired key files beside it. It notices
// files changed by `relais keys rotate-master` in another process (when its
// directory changes), so a running server keeps working during rotation. It
// is safe for concurrent use.
type FileKeyring struct {
	path string

	mu      sync.RWMutex
	current *FileMasterKey
	others  []*FileMasterKey // next, then retired ones, newest first
	dirMod  time.Time
	// rotating is set by Rotate: this process wraps under the next key
	// until CommitRotation, even when it reloads the files.
	rotating bool
}

// LoadFileKeyring loads the key files at and beside path; with create, a
// missing path is created as [LoadOrCreateFileMasterKey] does.
func LoadFileKeyring(path string, create bool) (*FileKeyring, error) {
	k := &FileKeyring{path: path}
	if err := k.load(create); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *FileKeyring) load(create bool) error {
	dirMod := dirModTime(filepath.Dir(k.path))
	var cur *FileMasterKey
	var err error
	if create {
		cur, err = LoadOrCreateFileMasterKey(k.path)
	} else {
		cur, err = LoadFileMasterKey(k.path)
	}
	if err != nil {
		return err
	}
	var others []*FileMasterKey
	if next, err := LoadFileMasterKey(k.path + nextSuffix); err == nil {
		others = append(others, next)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	retired, err := k.retiredPaths()
	if err != nil {
		return err
	}
	for _, p := range retired {
		mk, err := LoadFileMasterKey(p)
		if err != nil {
			return err
		}
		others = append(others, mk)
	}
	k.mu.Lock()
	if k.rotating && len(others) > 0 && others[0].ID() != cur.ID() {
		// others[0] is the next key (retired ones come after it only if
		// it exists; a next key always loads first).
		if _, err := os.Stat(k.path + nextSuffix); err == nil {
			cur, others[0] = others[0], cur
		}
	}
	k.current, k.others, k.dirMod = cur, others, dirMod
	k.mu.Unlock()
	return nil
}

// retiredPaths lists the retired key files, newest first (by modification
// time).
func (k *FileKeyring) retiredPaths() ([]string, error) {
	dir, base := filepath.Split(k.path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: list retired master keys: %w", err)
	}
	type pm struct {
		p string
		m time.Time
	}
	var out []pm
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), base+retiredSuffix) || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, pm{filepath.Join(dir, e.Name()), info.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].m.After(out[j].m) })
	paths := make([]string, len(out))
	for i, o := range out {
		paths[i] = o.p
	}
	return paths, nil
}

func dirModTime(dir string) time.Time {
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// refresh reloads the key files when their directory changed.
func (k *FileKeyring) refresh() {
	k.mu.RLock()
	seen := k.dirMod
	k.mu.RUnlock()
	if m := dirModTime(filepath.Dir(k.path)); !m.Equal(seen) {
		_ = k.load(false) // on error keep the keys already loaded
	}
}

// ID is the current key's ID.
func (k *FileKeyring) ID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current.ID()
}

// IDs returns the current key's ID, then the others' (next, retired).
func (k *FileKeyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := []string{k.current.ID()}
	for _, o := range k.others {
		ids = append(ids, o.ID())
	}
	return ids
}

// Wrap wraps under the current key.
func (k *FileKeyring) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	k.refresh()
	k.mu.RLock()
	cur := k.current
	k.mu.RUnlock()
	return cur.Wrap(ctx, plaintext, aad)
}

// Unwrap tries the current key, then the next and retired ones.
func (k *FileKeyring) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	pt, err := k.unwrap(ctx, wrapped, aad)
	if errors.Is(err, ErrDecrypt) {
		// A rotation in another process may have added a key.
		k.refresh()
		pt, err = k.unwrap(ctx, wrapped, aad)
	}
	return pt, err
}

func (k *FileKeyring) unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	k.mu.RLock()
	keys := append([]*FileMasterKey{k.current}, k.others...)
	k.mu.RUnlock()
	var first error
	for _, mk := range keys {
		pt, err := mk.Unwrap(ctx, wrapped, aad)
		if err == nil {
			return pt, nil
		}
		if !errors.Is(err, ErrDecrypt) {
			return nil, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// Rotate starts (or resumes) a rotation: it creates the next key file
// (path.next) unless one is there, and wraps under it from then on in this
// process. Call [FileKeyring.CommitRotation] once everything is re-wrapped.
func (k *FileKeyring) Rotate(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	next, err := LoadOrCreateFileMasterKey(k.path + nextSuffix)
	if err != nil {
		return "", fmt.Errorf("keys: rotate master key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rotating = true
	if k.current.ID() == next.ID() {
		return next.ID(), nil
	}
	others := []*FileMasterKey{k.current}
	for _, o := range k.others {
		if o.ID() != next.ID() {
			others = append(others, o)
		}
	}
	k.current, k.others = next, others
	return next.ID(), nil
}

// CommitRotation ends a rotation: the old key file becomes
// path.retired-<id> (kept so that older backups can still be restored;
// delete it to make them unreadable) and path.next becomes path. It is
// idempotent and safe to re-run after a crash.
func (k *FileKeyring) CommitRotation(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	next := k.path + nextSuffix
	if _, err := os.Stat(next); errors.Is(err, fs.ErrNotExist) {
		return nil // nothing to commit
	}
	old, err := LoadFileMasterKey(k.path)
	if err != nil {
		return fmt.Errorf("keys: commit master key rotation: %w", err)
	}
	retired := k.path + retiredSuffix + strings.TrimPrefix(old.ID(), "file:v1:")
	// Link, not copy: the retired name gets the same private file.
	if err := os.Link(k.path, retired); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keys: commit master key rotation: keep the old key as %s: %w", retired, err)
	}
	if err := os.Rename(next, k.path); err != nil {
		return fmt.Errorf("keys: commit master key rotation: %w", err)
	}
	if err := syncDir(filepath.Dir(k.path)); err != nil {
		return fmt.Errorf("keys: commit master key rotation: %w", err)
	}
	k.mu.Lock()
	k.rotating = false
	k.mu.Unlock()
	return k.load(false)
}

// String describes the keyring without key material.
func (k *FileKeyring) String() string { return "keys.FileKeyring(" + k.ID() + ")" }

// LogValue makes [log/slog] record only the key IDs.
func (k *FileKeyring) LogValue() slog.Value { return slog.StringValue(k.String()) }

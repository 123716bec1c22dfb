package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// validKeyFile returns the contents of a valid master key file for key.
func validKeyFile(key []byte) []byte {
	return []byte("relais-master-key-v1\n" + base64.StdEncoding.EncodeToString(key) + "\n")
}

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("Unix permission bits")
	}
}

func TestLoadOrCreateFileMasterKeyCreates(t *testing.T) {
	skipOnWindows(t)
	root := t.TempDir()
	path := filepath.Join(root, "etc", "relais", "master.key")
	if _, err := LoadOrCreateFileMasterKey(path); err != nil {
		t.Fatalf("LoadOrCreateFileMasterKey: %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want -rw-------", fi.Mode())
	}
	for _, dir := range []string{filepath.Join(root, "etc"), filepath.Join(root, "etc", "relais")} {
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("created directory %s mode = %v, want drwx------", dir, di.Mode())
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^relais-master-key-v1\n[A-Za-z0-9+/]{43}=\n$`).Match(data) {
		t.Errorf("key file is not in the documented format (%d bytes)", len(data))
	}
	keyFromFile(t, path) // decodes to 32 bytes
	assertOnlyFile(t, filepath.Dir(path), "master.key")
}

// assertOnlyFile checks that dir holds name and nothing else: no temporary
// file left behind.
func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only %q", names, name)
	}
}

// TestLoadOrCreateFileMasterKeyReloads checks that a second load, created or
// not, returns the same key: what one wraps, the other unwraps.
func TestLoadOrCreateFileMasterKeyReloads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "master.key")
	first, err := LoadOrCreateFileMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateFileMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	third, err := LoadFileMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the second LoadOrCreateFileMasterKey rewrote the key file")
	}
	for _, mk := range []*FileMasterKey{second, third} {
		if mk.ID() != first.ID() {
			t.Errorf("reloaded ID %q, want %q", mk.ID(), first.ID())
		}
		w, err := first.Wrap(ctx, seq(32), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mk.Unwrap(ctx, w, []byte("aad")); err != nil {
			t.Errorf("reloaded key cannot unwrap: %v", err)
		}
	}
}

func TestLoadFileMasterKeyMissing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	_, err := LoadFileMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadFileMasterKey of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("LoadFileMasterKey created something")
	}
}

func TestLoadFileMasterKeyAcceptsReadOnly(t *testing.T) {
	skipOnWindows(t)
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, validKeyFile(seq(32)), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFileMasterKey(path); err != nil {
		t.Errorf("mode 0400 refused: %v", err)
	}
}

// TestLoadFileMasterKeyRefuses feeds bad key files to both loaders. Each must
// be refused with a clear error that quotes no key material, and
// LoadOrCreateFileMasterKey must leave the file as it was.
func TestLoadFileMasterKeyRefuses(t *testing.T) {
	skipOnWindows(t)
	key := seq(32)
	b64 := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name    string
		content []byte // written with mode 0600 unless mode is set
		mode    os.FileMode
		want    []string // substrings of the error
	}{
		{"world readable", validKeyFile(key), 0o644, []string{"chmod 600", "0644"}},
		{"group readable", validKeyFile(key), 0o640, []string{"chmod 600", "0640"}},
		{"others readable only", validKeyFile(key), 0o604, []string{"chmod 600"}},
		{"group writable", validKeyFile(key), 0o620, []string{"chmod 600"}},
		{"world writable", validKeyFile(key), 0o602, []string{"chmod 600"}},
		{"empty", nil, 0, []string{"not a relais master key file"}},
		{"garbage", []byte("hello, world\n"), 0, []string{"not a relais master key file"}},
		{"raw 32 bytes", key, 0, []string{"not a relais master key file"}},
		{"base64 only", []byte(b64 + "\n"), 0, []string{"not a relais master key file"}},
		{"other version", []byte("relais-master-key-v2\n" + b64 + "\n"), 0, []string{"not a relais master key file"}},
		{"header only", []byte("relais-master-key-v1\n"), 0, []string{"two lines"}},
		{"no final newline", []byte("relais-master-key-v1\n" + b64), 0, []string{"two lines"}},
		{"CRLF", []byte("relais-master-key-v1\n" + b64 + "\r\n"), 0, []string{"two lines"}},
		{"extra line", append(validKeyFile(key), "more\n"...), 0, []string{"two lines"}},
		{"short key", validKeyFile(seq(31)), 0, []string{"base64 of 32 bytes"}},
		{"long key", validKeyFile(seq(33)), 0, []string{"base64 of 32 bytes"}},
		{"hex, not base64", []byte("relais-master-key-v1\n" + strings.Repeat("ab", 32) + "\n"), 0, []string{"base64 of 32 bytes"}},
		{"unpadded base64", []byte("relais-master-key-v1\n" + strings.TrimRight(b64, "=") + "\n"), 0, []string{"base64 of 32 bytes"}},
		{"all-zero placeholder", validKeyFile(make([]byte, 32)), 0, []string{"all zero"}},
		{"huge", append([]byte("relais-master-key-v1\n"), bytes.Repeat([]byte("A"), 1<<20)...), 0, []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			mode := tt.mode
			if mode == 0 {
				mode = 0o600
			}
			if err := os.WriteFile(path, tt.content, mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil { // beat the umask
				t.Fatal(err)
			}
			for _, load := range []struct {
				name string
				f    func(string) (*FileMasterKey, error)
			}{{"LoadFileMasterKey", LoadFileMasterKey}, {"LoadOrCreateFileMasterKey", LoadOrCreateFileMasterKey}} {
				mk, err := load.f(path)
				if err == nil {
					t.Fatalf("%s accepted it (ID %s)", load.name, mk.ID())
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s error %q does not mention %q", load.name, err, w)
					}
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("%s error %q does not name the file", load.name, err)
				}
				assertNoKeyMaterial(t, err.Error(), key)
				assertNoKeyMaterial(t, err.Error(), seq(31))
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.content) || fi.Mode().Perm() != mode {
				t.Error("the refused file was changed")
			}
		})
	}
}

func TestLoadFileMasterKeyRefusesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func(string) (*FileMasterKey, error){LoadFileMasterKey, LoadOrCreateFileMasterKey} {
		_, err := load(path)
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("error = %v, want one saying it is a directory", err)
		}
	}
	if entries, _ := os.ReadDir(path); len(entries) != 0 {
		t.Error("something was created inside the directory")
	}
}

// TestLoadOrCreateFileMasterKeyConcurrent races goroutines to create the same
// key file, many times: all must end with the one key on disk.
func TestLoadOrCreateFileMasterKeyConcurrent(t *testing.T) {
	const rounds, racers = 20, 8
	ctx := context.Background()
	for round := range rounds {
		dir := filepath.Join(t.TempDir(), "keys")
		path := filepath.Join(dir, "master.key")
		var (
			start sync.WaitGroup
			done  sync.WaitGroup
			keys  [racers]*FileMasterKey
			errs  [racers]error
		)
		start.Add(1)
		for i := range racers {
			done.Go(func() {
				start.Wait()
				keys[i], errs[i] = LoadOrCreateFileMasterKey(path)
			})
		}
		start.Done()
		done.Wait()

		onDisk, err := LoadFileMasterKey(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := onDisk.Wrap(ctx, seq(32), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("round %d, racer %d: %v", round, i, errs[i])
			}
			if keys[i].ID() != onDisk.ID() {
				t.Fatalf("round %d, racer %d holds key %s, the file holds %s", round, i, keys[i].ID(), onDisk.ID())
			}
			if _, err := keys[i].Unwrap(ctx, w, nil); err != nil {
				t.Fatalf("round %d, racer %d cannot unwrap with the key on disk: %v", round, i, err)
			}
		}
		assertOnlyFile(t, dir, "master.key")
	}
}

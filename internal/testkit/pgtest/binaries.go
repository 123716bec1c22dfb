package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoBinaries is returned (wrapped) by StartMain when the PostgreSQL server
// binaries initdb and postgres cannot be found. Test with errors.Is.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; install them with: apt-get install postgresql")

// debianLibDir is where Debian/Ubuntu's postgresql-NN packages put the
// server binaries (they are not on PATH there).
const debianLibDir = "/usr/lib/postgresql"

// binaries are the absolute paths of the programs pgtest runs.
type binaries struct {
	initdb   string
	postgres string
}

// findBinaries looks for initdb and postgres on PATH first, then in
// /usr/lib/postgresql/<version>/bin, highest version first.
func findBinaries() (binaries, error) {
	return findBinariesIn(debianLibDir)
}

func findBinariesIn(libDir string) (binaries, error) {
	if b, ok := fromPath(); ok {
		return b, nil
	}
	entries, err := os.ReadDir(libDir)
	if err != nil {
		return binaries{}, ErrNoBinaries
	}
	var versions []string
	for _, e := range entries {
		if _, ok := parseVersion(e.Name()); ok {
			versions = append(versions, e.Name())
		}
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[j], versions[i]) })
	for _, v := range versions {
		dir := filepath.Join(libDir, v, "bin")
		b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, ErrNoBinaries
}

// fromPath finds initdb on PATH. postgres is taken from the directory initdb
// really lives in (after resolving symlinks), because that is the postgres
// initdb itself runs and the two must be the same version; failing that,
// from PATH.
func fromPath() (binaries, bool) {
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return binaries{}, false
	}
	if abs, err := filepath.Abs(initdb); err == nil {
		initdb = abs
	}
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		if pg := filepath.Join(filepath.Dir(real), "postgres"); isExecutable(pg) {
			return binaries{initdb: initdb, postgres: pg}, true
		}
	}
	pg, err := exec.LookPath("postgres")
	if err != nil {
		return binaries{}, false
	}
	if abs, err := filepath.Abs(pg); err == nil {
		pg = abs
	}
	return binaries{initdb: initdb, postgres: pg}, true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// parseVersion parses directory names such as "15" or "9.6".
func parseVersion(s string) ([]int, bool) {
	var out []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func versionLess(a, b string) bool {
	va, _ := parseVersion(a)
	vb, _ := parseVersion(b)
	for i := 0; i < len(va) && i < len(vb); i++ {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	return len(va) < len(vb)
}

// runAs is the unprivileged account initdb and postgres run as when the test
// process is root (PostgreSQL refuses to run as root). nil when not root.
type runAs struct {
	name     string
	uid, gid uint32
}

func (r *runAs) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		// If the test binary dies without running its cleanups (for example
		// a `go test -timeout` panic), take the server down with it: SIGQUIT
		// is PostgreSQL's immediate shutdown. Go sets this after switching
		// credentials, so it survives the uid change below.
		Pdeathsig: syscall.SIGQUIT,
	}
	if r != nil {
		// Groups nil + NoSetGroups false: supplementary groups are cleared.
		attr.Credential = &syscall.Credential{Uid: r.uid, Gid: r.gid}
	}
	return attr
}

// serverUser decides which account runs the server: the current one, or
// when running as root the first existing of "postgres" (created by Debian's
// postgresql-common package) and "nobody".
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var tried []string
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			tried = append(tried, fmt.Sprintf("%s: unusable uid/gid %s/%s", name, u.Uid, u.Gid))
			continue
		}
		return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("pgtest: running as root and PostgreSQL refuses to run as root, but no unprivileged account to run it as was found (%s)", strings.Join(tried, "; "))
}

// chownAll hands the tree at root (a directory or a single file) to the
// server account. A directory is walked through an [os.Root], so that a
// symlink swapped into the tree during the walk (the account already owns
// the directories chowned before it) cannot redirect a chown outside.
func chownAll(root string, r *runAs) error {
	if r == nil {
		return nil
	}
	uid, gid := int(r.uid), int(r.gid)
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Lchown(root, uid, gid)
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer rt.Close()
	return fs.WalkDir(rt.FS(), ".", func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return rt.Lchown(path, uid, gid)
	})
}

// othersCanTraverse reports whether every ancestor of dir lets "other" users
// through, so that a server running as a different account can reach dir.
func othersCanTraverse(dir string) bool {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

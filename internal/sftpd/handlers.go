package sftpd

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
	"github.com/relais-dev/relais/internal/tenants"
)

// session is an authenticated SFTP session: one account of one tenant.
// Every path it receives is resolved in the tenant's virtual tree ("/",
// "/inbox", "/outbox" and the files in those two); anything else (a path
// that climbed out with "..", an absolute path elsewhere, a link) is
// refused and audited.
type session struct {
	s        *Service
	ctx      context.Context
	cs       *connState
	tenantID string
	acct     Account
	fp       string
}

func (s *Service) newSession(ctx context.Context, cs *connState, sc *ssh.ServerConn) (*session, error) {
	ext := sc.Permissions.Extensions
	acct, err := s.Account(ctx, ext["tenant"], ext["account"])
	if err != nil {
		return nil, err
	}
	sess := &session{s: s, ctx: ctx, cs: cs, tenantID: ext["tenant"], acct: acct, fp: ext["fingerprint"]}
	sess.record(ctx, "sftp.auth", "success", map[string]any{"method": "publickey", "username": truncate(sc.User(), 128),
		"client_version": truncate(string(sc.ClientVersion()), 128)})
	return sess, nil
}

// recordTx appends a session event in tx.
func (sess *session) recordTx(ctx context.Context, tx *store.Tx, action, outcome string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	details["outcome"], details["account"], details["key_fingerprint"], details["source_port"] = outcome, sess.acct.Name, sess.fp, sess.cs.port
	cat := audit.CategoryChange
	if strings.HasPrefix(action, "sftp.auth") || action == "sftp.disconnect" {
		cat = audit.CategoryAuth
	}
	_, err := audit.Append(ctx, tx, audit.Event{Category: cat, Action: action, ObjectType: "sftp_account", ObjectID: sess.acct.ID,
		Actor: audit.Actor{Type: ActorSFTP, ID: sess.acct.ID}, IP: sess.cs.ip.String(), UserAgent: "sftp", Details: details})
	return err
}

// record appends a session event in its own transaction.
func (sess *session) record(ctx context.Context, action, outcome string, details map[string]any) {
	ctx = context.WithoutCancel(ctx)
	err := sess.s.DB.Tenant(sess.tenantID).Tx(ctx, func(tx *store.Tx) error {
		return sess.recordTx(ctx, tx, action, outcome, details)
	})
	if err != nil {
		sess.s.Logger.Error("sftp: cannot record an event", "action", action, "error", err)
	}
}

// refuse records a refused operation and returns the SFTP error.
func (sess *session) refuse(op, p, reason string, err error) error {
	action := "sftp.op.refused"
	if reason == "outside_tree" || reason == "links_not_allowed" {
		action = "sftp.path.refused"
	}
	sess.record(sess.ctx, action, "refused", map[string]any{"op": op, "path": truncate(p, 512), "reason": reason})
	return err
}

// target is a resolved path.
type target struct {
	dir  string // "" for the root
	name string // "" for a directory
}

// resolve maps a request path (the SFTP server cleans it against "/")
// into the tree.
func resolve(p string) (target, bool) {
	if p == "" || !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return target{}, false
	}
	if p == "/" {
		return target{}, true
	}
	dir, name, _ := strings.Cut(p[1:], "/")
	if dir != DirInbox && dir != DirOutbox {
		return target{}, false
	}
	if name == "" {
		return target{dir: dir}, true
	}
	if CheckName(name) != nil {
		return target{}, false
	}
	return target{dir: dir, name: name}, true
}

// expired reports (and audits) an operation the account may no longer do:
// after its expiry, after it was removed, or after its tenant was
// disabled, a session opened before can do nothing more. The account and
// the tenant are read again for each operation so that a removal takes
// effect at once.
func (sess *session) expired(op, p string) bool {
	reason := ""
	acct, err := sess.s.Account(sess.ctx, sess.tenantID, sess.acct.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		reason = "account_removed"
	case err != nil:
		sess.s.Logger.Error("sftp: cannot read the account", "error", err)
		return true
	default:
		// Accounts are not edited (only added and removed): sess.acct
		// stays as it was read at login.
		if t, err := sess.s.Tenants.Get(sess.ctx, sess.tenantID); err != nil || t.Status != tenants.StatusActive {
			reason = "tenant_disabled"
		} else if acct.ExpiresAt != nil && !sess.s.now().Before(*acct.ExpiresAt) {
			reason = "account_expired"
		}
	}
	if reason == "" {
		return false
	}
	_ = sess.refuse(op, p, reason, nil)
	return true
}

func (sess *session) resolveFile(op, p string) (target, error) {
	if sess.expired(op, p) {
		return target{}, sftp.ErrSSHFxPermissionDenied
	}
	t, ok := resolve(p)
	if !ok {
		return target{}, sess.refuse(op, p, "outside_tree", sftp.ErrSSHFxPermissionDenied)
	}
	if t.name == "" {
		return target{}, sess.refuse(op, p, "not_a_file", sftp.ErrSSHFxPermissionDenied)
	}
	return t, nil
}

func (sess *session) mayUse(op string, t target) error {
	perm := PermDownload
	if t.dir == DirInbox {
		perm = PermUpload
	}
	if !sess.acct.Can(perm) {
		return sess.refuse(op, "/"+t.dir+"/"+t.name, "permission_"+perm, sftp.ErrSSHFxPermissionDenied)
	}
	return nil
}

// Fileread serves downloads from /outbox.
func (sess *session) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	t, err := sess.resolveFile("get", r.Filepath)
	if err != nil {
		return nil, err
	}
	if t.dir != DirOutbox {
		return nil, sess.refuse("get", r.Filepath, "inbox_is_write_only", sftp.ErrSSHFxPermissionDenied)
	}
	if err := sess.mayUse("get", t); err != nil {
		return nil, err
	}
	f, err := sess.s.File(sess.ctx, sess.tenantID, t.dir, t.name)
	if err != nil {
		return nil, os.ErrNotExist
	}
	of, err := sess.s.openFile(sess.ctx, sess.tenantID, f)
	if err != nil {
		sess.record(sess.ctx, "sftp.file.download", "failure", map[string]any{"path": r.Filepath, "reason": "unreadable"})
		return nil, sftp.ErrSSHFxFailure
	}
	sess.record(sess.ctx, "sftp.file.download", "success", map[string]any{"path": r.Filepath, "size": f.Size, "file_id": f.ID})
	return of, nil
}

// Filewrite serves uploads to /inbox.
func (sess *session) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	t, err := sess.resolveFile("put", r.Filepath)
	if err != nil {
		return nil, err
	}
	if t.dir != DirInbox {
		return nil, sess.refuse("put", r.Filepath, "outbox_is_read_only", sftp.ErrSSHFxPermissionDenied)
	}
	if err := sess.mayUse("put", t); err != nil {
		return nil, err
	}
	if base, ok := strings.CutSuffix(t.name, ".done"); ok && base != "" {
		return &doneMarker{sess: sess, base: base}, nil
	}
	if f, err := sess.s.File(sess.ctx, sess.tenantID, t.dir, t.name); err == nil && (f.State == statePending || f.State == stateProcessing) {
		return nil, sess.refuse("put", r.Filepath, "busy", sftp.ErrSSHFxFailure)
	}
	used, err := sess.s.usedBytes(sess.ctx, sess.tenantID, sess.acct.ID)
	if err != nil {
		return nil, sftp.ErrSSHFxFailure
	}
	limit := min(sess.acct.MaxFileBytes, sess.acct.QuotaBytes-used)
	if limit <= 0 {
		return nil, sess.refuse("put", r.Filepath, "quota_exhausted", ErrQuota)
	}
	if !sess.s.enterUpload(sess.acct.ID) {
		return nil, sess.refuse("put", r.Filepath, "too_many_open_uploads", ErrTooManyUploads)
	}
	id := newID()
	w, err := sess.s.newEncWriter(sess.ctx, sess.tenantID, id)
	if err != nil {
		sess.s.leaveUpload(sess.acct.ID)
		sess.s.Logger.Error("sftp: cannot store an upload", "error", err)
		return nil, sftp.ErrSSHFxFailure
	}
	acct := sess.acct.ID
	return &upload{s: sess.s, sess: sess, name: t.name, id: id, w: w, limit: limit, ahead: map[int64][]byte{},
		release: func() { sess.s.leaveUpload(acct) }}, nil
}

// doneMarker is an upload of "<name>.done": at close, <name> (uploaded and
// waiting) becomes pending. The marker itself is not kept.
type doneMarker struct {
	sess *session
	base string
	n    int64
}

func (d *doneMarker) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > 4096 {
		return 0, errors.New("a .done marker holds at most 4096 bytes")
	}
	d.n += int64(len(p))
	return len(p), nil
}

func (d *doneMarker) Close() error {
	sess := d.sess
	var ok bool
	err := sess.s.DB.Tenant(sess.tenantID).Tx(sess.ctx, func(tx *store.Tx) error {
		var err error
		if ok, err = sess.s.markPending(sess.ctx, tx, d.base); err != nil || !ok {
			return err
		}
		return sess.recordTx(sess.ctx, tx, "sftp.file.complete", "success", map[string]any{"path": "/inbox/" + d.base, "by": "done_marker"})
	})
	if err != nil {
		return err
	}
	if !ok {
		return sess.refuse("put", "/inbox/"+d.base+".done", "no_waiting_file", os.ErrNotExist)
	}
	sess.s.Wake()
	return nil
}

// Filecmd serves the commands: renames in /inbox, removals; directories and
// links are refused.
func (sess *session) Filecmd(r *sftp.Request) error {
	switch r.Method {
	case "Setstat":
		// Times and modes are not kept; accept so that `put -p` works.
		if _, ok := resolve(r.Filepath); !ok {
			return sess.refuse("setstat", r.Filepath, "outside_tree", sftp.ErrSSHFxPermissionDenied)
		}
		return nil
	case "Symlink", "Link":
		return sess.refuse(strings.ToLower(r.Method), r.Filepath+" -> "+r.Target, "links_not_allowed", sftp.ErrSSHFxPermissionDenied)
	case "Mkdir", "Rmdir":
		if _, ok := resolve(r.Filepath); !ok {
			return sess.refuse(strings.ToLower(r.Method), r.Filepath, "outside_tree", sftp.ErrSSHFxPermissionDenied)
		}
		return sess.refuse(strings.ToLower(r.Method), r.Filepath, "directories_are_fixed", sftp.ErrSSHFxPermissionDenied)
	case "Remove":
		return sess.remove(r.Filepath)
	case "Rename", "PosixRename":
		return sess.rename(r.Filepath, r.Target)
	}
	return sess.refuse(strings.ToLower(r.Method), r.Filepath, "unsupported", sftp.ErrSSHFxOpUnsupported)
}

// PosixRename implements sftp.PosixRenameFileCmder.
func (sess *session) PosixRename(r *sftp.Request) error { return sess.rename(r.Filepath, r.Target) }

func (sess *session) remove(p string) error {
	t, err := sess.resolveFile("remove", p)
	if err != nil {
		return err
	}
	if err := sess.mayUse("remove", t); err != nil {
		return err
	}
	f, err := sess.s.File(sess.ctx, sess.tenantID, t.dir, t.name)
	if err != nil {
		return os.ErrNotExist
	}
	if f.State == statePending || f.State == stateProcessing {
		return sess.refuse("remove", p, "busy", sftp.ErrSSHFxFailure)
	}
	return sess.s.deleteFile(sess.ctx, sess.tenantID, f, "sftp.file.remove", map[string]any{"outcome": "success", "account": sess.acct.Name,
		"key_fingerprint": sess.fp, "source_port": sess.cs.port})
}

// rename renames a waiting upload within /inbox; a rename to a final name
// completes it (unless the account waits for .done markers).
func (sess *session) rename(from, to string) error {
	src, err := sess.resolveFile("rename", from)
	if err != nil {
		return err
	}
	dst, err := sess.resolveFile("rename", to)
	if err != nil {
		return err
	}
	if src.dir != DirInbox || dst.dir != DirInbox {
		return sess.refuse("rename", from+" -> "+to, "rename_only_in_inbox", sftp.ErrSSHFxPermissionDenied)
	}
	if err := sess.mayUse("rename", src); err != nil {
		return err
	}
	state := stateUploaded
	if !temporary(dst.name) && !sess.acct.DoneMarker {
		state = statePending
	}
	var old []string
	err = sess.s.DB.Tenant(sess.tenantID).Tx(sess.ctx, func(tx *store.Tx) error {
		var err error
		if old, err = replaceFile(sess.ctx, tx, DirInbox, dst.name); err != nil {
			return err
		}
		res, err := tx.Exec(sess.ctx, `UPDATE sftp_files SET name = $3, state = $4, updated_at = $5 WHERE tenant_id = $1 AND dir = 'inbox'
			AND name = $2 AND state = 'uploaded'`, src.name, dst.name, state, store.Micros(sess.s.now()))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return os.ErrNotExist
		}
		return sess.recordTx(sess.ctx, tx, "sftp.file.rename", "success", map[string]any{"path": from, "to": to, "state": state})
	})
	if errors.Is(err, ErrBusy) {
		return sess.refuse("rename", to, "busy", sftp.ErrSSHFxFailure)
	}
	if err != nil {
		return err
	}
	sess.s.removeBlobs(sess.ctx, old)
	if state == statePending {
		sess.s.Wake()
	}
	return nil
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

func dirInfo(name string) os.FileInfo {
	return fileInfo{name: name, mode: os.ModeDir | 0o700}
}

// Filelist serves directory listings and stat.
func (sess *session) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method == "Readlink" {
		return nil, sess.refuse("readlink", r.Filepath, "links_not_allowed", sftp.ErrSSHFxPermissionDenied)
	}
	if sess.expired(strings.ToLower(r.Method), r.Filepath) {
		return nil, sftp.ErrSSHFxPermissionDenied
	}
	t, ok := resolve(r.Filepath)
	if !ok {
		return nil, sess.refuse(strings.ToLower(r.Method), r.Filepath, "outside_tree", sftp.ErrSSHFxPermissionDenied)
	}
	switch {
	case t.dir == "":
		if r.Method == "List" {
			sess.record(sess.ctx, "sftp.dir.list", "success", map[string]any{"path": "/"})
			return lister{dirInfo(DirInbox), dirInfo(DirOutbox)}, nil
		}
		return lister{dirInfo("/")}, nil
	case t.name == "":
		if r.Method != "List" {
			return lister{dirInfo(t.dir)}, nil
		}
		if err := sess.mayUse("list", t); err != nil {
			return nil, err
		}
		files, err := sess.s.Files(sess.ctx, sess.tenantID, t.dir)
		if err != nil {
			return nil, sftp.ErrSSHFxFailure
		}
		out := make(lister, 0, len(files))
		for _, f := range files {
			out = append(out, fileInfo{name: f.Name, size: f.Size, mode: 0o600, mtime: f.CreatedAt})
		}
		sess.record(sess.ctx, "sftp.dir.list", "success", map[string]any{"path": r.Filepath, "entries": len(out)})
		return out, nil
	}
	if r.Method == "List" {
		return nil, sftp.ErrSSHFxFailure
	}
	f, err := sess.s.File(sess.ctx, sess.tenantID, t.dir, t.name)
	if err != nil || f.State == "writing" {
		return nil, os.ErrNotExist
	}
	return lister{fileInfo{name: f.Name, size: f.Size, mode: 0o600, mtime: f.CreatedAt}}, nil
}

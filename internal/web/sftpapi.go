package web

import (
	"errors"
	"net/http"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/sftpd"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The SFTP accounts API (XFER-1..3): the caller's tenant's accounts, their
// keys and allowed networks, and the files of its tree. All of it needs
// sftp:admin (an administrative permission).

// sftpRoutes are the SFTP endpoints.
func (s *Server) sftpRoutes() []Route {
	if s.opts.SFTP == nil {
		return nil
	}
	admin := string(access.SFTPAdmin)
	return []Route{
		{"GET /api/v1/sftp/accounts", admin, s.sftpAccounts},
		{"POST /api/v1/sftp/accounts", admin, s.sftpAddAccount},
		{"GET /api/v1/sftp/accounts/{ref}", admin, s.sftpAccount},
		{"DELETE /api/v1/sftp/accounts/{ref}", admin, s.sftpRemoveAccount},
		{"GET /api/v1/sftp/files", admin, s.sftpFiles},
	}
}

func (s *Server) sftpError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *sftpd.InvalidError
	switch {
	case errors.As(err, &ie):
		invalidInput(w, r, ie.Field, ie.Message)
	case errors.Is(err, sftpd.ErrNotFound):
		notFound(w, r, "SFTP account")
	case errors.Is(err, sftpd.ErrNameTaken):
		problem.Write(w, r, problem.Problem{Status: http.StatusConflict, Code: problem.CodeConflict, Title: "Conflict",
			Detail: "An SFTP account of this tenant already has that name."})
	default:
		s.serverError(w, r, err)
	}
}

func (s *Server) sftpAccounts(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.SFTP.Accounts(r.Context(), PrincipalFrom(r.Context()).TenantID)
	if err != nil {
		s.sftpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": list})
}

func (s *Server) sftpAddAccount(w http.ResponseWriter, r *http.Request) {
	var na sftpd.NewAccount
	if !s.decode(w, r, &na) {
		return
	}
	a, err := s.opts.SFTP.AddAccount(r.Context(), PrincipalFrom(r.Context()).TenantID, na)
	if err != nil {
		s.sftpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) sftpAccount(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if !validID(ref) {
		notFound(w, r, "SFTP account")
		return
	}
	a, err := s.opts.SFTP.Account(r.Context(), PrincipalFrom(r.Context()).TenantID, ref)
	if err != nil {
		s.sftpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) sftpRemoveAccount(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if !validID(ref) {
		notFound(w, r, "SFTP account")
		return
	}
	if _, err := s.opts.SFTP.RemoveAccount(r.Context(), PrincipalFrom(r.Context()).TenantID, ref); err != nil {
		s.sftpError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) sftpFiles(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "dir")
	if !ok {
		return
	}
	dir := q.Get("dir")
	if dir != sftpd.DirInbox && dir != sftpd.DirOutbox {
		invalidInput(w, r, "dir", "must be inbox or outbox")
		return
	}
	files, err := s.opts.SFTP.Files(r.Context(), PrincipalFrom(r.Context()).TenantID, dir)
	if err != nil {
		s.sftpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files})
}

package web

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/relais-dev/relais/internal/access"
	"github.com/relais-dev/relais/internal/identity"
)

// Inviting several people at once (users:admin): lines of "email,name" or
// "email,name,role" pasted in the users page. Every line is checked before
// anyone is created (address and name, the role and the right to grant it,
// an address twice in the list or already a user); one bad line refuses
// the whole list, with each problem and its line number. Each person
// created gets a one-time enrolment link, shown once.

// maxInvites bounds one list.
const maxInvites = 500

// inviteProblem is a refused line.
type inviteProblem struct {
	Line int
	Msg  string
}

// invited is a person created by the list, with their enrolment link.
type invited struct {
	Email, Name, Role, Link string
}

// inviteLine is a checked line.
type inviteLine struct {
	line                int
	email, name, roleID string
	roleName            string
	privileged          bool
}

func (s *Server) usersInvite(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	text := r.PostFormValue("people")
	again := func(st int, msg string, problems []inviteProblem) {
		s.showUsers(w, r, st, usersData{flashData: flashData{Err: msg}, InviteText: text, InviteProblems: problems})
	}
	lines, problems, err := s.checkInvites(r, text)
	if err != nil {
		s.failAdmin(w, r, err, func(st int, msg string) { again(st, msg, nil) })
		return
	}
	if len(problems) > 0 {
		again(http.StatusUnprocessableEntity, "Nobody was invited: correct the lines below and send the list again.", problems)
		return
	}
	if len(lines) == 0 {
		again(http.StatusUnprocessableEntity, "The list is empty: one person a line, as email,name or email,name,role.", nil)
		return
	}
	var done []invited
	for _, l := range lines {
		u, enrol, err := s.opts.Identity.CreateUser(ctx, tid, identity.NewUser{Email: l.email, Name: l.name, Privileged: l.privileged})
		if err == nil && l.roleID != "" {
			if err = s.opts.Access.GrantUserRole(ctx, tid, uiActor(r), u.ID, l.roleID); err != nil {
				_ = s.opts.Identity.SetUserStatus(ctx, tid, u.ID, identity.StatusDisabled) // no half-made account
			}
		}
		if err != nil {
			// Only a change made meanwhile gets here (every line was
			// checked): say who was invited and where it stopped.
			_, msg, ok := adminUIError(err)
			if !ok {
				msg = "The server could not create the account."
			}
			s.showUsers(w, r, http.StatusConflict, usersData{Invited: done, InviteText: text,
				flashData: flashData{Err: fmt.Sprintf("Stopped at line %d: %s The %d people above were invited; send the rest again.", l.line, msg, len(done))}})
			return
		}
		done = append(done, invited{Email: u.Email, Name: u.Name, Role: l.roleName, Link: "/enrol?token=" + url.QueryEscape(enrol)})
	}
	s.showUsers(w, r, http.StatusOK, usersData{Invited: done,
		flashData: flashData{Msg: fmt.Sprintf("%d people invited. Send each their one-time link to choose a password (the links are not shown again).", len(done))}})
}

// checkInvites reads and checks the list. It returns the lines to create,
// or the problems found; err is a failure of the store.
func (s *Server) checkInvites(r *http.Request, text string) ([]inviteLine, []inviteProblem, error) {
	ctx, tid := r.Context(), tenantOf(r)
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var lines []inviteLine
	var problems []inviteProblem
	seen := map[string]int{}
	roles := map[string]access.Role{}
	canGrant := PrincipalFrom(ctx).Has(string(access.RolesAdmin))
	for n := 0; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			problems = append(problems, inviteProblem{line, "not a CSV line (check the quotes)"})
			break
		}
		line, _ := cr.FieldPos(0)
		if n == 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "email") {
			continue // a header line
		}
		if len(lines)+len(problems) >= maxInvites {
			problems = append(problems, inviteProblem{line, fmt.Sprintf("at most %d people a list", maxInvites)})
			break
		}
		if len(rec) < 2 || len(rec) > 3 {
			problems = append(problems, inviteProblem{line, "give email,name or email,name,role"})
			continue
		}
		l := inviteLine{line: line, email: strings.TrimSpace(rec[0]), name: strings.TrimSpace(rec[1])}
		email, err := identity.CheckNewUser(identity.NewUser{Email: l.email, Name: l.name})
		if err != nil {
			problems = append(problems, inviteProblem{line, err.Error()})
			continue
		}
		if l.name == "" {
			problems = append(problems, inviteProblem{line, "the name is missing"})
			continue
		}
		l.email = email
		if first, dup := seen[email]; dup {
			problems = append(problems, inviteProblem{line, fmt.Sprintf("the same address as line %d", first)})
			continue
		}
		seen[email] = line
		switch _, err := s.opts.Identity.FindUserByEmail(ctx, tid, email); {
		case err == nil:
			problems = append(problems, inviteProblem{line, "already a user of your organisation"})
			continue
		case !errors.Is(err, identity.ErrNotFound):
			return nil, nil, err
		}
		if ref := strings.TrimSpace(safeIndex(rec, 2)); ref != "" {
			if !canGrant {
				problems = append(problems, inviteProblem{line, "granting a role needs the roles:admin permission; leave the role out"})
				continue
			}
			role, ok := roles[ref]
			if !ok {
				var err error
				role, err = s.opts.Access.GetRole(ctx, tid, ref)
				if errors.Is(err, access.ErrNotFound) {
					problems = append(problems, inviteProblem{line, fmt.Sprintf("no role %q", ref)})
					continue
				}
				if err != nil {
					return nil, nil, err
				}
				roles[ref] = role
			}
			l.roleID, l.roleName, l.privileged = role.ID, role.Name, role.Set().HasAdministrative()
		}
		lines = append(lines, l)
	}
	return lines, problems, nil
}

func safeIndex(rec []string, i int) string {
	if i < len(rec) {
		return rec[i]
	}
	return ""
}

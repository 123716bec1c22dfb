package web

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/web/problem"
)

// The contacts import of the interface: the browser uploads the CSV file
// (multipart/form-data, bounded like the API's import by MaxImportBytes),
// the import runs as a job, and the job's page shows its progress,
// refreshing itself while it runs, then its counts and error report.

// uiImportWait is how long the upload waits for a small import to finish
// before it shows the running job.
const uiImportWait = 1500 * time.Millisecond

type importData struct {
	flashData
	Lists []contacts.List
	Jobs  []contacts.ImportJob
	Form  map[string]string
}

func (s *Server) importPage(w http.ResponseWriter, r *http.Request) {
	s.showImport(w, r, http.StatusOK, importData{})
}

func (s *Server) showImport(w http.ResponseWriter, r *http.Request, status int, d importData) {
	ctx, tid := r.Context(), tenantOf(r)
	var err error
	if d.Lists, err = s.opts.Contacts.Lists(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	if d.Jobs, err = s.opts.Contacts.ImportJobs(ctx, tid); err != nil {
		s.serverError(w, r, err)
		return
	}
	if len(d.Jobs) > 10 {
		d.Jobs = d.Jobs[:10]
	}
	s.page(w, r, status, "import", "Import contacts", "import", d)
}

func (s *Server) importSubmit(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	form := map[string]string{"mode": r.PostFormValue("mode"), "list": r.PostFormValue("list"), "calling_code": r.PostFormValue("calling_code"),
		"consent": r.PostFormValue("consent")}
	fail := func(status int, msg string) {
		s.showImport(w, r, status, importData{flashData: flashData{Err: msg}, Form: form})
	}
	if r.MultipartForm == nil || len(r.MultipartForm.File["file"]) != 1 {
		fail(http.StatusBadRequest, "Choose a CSV file to import.")
		return
	}
	fh := r.MultipartForm.File["file"][0]
	opts := contacts.ImportOptions{FileName: fh.Filename, IgnoreUnknownColumns: r.PostFormValue("ignore_unknown") == "on",
		DefaultCallingCode: strings.TrimPrefix(strings.TrimSpace(form["calling_code"]), "+")}
	switch form["mode"] {
	case "", "upsert":
		opts.Mode = contacts.ModeUpsert
	case "add":
		opts.Mode = contacts.ModeAdd
	default:
		fail(http.StatusUnprocessableEntity, "Choose how the file's contacts are added.")
		return
	}
	if form["list"] != "" {
		opts.Lists = []string{form["list"]}
	}
	if ch := form["consent"]; ch == "email" || ch == "sms" {
		opts.Consents = []contacts.ImportConsent{{Channel: contacts.Channel(ch), Status: contacts.ConsentGranted}}
	}
	select {
	case s.importSlots <- struct{}{}:
	default:
		fail(http.StatusTooManyRequests, fmt.Sprintf("This server runs at most %d imports at once; try again in a minute.", maxConcurrentImports))
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			<-s.importSlots
		}
	}()
	src, err := fh.Open()
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	// The request's own copy of the file goes when the request ends; the
	// job, which outlives it, reads a private spool.
	f, prob := spoolImport(src, s.opts.MaxImportBytes)
	_ = src.Close()
	if prob != nil {
		fail(prob.Status, problemText(prob))
		return
	}
	started := make(chan string, 1)
	type outcome struct {
		job contacts.ImportJob
		err error
	}
	done := make(chan outcome, 1)
	opts.Progress = func(p contacts.ImportProgress) {
		select {
		case started <- p.JobID:
		default:
		}
	}
	jobCtx := context.WithoutCancel(ctx)
	handedOff = true
	go func() {
		defer func() { <-s.importSlots }()
		defer func() {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}()
		defer func() {
			if rec := recover(); rec != nil {
				s.log.ErrorContext(jobCtx, "import panicked", "request_id", problem.RequestID(jobCtx), "panic", rec)
				done <- outcome{err: fmt.Errorf("import panicked: %v", rec)}
			}
		}()
		job, err := s.opts.Contacts.Import(jobCtx, tid, f, opts)
		done <- outcome{job, err}
	}()
	timer := time.NewTimer(uiImportWait)
	defer timer.Stop()
	var jobID string
	select {
	case out := <-done:
		if out.job.ID == "" {
			if out.err == nil {
				out.err = fmt.Errorf("import: no job")
			}
			if st, msg, ok := uiErrorMessage(out.err); ok {
				fail(st, msg)
				return
			}
			fail(http.StatusUnprocessableEntity, "The file could not be imported: "+out.err.Error())
			return
		}
		jobID = out.job.ID
	case <-timer.C:
		select {
		case jobID = <-started:
		case out := <-done:
			if out.job.ID == "" {
				fail(http.StatusUnprocessableEntity, "The file could not be imported: "+fmt.Sprint(out.err))
				return
			}
			jobID = out.job.ID
		}
	}
	http.Redirect(w, r, "/contacts/imports/"+url.PathEscape(jobID), http.StatusSeeOther)
}

func problemText(p *problem.Problem) string {
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

type importJobData struct {
	Job      contacts.ImportJob
	Progress float64
	Percent  string
	Errors   []contacts.ImportError
	More     bool
	Running  bool
}

// refresh makes a running job's page reload itself (no script needed).
func (d importJobData) refresh() int {
	if d.Running {
		return 2
	}
	return 0
}

func (s *Server) importJobPage(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	job, err := s.opts.Contacts.GetImportJob(ctx, tid, r.PathValue("id"))
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	v := viewJob(job)
	d := importJobData{Job: job, Progress: v.Progress, Percent: strconv.FormatFloat(v.Progress*100, 'f', 0, 64) + " %", Running: job.Status == contacts.JobRunning}
	if job.Failed > 0 {
		errs, err := s.opts.Contacts.ImportErrors(ctx, tid, job.ID, 0, 101)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if len(errs) > 100 {
			errs, d.More = errs[:100], true
		}
		d.Errors = errs
	}
	s.page(w, r, http.StatusOK, "importjob", "Import "+job.FileName, "import", d)
}

// importErrorsCSV downloads a job's whole error report (line, column,
// reason: never a value of the file).
func (s *Server) importErrorsCSV(w http.ResponseWriter, r *http.Request) {
	ctx, tid := r.Context(), tenantOf(r)
	job, err := s.opts.Contacts.GetImportJob(ctx, tid, r.PathValue("id"))
	if err != nil {
		s.failPage(w, r, err, nil)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="import-`+job.ID+`-errors.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"line", "column", "reason"})
	var after int64
	for {
		errs, err := s.opts.Contacts.ImportErrors(ctx, tid, job.ID, after, 1000)
		if err != nil {
			s.log.WarnContext(ctx, "import error report cut short", "error", err)
			break
		}
		for _, e := range errs {
			_ = cw.Write([]string{strconv.FormatInt(e.Line, 10), csvSafe(e.Column), csvSafe(e.Reason)})
			after = e.Line
		}
		if len(errs) < 1000 {
			break
		}
	}
	cw.Flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

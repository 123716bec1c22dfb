package main

// The operator's commands for a tenant's contacts (CORE-2, CORE-3, PRIV-2,
// TEST-1): CSV import with a progress bar and a per-line error report
// (resumable: running the same file again continues an interrupted
// import), export to a private file, counts, show and find, and synthetic
// contacts (`relais seed`). Like the other tenant commands, the CLI acts as
// the operator ("operator cli" in the audit trail); every read of personal
// data is recorded by the service (LOG-2).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/relais-dev/relais/internal/contacts"
	"github.com/relais-dev/relais/internal/contacts/filter"
)

// importReportLines is how many lines of an import's error report the
// import command prints; import-errors prints them all.
const importReportLines = 50

func (c *cli) contactsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contacts",
		Short: "Import, export, count, show and find a tenant's contacts",
		Long: `Work on a tenant's contacts from the server: import a CSV file (resumable,
with a per-line error report), export them to CSV or JSON Lines (optionally
pseudonymised), count them, show one, find one by email or phone. Personal
fields are encrypted with the tenant's key in the store; every command that
shows them records the access in the tenant's audit trail.`,
	}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.PersistentFlags().String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")
	cmd.AddCommand(c.contactsImportCmd(&asJSON), c.contactsImportErrorsCmd(&asJSON), c.contactsImportsCmd(&asJSON),
		c.contactsExportCmd(&asJSON), c.contactsCountCmd(&asJSON), c.contactsShowCmd(&asJSON), c.contactsFindCmd(&asJSON))
	return cmd
}

// --- progress -----------------------------------------------------------

// progress shows how far a long command is: a bar on a terminal, a plain
// line every few seconds otherwise, nothing when quiet (--json).
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	last  time.Time
	every time.Duration
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress starts the progress of total units (bytes when bytes is
// true) on standard error.
func (c *cli) startProgress(total int64, what string, bytes, quiet bool) *progress {
	if quiet {
		return &progress{}
	}
	if !isTerminal(c.stderr) {
		return &progress{w: c.stderr, last: time.Now(), every: 2 * time.Second}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(c.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.stderr) }),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("contacts"))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

// set moves the bar to done, or prints line() if the last plain line is
// old enough.
func (p *progress) set(done int64, line func() string) {
	switch {
	case p.bar != nil:
		_ = p.bar.Set64(done) // the terminal may be gone: nothing to do
	case p.w != nil && time.Since(p.last) >= p.every:
		p.last = time.Now()
		fmt.Fprintln(p.w, line())
	}
}

// end completes the bar (ok) or leaves it where it stopped.
func (p *progress) end(ok bool) {
	if p.bar == nil {
		return
	}
	if ok {
		_ = p.bar.Finish()
	} else {
		_ = p.bar.Exit()
	}
}

// --- shared -------------------------------------------------------------

// resolveList finds a list of the tenant by id or exact name.
func (tc *tenantCtx) resolveList(ref string) (contacts.List, error) {
	all, err := tc.a.Contacts.Lists(tc.ctx, tc.t.ID)
	if err != nil {
		return contacts.List{}, err
	}
	names := make([]string, 0, len(all))
	for _, l := range all {
		if l.ID == ref || l.Name == ref {
			return l, nil
		}
		names = append(names, l.Name)
	}
	have := "it has none"
	if len(names) > 0 {
		have = "its lists: " + truncateText(strings.Join(names, ", "), 200)
	}
	return contacts.List{}, fmt.Errorf("no list %q in tenant %s (%s); create it first (POST /api/v1/lists)", truncateText(ref, 64), tc.t.Slug, have)
}

// resolveSegment finds a segment of the tenant by id or exact name.
func (tc *tenantCtx) resolveSegment(ref string) (contacts.Segment, error) {
	all, err := tc.a.Contacts.Segments(tc.ctx, tc.t.ID)
	if err != nil {
		return contacts.Segment{}, err
	}
	names := make([]string, 0, len(all))
	for _, s := range all {
		if s.ID == ref || s.Name == ref {
			return s, nil
		}
		names = append(names, s.Name)
	}
	have := "it has none"
	if len(names) > 0 {
		have = "its segments: " + truncateText(strings.Join(names, ", "), 200)
	}
	return contacts.Segment{}, fmt.Errorf("no segment %q in tenant %s (%s); create it first (POST /api/v1/segments)", truncateText(ref, 64), tc.t.Slug, have)
}

// flagOf names the flag behind a field of a contacts validation error.
var flagOf = map[string]string{
	"mode": "--mode", "default_calling_code": "--default-calling-code", "consent_purpose": "--consent-purpose",
	"file_name": "FILE", "format": "--format", "status": "--status", "email": "--email", "phone": "--phone", "contacts": "--contacts",
}

// contactsErr turns the contacts service's errors into what-to-do
// messages.
func (tc *tenantCtx) contactsErr(err error) error {
	var ve *contacts.ValidationError
	var fe *filter.Error
	switch {
	case errors.As(err, &ve):
		flag, ok := flagOf[ve.Field]
		if !ok && strings.HasPrefix(ve.Field, "consents[") {
			flag, ok = "--consent", true
		}
		if !ok {
			flag = ve.Field
		}
		return fmt.Errorf("%s: %s", flag, ve.Message)
	case errors.As(err, &fe):
		return fmt.Errorf("--filter: %s", strings.TrimPrefix(fe.Error(), "filter: "))
	case errors.Is(err, contacts.ErrNotFound):
		return fmt.Errorf("%s in tenant %s", strings.TrimPrefix(err.Error(), "contacts: "), tc.t.Slug)
	}
	return err
}

// --- import -------------------------------------------------------------

var callingCodeRE = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)

// parseConsentFlag parses --consent channel:status[:purpose].
func parseConsentFlag(s string) (contacts.ImportConsent, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	bad := usageError{fmt.Errorf("--consent %q: give channel:status or channel:status:purpose, with channel email or sms and status granted, withdrawn or pending (e.g. --consent email:granted)", truncateText(s, 64))}
	if len(parts) < 2 || len(parts) > 3 {
		return contacts.ImportConsent{}, bad
	}
	ic := contacts.ImportConsent{Channel: contacts.Channel(parts[0]), Status: contacts.ConsentStatus(parts[1])}
	if len(parts) == 3 {
		ic.Purpose = parts[2]
	}
	switch ic.Channel {
	case contacts.ChannelEmail, contacts.ChannelSMS:
	default:
		return contacts.ImportConsent{}, bad
	}
	switch ic.Status {
	case contacts.ConsentGranted, contacts.ConsentWithdrawn, contacts.ConsentPending:
	default:
		return contacts.ImportConsent{}, bad
	}
	return ic, nil
}

// contactsImportOptions reads the import's flags (usage errors only; the
// tenant is not opened yet). It returns the options and the lists named.
func contactsImportOptions(cmd *cobra.Command) (contacts.ImportOptions, []string, error) {
	f := cmd.Flags()
	mode, _ := f.GetString("mode")
	dry, _ := f.GetBool("dry-run")
	cc, _ := f.GetString("default-calling-code")
	consents, _ := f.GetStringArray("consent")
	purpose, _ := f.GetString("consent-purpose")
	wording, _ := f.GetString("consent-wording")
	version, _ := f.GetString("consent-wording-version")
	lists, _ := f.GetStringArray("list")
	maps, _ := f.GetStringArray("map")
	ignore, _ := f.GetBool("ignore-unknown-columns")
	job, _ := f.GetString("job")
	o := contacts.ImportOptions{Mode: contacts.ImportMode(mode), DryRun: dry, DefaultCallingCode: strings.TrimPrefix(cc, "+"),
		ConsentPurpose: purpose, IgnoreUnknownColumns: ignore, JobID: job}
	switch o.Mode {
	case contacts.ModeUpsert, contacts.ModeAdd, contacts.ModeBlocklist:
	default:
		return o, nil, usageError{fmt.Errorf("--mode must be upsert, add or blocklist, not %q", truncateText(mode, 32))}
	}
	if o.DefaultCallingCode != "" && !callingCodeRE.MatchString(o.DefaultCallingCode) {
		return o, nil, usageError{fmt.Errorf("--default-calling-code must be a country calling code of 1 to 3 digits, e.g. 33")}
	}
	for _, s := range consents {
		ic, err := parseConsentFlag(s)
		if err != nil {
			return o, nil, err
		}
		ic.Wording, ic.WordingVersion = wording, version
		o.Consents = append(o.Consents, ic)
	}
	if len(o.Consents) == 0 && (wording != "" || version != "") {
		return o, nil, usageError{errors.New("--consent-wording and --consent-wording-version describe the consents of --consent: give --consent too (e.g. --consent email:granted)")}
	}
	for _, m := range maps {
		h, target, ok := strings.Cut(m, "=")
		if !ok || strings.TrimSpace(h) == "" || strings.TrimSpace(target) == "" {
			return o, nil, usageError{fmt.Errorf("--map %q: give HEADER=TARGET, e.g. --map E-mail=email, --map Points=attr.points or --map Notes=-", truncateText(m, 64))}
		}
		if o.Mapping == nil {
			o.Mapping = map[string]string{}
		}
		o.Mapping[strings.TrimSpace(h)] = strings.TrimSpace(target)
	}
	return o, lists, nil
}

// openImportFile opens the file to import: a regular file (the import
// reads it twice and seeks in it to resume).
func openImportFile(path string) (*os.File, int64, error) {
	if path == "-" {
		return nil, 0, usageError{errors.New("give a file path: an import reads its file twice (its SHA-256 identifies the job, to resume it), so standard input cannot be imported")}
	}
	f, err := os.Open(path) // #nosec G304 -- the operator names the file to import
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, 0, fmt.Errorf("cannot open %s: %v; check the path", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file: give a CSV file", path)
	}
	return f, st.Size(), nil
}

// importFileErr says what to do about a file that cannot be imported at
// all.
func (tc *tenantCtx) importFileErr(err error, path string) error {
	msg := strings.TrimPrefix(err.Error(), "contacts: ")
	switch {
	case errors.Is(err, contacts.ErrEmptyFile):
		return fmt.Errorf("%s is empty (%s): nothing was imported; give a CSV file with a header line and contacts", path,
			strings.TrimPrefix(msg, contacts.ErrEmptyFile.Error()+": "))
	case errors.Is(err, contacts.ErrBadFile):
		return fmt.Errorf("%s cannot be imported: %s; nothing was imported (map columns with --map HEADER=TARGET, or skip them with --ignore-unknown-columns)", path,
			strings.TrimPrefix(msg, contacts.ErrBadFile.Error()+": "))
	case errors.Is(err, contacts.ErrFileChanged):
		return fmt.Errorf("--job: %s differs from the file that import job started with; give the same file, or leave out --job to start a new import", path)
	case errors.Is(err, contacts.ErrConflict):
		return fmt.Errorf("%s; wait for it to end (a job silent for a minute may be taken over by running the import again)", msg)
	case errors.Is(err, contacts.ErrNotFound):
		return fmt.Errorf("--job: %s in tenant %s; see `relais contacts imports --tenant %s`", msg, tc.t.Slug, tc.t.Slug)
	}
	return tc.contactsErr(err)
}

// importReport is what an import command prints: the job and the first
// lines of its error report.
type importReport struct {
	Job           contacts.ImportJob     `json:"job"`
	Resumed       bool                   `json:"resumed"`
	Errors        []contacts.ImportError `json:"errors"`
	ErrorsTotal   int64                  `json:"errors_total"`
	ErrorsCommand string                 `json:"errors_command,omitempty"`
}

func (c *cli) contactsImportCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --tenant T FILE.csv [--mode upsert|add|blocklist] [--dry-run] [--default-calling-code 33] [--consent email:granted ...] [--list NAME ...]",
		Short: "Import contacts from a CSV file, resumably, with a per-line error report",
		Long: `Import a CSV file of contacts (RFC 4180, UTF-8 with or without BOM, ',' or
';' between columns). The header names the columns: email, phone,
first_name, last_name, locale, timezone, consent.email, consent.sms and the
tenant's declared attributes (usual spellings such as E-mail or Mobile are
recognised; map others with --map HEADER=TARGET, or skip them with
--ignore-unknown-columns). Each contact needs an email or a phone number.

Modes: upsert (default) creates new contacts and updates existing ones
(matched by email); add only creates; blocklist puts every line's email and
phone on the blocklist. No import can override the blocklist or turn a
withdrawn consent back to granted. --consent records a consent for every
contact of the file (source "import", with the job as proof).

A line with an error is reported (line, column, reason) and skipped; the
other lines are imported. The import commits in batches: if it stops
(Ctrl-C, a crash), run the same command on the same file and it resumes
after the last committed line; running a file again never duplicates a
contact. A progress bar is shown on a terminal, plain lines otherwise.

Exit status: 0 when the import completed, even if some lines were skipped
(the summary and the first 50 errors are printed; the full report with
` + "`relais contacts import-errors`" + `); 1 when nothing could be imported (no
line, or every line failed), when the file as a whole is refused, or when
the import was interrupted; 2 for a mistake on the command line.`,
		Example: `  relais contacts import --tenant acme contacts.csv
  relais contacts import --tenant acme leads.csv --mode add --consent email:granted --list Newsletter
  relais contacts import --tenant acme mobiles.csv --default-calling-code 33 --map Mobile=phone --dry-run
  relais contacts import --tenant acme bounces.csv --mode blocklist`,
		Args: exactArgs(1, "give the CSV file to import"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			opts, listRefs, err := contactsImportOptions(cmd)
			if err != nil {
				return err
			}
			path := args[0]
			f, size, err := openImportFile(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				for _, ref := range listRefs {
					l, err := tc.resolveList(ref)
					if err != nil {
						return fmt.Errorf("--list: %w", err)
					}
					opts.Lists = append(opts.Lists, l.ID)
				}
				opts.FileName = filepath.Base(path)
				what := "importing " + truncateText(opts.FileName, 40)
				if opts.DryRun {
					what = "checking " + truncateText(opts.FileName, 40)
				}
				prog := c.startProgress(size, what, true, *asJSON)
				opts.Progress = func(p contacts.ImportProgress) {
					prog.set(p.BytesRead, func() string {
						pct := 100 * p.BytesRead / max(p.BytesTotal, 1)
						return fmt.Sprintf("%s: line %d (%d%% of the file): %d created, %d updated, %d skipped, %d failed",
							what, p.Line, pct, p.Created, p.Updated, p.Skipped, p.Failed)
					})
				}
				start := time.Now()
				job, runErr := tc.a.Contacts.Import(tc.ctx, tc.t.ID, f, opts)
				prog.end(runErr == nil)
				if runErr != nil && job.ID == "" && !job.DryRun {
					return tc.importFileErr(runErr, path)
				}
				rep := importReport{Job: job, Resumed: job.ID != "" && job.CreatedAt.Before(start), ErrorsTotal: job.Failed, Errors: job.Errors}
				job.Errors = nil
				rep.Job.Errors = nil
				if !job.DryRun && job.Failed > 0 {
					// The report is read after the run, in a fresh context: an
					// interrupted run still shows what it did.
					ctx, cancel := context.WithTimeout(context.WithoutCancel(tc.ctx), 30*time.Second)
					rep.Errors, err = tc.a.Contacts.ImportErrors(ctx, tc.t.ID, job.ID, 0, importReportLines)
					cancel()
					if err != nil {
						return err
					}
				}
				if len(rep.Errors) > importReportLines {
					rep.Errors = rep.Errors[:importReportLines]
				}
				if rep.Errors == nil {
					rep.Errors = []contacts.ImportError{}
				}
				if !job.DryRun && job.Failed > int64(len(rep.Errors)) {
					rep.ErrorsCommand = fmt.Sprintf("relais contacts import-errors --tenant %s --job %s", tc.t.Slug, job.ID)
				}
				if *asJSON {
					if err := printJSON(c.stdout, rep); err != nil {
						return err
					}
				} else {
					printImportReport(c.stdout, tc.t.Slug, opts.FileName, rep)
				}
				switch {
				case runErr != nil && job.Status == contacts.JobInterrupted:
					return fmt.Errorf("import job %s was interrupted after line %d: run the same command again to resume it", job.ID, job.LastLine)
				case runErr != nil && job.DryRun:
					return fmt.Errorf("the dry run of %s stopped after line %d: %v", path, job.LastLine, runErr)
				case runErr != nil:
					return fmt.Errorf("import job %s failed after line %d (%v); once the cause is fixed, run the same command again to resume it", job.ID, job.LastLine, oneLine(strings.TrimPrefix(runErr.Error(), "contacts: ")))
				case job.Processed == 0 && !rep.Resumed:
					return fmt.Errorf("%s has no contact lines after its header: nothing was imported", path)
				case job.Processed > 0 && job.Failed == job.Processed:
					return fmt.Errorf("no line of %s could be imported (all %d failed): fix the file (see the errors above) and run the import again", path, job.Failed)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.String("mode", "upsert", "upsert (create or update), add (create only) or blocklist (block every line's email and phone)")
	f.Bool("dry-run", false, "check every line and count what would happen, without writing anything")
	f.String("default-calling-code", "", "country calling code for national phone numbers, e.g. 33 (0612345678 -> +33612345678)")
	f.StringArray("consent", nil, "record this consent for every contact: channel:status[:purpose], e.g. email:granted (repeatable)")
	f.String("consent-purpose", "", "purpose of the consent.email and consent.sms columns (default marketing)")
	f.String("consent-wording", "", "the wording the --consent consents were collected with (kept as proof)")
	f.String("consent-wording-version", "", "the version of that wording")
	f.StringArray("list", nil, "a list (name or id) every imported contact joins (repeatable)")
	f.StringArray("map", nil, "map a column: HEADER=TARGET, TARGET being email, phone, first_name, last_name, locale, timezone, consent.email, consent.sms, attr.KEY or - to ignore (repeatable)")
	f.Bool("ignore-unknown-columns", false, "skip columns that map to nothing instead of refusing the file")
	f.String("job", "", "resume this import job (the same file); by default an interrupted import of the same file is resumed")
	return cmd
}

// printImportReport prints an import's summary and the first lines of its
// error report.
func printImportReport(w io.Writer, slug, name string, r importReport) {
	j := r.Job
	switch {
	case j.DryRun:
		fmt.Fprintf(w, "dry run of %s for tenant %s: nothing was written\n", name, slug)
		fmt.Fprintf(w, "%d line(s): %d would be created, %d updated, %d skipped, %d failed\n", j.Processed, j.Created, j.Updated, j.Skipped, j.Failed)
	default:
		resumed := ""
		if r.Resumed {
			resumed = " (resumed)"
		}
		fmt.Fprintf(w, "import of %s into tenant %s: job %s, %s%s\n", name, slug, j.ID, j.Status, resumed)
		fmt.Fprintf(w, "%d line(s): %d created, %d updated, %d skipped, %d failed\n", j.Processed, j.Created, j.Updated, j.Skipped, j.Failed)
	}
	if r.ErrorsTotal == 0 {
		return
	}
	fmt.Fprintf(w, "%d line(s) failed and were skipped:\n", r.ErrorsTotal)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  %s\n", importErrorLine(e))
	}
	switch {
	case r.ErrorsCommand != "":
		fmt.Fprintf(w, "  ... %d more: %s\n", r.ErrorsTotal-int64(len(r.Errors)), r.ErrorsCommand)
	case j.DryRun && r.ErrorsTotal > int64(len(r.Errors)):
		fmt.Fprintf(w, "  ... %d more (a dry run keeps the first 1000; the import itself stores the whole report)\n", r.ErrorsTotal-int64(len(r.Errors)))
	}
}

func importErrorLine(e contacts.ImportError) string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d, column %s: %s", e.Line, e.Column, e.Reason)
}

func (c *cli) contactsImportErrorsCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import-errors --tenant T --job ID [--after LINE] [--limit N]",
		Short: "Print the per-line error report of an import job",
		Long: `Print the error report of an import job, by line: the line number, the
column and the rule broken (never the value). Without --limit, the whole
report (at most 100,000 lines are kept per job).`,
		Example: `  relais contacts import-errors --tenant acme --job 0190c4c2-...
  relais contacts import-errors --tenant acme --job 0190c4c2-... --after 5000 --limit 100 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "job"); err != nil {
				return err
			}
			jobID, _ := cmd.Flags().GetString("job")
			after, _ := cmd.Flags().GetInt64("after")
			limit, _ := cmd.Flags().GetInt("limit")
			if after < 0 || limit < 0 {
				return usageError{errors.New("--after and --limit must be 0 or more")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				job, err := tc.a.Contacts.GetImportJob(tc.ctx, tc.t.ID, jobID)
				if err != nil {
					if errors.Is(err, contacts.ErrNotFound) {
						return fmt.Errorf("no import job %s in tenant %s; see `relais contacts imports --tenant %s`", truncateText(jobID, 64), tc.t.Slug, tc.t.Slug)
					}
					return err
				}
				all := []contacts.ImportError{} // --json only
				printed := 0
				from := after
				bw := bufio.NewWriter(c.stdout)
				for {
					page := 1000
					if limit > 0 {
						page = min(page, limit-printed)
					}
					if page <= 0 {
						break
					}
					errs, err := tc.a.Contacts.ImportErrors(tc.ctx, tc.t.ID, job.ID, after, page)
					if err != nil {
						return err
					}
					for _, e := range errs {
						if *asJSON {
							all = append(all, e)
						} else {
							fmt.Fprintln(bw, importErrorLine(e))
						}
					}
					printed += len(errs)
					if len(errs) < page {
						break
					}
					after = errs[len(errs)-1].Line
				}
				if *asJSON {
					return printJSON(c.stdout, map[string]any{"job_id": job.ID, "failed": job.Failed, "errors": all})
				}
				if printed == 0 {
					fmt.Fprintf(bw, "import job %s has no errors after line %d\n", job.ID, from)
				}
				return bw.Flush()
			})
		},
	}
	cmd.Flags().String("job", "", "the import job's id (printed by `relais contacts import`)")
	cmd.Flags().Int64("after", 0, "start after this line")
	cmd.Flags().Int("limit", 0, "print at most this many errors (0: all)")
	return cmd
}

func (c *cli) contactsImportsCmd(asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "imports --tenant T",
		Short: "List the tenant's import jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				jobs, err := tc.a.Contacts.ImportJobs(tc.ctx, tc.t.ID)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(c.stdout, jobs)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tMODE\tFILE\tLINES\tCREATED\tUPDATED\tSKIPPED\tFAILED\tSTARTED")
				for _, j := range jobs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", j.ID, j.Status, j.Mode, orDash(truncateText(j.FileName, 40)),
						j.Processed, j.Created, j.Updated, j.Skipped, j.Failed, j.CreatedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
}

// --- export -------------------------------------------------------------

// exportSummary is what export reports.
type exportSummary struct {
	contacts.ExportResult
	Out string `json:"out"`
}

func (c *cli) contactsExportCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export --tenant T [--list L] [--segment S] [--format csv|jsonl] [--pseudonymise] --out FILE",
		Short: "Export contacts to a private CSV or JSON Lines file",
		Long: `Export the tenant's contacts (all, or a list's, a segment's, or those a
filter matches) as CSV, whose columns the import understands, or as JSON
Lines. --pseudonymise replaces the email and phone by keyed tokens (the same
address gives the same token within the tenant, so files can still be
joined) and leaves out names and personal attributes (PRIV-2).

The file is created with mode 0600, written to a temporary file next to it
and renamed when complete: it never exists half-written. --out - writes to
standard output. The export is recorded in the tenant's audit trail.`,
		Example: `  relais contacts export --tenant acme --out contacts.csv
  relais contacts export --tenant acme --list Newsletter --format jsonl --pseudonymise --out newsletter.jsonl
  relais contacts export --tenant acme --segment "France" --out - | head`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant", "out"); err != nil {
				return err
			}
			fl := cmd.Flags()
			out, _ := fl.GetString("out")
			format, _ := fl.GetString("format")
			listRef, _ := fl.GetString("list")
			segRef, _ := fl.GetString("segment")
			filterText, _ := fl.GetString("filter")
			status, _ := fl.GetString("status")
			pseudo, _ := fl.GetBool("pseudonymise")
			if format != string(contacts.FormatCSV) && format != string(contacts.FormatJSONL) {
				return usageError{fmt.Errorf("--format must be csv or jsonl, not %q", truncateText(format, 32))}
			}
			if out != "-" {
				if st, err := os.Stat(out); err == nil && st.IsDir() {
					return usageError{fmt.Errorf("--out %s is a directory: give a file name", out)}
				}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				o := contacts.ExportOptions{Format: contacts.ExportFormat(format), Filter: filterText, Status: contacts.Status(status), Pseudonymise: pseudo}
				if listRef != "" {
					l, err := tc.resolveList(listRef)
					if err != nil {
						return fmt.Errorf("--list: %w", err)
					}
					o.ListID = l.ID
				}
				if segRef != "" {
					s, err := tc.resolveSegment(segRef)
					if err != nil {
						return fmt.Errorf("--segment: %w", err)
					}
					o.SegmentID = s.ID
				}
				var res contacts.ExportResult
				var err error
				if out == "-" {
					bw := bufio.NewWriter(c.stdout)
					if res, err = tc.a.Contacts.Export(tc.ctx, tc.t.ID, bw, o); err != nil {
						return tc.contactsErr(err)
					}
					if err := bw.Flush(); err != nil {
						return err
					}
				} else if res, err = exportToFile(tc, out, o); err != nil {
					return err
				}
				sum := exportSummary{ExportResult: res, Out: out}
				if *asJSON && out != "-" {
					return printJSON(c.stdout, sum)
				}
				how := string(res.Format)
				if res.Pseudonymised {
					how += ", pseudonymised"
				}
				dest := out
				if out == "-" {
					dest = "standard output"
				}
				fmt.Fprintf(c.stderr, "exported %d contact(s) of tenant %s (%s) to %s\n", res.Count, tc.t.Slug, how, dest)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.String("out", "", "the file to write (created with mode 0600), or - for standard output")
	f.String("format", "csv", "csv or jsonl (JSON Lines)")
	f.String("list", "", "only the members of this list (name or id)")
	f.String("segment", "", "only the contacts of this segment (name or id)")
	f.String("filter", "", `only the contacts this filter matches, e.g. 'consent.email = "granted" AND attr.country = "FR"'`)
	f.String("status", "", "only contacts with this status: active, unsubscribed, bounced or blocklisted")
	f.Bool("pseudonymise", false, "replace email and phone by keyed tokens and leave out names and personal attributes")
	return cmd
}

// exportToFile writes an export atomically: a private temporary file in
// the destination's directory, renamed over the destination when complete.
func exportToFile(tc *tenantCtx, out string, o contacts.ExportOptions) (contacts.ExportResult, error) {
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return contacts.ExportResult{}, fmt.Errorf("cannot create a file in %s: %v; check --out", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return contacts.ExportResult{}, fmt.Errorf("cannot protect %s: %w", tmp.Name(), err)
	}
	bw := bufio.NewWriterSize(tmp, 256<<10)
	res, err := tc.a.Contacts.Export(tc.ctx, tc.t.ID, bw, o)
	if err != nil {
		return res, tc.contactsErr(err)
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("cannot write %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return res, fmt.Errorf("cannot write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return res, fmt.Errorf("cannot write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return res, fmt.Errorf("cannot write %s: %w", out, err)
	}
	ok = true
	return res, nil
}

// --- count, show, find --------------------------------------------------

func (c *cli) contactsCountCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "count --tenant T [--list L | --segment S]",
		Short: "Count the tenant's contacts, or a list's or a segment's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			listRef, _ := cmd.Flags().GetString("list")
			segRef, _ := cmd.Flags().GetString("segment")
			if listRef != "" && segRef != "" {
				return usageError{errors.New("give --list or --segment, not both")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				var n int64
				var err error
				switch {
				case listRef != "":
					l, err := tc.resolveList(listRef)
					if err != nil {
						return fmt.Errorf("--list: %w", err)
					}
					n, err = tc.a.Contacts.CountList(tc.ctx, tc.t.ID, l.ID)
					if err != nil {
						return tc.contactsErr(err)
					}
				case segRef != "":
					s, err := tc.resolveSegment(segRef)
					if err != nil {
						return fmt.Errorf("--segment: %w", err)
					}
					if n, err = tc.a.Contacts.CountSegment(tc.ctx, tc.t.ID, s.ID); err != nil {
						return tc.contactsErr(err)
					}
				default:
					if n, err = tc.a.Contacts.Count(tc.ctx, tc.t.ID); err != nil {
						return err
					}
				}
				if *asJSON {
					return printJSON(c.stdout, map[string]int64{"count": n})
				}
				fmt.Fprintln(c.stdout, n)
				return nil
			})
		},
	}
	cmd.Flags().String("list", "", "count this list's members (name or id)")
	cmd.Flags().String("segment", "", "count the contacts of this segment (name or id)")
	return cmd
}

func (c *cli) contactsShowCmd(asJSON *bool) *cobra.Command {
	return &cobra.Command{
		Use:   "show --tenant T ID",
		Short: "Show a contact with its consents (the access is recorded)",
		Args:  exactArgs(1, "give the contact's id (see `relais contacts find`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				ct, err := tc.a.Contacts.Get(tc.ctx, tc.t.ID, args[0])
				if err != nil {
					if errors.Is(err, contacts.ErrNotFound) {
						return fmt.Errorf("no contact %s in tenant %s; find it with `relais contacts find --tenant %s --email ...`", truncateText(args[0], 64), tc.t.Slug, tc.t.Slug)
					}
					return err
				}
				if *asJSON {
					return printJSON(c.stdout, ct)
				}
				printContact(c.stdout, ct)
				return nil
			})
		},
	}
}

func printContact(w io.Writer, ct contacts.Contact) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", ct.ID)
	fmt.Fprintf(tw, "email:\t%s\n", orDash(ct.Email))
	fmt.Fprintf(tw, "phone:\t%s\n", orDash(ct.Phone))
	fmt.Fprintf(tw, "name:\t%s\n", orDash(strings.TrimSpace(ct.FirstName+" "+ct.LastName)))
	fmt.Fprintf(tw, "locale:\t%s\n", orDash(ct.Locale))
	fmt.Fprintf(tw, "timezone:\t%s\n", orDash(ct.TimeZone))
	fmt.Fprintf(tw, "status:\t%s\n", ct.Status)
	fmt.Fprintf(tw, "source:\t%s\n", ct.Source)
	fmt.Fprintf(tw, "created:\t%s\n", ct.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "updated:\t%s\n", ct.UpdatedAt.Format(time.RFC3339))
	for k, v := range ct.Attributes {
		fmt.Fprintf(tw, "attr.%s:\t%v\n", k, v)
	}
	for _, cs := range ct.Consents {
		fmt.Fprintf(tw, "consent.%s.%s:\t%s (%s, %s)\n", cs.Channel, cs.Purpose, cs.Status, cs.Source, cs.UpdatedAt.Format(time.RFC3339))
	}
	_ = tw.Flush()
}

func (c *cli) contactsFindCmd(asJSON *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "find --tenant T --email E | --phone P",
		Short: "Find contacts by email or phone (blind index; the access is recorded)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			email, _ := cmd.Flags().GetString("email")
			phone, _ := cmd.Flags().GetString("phone")
			if (email == "") == (phone == "") {
				return usageError{errors.New("give --email or --phone (one of them)")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				var found []contacts.Contact
				var err error
				if email != "" {
					ct, err := tc.a.Contacts.FindByEmail(tc.ctx, tc.t.ID, email)
					switch {
					case errors.Is(err, contacts.ErrNotFound):
					case err != nil:
						return tc.contactsErr(err)
					default:
						found = append(found, ct)
					}
				} else if found, err = tc.a.Contacts.FindByPhone(tc.ctx, tc.t.ID, phone); err != nil {
					return tc.contactsErr(err)
				}
				if *asJSON {
					if found == nil {
						found = []contacts.Contact{}
					}
					return printJSON(c.stdout, found)
				}
				if len(found) == 0 {
					what := "email"
					if phone != "" {
						what = "phone number"
					}
					return fmt.Errorf("no contact with that %s in tenant %s", what, tc.t.Slug)
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tEMAIL\tPHONE\tNAME\tSTATUS")
				for _, ct := range found {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.ID, orDash(ct.Email), orDash(ct.Phone), orDash(strings.TrimSpace(ct.FirstName+" "+ct.LastName)), ct.Status)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().String("email", "", "the email address")
	cmd.Flags().String("phone", "", "the phone number, in E.164 (+33612345678)")
	return cmd
}

// --- seed ---------------------------------------------------------------

func (c *cli) seedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seed --tenant T --contacts N [--seed S]",
		Short: "Create realistic synthetic contacts, consents and lists (reproducible)",
		Long: `Create N synthetic contacts in a tenant (TEST-1): realistic names,
addresses and phone numbers of a few European countries, attributes
(country, loyalty_points, vip, birth_date), consents with their proof, and
the lists Newsletter, VIP and Prospects. The same --seed gives the same
people; seeding again with it updates them instead of adding more. The
contacts go through the import's batched, encrypted path.`,
		Example: `  relais seed --tenant demo --contacts 1000000
  relais seed --tenant demo --contacts 500 --seed 42 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(cmd, "tenant"); err != nil {
				return err
			}
			n, _ := cmd.Flags().GetInt("contacts")
			seed, _ := cmd.Flags().GetInt64("seed")
			asJSON, _ := cmd.Flags().GetBool("json")
			if n < 1 || n > 100_000_000 {
				return usageError{errors.New("--contacts must be 1 to 100000000")}
			}
			return c.inTenant(cmd, func(tc *tenantCtx) error {
				prog := c.startProgress(int64(n), "seeding", false, asJSON)
				res, err := tc.a.Contacts.Seed(tc.ctx, tc.t.ID, n, seed, func(done int) {
					prog.set(int64(done), func() string { return fmt.Sprintf("seeding: %d of %d contacts", done, n) })
				})
				prog.end(err == nil)
				if err != nil {
					if errors.Is(err, context.Canceled) {
						return errors.New("seeding was interrupted: the contacts written so far are kept; run the same command again to finish")
					}
					return tc.contactsErr(err)
				}
				if asJSON {
					return printJSON(c.stdout, map[string]any{"tenant": tc.t.Slug, "seed": seed, "contacts": n, "created": res.Created,
						"updated": res.Updated, "lists": res.Lists})
				}
				names := make([]string, len(res.Lists))
				for i, l := range res.Lists {
					names[i] = l.Name
				}
				fmt.Fprintf(c.stdout, "seeded %d synthetic contact(s) in tenant %s (seed %d): %d created, %d updated; lists: %s\n",
					n, tc.t.Slug, seed, res.Created, res.Updated, strings.Join(names, ", "))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.String("tenant", "", "the tenant's slug or id (see `relais tenant list`)")
	f.Int("contacts", 0, "how many contacts to create")
	f.Int64("seed", 1, "the random seed: the same seed gives the same contacts")
	f.Bool("json", false, "machine-readable output")
	return cmd
}

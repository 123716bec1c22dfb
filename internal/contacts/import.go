package contacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/relais-dev/relais/internal/audit"
	"github.com/relais-dev/relais/internal/store"
)

// ImportMode says what an import does with each line.
type ImportMode string

// Import modes.
const (
	// ModeUpsert creates new contacts and updates existing ones, matched by
	// the email's blind index (or, for a line without email, the phone's
	// when exactly one contact has it). Empty cells leave stored values
	// unchanged. The default.
	ModeUpsert ImportMode = "upsert"
	// ModeAdd creates new contacts only; lines of existing contacts are
	// skipped.
	ModeAdd ImportMode = "add"
	// ModeBlocklist puts each line's email and phone on the blocklist.
	ModeBlocklist ImportMode = "blocklist"
)

// Import job statuses.
const (
	JobRunning     = "running"
	JobInterrupted = "interrupted" // cancelled or stopped: a re-run of the same file resumes it
	JobCompleted   = "completed"
	JobFailed      = "failed"
)

// ImportConsent is a consent recorded for every contact of an import (the
// consent the file's owner collected), with source "import" and the job id
// as proof. A contact's withdrawn consent is never turned back to granted or
// pending by an import.
type ImportConsent struct {
	Channel        Channel       `json:"channel"`
	Purpose        string        `json:"purpose"` // DefaultPurpose when empty
	Status         ConsentStatus `json:"status"`
	Wording        string        `json:"wording,omitempty"`
	WordingVersion string        `json:"wording_version,omitempty"`
}

// ImportOptions configure [Service.Import]. The zero value imports in upsert
// mode with columns mapped by name.
type ImportOptions struct {
	Mode ImportMode
	// Mapping maps header names (case-insensitive) to targets: email,
	// phone, first_name, last_name, locale, timezone, consent.email,
	// consent.sms, attr.<key> (a declared attribute), or "-" to ignore a
	// column. Columns not in it are mapped by usual names (email, e-mail,
	// mobile, firstname, ...) and declared attribute keys.
	Mapping map[string]string
	// IgnoreUnknownColumns ignores columns that map to nothing, instead of
	// refusing the file.
	IgnoreUnknownColumns bool
	// DefaultCallingCode (e.g. "33") lets national phone numbers in.
	DefaultCallingCode string
	// Consents are recorded for every contact created or updated.
	Consents []ImportConsent
	// ConsentPurpose is the purpose of the consent.email and consent.sms
	// columns (DefaultPurpose when empty).
	ConsentPurpose string
	// Lists: every contact created or updated joins these lists.
	Lists []string
	// DryRun validates and counts without writing anything: each batch runs
	// in a transaction that is rolled back. No job is stored; the returned
	// job carries the first 1000 errors. Duplicates across batches count as
	// created twice.
	DryRun bool
	// FileName is recorded with the job, for people.
	FileName string
	// JobID resumes that job (the file must be the same). When empty, the
	// newest unfinished job of the tenant for a file with the same SHA-256
	// and mode is resumed if it is interrupted, or running but silent for
	// longer than Service.ImportLease; otherwise a new job starts.
	JobID string
	// BatchSize is the number of lines per transaction (when 0: 500 on
	// SQLite, 1000 on PostgreSQL; at most 5000).
	BatchSize int
	// Workers is the number of goroutines that validate and encrypt
	// (GOMAXPROCS when 0).
	Workers int
	// Progress is called after each committed batch, from the importing
	// goroutine.
	Progress func(ImportProgress)
}

// ImportProgress reports an import's progress, for a progress bar.
type ImportProgress struct {
	JobID      string `json:"job_id"`
	Processed  int64  `json:"processed"`
	Created    int64  `json:"created"`
	Updated    int64  `json:"updated"`
	Skipped    int64  `json:"skipped"`
	Failed     int64  `json:"failed"`
	Line       int64  `json:"line"`        // last line committed
	BytesRead  int64  `json:"bytes_read"`  // up to the last line committed
	BytesTotal int64  `json:"bytes_total"` // the file's size
}

// ImportJob is the state of an import. Processed = Created + Updated +
// Skipped + Failed, over the data lines committed so far (blank lines are
// not counted).
type ImportJob struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	Mode         ImportMode `json:"mode"`
	DryRun       bool       `json:"dry_run,omitempty"`
	FileName     string     `json:"file_name,omitempty"`
	FileSHA256   string     `json:"file_sha256"`
	FileSize     int64      `json:"file_size"`
	Processed    int64      `json:"processed"`
	Created      int64      `json:"created"`
	Updated      int64      `json:"updated"`
	Skipped      int64      `json:"skipped"`
	Failed       int64      `json:"failed"`
	LastLine     int64      `json:"last_line"`
	ResumeOffset int64      `json:"resume_offset"`
	Error        string     `json:"error,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	// Errors holds the first errors of a dry run (stored jobs: ImportErrors).
	Errors []ImportError `json:"errors,omitempty"`
}

// ImportError is one line of an import's error report. It names the column
// and the rule broken, never the value.
type ImportError struct {
	Line   int64  `json:"line"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason"`
}

// Limits of imports.
const (
	// MaxStoredErrors bounds the error report of one job; later errors are
	// counted (Failed) but not stored.
	MaxStoredErrors = 100000
	maxDryRunErrors = 1000
	maxBatchSize    = 5000
)

var errDryRun = errors.New("dry run: roll back")

func (o *ImportOptions) check() error {
	switch o.Mode {
	case "":
		o.Mode = ModeUpsert
	case ModeUpsert, ModeAdd, ModeBlocklist:
	default:
		return invalid("mode", "must be upsert, add or blocklist")
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.BatchSize < 1 || o.BatchSize > maxBatchSize {
		return invalid("batch_size", "must be 1 to %d", maxBatchSize)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	o.Workers = min(o.Workers, 16)
	if o.ConsentPurpose == "" {
		o.ConsentPurpose = DefaultPurpose
	}
	if !purposeRE.MatchString(o.ConsentPurpose) {
		return invalid("consent_purpose", "must be 1 to 64 lower-case letters, digits or _, starting with a letter")
	}
	if o.DefaultCallingCode != "" {
		if _, err := NormalisePhone("0612345678", o.DefaultCallingCode); err != nil {
			return invalid("default_calling_code", "must be 1 to 3 digits, e.g. 33")
		}
	}
	if len(o.FileName) > 255 || !printable(o.FileName) {
		return invalid("file_name", "must be at most 255 printable characters")
	}
	return nil
}

// importConsents checks the job-level consents.
func (o *ImportOptions) importConsents() ([]ConsentInput, error) {
	out := make([]ConsentInput, 0, len(o.Consents))
	for i, c := range o.Consents {
		ci, err := checkConsentInput(ConsentInput{Channel: c.Channel, Purpose: c.Purpose, Status: c.Status, Wording: c.Wording,
			WordingVersion: c.WordingVersion}, fmt.Sprintf("consents[%d]", i))
		if err != nil {
			return nil, err
		}
		ci.Source = SourceImport
		out = append(out, ci)
	}
	return out, nil
}

// hashFile returns the SHA-256 and size of a seekable file, and rewinds it.
func hashFile(ctx context.Context, src io.ReadSeeker) ([]byte, int64, error) {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("contacts: rewind the file: %w", err)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		k, err := src.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("contacts: read the file: %w", err)
		}
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("contacts: rewind the file: %w", err)
	}
	return h.Sum(nil), n, nil
}

// Import reads a CSV file of contacts (RFC 4180; UTF-8 with or without a
// byte order mark; "," or ";" separators, detected from the header) and
// writes it in batches: opts.BatchSize lines per transaction, validated and
// encrypted by a pool of workers, with constant memory whatever the file's
// size. A line with an error is reported (line, column, reason) and skipped;
// no line is ever half-written, and a batch commits with its errors, the
// job's counts and its last line. An import that stops (cancelled context,
// crash) is resumed by running it again on the same file: it continues after
// the last committed line, and upserts by email make any re-run produce one
// contact per address.
//
// The file must be seekable: it is read once for its SHA-256 (which
// identifies the job), then for the import. A file that cannot be imported at
// all (empty, not UTF-8, bad header or mapping) gives an error wrapping
// ErrEmptyFile or ErrBadFile and writes nothing.
func (s *Service) Import(ctx context.Context, tenantID string, src io.ReadSeeker, opts ImportOptions) (ImportJob, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = defaultBatchSize(s.DB.Dialect())
	}
	if err := opts.check(); err != nil {
		return ImportJob{}, err
	}
	jobConsents, err := opts.importConsents()
	if err != nil {
		return ImportJob{}, err
	}
	sum, size, err := hashFile(ctx, src)
	if err != nil {
		return ImportJob{}, err
	}
	if size == 0 {
		return ImportJob{}, fmt.Errorf("contacts: %w: 0 bytes", ErrEmptyFile)
	}
	cr, err := s.crypto(ctx, tenantID)
	if err != nil {
		return ImportJob{}, err
	}
	var sc schema
	err = s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if sc, err = loadSchema(ctx, tx); err != nil {
			return err
		}
		for _, l := range opts.Lists {
			if err := listExists(ctx, tx, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ImportJob{}, err
	}

	recs := newCSVRecords(src, ',', 0, 0)
	bom, comma, err := sniff(recs.br)
	if err != nil {
		return ImportJob{}, err
	}
	recs.comma, recs.offset = comma, int64(bom)
	recs.cr.Comma = rune(comma)
	head, err := recs.next()
	if errors.Is(err, io.EOF) {
		return ImportJob{}, fmt.Errorf("contacts: %w: no header line", ErrEmptyFile)
	}
	if err != nil {
		return ImportJob{}, err
	}
	names, err := header(head)
	if err != nil {
		return ImportJob{}, fmt.Errorf("contacts: %w", err)
	}
	var cols []column
	if opts.Mode == ModeBlocklist {
		cols, err = blocklistColumns(names, opts.Mapping, opts.IgnoreUnknownColumns)
	} else {
		cols, err = resolveMapping(names, opts.Mapping, sc, opts.IgnoreUnknownColumns)
	}
	if err != nil {
		return ImportJob{}, fmt.Errorf("contacts: %w", err)
	}

	job, err := s.startJob(ctx, tenantID, opts, jobConsents, sum, size)
	if err != nil {
		return ImportJob{}, err
	}
	if job.Status == JobCompleted {
		return job, nil // the same file was imported already by this job
	}
	if job.ResumeOffset > recs.offset {
		if _, err := src.Seek(job.ResumeOffset, io.SeekStart); err != nil {
			return job, fmt.Errorf("contacts: seek to the resume point: %w", err)
		}
		recs = newCSVRecords(src, comma, job.LastLine, job.ResumeOffset)
	}

	w := &writer{s: s, cr: cr, dialect: s.DB.Dialect(), mode: opts.Mode, source: string(SourceImport), jobID: job.ID,
		consents: jobConsents, lists: opts.Lists, action: "contact.import", fields: fieldChanges(cols)}
	if opts.Mode == ModeBlocklist {
		w.action = "blocklist.import"
	}
	w.pipelined = !opts.DryRun
	tz := &sync.Pool{New: func() any { return tzCache{} }}
	prepare := func(r *prepRow) {
		if r.err != nil {
			return
		}
		cache := tz.Get().(tzCache)
		defer tz.Put(cache)
		v, consents, lerr := mapRecord(r.raw, cols, opts.DefaultCallingCode, opts.ConsentPurpose, cache)
		r.raw = nil
		if lerr != nil {
			r.err = lerr
			return
		}
		r.v, r.consents = v, consents
		if opts.Mode == ModeBlocklist {
			r.sealed.emailBidx, r.sealed.phoneBidx = indexOpt(cr, fEmail, v.email), indexOpt(cr, fPhone, v.phone)
			return
		}
		sealed, err := sealContact(cr, nil, v)
		if err != nil {
			r.err = &lineError{reason: "could not be encrypted"}
			return
		}
		r.sealed = sealed
		r.plainJSON()
	}
	produce := func(ctx context.Context, emit func(*batch) error) error {
		b := &batch{}
		for {
			rec, err := recs.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			// Ids are drawn here, in file order (UUIDv7 is time-ordered), so
			// that contacts list in the order of the file.
			r := &prepRow{line: rec.StartLine, raw: rec.Fields, id: newID()}
			if rec.Err != "" {
				r.err = &lineError{reason: rec.Err}
			}
			b.rows = append(b.rows, r)
			b.endLine, b.endOffset = rec.EndLine, rec.EndOffset
			if len(b.rows) == opts.BatchSize {
				if err := emit(b); err != nil {
					return err
				}
				b = &batch{}
			}
		}
		if len(b.rows) > 0 {
			return emit(b)
		}
		return nil
	}
	var dryErrors []ImportError
	// The batches' statements run under the import's context, not the
	// pipeline's (ended when the file is read): a batch sent through the
	// writer's pipeline may be written again after that (writeBatch).
	write := func(_ context.Context, b *batch) error {
		now := s.now()
		return w.writeBatch(ctx, tenantID, b.rows, now, func(tx *store.Tx, st batchStats) error {
			if opts.DryRun {
				for _, r := range b.rows {
					if r.err != nil && len(dryErrors) < maxDryRunErrors {
						dryErrors = append(dryErrors, ImportError{Line: r.line, Column: r.err.column, Reason: r.err.reason})
					}
				}
				return errDryRun
			}
			if err := s.saveErrors(ctx, tx, job, b.rows); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE import_jobs SET processed = processed + $3, created = created + $4, updated = updated + $5,
				skipped = skipped + $6, failed = failed + $7, last_line = $8, resume_offset = $9, updated_at = $10
				WHERE tenant_id = $1 AND id = $2`, job.ID, st.processed, st.created, st.updated, st.skipped, st.failed, b.endLine, b.endOffset, micros(now))
			if err != nil {
				return fmt.Errorf("contacts: update the import job: %w", err)
			}
			return nil
		}, func(st batchStats) {
			job.Processed += st.processed
			job.Created += st.created
			job.Updated += st.updated
			job.Skipped += st.skipped
			job.Failed += st.failed
			job.LastLine, job.ResumeOffset, job.UpdatedAt = b.endLine, b.endOffset, now
			if opts.Progress != nil {
				opts.Progress(ImportProgress{JobID: job.ID, Processed: job.Processed, Created: job.Created, Updated: job.Updated,
					Skipped: job.Skipped, Failed: job.Failed, Line: b.endLine, BytesRead: b.endOffset, BytesTotal: size})
			}
		})
	}
	runErr := w.inBulk(ctx, tenantID, func() error { return runPipeline(ctx, opts.Workers, produce, prepare, write) })
	if opts.DryRun {
		job.Errors = dryErrors
		if runErr != nil {
			return job, runErr
		}
		job.Status = JobCompleted
		return job, nil
	}
	return s.finishJob(ctx, tenantID, job, runErr)
}

// blocklistColumns maps a blocklist file: its email and phone columns;
// every other column is ignored.
func blocklistColumns(names []string, explicit map[string]string, _ bool) ([]column, error) {
	return resolveMapping(names, explicit, schema{}, true)
}

func runtimeWorkers() int { return runtime.GOMAXPROCS(0) }

// batch is a group of lines written in one transaction.
type batch struct {
	rows               []*prepRow
	endLine, endOffset int64
	done               chan struct{}
}

// runPipeline runs produce (in a goroutine), prepare (in workers) and
// write (in the calling goroutine, in order). It returns the first error;
// every goroutine has ended when it returns.
func runPipeline(ctx context.Context, workers int, produce func(context.Context, func(*batch) error) error,
	prepare func(*prepRow), write func(context.Context, *batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *batch, workers)
	ordered := make(chan *batch, workers+1)
	var wg sync.WaitGroup
	var prodErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(work)
		defer close(ordered)
		prodErr = produce(ctx, func(b *batch) error {
			b.done = make(chan struct{})
			select {
			case ordered <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case work <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				for _, r := range b.rows {
					if ctx.Err() != nil {
						break
					}
					prepare(r)
				}
				close(b.done)
			}
		}()
	}
	var err error
	for b := range ordered {
		select {
		case <-b.done:
		case <-ctx.Done():
		}
		if err = ctx.Err(); err != nil {
			break
		}
		if err = write(ctx, b); err != nil {
			break
		}
	}
	cancel()
	for range ordered { // let the producer finish
	}
	wg.Wait()
	if err == nil {
		err = prodErr
	}
	return err
}

// saveErrors stores a batch's per-line errors (up to MaxStoredErrors per
// job).
func (s *Service) saveErrors(ctx context.Context, tx *store.Tx, job ImportJob, rows []*prepRow) error {
	room := MaxStoredErrors - job.Failed
	d := tx.Dialect()
	vals := newValues(d)
	for _, r := range rows {
		if r.err == nil || room <= 0 {
			continue
		}
		room--
		vals.row(lit("$1"), job.ID, r.line, r.err.column, r.err.reason)
		if vals.rows == maxRowsPerStatement {
			if err := insertErrors(ctx, tx, vals); err != nil {
				return err
			}
			vals = newValues(d)
		}
	}
	if vals.rows > 0 {
		return insertErrors(ctx, tx, vals)
	}
	return nil
}

func insertErrors(ctx context.Context, tx *store.Tx, vals *values) error {
	_, err := tx.Exec(ctx, `INSERT INTO import_errors (tenant_id, job_id, line, column_name, reason) VALUES `+vals.b.String()+
		` ON CONFLICT (tenant_id, job_id, line) DO NOTHING`, vals.args...)
	if err != nil {
		return fmt.Errorf("contacts: save the error report: %w", err)
	}
	return nil
}

// jobOptions is what a job row records of its options (no personal data).
type jobOptions struct {
	Mapping            map[string]string `json:"mapping,omitempty"`
	IgnoreUnknown      bool              `json:"ignore_unknown_columns,omitempty"`
	DefaultCallingCode string            `json:"default_calling_code,omitempty"`
	Consents           []ConsentInput    `json:"consents,omitempty"`
	ConsentPurpose     string            `json:"consent_purpose,omitempty"`
	Lists              []string          `json:"lists,omitempty"`
	BatchSize          int               `json:"batch_size"`
}

const jobCols = `id, status, mode, file_name, file_sha256, file_size, processed, created, updated, skipped, failed,
	last_line, resume_offset, error, created_at, updated_at, finished_at`

func scanJob(sc interface{ Scan(...any) error }) (ImportJob, error) {
	var j ImportJob
	var mode string
	var sum []byte
	var created, updated int64
	var finished *int64
	err := sc.Scan(&j.ID, &j.Status, &mode, &j.FileName, &sum, &j.FileSize, &j.Processed, &j.Created, &j.Updated, &j.Skipped, &j.Failed,
		&j.LastLine, &j.ResumeOffset, &j.Error, &created, &updated, &finished)
	j.Mode, j.FileSHA256 = ImportMode(mode), hex.EncodeToString(sum)
	j.CreatedAt, j.UpdatedAt, j.FinishedAt = store.FromMicros(created), store.FromMicros(updated), fromNullMicros(finished)
	return j, err
}

// startJob creates the job, or takes over the one to resume.
func (s *Service) startJob(ctx context.Context, tenantID string, opts ImportOptions, consents []ConsentInput, sum []byte, size int64) (ImportJob, error) {
	now := s.now()
	if opts.DryRun {
		return ImportJob{Status: JobRunning, Mode: opts.Mode, DryRun: true, FileName: opts.FileName, FileSHA256: hex.EncodeToString(sum),
			FileSize: size, CreatedAt: now, UpdatedAt: now}, nil
	}
	var job ImportJob
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		if opts.JobID != "" {
			job, err = scanJob(tx.QueryRow(ctx, `SELECT `+jobCols+` FROM import_jobs WHERE tenant_id = $1 AND id = $2`, opts.JobID))
			if isNotFound(err) {
				return fmt.Errorf("import job %w", ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("contacts: read import job: %w", err)
			}
			if job.FileSHA256 != hex.EncodeToString(sum) {
				return fmt.Errorf("contacts: %w", ErrFileChanged)
			}
			if job.Mode != opts.Mode {
				return invalid("mode", "job %s runs in mode %s", job.ID, job.Mode)
			}
			if job.Status == JobCompleted {
				return nil
			}
		} else {
			job, err = scanJob(tx.QueryRow(ctx, `SELECT `+jobCols+` FROM import_jobs WHERE tenant_id = $1 AND file_sha256 = $2 AND mode = $3
				AND (status = 'interrupted' OR (status = 'running' AND updated_at < $4)) ORDER BY created_at DESC LIMIT 1`,
				sum, string(opts.Mode), micros(now.Add(-s.importLease()))))
			if err != nil && !isNotFound(err) {
				return fmt.Errorf("contacts: find an import to resume: %w", err)
			}
		}
		if job.ID != "" {
			// Take the job over, unless another run holds it.
			res, err := tx.Exec(ctx, `UPDATE import_jobs SET status = 'running', error = '', updated_at = $3 WHERE tenant_id = $1 AND id = $2
				AND (status IN ('interrupted', 'failed') OR (status = 'running' AND updated_at < $4))`, job.ID, micros(now), micros(now.Add(-s.importLease())))
			if err != nil {
				return fmt.Errorf("contacts: resume import job: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("contacts: %w: import job %s is running elsewhere (it last committed at %s)", ErrConflict, job.ID, job.UpdatedAt.Format(time.RFC3339))
			}
			job.Status, job.Error, job.UpdatedAt = JobRunning, "", now
			_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact_import.resume", ObjectType: "import_job", ObjectID: job.ID,
				Details: map[string]any{"after_line": job.LastLine}})
			return err
		}
		for _, ci := range consents {
			if ci.Wording != "" {
				if _, err := tx.Exec(ctx, `INSERT INTO consent_wordings (tenant_id, hash, version, text, created_at) VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (tenant_id, hash) DO NOTHING`, ci.WordingHash, ci.WordingVersion, ci.Wording, micros(now)); err != nil {
					return fmt.Errorf("contacts: save consent wording: %w", err)
				}
			}
		}
		stored := make([]ConsentInput, len(consents))
		for i, c := range consents {
			c.Wording = "" // kept once in consent_wordings
			stored[i] = c
		}
		o, err := json.Marshal(jobOptions{Mapping: opts.Mapping, IgnoreUnknown: opts.IgnoreUnknownColumns, DefaultCallingCode: opts.DefaultCallingCode,
			Consents: stored, ConsentPurpose: opts.ConsentPurpose, Lists: opts.Lists, BatchSize: opts.BatchSize})
		if err != nil {
			return fmt.Errorf("contacts: encode job options: %w", err)
		}
		job = ImportJob{ID: newID(), Status: JobRunning, Mode: opts.Mode, FileName: opts.FileName, FileSHA256: hex.EncodeToString(sum),
			FileSize: size, CreatedAt: now, UpdatedAt: now}
		if _, err := tx.Exec(ctx, `INSERT INTO import_jobs (tenant_id, id, status, mode, file_name, file_sha256, file_size, options, created_at, updated_at)
			VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $8)`, job.ID, string(opts.Mode), opts.FileName, sum, size, string(o), micros(now)); err != nil {
			return fmt.Errorf("contacts: create import job: %w", err)
		}
		_, err = audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact_import.start", ObjectType: "import_job", ObjectID: job.ID,
			Details: map[string]any{"mode": string(opts.Mode), "file_sha256": job.FileSHA256, "file_size": size, "file_name": opts.FileName}})
		return err
	})
	if err != nil {
		return ImportJob{}, err
	}
	return job, nil
}

// finishJob records how a run ended: completed, interrupted (cancelled:
// resumable) or failed (resumable too, once the cause is fixed).
func (s *Service) finishJob(ctx context.Context, tenantID string, job ImportJob, runErr error) (ImportJob, error) {
	// The caller's context may be cancelled: record the end regardless.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	now := s.now()
	status, msg := JobCompleted, ""
	var finished any = micros(now)
	switch {
	case runErr == nil:
	case errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded):
		status, msg, finished = JobInterrupted, "interrupted: run the same import again to resume", nil
	default:
		status, msg, finished = JobFailed, runErr.Error(), nil
	}
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE import_jobs SET status = $3, error = $4, updated_at = $5, finished_at = $6 WHERE tenant_id = $1 AND id = $2`,
			job.ID, status, msg, micros(now), finished); err != nil {
			return fmt.Errorf("contacts: finish import job: %w", err)
		}
		_, err := audit.Append(ctx, tx, audit.Event{Category: audit.CategoryChange, Action: "contact_import." + status, ObjectType: "import_job", ObjectID: job.ID,
			Details: map[string]any{"processed": job.Processed, "created": job.Created, "updated": job.Updated, "skipped": job.Skipped,
				"failed": job.Failed, "last_line": job.LastLine}})
		return err
	})
	job.Status, job.Error, job.UpdatedAt = status, msg, now
	if status == JobCompleted {
		job.FinishedAt = &now
	}
	if runErr != nil {
		return job, fmt.Errorf("contacts: import job %s %s after line %d: %w", job.ID, status, job.LastLine, runErr)
	}
	if err != nil {
		return job, err
	}
	return job, nil
}

// GetImportJob returns an import job's state (the API's job status).
func (s *Service) GetImportJob(ctx context.Context, tenantID, jobID string) (ImportJob, error) {
	var j ImportJob
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		var err error
		j, err = scanJob(tx.QueryRow(ctx, `SELECT `+jobCols+` FROM import_jobs WHERE tenant_id = $1 AND id = $2`, jobID))
		return err
	})
	if isNotFound(err) {
		return ImportJob{}, fmt.Errorf("import job %w", ErrNotFound)
	}
	if err != nil {
		return ImportJob{}, fmt.Errorf("contacts: read import job: %w", err)
	}
	return j, nil
}

// ImportJobs returns the tenant's import jobs, newest first (at most 100).
func (s *Service) ImportJobs(ctx context.Context, tenantID string) ([]ImportJob, error) {
	out := []ImportJob{}
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+jobCols+` FROM import_jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100`)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: read import jobs: %w", err)
	}
	return out, nil
}

// ImportErrors returns a job's error report, by line, after a line
// (0 for the start), at most limit entries (1000 when <= 0 or above).
func (s *Service) ImportErrors(ctx context.Context, tenantID, jobID string, afterLine int64, limit int) ([]ImportError, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	out := []ImportError{}
	err := s.tx(ctx, tenantID, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT line, column_name, reason FROM import_errors WHERE tenant_id = $1 AND job_id = $2 AND line > $3
			ORDER BY line LIMIT $4`, jobID, afterLine, limit)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var e ImportError
			if err := rows.Scan(&e.Line, &e.Column, &e.Reason); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("contacts: read import errors: %w", err)
	}
	return out, nil
}

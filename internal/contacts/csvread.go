package contacts

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits of the CSV reader.
const (
	// MaxRecordBytes bounds one record (a line, or several when a quoted
	// field holds line breaks): a longer one is a per-line error, and is
	// skipped without being held in memory.
	MaxRecordBytes = 64 << 10
	// MaxColumns bounds the header.
	MaxColumns = 256
)

// csvRecords reads the records of an RFC 4180 file one at a time, with
// memory bounded by MaxRecordBytes whatever the file. A small splitter finds
// each record's bytes (a line break ends a record unless it is inside a
// quoted field), skipping over records that are too long; each record is
// then parsed by encoding/csv (strict quotes), which is fed exactly that
// record, so that a malformed line cannot swallow the next ones.
type csvRecords struct {
	br     *bufio.Reader
	comma  byte
	buf    []byte
	line   int64 // physical lines consumed (the line of the last newline read)
	offset int64 // bytes consumed, from the start of the file
	feed   *recordFeed
	cr     *csv.Reader
}

// recordFeed serves one record's bytes to the csv.Reader, then io.EOF.
type recordFeed struct{ b []byte }

// Read serves the rest of the current record, then io.EOF.
func (f *recordFeed) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func newCSVRecords(r io.Reader, comma byte, line, offset int64) *csvRecords {
	feed := &recordFeed{}
	cr := csv.NewReader(feed)
	cr.Comma = rune(comma)
	cr.FieldsPerRecord = -1 // checked by the importer, with a clearer message
	cr.LazyQuotes = false
	cr.ReuseRecord = true
	return &csvRecords{br: bufio.NewReaderSize(r, MaxRecordBytes+4096), comma: comma, line: line, offset: offset, feed: feed, cr: cr}
}

// record is one record of the file. Fields are fresh strings (safe to
// keep); Err is a per-line error reason, without the line's content.
type record struct {
	StartLine, EndLine int64 // physical lines spanned, from 1
	EndOffset          int64 // byte offset just after the record
	Fields             []string
	Err                string
}

// next returns the next non-blank record, or io.EOF.
func (c *csvRecords) next() (record, error) {
	for {
		rec, blank, err := c.split()
		if err != nil {
			return record{}, err
		}
		if blank {
			continue
		}
		return rec, nil
	}
}

// split reads one record's bytes and parses them.
func (c *csvRecords) split() (rec record, blank bool, err error) {
	const (
		fieldStart = iota
		unquoted
		quoted
		quoteInQuoted // a quote inside a quoted field: closing, or the first of ""
		bad           // csv stops the record at the end of this line
	)
	c.buf = c.buf[:0]
	tooLong := false
	state := fieldStart
	rec.StartLine = c.line + 1
	read := 0
	for {
		chunk, rerr := c.br.ReadSlice('\n')
		read += len(chunk)
		c.offset += int64(len(chunk))
		if len(c.buf)+len(chunk) <= MaxRecordBytes && !tooLong {
			c.buf = append(c.buf, chunk...)
		} else {
			tooLong = true
		}
		body := chunk
		nl := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
		if nl {
			body = chunk[:len(chunk)-1]
		}
		for _, b := range body {
			switch state {
			case fieldStart:
				switch b {
				case '"':
					state = quoted
				case c.comma:
				default:
					state = unquoted
				}
			case unquoted:
				switch b {
				case c.comma:
					state = fieldStart
				case '"':
					state = bad
				}
			case quoted:
				if b == '"' {
					state = quoteInQuoted
				}
			case quoteInQuoted:
				switch b {
				case '"':
					state = quoted
				case c.comma:
					state = fieldStart
				default:
					state = bad // "\r" before "\n" too: either way the record ends at this line
				}
			}
		}
		if nl {
			c.line++
			if state == quoted {
				continue // a line break inside a quoted field
			}
			if state == quoteInQuoted {
				state = fieldStart
			}
			break
		}
		if rerr == bufio.ErrBufferFull {
			continue
		}
		if rerr == io.EOF {
			if read == 0 {
				return record{}, false, io.EOF
			}
			c.line++ // the last line, without a final newline
			break
		}
		if rerr != nil {
			return record{}, false, fmt.Errorf("contacts: read the file: %w", rerr)
		}
	}
	rec.EndLine, rec.EndOffset = c.line, c.offset
	if tooLong {
		rec.Err = fmt.Sprintf("record longer than %d KiB (an unclosed quote makes it run to the next quote)", MaxRecordBytes>>10)
		return rec, false, nil
	}
	if len(bytes.TrimRight(c.buf, "\r\n")) == 0 {
		return rec, true, nil
	}
	if c.buf[len(c.buf)-1] != '\n' {
		c.buf = append(c.buf, '\n')
	}
	c.feed.b = c.buf
	fields, perr := c.cr.Read()
	var out []string
	if perr == nil {
		out = make([]string, len(fields))
		copy(out, fields)
	}
	// Whatever encoding/csv left of this record's bytes is discarded: a
	// record never spills into the next one.
	spilled := false
	for {
		_, err := c.cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		spilled = true
	}
	switch {
	case perr != nil:
		rec.Err = csvReason(perr)
	case spilled:
		rec.Err = "broken quoting: extraneous or missing \" in a field"
	default:
		rec.Fields = out
	}
	return rec, false, nil
}

// csvReason turns an encoding/csv error into a reason without content.
func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, csv.ErrBareQuote):
			return fmt.Sprintf("broken quoting: a \" in an unquoted field (character %d); quote the whole field and double inner quotes", pe.Column)
		case errors.Is(pe.Err, csv.ErrQuote):
			return fmt.Sprintf("broken quoting: extraneous or missing \" in a quoted field (character %d)", pe.Column)
		}
	}
	return "the line is not valid CSV"
}

// sniff reads the start of the file: it strips a UTF-8 byte order mark,
// refuses UTF-16 and UTF-32, and picks the separator (, or ;) from the first
// line, outside quotes. It returns the number of bytes of the mark.
func sniff(br *bufio.Reader) (bom int, comma byte, err error) {
	head, _ := br.Peek(MaxRecordBytes)
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		bom = 3
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}),
		bytes.HasPrefix(head, []byte{0, 0, 0xFE, 0xFF}):
		return 0, 0, fmt.Errorf("%w: the file is UTF-16 or UTF-32; save it as UTF-8 (with or without BOM)", ErrBadFile)
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return 0, 0, fmt.Errorf("%w: the file holds NUL bytes: it is not a UTF-8 text file (UTF-16? a spreadsheet?); export it as CSV UTF-8", ErrBadFile)
	}
	first := head[bom:]
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	commas, semis, inQuote := 0, 0, false
	for _, b := range first {
		switch {
		case b == '"':
			inQuote = !inQuote
		case inQuote:
		case b == ',':
			commas++
		case b == ';':
			semis++
		}
	}
	comma = ','
	if semis > commas {
		comma = ';'
	}
	if _, err := br.Discard(bom); err != nil {
		return 0, 0, fmt.Errorf("contacts: read the file: %w", err)
	}
	return bom, comma, nil
}

// header checks the header record and returns its column names.
func header(rec record) ([]string, error) {
	if rec.Err != "" {
		return nil, fmt.Errorf("%w: header (line %d): %s", ErrBadFile, rec.StartLine, rec.Err)
	}
	if len(rec.Fields) > MaxColumns {
		return nil, fmt.Errorf("%w: the header has %d columns, at most %d", ErrBadFile, len(rec.Fields), MaxColumns)
	}
	names := make([]string, len(rec.Fields))
	seen := map[string]int{}
	for i, f := range rec.Fields {
		if !utf8.ValidString(f) {
			return nil, fmt.Errorf("%w: the header is not valid UTF-8; save the file as UTF-8", ErrBadFile)
		}
		n := strings.TrimSpace(f)
		if n == "" {
			return nil, fmt.Errorf("%w: column %d of the header has no name", ErrBadFile, i+1)
		}
		if j, dup := seen[strings.ToLower(n)]; dup {
			return nil, fmt.Errorf("%w: columns %d and %d of the header are both named %q", ErrBadFile, j+1, i+1, n)
		}
		seen[strings.ToLower(n)] = i
		names[i] = n
	}
	return names, nil
}

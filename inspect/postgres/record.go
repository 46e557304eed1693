package postgres

import (
	"bytes"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// maxRecordedBytes bounds the rows one statement's pg.result payload holds
// under record_results: rows (besides record_rows_max).
const maxRecordedBytes = 1 << 20

var recordZero model.Record

// rowRec keeps the first rows of a result (record_results: rows).
type rowRec struct {
	max       int
	rows      [][]*string
	bytes     int
	truncated bool
}

func (rr *rowRec) room() bool {
	if len(rr.rows) >= rr.max || rr.bytes >= maxRecordedBytes {
		rr.truncated = true
		return false
	}
	return true
}

func (rr *rowRec) add(row []*string, cut bool) {
	for _, v := range row {
		if v != nil {
			rr.bytes += len(*v)
		}
	}
	rr.rows = append(rr.rows, row)
	if cut {
		rr.truncated = true
	}
}

func columnFormat(r *run, i int) (uint32, bool) {
	if i < len(r.fields) {
		return r.fields[i].oid, r.fields[i].format == 1
	}
	return 0, formatAt(r.formats, i) == 1
}

// row counts a DataRow held in memory and records it when asked to.
func (s *session) row(r *run, body []byte) {
	r.rows++
	if r.rec == nil || !r.rec.room() {
		return
	}
	if r.row.Decode(body) != nil {
		return
	}
	row := make([]*string, len(r.row.Values))
	cut := false
	for i, v := range r.row.Values {
		if v == nil {
			continue
		}
		oid, bin := columnFormat(r, i)
		str, c2 := render(oid, bin, v[:min(len(v), maxValue+1)], len(v))
		cut = cut || c2
		row[i] = &str
	}
	r.rec.add(row, cut)
}

// copyRow counts a CopyData line of COPY TO STDOUT and records it.
func (s *session) copyRow(r *run, body []byte) {
	r.rows++
	if r.rec == nil || !r.rec.room() {
		return
	}
	line := bytes.TrimSuffix(body, []byte{'\n'})
	str, cut := render(0, false, line[:min(len(line), maxValue+1)], len(line))
	r.rec.add([]*string{&str}, cut)
}

// streamRow forwards a large DataRow while parsing it.
func (s *session) streamRow(r *run, b *body) error {
	r.rows++
	record := r.rec != nil && r.rec.room()
	n, err := b.int16()
	if err != nil {
		return err
	}
	if n < 0 {
		return serverErr("negative column count")
	}
	var row []*string
	if record {
		row = make([]*string, n)
	}
	for i := 0; i < n; i++ {
		l, err := b.int32()
		if err != nil {
			return err
		}
		if l < -1 {
			return serverErr("invalid value length %d", l)
		}
		if l == -1 {
			continue
		}
		keep := 0
		if record {
			keep = maxValue + 1
		}
		v, err := b.bytes(l, keep)
		if err != nil {
			return err
		}
		if record {
			oid, bin := columnFormat(r, i)
			str, _ := render(oid, bin, v, l)
			row[i] = &str
		}
	}
	if record {
		r.rec.add(row, true)
	}
	return nil
}

// complete ends a run with its CommandComplete (nil: EmptyQueryResponse,
// PortalSuspended closed by the transaction's end, or a function call).
// The tag must be one the judged statement can produce; what the
// statement did to named objects (PREPARE, DECLARE, ...) applies now.
func (s *session) complete(r *run, body []byte) error {
	if r == nil || r.done {
		return nil
	}
	tag := ""
	if body != nil {
		var cc pgproto3.CommandComplete
		if cc.Decode(body) == nil {
			tag = string(cc.CommandTag)
		}
		if err := s.checkTag(r, tag); err != nil {
			return err
		}
		s.mu.Lock()
		s.onTag(r, tag)
		if r.class != nil && !r.class.ReadOnly {
			s.tx.rows += pgconn.NewCommandTag(tag).RowsAffected()
		}
		s.mu.Unlock()
	}
	s.finish(r, tag, nil, "")
	return nil
}

func (s *session) fail(r *run, e *pgproto3.ErrorResponse) {
	if r == nil || r.done {
		return
	}
	s.finish(r, "", e, "")
}

func (s *session) notRun(r *run, why string) {
	if r == nil || r.done {
		return
	}
	r.done = true
	delete(s.open, r)
	s.results = append(s.results, resultRecord(s, r, model.PGResult{Statement: r.stmtSeq(), NotRun: true, Error: why}))
}

// finish records how a run ended.
func (s *session) finish(r *run, tag string, e *pgproto3.ErrorResponse, why string) {
	if r.done {
		return
	}
	r.done = true
	delete(s.open, r)
	// Rows counted as they passed, when any did (a portal run in several
	// Executes ends with a tag counting only the last one); otherwise the
	// tag's count (rows affected).
	rows := r.rows
	if rows == 0 {
		rows = pgconn.NewCommandTag(tag).RowsAffected()
	}
	res := model.PGResult{Statement: r.stmtSeq(), Tag: tag, Rows: rows, DurationNS: time.Since(r.start).Nanoseconds()}
	if e != nil {
		res.SQLState, res.Error = e.Code, e.Message
	}
	if why != "" {
		res.Error = why
	}
	s.results = append(s.results, resultRecord(s, r, res))
	s.results = append(s.results, s.maskRecords(r)...)
}

// resultRecord builds a pg.result record with what record_results keeps.
func resultRecord(s *session, r *run, res model.PGResult) model.Record {
	rec := model.Record{Kind: model.KindPGResult, Session: s.id}
	if s.t.results != "none" && !res.NotRun {
		for _, f := range r.fields {
			res.Columns = append(res.Columns, f.name)
		}
	}
	if r.rec != nil && len(r.rec.rows) > 0 {
		res.RowsRecorded = len(r.rec.rows)
		res.Truncated = r.rec.truncated
		rec.Payload = r.rec.rows
	} else if r.rec != nil && r.rec.truncated {
		res.Truncated = true
	}
	rec.Data = res
	return rec
}

package model

import (
	"reflect"
	"strconv"
	"unicode/utf8"
)

// Every statement writes a pg.statement and a pg.result record, so their
// data encode themselves: encoding/json's reflection cost more than the
// rest of judging a prepared statement. The bytes are json.Marshal's
// exactly (tests compare them on random values), so the journal, its
// readers and the verifier see no difference. A field added to either
// struct without its encoder here turns the fast path off (pgJSONFields)
// rather than dropping the field from the journal.

// AppendJSON appends v's JSON encoding, byte for byte json.Marshal's, when
// v is a record data type that encodes itself; ok is false for any other
// (the caller marshals it).
func AppendJSON(b []byte, v any) (out []byte, ok bool) {
	switch x := v.(type) {
	case PGStatement:
		if pgStatementFast {
			if b == nil {
				b = make([]byte, 0, 320+len(x.SQL)+len(x.SQLBase64)+len(x.Prepared)+len(x.Decision.Reason)+len(x.Error))
			}
			return x.appendJSON(b), true
		}
	case PGResult:
		if pgResultFast {
			if b == nil {
				b = make([]byte, 0, 160+len(x.Error))
			}
			return x.appendJSON(b), true
		}
	}
	return b, false
}

var (
	pgStatementFast = pgJSONFields(reflect.TypeOf(PGStatement{}), "sql", "sql_b64,omitempty", "prepared_sql,omitempty",
		"redacted,omitempty", "wrapped,omitempty", "protocol", "statement_name,omitempty", "portal,omitempty",
		"params,omitempty", "kinds", "tables,omitempty", "read_only", "decision", "tag,omitempty", "rows",
		"sqlstate,omitempty", "error,omitempty", "start_ns", "duration_ns", "columns,omitempty",
		"rows_recorded,omitempty", "truncated,omitempty") &&
		pgJSONFields(reflect.TypeOf(PGParam{}), "type,omitempty", "value", "format") &&
		decisionFast
	pgResultFast = pgJSONFields(reflect.TypeOf(PGResult{}), "statement", "not_run,omitempty", "tag,omitempty", "rows",
		"sqlstate,omitempty", "error,omitempty", "duration_ns", "columns,omitempty", "rows_recorded,omitempty",
		"truncated,omitempty")
	decisionFast = pgJSONFields(reflect.TypeOf(Decision{}), "action", "rule,omitempty", "reason,omitempty",
		"request,omitempty", "grant,omitempty", "mask,omitempty") &&
		pgJSONFields(reflect.TypeOf(MaskSpec{}), "rules") &&
		pgJSONFields(reflect.TypeOf(MaskRule{}), "rule", "columns,omitempty", "detectors,omitempty",
			"live,omitempty", "transfers,omitempty")
)

// pgJSONFields says whether t's json tags are exactly tags, in order: the
// fields the encoders below write.
func pgJSONFields(t reflect.Type, tags ...string) bool {
	if t.NumField() != len(tags) {
		return false
	}
	for i := range tags {
		if t.Field(i).Tag.Get("json") != tags[i] {
			return false
		}
	}
	return true
}

func (s PGStatement) appendJSON(b []byte) []byte {
	b = append(b, `{"sql":`...)
	b = appendJSONString(b, s.SQL)
	if s.SQLBase64 != "" {
		b = append(b, `,"sql_b64":`...)
		b = appendJSONString(b, s.SQLBase64)
	}
	if s.Prepared != "" {
		b = append(b, `,"prepared_sql":`...)
		b = appendJSONString(b, s.Prepared)
	}
	if s.Redacted != 0 {
		b = append(b, `,"redacted":`...)
		b = strconv.AppendInt(b, int64(s.Redacted), 10)
	}
	if s.Wrapped {
		b = append(b, `,"wrapped":true`...)
	}
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, s.Protocol)
	if s.StatementName != "" {
		b = append(b, `,"statement_name":`...)
		b = appendJSONString(b, s.StatementName)
	}
	if s.Portal != "" {
		b = append(b, `,"portal":`...)
		b = appendJSONString(b, s.Portal)
	}
	if len(s.Params) > 0 {
		b = append(b, `,"params":[`...)
		for i, p := range s.Params {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if p.Type != "" {
				b = append(b, `"type":`...)
				b = appendJSONString(b, p.Type)
				b = append(b, ',')
			}
			b = append(b, `"value":`...)
			if p.Value == nil {
				b = append(b, "null"...)
			} else {
				b = appendJSONString(b, *p.Value)
			}
			b = append(b, `,"format":`...)
			b = appendJSONString(b, p.Format)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"kinds":`...)
	b = appendJSONStrings(b, s.Kinds)
	if len(s.Tables) > 0 {
		b = append(b, `,"tables":`...)
		b = appendJSONStrings(b, s.Tables)
	}
	b = append(b, `,"read_only":`...)
	b = strconv.AppendBool(b, s.ReadOnly)
	b = append(b, `,"decision":`...)
	b = s.Decision.appendJSON(b)
	if s.Tag != "" {
		b = append(b, `,"tag":`...)
		b = appendJSONString(b, s.Tag)
	}
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, s.Rows, 10)
	if s.SQLState != "" {
		b = append(b, `,"sqlstate":`...)
		b = appendJSONString(b, s.SQLState)
	}
	if s.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, s.Error)
	}
	b = append(b, `,"start_ns":`...)
	b = strconv.AppendInt(b, s.StartNS, 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, s.DurationNS, 10)
	if len(s.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = appendJSONStrings(b, s.Columns)
	}
	if s.RowsRecorded != 0 {
		b = append(b, `,"rows_recorded":`...)
		b = strconv.AppendInt(b, int64(s.RowsRecorded), 10)
	}
	if s.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

func (r PGResult) appendJSON(b []byte) []byte {
	b = append(b, `{"statement":`...)
	b = strconv.AppendUint(b, r.Statement, 10)
	if r.NotRun {
		b = append(b, `,"not_run":true`...)
	}
	if r.Tag != "" {
		b = append(b, `,"tag":`...)
		b = appendJSONString(b, r.Tag)
	}
	b = append(b, `,"rows":`...)
	b = strconv.AppendInt(b, r.Rows, 10)
	if r.SQLState != "" {
		b = append(b, `,"sqlstate":`...)
		b = appendJSONString(b, r.SQLState)
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, r.DurationNS, 10)
	if len(r.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = appendJSONStrings(b, r.Columns)
	}
	if r.RowsRecorded != 0 {
		b = append(b, `,"rows_recorded":`...)
		b = strconv.AppendInt(b, int64(r.RowsRecorded), 10)
	}
	if r.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}')
}

func (d Decision) appendJSON(b []byte) []byte {
	b = append(b, `{"action":`...)
	b = appendJSONString(b, string(d.Action))
	for _, f := range [...]struct{ key, v string }{
		{`,"rule":`, d.Rule}, {`,"reason":`, d.Reason}, {`,"request":`, d.Request}, {`,"grant":`, d.Grant},
	} {
		if f.v != "" {
			b = append(b, f.key...)
			b = appendJSONString(b, f.v)
		}
	}
	if d.Mask != nil {
		b = append(b, `,"mask":{"rules":`...)
		if d.Mask.Rules == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, r := range d.Mask.Rules {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"rule":`...)
				b = appendJSONString(b, r.Rule)
				if len(r.Columns) > 0 {
					b = append(b, `,"columns":`...)
					b = appendJSONStrings(b, r.Columns)
				}
				if len(r.Detectors) > 0 {
					b = append(b, `,"detectors":`...)
					b = appendJSONStrings(b, r.Detectors)
				}
				if r.Live {
					b = append(b, `,"live":true`...)
				}
				if r.Transfers != "" {
					b = append(b, `,"transfers":`...)
					b = appendJSONString(b, r.Transfers)
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONStrings is a []string as json.Marshal writes it (nil is null).
func appendJSONStrings(b []byte, l []string) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

const jsonHex = "0123456789abcdef"

// jsonPlain are the ASCII bytes json.Marshal writes as they are.
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString is encoding/json's string encoding with HTML escaping
// (json.Marshal's): <, >, & and control bytes as \u00XX, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', jsonHex[c>>4], jsonHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', jsonHex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

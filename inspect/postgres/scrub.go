package postgres

import (
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
)

// Under a mask rule, rows are not the only way a value comes back: an
// error quotes the value a cast failed on, a unique violation's DETAIL
// names the duplicate key, RAISE formats anything, a notification carries
// a payload, a setting a string, a column a name. While mask rules cover
// the session, interlock scrubs all of these before they reach the client
// or the journal: content detectors redact what they find; under column
// rules, whose values no detector recognises, the parts of a server
// message that quote data are replaced, and messages raised by code are
// replaced whole. SQLSTATE and the message's structure stay, so clients
// still behave.

// refreshMasks takes the mask rules that apply to the session now (they
// change on reload), for the server goroutine's scrubbing.
func (s *session) refreshMasks() {
	if s.h.policy == nil || s.h.masker == nil {
		return
	}
	s.masks.Store(s.h.policy.SessionMasks(s.origin))
}

var (
	quotedDouble = regexp.MustCompile(`"(?:[^"]|"")*"`)
	quotedSingle = regexp.MustCompile(`'(?:[^']|'')*'`)
	keyValues    = regexp.MustCompile(`\)=\((.*)\)`)
	rowValues    = regexp.MustCompile(`(contains|row) \((.*)\)`)
)

// scrubText scrubs one field of server text: detectors always; under
// column rules, the quoted parts and key values too.
func (s *session) scrubText(spec *model.MaskSpec, text string, columns bool) (string, bool) {
	if text == "" {
		return text, false
	}
	out, changed := s.h.masker.Scrub(spec, text)
	if columns {
		before := out
		out = quotedDouble.ReplaceAllString(out, `"***"`)
		out = quotedSingle.ReplaceAllString(out, `'***'`)
		out = keyValues.ReplaceAllString(out, `)=(***)`)
		out = rowValues.ReplaceAllString(out, `$1 (***)`)
		changed = changed || out != before
	}
	return out, changed
}

// raisedByCode says a notice or error was raised by code (PL/pgSQL's
// RAISE), whose message can say anything.
func raisedByCode(code, severity string) bool {
	if strings.HasPrefix(code, "P0") {
		return true
	}
	switch severity {
	case "NOTICE", "INFO", "LOG", "DEBUG", "WARNING":
		return code == "00000" || code == "01000"
	}
	return false
}

// scrubError scrubs an ErrorResponse or NoticeResponse in place and says
// whether it changed.
func (s *session) scrubError(e *pgproto3.ErrorResponse) bool {
	spec := s.masks.Load()
	if spec == nil {
		return false
	}
	columns := columnRules(spec)
	changed := false
	if columns && raisedByCode(e.Code, e.SeverityUnlocalized) {
		if e.Message != "" {
			e.Message = "[masked: a message raised by code while mask rules cover the session]"
			changed = true
		}
		e.Detail, e.Hint, e.Where, e.InternalQuery = "", "", "", ""
		return true
	}
	if columns && s.touchesMasked() {
		// The server's extra lines quote data in forms no pattern can
		// list (a parser's context, "line 1: <the value>"): for a
		// statement that reads masked columns they are withheld.
		for _, f := range []*string{&e.Detail, &e.Hint, &e.Where, &e.InternalQuery} {
			if *f != "" {
				*f, changed = "[withheld: the statement reads masked columns]", true
			}
		}
	}
	for _, f := range []*string{&e.Message, &e.Detail, &e.Hint, &e.Where, &e.InternalQuery} {
		if out, ok := s.scrubText(spec, *f, columns); ok {
			*f, changed = out, true
		}
	}
	return changed
}

// touchesMasked says the statement the server is answering reads a
// relation with masked columns.
func (s *session) touchesMasked() bool {
	it := s.q.first()
	if it == nil {
		return false
	}
	r := it.run()
	return r != nil && r.flow != nil && r.flow.Touches
}

// scrubNotice rewrites a NoticeResponse message when it must be.
func (s *session) scrubNotice(raw, body []byte) ([]byte, error) {
	if s.masks.Load() == nil {
		return raw, nil
	}
	var n pgproto3.NoticeResponse
	if err := n.Decode(body); err != nil {
		return nil, serverErr("%v", err)
	}
	e := pgproto3.ErrorResponse(n)
	if !s.scrubError(&e) {
		return raw, nil
	}
	out := pgproto3.NoticeResponse(e)
	return out.Encode(nil)
}

// scrubNotification rewrites a NotificationResponse whose payload or
// channel holds what a detector finds.
func (s *session) scrubNotification(raw, body []byte) ([]byte, error) {
	spec := s.masks.Load()
	if spec == nil {
		return raw, nil
	}
	var n pgproto3.NotificationResponse
	if err := n.Decode(body); err != nil {
		return nil, serverErr("%v", err)
	}
	p, ok1 := s.h.masker.Scrub(spec, n.Payload)
	c, ok2 := s.h.masker.Scrub(spec, n.Channel)
	if !ok1 && !ok2 {
		return raw, nil
	}
	n.Payload, n.Channel = p, c
	return n.Encode(nil)
}

// scrubParameterStatus rewrites a ParameterStatus whose value holds what a
// detector finds (a setting set from a value).
func (s *session) scrubParameterStatus(raw []byte, ps pgproto3.ParameterStatus) ([]byte, error) {
	spec := s.masks.Load()
	if spec == nil {
		return raw, nil
	}
	v, ok := s.h.masker.Scrub(spec, ps.Value)
	if !ok {
		return raw, nil
	}
	ps.Value = v
	return ps.Encode(nil)
}

// scrubRowDescription renames columns whose names hold what a detector
// finds.
func (s *session) scrubRowDescription(raw, body []byte) ([]byte, []byte, error) {
	spec := s.masks.Load()
	if spec == nil {
		return raw, body, nil
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, nil, serverErr("%v", err)
	}
	changed := false
	for i := range rd.Fields {
		if _, ok := s.h.masker.Scrub(spec, string(rd.Fields[i].Name)); ok {
			rd.Fields[i].Name = []byte("masked_column")
			changed = true
		}
	}
	if !changed {
		return raw, body, nil
	}
	out, err := rd.Encode(nil)
	if err != nil {
		return nil, nil, err
	}
	return out, out[5:], nil
}

// specDetectors are the detectors a spec's rules name.
func specDetectors(spec *model.MaskSpec) []string {
	var out []string
	for _, r := range spec.Rules {
		out = append(out, r.Detectors...)
	}
	return out
}

package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// sessions searches session.open entries across hosts.
func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.SessionFilter{HostID: q.Get(hubapi.QueryHost), User: q.Get(hubapi.QueryUser), Target: q.Get(hubapi.QueryTarget)}
	if !s.searchBounds(w, q, &f.Since, &f.Until, &f.Limit, store.MaxSessions) {
		return
	}
	found, err := s.opts.Store.Sessions(r.Context(), f)
	if err != nil {
		s.unavailable(w, "the session search", err)
		return
	}
	out := hubapi.Sessions{Sessions: make([]hubapi.Session, 0, len(found))}
	for _, x := range found {
		body, err := evidence.ParseBody(x.Body)
		if err != nil {
			// Accepted bodies parse: one that does not was changed in
			// the database. Say so rather than serve it.
			s.log.Error("hub: a stored body does not parse", "host", x.HostID, "seq", x.Seq, "err", err)
			s.refuse(w, http.StatusInternalServerError, hubapi.CodeUnavailable, fmt.Sprintf("entry %d of host %s in the hub's store does not parse: the store was altered", x.Seq, x.HostID), nil)
			return
		}
		out.Sessions = append(out.Sessions, hubapi.Session{
			HostID: x.HostID, HostName: x.HostName, Seq: x.Seq, TimeNS: x.TimeNS, Session: x.Session,
			Data: body.Data, Body: x.Body,
		})
	}
	s.reply(w, out)
}

// searchBounds reads the time bounds and the limit of a search; false
// when it refused the request.
func (s *Server) searchBounds(w http.ResponseWriter, q url.Values, since, until *time.Time, limit *int, max int) bool {
	for _, p := range []struct {
		key string
		t   *time.Time
	}{{hubapi.QuerySince, since}, {hubapi.QueryUntil, until}} {
		if v := q.Get(p.key); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.key, v), nil)
				return false
			}
			*p.t = t
		}
	}
	if v := q.Get(hubapi.QueryLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > max {
			s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("limit: want 1 to %d", max), nil)
			return false
		}
		*limit = n
	}
	return true
}

// actions are the decision actions a statement search filters on.
var actions = map[string]bool{string(model.Allow): true, string(model.Deny): true, string(model.Review): true, string(model.Mask): true}

// statements searches the operations of every host's sessions. The
// answer is built from each entry's body, not from the index, so that it
// says what the host's tree vouches for.
func (s *Server) statements(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.OperationFilter{
		HostID: q.Get(hubapi.QueryHost), Session: q.Get(hubapi.QuerySession), User: q.Get(hubapi.QueryUser),
		Target: q.Get(hubapi.QueryTarget), Kind: q.Get(hubapi.QueryKind), Table: q.Get(hubapi.QueryTable),
		Action: q.Get(hubapi.QueryAction), Text: q.Get(hubapi.QueryText),
	}
	if f.Action != "" && !actions[f.Action] {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("action: %q is not allow, deny, review or mask", f.Action), nil)
		return
	}
	if len(f.Text) > store.MaxSearchText {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("text: at most %d bytes", store.MaxSearchText), nil)
		return
	}
	if !s.searchBounds(w, q, &f.Since, &f.Until, &f.Limit, store.MaxOperations) {
		return
	}
	found, err := s.opts.Store.Operations(r.Context(), f)
	if err != nil {
		s.unavailable(w, "the statement search", err)
		return
	}
	out := hubapi.Statements{Statements: make([]hubapi.Statement, 0, len(found))}
	for _, x := range found {
		body, err := evidence.ParseBody(x.Body)
		var op store.Operation
		ok := err == nil
		if ok {
			op, ok = store.OperationOf(x.Seq, body)
		}
		if !ok {
			// The index holds only operations that parsed: a body that
			// no longer does was changed in the database.
			s.log.Error("hub: a stored operation's body does not parse", "host", x.HostID, "seq", x.Seq, "err", err)
			s.refuse(w, http.StatusInternalServerError, hubapi.CodeUnavailable, fmt.Sprintf("entry %d of host %s in the hub's store is not the operation indexed: the store was altered", x.Seq, x.HostID), nil)
			return
		}
		var d struct {
			Decision model.Decision `json:"decision"`
		}
		_ = json.Unmarshal(body.Data, &d) // OperationOf parsed it
		user := x.ProcUser
		if x.LoginUser != "" {
			user = x.LoginUser
		}
		out.Statements = append(out.Statements, hubapi.Statement{
			HostID: x.HostID, HostName: x.HostName, Seq: x.Seq, TimeNS: body.Time, Session: body.Session,
			Target: x.Target, User: user, Kind: body.Kind, Kinds: op.Kinds, Tables: op.Tables, Text: op.Text,
			Decision: d.Decision, Data: body.Data, Body: x.Body,
		})
	}
	s.reply(w, out)
}

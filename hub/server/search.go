package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
)

// sessions searches session.open entries across hosts.
func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.SessionFilter{HostID: q.Get(hubapi.QueryHost), User: q.Get(hubapi.QueryUser), Target: q.Get(hubapi.QueryTarget)}
	for _, p := range []struct {
		key string
		t   *time.Time
	}{{hubapi.QuerySince, &f.Since}, {hubapi.QueryUntil, &f.Until}} {
		if v := q.Get(p.key); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time", p.key, v), nil)
				return
			}
			*p.t = t
		}
	}
	if v := q.Get(hubapi.QueryLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxSessions {
			s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("limit: want 1 to %d", store.MaxSessions), nil)
			return
		}
		f.Limit = n
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

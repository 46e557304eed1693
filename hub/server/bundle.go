package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
)

// exportWriteWindow is how long a streamed fleet bundle may take to
// write one page to the client: the deadline moves on with each page,
// so a large bundle is not cut by the server's write timeout while a
// stalled client still is.
const exportWriteWindow = 2 * time.Minute

// fleetBundle streams the fleet bundle `interlock hub export` writes, for
// an operator's machine to verify (`interlock journal verify --hub`).
// What can be refused is refused before the first byte; a failure after
// it cuts the bundle short (it then does not parse) and names itself in
// the TrailerExportError trailer.
func (s *Server) fleetBundle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := ExportOptions{Hosts: q[hubapi.QueryHost]}
	if v := q.Get(hubapi.QueryFrom); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("%s: %q is not a seq", hubapi.QueryFrom, v), nil)
			return
		}
		opts.From = n
	}
	if v := q.Get(hubapi.QueryFleetSize); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, fmt.Sprintf("%s: %q is not a fleet log size", hubapi.QueryFleetSize, v), nil)
			return
		}
		opts.FleetSize = n
	}
	plan, err := PlanExport(r.Context(), s.opts.Store, s.opts.Keys, opts)
	switch {
	case errors.Is(err, ErrExportRange):
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, err.Error(), nil)
		return
	case errors.Is(err, store.ErrNoFleetCheckpoint), errors.Is(err, store.ErrNoSuchFleetCheckpoint), errors.Is(err, store.ErrNoHost),
		errors.Is(err, ErrNothingToExport):
		s.refuse(w, http.StatusNotFound, hubapi.CodeNotFound, err.Error(), nil)
		return
	case err != nil:
		s.unavailable(w, "the fleet bundle", err)
		return
	}
	rc := http.NewResponseController(w)
	extend := func() error {
		// Not every ResponseWriter can; the server's timeout then holds.
		if err := rc.SetWriteDeadline(time.Now().Add(exportWriteWindow)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	if err := extend(); err != nil {
		s.unavailable(w, "the fleet bundle", err)
		return
	}
	w.Header().Set("Trailer", hubapi.TrailerExportError)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="fleet.bundle"`)
	w.WriteHeader(http.StatusOK)
	err = plan.WriteTo(r.Context(), w, func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return extend()
	})
	if err != nil {
		s.log.Error("hub: the fleet bundle was cut short", "hosts", opts.Hosts, "err", err)
		// The hub's own words, on one line: a stored leaf of the wrong
		// size, say, is an altered row the operator should hear of.
		w.Header().Set(hubapi.TrailerExportError, strings.Join(strings.Fields(err.Error()), " "))
		return
	}
	s.log.Info("hub: fleet bundle served", "hosts", plan.Hosts(), "entries", plan.Entries())
}

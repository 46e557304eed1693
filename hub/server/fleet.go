package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
)

// fleetLoop signs a fleet checkpoint every FleetInterval when the fleet
// log grew, and publishes what is not published yet (after an outage of
// the bucket, the backlog too).
func (s *Server) fleetLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.FleetInterval)
	defer t.Stop()
	for {
		if _, err := s.SignFleet(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("hub: fleet checkpoint", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SignFleet signs a fleet checkpoint of the fleet log if it grew since
// the last one, keeps it, and publishes every checkpoint not yet
// published. It returns the newest fleet checkpoint's size.
func (s *Server) SignFleet(ctx context.Context) (int64, error) {
	s.fleetMu.Lock()
	defer s.fleetMu.Unlock()
	size, root, err := s.opts.Store.FleetHead(ctx)
	if err != nil {
		return 0, err
	}
	last, err := s.opts.Store.LatestFleetCheckpoint(ctx)
	if err != nil && !errors.Is(err, store.ErrNoFleetCheckpoint) {
		return 0, err
	}
	if size > last.Size {
		now := s.opts.Now()
		cp, err := evidence.SignFleetCheckpoint(s.opts.Keys.Fleet, s.opts.Keys.HubID, size, root, now)
		if err != nil {
			return 0, err
		}
		if err := s.opts.Store.AddFleetCheckpoint(ctx, size, cp.Note, now); err != nil {
			return 0, err
		}
		last.Size = size
	}
	if s.opts.Publisher == nil {
		return last.Size, nil
	}
	pending, err := s.opts.Store.Unpublished(ctx)
	if err != nil {
		return last.Size, err
	}
	for _, c := range pending {
		if err := s.opts.Publisher.Publish(ctx, c.Size, c.Note); err != nil {
			return last.Size, err
		}
		if err := s.opts.Store.MarkPublished(ctx, c.Size, s.opts.Now()); err != nil {
			return last.Size, err
		}
	}
	return last.Size, nil
}

// fleet serves the newest fleet checkpoint: public evidence, so no
// client certificate is asked.
func (s *Server) fleet(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Store.LatestFleetCheckpoint(r.Context())
	if errors.Is(err, store.ErrNoFleetCheckpoint) {
		s.refuse(w, http.StatusNotFound, hubapi.CodeNotFound, "the hub has signed no fleet checkpoint yet", nil)
		return
	}
	if err != nil {
		s.unavailable(w, "reading the fleet checkpoint", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(c.Note)
}

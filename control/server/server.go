// Package server serves interlock's local API (control/controlapi) for an
// engine: on the control socket, which only root may use, `interlock run`
// asks the daemon to intercept a new cgroup and the CLI reads status and
// live sessions; on the approvals socket, approvers list and decide held
// operations. Its client is package control.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/model"
)

type run struct {
	controlapi.RunInfo
	watch *engine.Watch
}

// Control serves the control socket for one engine.
type Control struct {
	Engine  *engine.Engine
	Version string
	Config  string
	Logger  *slog.Logger

	mu   sync.Mutex
	runs map[string]*run
	srv  *http.Server
	path string
	// stop ends collectRuns when the server closes.
	stop chan struct{}
}

type credKey struct{}

// Listen creates the socket (mode 0600, parent 0755) and starts serving.
func (s *Control) Listen(path string) error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.runs = map[string]*run{}
	// Two daemons must not share one journal and pins.
	ln, err := listenSocket(path, "control socket", "another interlock daemon is listening on", 0o177)
	if err != nil {
		return err
	}
	s.path = path
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/runs", s.startRun)
	mux.HandleFunc("POST /v1/runs/{id}/end", s.endRun)
	s.srv = serveSocket(ln, s.onlyRoot(mux), s.Logger, "control socket")
	s.stop = make(chan struct{})
	go s.collectRuns(s.stop)
	return nil
}

// listenSocket creates the unix socket path (its directory 0755) under
// umask. A socket left by a process that died is replaced; one that
// answers means another interlock serves it (busy says so). what names
// the socket in errors.
func listenSocket(path, what, busy string, umask int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%s directory: %w", what, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s %s", busy, path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(umask)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return ln, nil
}

// serveSocket serves h on ln in the background, with the peer's
// credentials in each request's context.
func serveSocket(ln net.Listener, h http.Handler, log *slog.Logger, what string) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnContext: peerCred}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" stopped", "err", err)
		}
	}()
	return srv
}

// shutdownSocket stops srv (nil if it never started) and removes its
// socket.
func shutdownSocket(srv *http.Server, path string) error {
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	_ = os.Remove(path)
	return err
}

// onlyRoot refuses peers that are not root, even if the socket's mode was
// loosened by hand: the API attaches programs to cgroups.
func (s *Control) onlyRoot(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
		if cred == nil || cred.Uid != 0 {
			http.Error(w, "the interlock control socket is for root only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Close stops serving and removes the socket.
func (s *Control) Close() error {
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	return shutdownSocket(s.srv, s.path)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Control) status(w http.ResponseWriter, r *http.Request) {
	e := s.Engine
	st := controlapi.Status{
		Version: s.Version, PID: os.Getpid(), Config: s.Config,
		Journal: e.JournalPath(),
		Targets: e.Redirector().TargetAddrs(),
		Cgroups: e.Redirector().Attached(),
		Live:    liveSessions(e.Live()),
		Total:   e.Total(),
	}
	for _, ln := range e.Redirector().Listeners() {
		st.Listener = append(st.Listener, ln.Addr().String())
	}
	hooks, _ := e.Redirector().Stats()
	// A struct conversion: a counter the redirector adds and the wire
	// lacks fails the build here.
	st.Hooks = controlapi.HookStats(hooks)
	s.mu.Lock()
	for _, rn := range s.runs {
		st.Runs = append(st.Runs, rn.RunInfo)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

// liveSessions converts the engine's open sessions to the wire's. An
// empty list stays [] (not null) in the JSON, as scripts have read it.
func liveSessions(live []engine.LiveSession) []controlapi.LiveSession {
	out := make([]controlapi.LiveSession, 0, len(live))
	for _, l := range live {
		out = append(out, controlapi.LiveSession{
			ID: l.ID, Target: l.Target, OrigDst: l.OrigDst, PID: l.PID, UID: l.UID,
			Exe: l.Exe, Cgroup: l.Cgroup, Started: l.Started,
		})
	}
	return out
}

func (s *Control) startRun(w http.ResponseWriter, r *http.Request) {
	var req controlapi.RunRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad run request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(req.Cgroup, "/") || filepath.Clean(req.Cgroup) != req.Cgroup || req.Cgroup == "/" {
		http.Error(w, "cgroup must be an absolute, clean path below the root", http.StatusBadRequest)
		return
	}
	red := s.Engine.Redirector()
	dir, err := cgroupfs.Dir(red.Cgroup2Root(), req.Cgroup)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, err := cgroupfs.ID(dir)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := red.Attach(req.Cgroup); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	runID, err := uuid.NewV7()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rn := &run{RunInfo: controlapi.RunInfo{ID: runID.String(), Cgroup: req.Cgroup, Started: time.Now(), Journal: s.Engine.JournalPath()}}
	argv, n := argvredact.Argv(req.Argv)
	rs := model.RunStart{Argv: argv, ArgvRedacted: max(req.ArgvRedacted, 0) + n, Cgroup: req.Cgroup, CgroupID: id, Engine: "daemon"}
	if cred != nil {
		rn.OwnerPID = cred.Pid
		rs.Invoker = s.Engine.IdentityOf(r.Context(), cred.Pid, cred.Uid, cred.Gid)
	}
	rn.watch = s.Engine.WatchCgroup(req.Cgroup, id)
	// Synced before the caller starts its command, as in embedded runs.
	if _, err := s.Engine.Journal().Append(r.Context(), model.Record{Kind: model.KindRunStart, Session: rn.ID, Data: rs}, model.Synced); err != nil {
		s.Engine.Unwatch(rn.watch)
		_ = red.Detach(req.Cgroup)
		http.Error(w, "journal the run: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	s.runs[rn.ID] = rn
	s.mu.Unlock()
	s.Logger.Info("intercepting cgroup for interlock run", "cgroup", req.Cgroup, "owner", rn.OwnerPID)
	writeJSON(w, http.StatusCreated, rn.RunInfo)
}

func (s *Control) endRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var res model.RunEnd
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&res); err != nil {
		http.Error(w, "bad run result: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	rn, ok := s.runs[id]
	delete(s.runs, id)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such run", http.StatusNotFound)
		return
	}
	tally := s.finish(rn, res)
	writeJSON(w, http.StatusOK, tally)
}

// finish ends a run: waits briefly for its sessions, journals run.end and
// stops intercepting its cgroup.
func (s *Control) finish(rn *run, res model.RunEnd) controlapi.Tally {
	tally, err := s.Engine.EndRun(context.Background(), rn.ID, rn.watch, res)
	if err != nil {
		s.Logger.Error("journal run end", "run", rn.ID, "err", err)
	}
	if err := s.Engine.Redirector().Detach(rn.Cgroup); err != nil {
		s.Logger.Warn("detach run cgroup", "cgroup", rn.Cgroup, "err", err)
	}
	return tally
}

// collectRuns ends the runs whose `interlock run` died without saying so,
// once their cgroup is empty. While processes remain, they stay
// intercepted: a killed run must not set them free. stop is passed in,
// not read from s: Close clears s.stop while this loop runs.
func (s *Control) collectRuns(stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var dead []*run
		for id, rn := range s.runs {
			if rn.OwnerPID > 0 && syscall.Kill(int(rn.OwnerPID), 0) == nil {
				continue
			}
			dir, err := cgroupfs.Dir(s.Engine.Redirector().Cgroup2Root(), rn.Cgroup)
			if err != nil {
				continue
			}
			if populated, err := cgroupfs.Populated(dir); err == nil && populated {
				continue
			}
			delete(s.runs, id)
			dead = append(dead, rn)
		}
		s.mu.Unlock()
		for _, rn := range dead {
			s.finish(rn, model.RunEnd{ExitCode: -1, Signal: "interlock run vanished"})
			_ = os.Remove(filepath.Join(s.Engine.Redirector().Cgroup2Root(), rn.Cgroup))
			s.Logger.Info("collected an abandoned run", "cgroup", rn.Cgroup)
		}
	}
}

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/approvals"
	"github.com/interlock/interlock/control/controlapi"
)

// Approvals serves the approvals socket. Unlike the control socket,
// any local user may connect: the kernel tells who they are (SO_PEERCRED)
// and the broker decides what they may see and do. Approvers are people
// with their own accounts, not root.
type Approvals struct {
	Broker *approvals.Broker
	Logger *slog.Logger
	srv    *http.Server
	path   string
}

// Listen creates the socket (mode 0666) and serves it.
func (s *Approvals) Listen(path string) error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	ln, err := listenSocket(path, "approvals socket", "another interlock serves approvals on", 0)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return fmt.Errorf("approvals socket %s: %w", path, err)
	}
	s.path = path
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/approvals", s.list)
	mux.HandleFunc("POST /v1/approvals/{id}", s.decide)
	s.srv = serveSocket(ln, mux, s.Logger, "approvals socket")
	return nil
}

// Close stops serving and removes the socket.
func (s *Approvals) Close() error { return shutdownSocket(s.srv, s.path) }

// peerCred stores the connecting process's credentials in the context.
func peerCred(ctx context.Context, c net.Conn) context.Context {
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			var cred *unix.Ucred
			raw.Control(func(fd uintptr) {
				cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
			})
			if cred != nil {
				return context.WithValue(ctx, credKey{}, cred)
			}
		}
	}
	return ctx
}

func approverOf(r *http.Request) (approvals.Approver, bool) {
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	if cred == nil {
		return approvals.Approver{}, false
	}
	return approvals.Approver{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, true
}

// list returns the pending requests. With ?wait=DURATION it first waits
// (up to 60s) for the pending set to change, so `approvals list --watch`
// hears of new requests at once.
func (s *Approvals) list(w http.ResponseWriter, r *http.Request) {
	who, ok := approverOf(r)
	if !ok {
		http.Error(w, "cannot tell who is asking (no peer credentials)", http.StatusForbidden)
		return
	}
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			http.Error(w, "bad wait duration", http.StatusBadRequest)
			return
		}
		select {
		case <-s.Broker.Changed():
		case <-time.After(min(d, 60*time.Second)):
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, http.StatusOK, pendingList(s.Broker.List(who)))
}

func (s *Approvals) decide(w http.ResponseWriter, r *http.Request) {
	who, ok := approverOf(r)
	if !ok {
		http.Error(w, "cannot tell who is asking (no peer credentials)", http.StatusForbidden)
		return
	}
	var req controlapi.DecideRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		http.Error(w, "bad decision: "+err.Error(), http.StatusBadRequest)
		return
	}
	dec, err := s.Broker.DecideExpect(r.Context(), r.PathValue("id"), who, req.Approve, req.Reason, req.Expect)
	switch {
	case errors.Is(err, approvals.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, approvals.ErrSelfApproval), errors.Is(err, approvals.ErrNotApprover), errors.Is(err, approvals.ErrAlreadyVoted):
		http.Error(w, err.Error(), http.StatusForbidden)
	case errors.Is(err, approvals.ErrTextMismatch):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, approvals.ErrExpectRequired):
		http.Error(w, err.Error(), http.StatusPreconditionRequired)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, dec)
	}
}

// pendingList converts the broker's list to the wire's; an empty list
// stays [] in the JSON.
func pendingList(ps []approvals.Pending) []controlapi.Pending {
	out := make([]controlapi.Pending, 0, len(ps))
	for _, p := range ps {
		out = append(out, controlapi.Pending(p))
	}
	return out
}

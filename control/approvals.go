package control

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/approvals"
)

// ApprovalsSocketName is the approvals socket's name beside the control
// socket; an embedded `interlock run` serves RunApprovalsSocket in the
// runs directory.
const ApprovalsSocketName = "approvals.sock"

// RunsDir is the directory beside the control socket where embedded
// `interlock run`s keep their state and approvals sockets.
func RunsDir(controlSocket string) string {
	return filepath.Join(filepath.Dir(controlSocket), "runs")
}

// RunApprovalsSocket is the approvals socket of the `interlock run` with
// process id pid.
func RunApprovalsSocket(runsDir string, pid int) string {
	return filepath.Join(runsDir, strconv.Itoa(pid)+runApprovalsSuffix)
}

const runApprovalsSuffix = ".approvals.sock"

// ApprovalsServer serves the approvals socket. Unlike the control socket,
// any local user may connect: the kernel tells who they are (SO_PEERCRED)
// and the broker decides what they may see and do. Approvers are people
// with their own accounts, not root.
type ApprovalsServer struct {
	Broker *approvals.Broker
	Logger *slog.Logger
	srv    *http.Server
	path   string
}

// DecideRequest is the body of POST /v1/approvals/{id}.
type DecideRequest struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason"`
	// Expect, when set, is the SHA-256 (hex) of the operation text the
	// approver read; the approval is refused (409) if the held text's
	// differs.
	Expect string `json:"expect,omitempty"`
}

// Listen creates the socket (mode 0666) and serves it.
func (s *ApprovalsServer) Listen(path string) error {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	ln, err := listenSocket(path, "approvals socket", "another interlock serves approvals on", 0)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return err
	}
	s.path = path
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/approvals", s.list)
	mux.HandleFunc("POST /v1/approvals/{id}", s.decide)
	s.srv = serveSocket(ln, mux, s.Logger, "approvals socket")
	return nil
}

// Close stops serving and removes the socket.
func (s *ApprovalsServer) Close() error { return shutdownSocket(s.srv, s.path) }

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
func (s *ApprovalsServer) list(w http.ResponseWriter, r *http.Request) {
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
	writeJSON(w, http.StatusOK, s.Broker.List(who))
}

func (s *ApprovalsServer) decide(w http.ResponseWriter, r *http.Request) {
	who, ok := approverOf(r)
	if !ok {
		http.Error(w, "cannot tell who is asking (no peer credentials)", http.StatusForbidden)
		return
	}
	var req DecideRequest
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

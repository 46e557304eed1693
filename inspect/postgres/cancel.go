package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// cancelEntry is one open session as a CancelRequest can name it.
type cancelEntry struct {
	session  string
	target   string
	uid      uint32
	upstream netip.AddrPort
	pid      uint32
	secret   []byte
}

// mint registers e and returns the secret key interlock gives the client
// (4 bytes under protocol 3.0, 32 under 3.2). The client's process id is
// the server's, so pg_backend_pid() and the key agree.
func (r *registry) mint(e *cancelEntry, long bool) ([]byte, string) {
	n := 4
	if long {
		n = 32
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		key := make([]byte, n)
		rand.Read(key)
		k := cancelKey(e.pid, key)
		if _, taken := r.m[k]; !taken {
			r.m[k] = e
			return key, k
		}
	}
}

func cancelKey(pid uint32, secret []byte) string {
	b := binary.BigEndian.AppendUint32(nil, pid)
	return string(append(b, secret...))
}

func (r *registry) drop(k string) {
	r.mu.Lock()
	delete(r.m, k)
	r.mu.Unlock()
}

func (r *registry) lookup(pid uint32, secret []byte) *cancelEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[cancelKey(pid, secret)]
}

// serveCancel handles a connection whose first packet is a CancelRequest.
// The key must be one interlock minted, for a session of the same target
// opened by the same user id; the cancel is journaled (synced: it changes
// what the server does) and then sent to the server with the server's
// own key. As PostgreSQL does, the client gets no answer either way.
func (h *Handler) serveCancel(ctx context.Context, conn net.Conn, s *inspect.Session, st *startup) inspect.Outcome {
	cr := st.cancel
	rec := model.PGCancel{Target: s.Origin.Target, Client: s.Origin.Client, Identity: s.Origin.Identity}
	e := h.cancels.lookup(cr.ProcessID, cr.SecretKey)
	switch {
	case e == nil:
		rec.Error = "the key matches no open session"
	case e.target != s.Origin.Target.Name:
		rec.Error = "the key belongs to a session of another target"
		e = nil
	case e.uid != s.Origin.Identity.Kernel.UID:
		rec.Error = fmt.Sprintf("the key belongs to a session of uid %d, the request comes from uid %d", e.uid, s.Origin.Identity.Kernel.UID)
		e = nil
	}
	if e != nil {
		rec.Session = e.session
		rec.Forwarded = true
	}
	if _, err := h.journal.Append(ctx, model.Record{Kind: model.KindPGCancel, Session: s.ID, Data: rec}, model.Synced); err != nil {
		h.log.Error("refusing cancel request: the journal cannot record it", "session", s.ID, "err", err)
		return inspect.Outcome{Refused: true, Err: fmt.Errorf("journal cancel: %w", err)}
	}
	if e == nil {
		h.log.Info("cancel request refused", "session", s.ID, "reason", rec.Error)
		return inspect.Outcome{Refused: true, Err: errors.New("cancel refused: " + rec.Error)}
	}
	if err := sendCancel(ctx, e); err != nil {
		h.log.Warn("cancel request could not reach the server", "session", e.session, "err", err)
		return inspect.Outcome{Err: fmt.Errorf("cancel: %w", err)}
	}
	h.log.Debug("cancel request forwarded", "session", e.session, "from", s.ID)
	return inspect.Outcome{}
}

// sendCancel sends the server's own CancelRequest on a new connection, as
// libpq does, and waits for the server to close it.
func sendCancel(ctx context.Context, e *cancelEntry) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", e.upstream.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := (&pgproto3.CancelRequest{ProcessID: e.pid, SecretKey: e.secret}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	return err
}

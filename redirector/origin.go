package redirector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/bpf"
	"github.com/interlock/interlock/model"
)

// ErrNoOrigin means an accepted connection was not redirected by the hooks
// (or its record was lost): it must be closed, not served.
var ErrNoOrigin = errors.New("no connect record for this connection")

// Origin finds the connect record for an accepted connection, consuming
// it, and resolves the identity of the process behind it.
func (r *Redirector) Origin(ctx context.Context, conn net.Conn) (model.Origin, error) {
	local, lok := conn.LocalAddr().(*net.TCPAddr)
	peer, pok := conn.RemoteAddr().(*net.TCPAddr)
	if !lok || !pok {
		return model.Origin{}, fmt.Errorf("%w: not a TCP connection", ErrNoOrigin)
	}
	lap, pap := local.AddrPort(), peer.AddrPort()
	// An accepted socket is in its listener's namespace: the host's, or
	// the container's whose listener took it.
	netns, err := connNetns(conn)
	if err != nil {
		return model.Origin{}, fmt.Errorf("%w (peer %s): %v", ErrNoOrigin, pap, err)
	}
	key := bpf.InterlockTupleKey{
		Saddr: pap.Addr().As16(), Sport: pap.Port(),
		Daddr: lap.Addr().As16(), Dport: lap.Port(),
		NetnsCookie: netns,
	}
	var rec bpf.InterlockOrigin
	m := r.progs.objs.Origins
	var users []uint64
	if netns == r.hostCfg.NetnsCookie {
		users = r.gatewayUsers(lap)
	}
	if users != nil {
		// A gateway listener: the record is under the client's
		// namespace (gateway.go).
		if netns, err = r.gatewayRecord(key, users, &rec); err != nil {
			return model.Origin{}, fmt.Errorf("%w (peer %s): %v", ErrNoOrigin, pap, err)
		}
	} else if err := m.LookupAndDelete(&key, &rec); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.EINVAL) {
			if err = m.Lookup(&key, &rec); err == nil {
				_ = m.Delete(&key)
			}
		}
		if err != nil {
			return model.Origin{}, fmt.Errorf("%w (peer %s): %v", ErrNoOrigin, pap, err)
		}
	}
	r.taken.Add(1)
	// The record must be of a connect the hook sent to this listener.
	if rec.RedirPort != lap.Port() || netip.AddrFrom16(rec.RedirAddr) != netip.AddrFrom16(lap.Addr().As16()) {
		return model.Origin{}, fmt.Errorf("%w (peer %s): the record was made for a connect to %s, not to this listener",
			ErrNoOrigin, pap, netip.AddrPortFrom(netip.AddrFrom16(rec.RedirAddr).Unmap(), rec.RedirPort))
	}

	if rec.NetnsCookie != netns {
		return model.Origin{}, fmt.Errorf("%w (peer %s): the record was made in network namespace %d, this connection is in %d",
			ErrNoOrigin, pap, rec.NetnsCookie, netns)
	}
	diag := r.diagFor(netns)
	if diag == nil {
		return model.Origin{}, fmt.Errorf("%w (peer %s): network namespace %d is no longer served", ErrNoOrigin, pap, netns)
	}

	r.mu.Lock()
	target, ok := r.targets[rec.TargetId]
	r.mu.Unlock()
	if !ok {
		return model.Origin{}, fmt.Errorf("%w: connect record names target id %d, which is no longer configured", ErrNoOrigin, rec.TargetId)
	}

	k := model.KernelFacts{
		PID: rec.Pid, TGID: rec.Tgid, UID: rec.Uid, GID: rec.Gid,
		Comm:     commString(rec.Comm),
		CgroupID: rec.CgroupId, NetnsCookie: rec.NetnsCookie, ConnectBootNS: rec.BootNs,
	}
	kernelProgram(&k, &rec)
	// sock_diag and /proc are independent: ask both at once.
	type diagResult struct {
		info sockInfo
		err  error
	}
	diagCh := make(chan diagResult, 1)
	go func() {
		info, err := diag.lookup(pap, lap)
		diagCh <- diagResult{info, err}
	}()
	id := r.opts.Identities.Resolve(ctx, k)
	d := <-diagCh
	if d.err == nil && d.info.Cookie != 0 && rec.Cookie != 0 && d.info.Cookie != rec.Cookie {
		// Another socket (a reconnect on the same 4-tuple) made the
		// record: it says nothing about this connection.
		return model.Origin{}, fmt.Errorf("%w (peer %s): the record belongs to socket cookie %d, this connection's is %d",
			ErrNoOrigin, pap, rec.Cookie, d.info.Cookie)
	}
	if d.err == nil {
		uid := d.info.UID
		id.Kernel.SocketUID = &uid
		id.Kernel.SocketInode = d.info.Inode
		if uid != rec.Uid {
			r.log.Warn("client socket owner differs from the connecting task",
				"socket_uid", uid, "connect_uid", rec.Uid, "pid", rec.Tgid)
		}
	} else if !errors.Is(d.err, errNoSocket) {
		r.log.Debug("sock_diag cross-check failed", "err", d.err)
	}

	var origAddr netip.Addr
	if rec.OrigFamily == unix.AF_INET {
		origAddr = netip.AddrFrom16(rec.OrigAddr).Unmap()
	} else {
		origAddr = netip.AddrFrom16(rec.OrigAddr)
	}
	return model.Origin{
		Target:   target.Target,
		OrigDst:  netip.AddrPortFrom(origAddr, rec.OrigPort),
		Client:   netip.AddrPortFrom(pap.Addr().Unmap(), pap.Port()),
		Identity: id,
		Accepted: time.Now(),
	}, nil
}

// Bits of the record's id_flags (bpf/interlock.c).
const (
	idExe   = 1
	idNS    = 2
	idCtime = 4
	idStart = 8
)

// kernelProgram copies the program facts the hook read, as far as it
// could read them.
func kernelProgram(k *model.KernelFacts, rec *bpf.InterlockOrigin) {
	if rec.IdFlags&idExe != 0 {
		// The kernel's dev_t is major<<20 | minor.
		k.ExeDev = unix.Mkdev(rec.ExeDev>>20, rec.ExeDev&(1<<20-1))
		k.ExeIno = rec.ExeIno
	}
	if rec.IdFlags&idCtime != 0 {
		k.ExeCtimeNS = rec.ExeCtimeSec*1e9 + int64(rec.ExeCtimeNsec)
	}
	if rec.IdFlags&idNS != 0 {
		k.UserNS, k.MntNS = rec.Userns, rec.Mntns
	}
	if rec.IdFlags&idStart != 0 {
		k.ProcStartNS = rec.StartBootNs
	}
}

// connNetns is the network namespace cookie of a connection's socket.
func connNetns(conn net.Conn) (uint64, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cookie uint64
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cookie, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, fmt.Errorf("SO_NETNS_COOKIE: %w", gerr)
	}
	return cookie, nil
}

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(b)
}

package ssh

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/model"
)

// SFTP (draft-ietf-secsh-filexfer-02, version 3, as OpenSSH speaks it; scp
// uses it too since OpenSSH 9) packet types interlock reads.
const (
	fxpInit     = 1
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpOpendir  = 11
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRename   = 18
	fxpSymlink  = 20
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpExtended = 200

	fxPermissionDenied = 3

	// maxSFTPPacket bounds one packet; OpenSSH's own limit is 256 KiB.
	maxSFTPPacket = 1 << 20
	// flushAt is how much relayed data is gathered into one write.
	flushAt = 256 << 10
)

var errBadPacket = errors.New("malformed sftp packet")

// sftpRelay relays an sftp subsystem packet by packet: each operation that
// names a path is judged by policy before it reaches the target, and
// journaled with its outcome; reads and writes are counted per handle and
// journaled when the handle closes.
type sftpRelay struct {
	s *sessionChan

	mu      sync.Mutex
	pending map[uint32]*sftpOp
	handles map[string]*sftpHandle

	// clientMu keeps writes to the client whole packets: the relay of the
	// target's packets and the refusals interlock answers itself.
	clientMu sync.Mutex
}

type sftpOp struct {
	op, path, target string
	flags            []string
	handle           string
	n                int64 // a write's length
	decision         model.Decision
}

type sftpHandle struct {
	path          string
	flags         []string
	dir           bool
	read, written int64
}

func newSFTPRelay(s *sessionChan) *sftpRelay {
	return &sftpRelay{s: s, pending: map[uint32]*sftpOp{}, handles: map[string]*sftpHandle{}}
}

// packets reads whole packets from src and relays them to dst in batches,
// written whenever no more input is buffered. fn sees each packet and
// says whether it is relayed; before it blocks (policy may take its time)
// it calls sendBefore, which writes what came before the packet (pkt is
// not to be read after that).
func packets(src io.Reader, dst io.Writer, count *atomic.Int64, fn func(pkt []byte, sendBefore func() error) (keep bool)) error {
	br := bufio.NewReaderSize(src, ioBufSize)
	batch := make([]byte, 0, flushAt+64<<10)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := dst.Write(batch)
		batch = batch[:0]
		return err
	}
	// start is where the current packet begins in batch.
	var start int
	var sendErr error
	sendBefore := func() error {
		if start > 0 && sendErr == nil {
			if _, sendErr = dst.Write(batch[:start]); sendErr == nil {
				batch = batch[:copy(batch, batch[start:])]
				start = 0
			}
		}
		return sendErr
	}
	var lenBuf [4]byte
	for {
		// Never wait for input while holding relayed data.
		if br.Buffered() < 4 {
			if err := flush(); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			flush()
			if err == io.EOF {
				return nil
			}
			return err
		}
		l := binary.BigEndian.Uint32(lenBuf[:])
		if l == 0 || l > maxSFTPPacket {
			flush()
			return fmt.Errorf("%w: length %d", errBadPacket, l)
		}
		if br.Buffered() < int(l) {
			if err := flush(); err != nil {
				return err
			}
		}
		start = len(batch)
		batch = append(batch, lenBuf[:]...)
		batch = append(batch, make([]byte, l)...)
		if _, err := io.ReadFull(br, batch[start+4:]); err != nil {
			batch = batch[:start]
			flush()
			return err
		}
		count.Add(int64(4 + l))
		keep := fn(batch[start:], sendBefore)
		if sendErr != nil {
			return sendErr
		}
		if !keep {
			batch = batch[:start]
		}
		if len(batch) >= flushAt {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// clientToTarget relays requests, judging those that name a path.
func (r *sftpRelay) clientToTarget() {
	s := r.s
	err := packets(s.cch, s.uch, &s.c.bytesUp, func(pkt []byte, sendBefore func() error) bool {
		op, id, ok := r.parseRequest(pkt[4:])
		if !ok || op == nil {
			return true
		}
		if op.judged() {
			// Policy may take its time (a review): what came before this
			// packet goes on first.
			if sendBefore() != nil {
				return false
			}
			op.decision = s.c.decide(model.Operation{Kind: "sftp", Text: op.text(), Path: op.path, Detail: op.op})
			if !permits(op.decision) {
				r.recordOp(op, "denied", model.Synced)
				r.refuse(id, op.decision)
				return false
			}
		}
		r.mu.Lock()
		r.pending[id] = op
		r.mu.Unlock()
		return true
	})
	if err != nil {
		r.protocolError("client", err)
	}
	s.uch.CloseWrite()
}

// targetToClient relays responses and completes the pending operations.
func (r *sftpRelay) targetToClient() {
	s := r.s
	w := writerFunc(func(p []byte) (int, error) {
		r.clientMu.Lock()
		defer r.clientMu.Unlock()
		return s.cch.Write(p)
	})
	err := packets(s.uch, w, &s.c.bytesDown, func(pkt []byte, _ func() error) bool {
		r.response(pkt[4:])
		return true
	})
	if err != nil {
		r.protocolError("target", err)
	}
	r.finish()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// judged says whether policy sees the operation before it runs.
func (op *sftpOp) judged() bool {
	switch op.op {
	case "read", "write", "close":
		return false
	}
	return true
}

func (op *sftpOp) text() string {
	t := op.op + " " + op.path
	if op.target != "" {
		t += " " + op.target
	}
	return t
}

// parseRequest reads what interlock tracks of a client packet; nil for
// packets it passes on without looking further.
func (r *sftpRelay) parseRequest(b []byte) (*sftpOp, uint32, bool) {
	p := &reader{b: b}
	typ := p.u8()
	if typ == fxpInit {
		return nil, 0, true
	}
	id := p.u32()
	var op *sftpOp
	switch typ {
	case fxpOpen:
		op = &sftpOp{op: "open", path: p.str()}
		op.flags = openFlags(p.u32())
	case fxpOpendir:
		op = &sftpOp{op: "opendir", path: p.str()}
	case fxpClose:
		op = &sftpOp{op: "close", handle: p.str()}
	case fxpRead:
		op = &sftpOp{op: "read", handle: p.str()}
	case fxpWrite:
		op = &sftpOp{op: "write", handle: p.str()}
		p.u64()
		op.n = int64(p.u32())
	case fxpRemove:
		op = &sftpOp{op: "remove", path: p.str()}
	case fxpRmdir:
		op = &sftpOp{op: "rmdir", path: p.str()}
	case fxpMkdir:
		op = &sftpOp{op: "mkdir", path: p.str()}
	case fxpSetstat:
		op = &sftpOp{op: "setstat", path: p.str()}
		op.flags = attrs(p)
	case fxpFsetstat:
		op = &sftpOp{op: "fsetstat", handle: p.str()}
		op.flags = attrs(p)
		op.path = r.handlePath(op.handle)
	case fxpRename:
		op = &sftpOp{op: "rename", path: p.str(), target: p.str()}
	case fxpSymlink:
		// OpenSSH sends the link target first, then the link's path.
		op = &sftpOp{op: "symlink", target: p.str(), path: p.str()}
	case fxpExtended:
		switch name := p.str(); name {
		case "posix-rename@openssh.com":
			op = &sftpOp{op: "rename", path: p.str(), target: p.str()}
		case "hardlink@openssh.com":
			op = &sftpOp{op: "link", target: p.str(), path: p.str()}
		case "lsetstat@openssh.com":
			op = &sftpOp{op: "setstat", path: p.str()}
			op.flags = attrs(p)
		case "copy-data":
			rh := p.str()
			p.u64()
			p.u64()
			wh := p.str()
			op = &sftpOp{op: "copy-data", path: r.handlePath(wh), target: r.handlePath(rh)}
		}
	}
	if p.bad {
		return nil, id, false
	}
	return op, id, true
}

func (r *sftpRelay) handlePath(h string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fh := r.handles[h]; fh != nil {
		return fh.path
	}
	return ""
}

// response completes the operation a target packet answers.
func (r *sftpRelay) response(b []byte) {
	p := &reader{b: b}
	typ := p.u8()
	if typ == fxpInit+1 { // VERSION has no request id
		return
	}
	id := p.u32()
	r.mu.Lock()
	op := r.pending[id]
	delete(r.pending, id)
	if op == nil || p.bad {
		r.mu.Unlock()
		return
	}
	fh := r.handles[op.handle]
	switch {
	case typ == fxpData && op.op == "read":
		if n := p.strLen(); fh != nil && !p.bad {
			fh.read += int64(n)
		}
		r.mu.Unlock()
	case typ == fxpStatus && op.op == "read":
		r.mu.Unlock()
	case typ == fxpStatus && op.op == "write":
		if fh != nil && p.u32() == 0 {
			fh.written += op.n
		}
		r.mu.Unlock()
	case typ == fxpStatus && op.op == "close":
		delete(r.handles, op.handle)
		r.mu.Unlock()
		if fh != nil && !fh.dir {
			r.recordClose(fh, statusName(p.u32()))
		}
	case typ == fxpHandle && (op.op == "open" || op.op == "opendir"):
		h := p.str()
		if !p.bad {
			r.handles[h] = &sftpHandle{path: op.path, flags: op.flags, dir: op.op == "opendir"}
		}
		r.mu.Unlock()
		r.recordOp(op, "ok", model.Committed)
	case typ == fxpStatus:
		r.mu.Unlock()
		r.recordOp(op, statusName(p.u32()), model.Committed)
	default:
		r.mu.Unlock()
		if op.judged() {
			r.recordOp(op, "unexpected reply", model.Committed)
		}
	}
}

func (r *sftpRelay) recordOp(op *sftpOp, status string, d model.Durability) {
	r.s.c.record(model.KindSSHSFTP, model.SSHSFTP{
		Channel: r.s.id, Op: op.op, Path: op.path, Target: op.target, Flags: op.flags,
		Status: status, Decision: op.decision, OffsetNS: r.s.c.offset(),
	}, d)
}

func (r *sftpRelay) recordClose(fh *sftpHandle, status string) {
	r.s.c.record(model.KindSSHSFTP, model.SSHSFTP{
		Channel: r.s.id, Op: "close", Path: fh.path, Flags: fh.flags,
		BytesRead: fh.read, BytesWritten: fh.written,
		Status: status, Decision: allowed, OffsetNS: r.s.c.offset(),
	}, model.Committed)
}

// refuse answers a denied request with SSH_FX_PERMISSION_DENIED.
func (r *sftpRelay) refuse(id uint32, d model.Decision) {
	msg := "interlock: refused by policy (" + d.Rule + "): " + d.Reason
	body := gossh.Marshal(struct {
		Type      byte
		ID, Code  uint32
		Msg, Lang string
	}{fxpStatus, id, fxPermissionDenied, msg, ""})
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	pkt = append(pkt, body...)
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	r.s.cch.Write(pkt)
}

// protocolError ends a channel whose packets interlock cannot follow:
// what it cannot read, it cannot record.
func (r *sftpRelay) protocolError(from string, err error) {
	if errors.Is(err, errBadPacket) {
		r.s.c.record(model.KindSSHSFTP, model.SSHSFTP{Channel: r.s.id, Op: "error", Status: "protocol error from the " + from + ": " + err.Error(),
			Decision: model.Decision{Action: model.Deny, Rule: "malformed", Reason: err.Error()}, OffsetNS: r.s.c.offset()}, model.Synced)
		r.s.cch.Close()
		r.s.uch.Close()
	}
}

// finish journals what was still open when the channel ended.
func (r *sftpRelay) finish() {
	r.mu.Lock()
	handles, pending := r.handles, r.pending
	r.handles, r.pending = map[string]*sftpHandle{}, map[uint32]*sftpOp{}
	r.mu.Unlock()
	for _, fh := range handles {
		if !fh.dir {
			r.recordClose(fh, "not closed")
		}
	}
	for _, op := range pending {
		if op.judged() {
			r.recordOp(op, "no reply", model.Committed)
		}
	}
}

func openFlags(f uint32) []string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{1, "read"}, {2, "write"}, {4, "append"}, {8, "create"}, {0x10, "truncate"}, {0x20, "exclusive"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// attrs describes the attributes a setstat sets.
func attrs(p *reader) []string {
	flags := p.u32()
	var out []string
	if flags&1 != 0 {
		out = append(out, "size="+strconv.FormatUint(p.u64(), 10))
	}
	if flags&2 != 0 {
		uid, gid := p.u32(), p.u32()
		out = append(out, "uid="+strconv.FormatUint(uint64(uid), 10), "gid="+strconv.FormatUint(uint64(gid), 10))
	}
	if flags&4 != 0 {
		out = append(out, fmt.Sprintf("mode=%04o", p.u32()&0o7777))
	}
	if flags&8 != 0 {
		atime, mtime := p.u32(), p.u32()
		out = append(out, "atime="+strconv.FormatUint(uint64(atime), 10), "mtime="+strconv.FormatUint(uint64(mtime), 10))
	}
	return out
}

func statusName(code uint32) string {
	names := []string{"ok", "eof", "no such file", "permission denied", "failure", "bad message", "no connection", "connection lost", "operation unsupported"}
	if int(code) < len(names) {
		return names[code]
	}
	return "status " + strconv.FormatUint(uint64(code), 10)
}

// reader parses SSH wire types; a short packet sets bad instead of
// panicking.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// strLen skips a string and returns its length.
func (r *reader) strLen() int {
	n := r.u32()
	if n > uint32(len(r.b)) {
		r.bad = true
		return 0
	}
	r.take(int(n))
	return int(n)
}

func (r *reader) str() string {
	n := r.u32()
	if n > uint32(len(r.b)) {
		r.bad = true
		return ""
	}
	return string(r.take(int(n)))
}

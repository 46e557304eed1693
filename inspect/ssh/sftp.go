package ssh

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	fxpFstat    = 8
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpOpendir  = 11
	fxpReaddir  = 12
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRealpath = 16
	fxpRename   = 18
	fxpSymlink  = 20
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpName     = 104
	fxpExtended = 200

	fxPermissionDenied = 3
	fxFailure          = 4
	fxOpUnsupported    = 8

	// ownID is the first request id interlock tries for a REALPATH of
	// its own (realpath takes the highest one not in flight); violation
	// gets it when no request of the client's is at fault.
	ownID = 0xffffffff
	// askTimeout bounds the wait for the answer.
	askTimeout = 30 * time.Second

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
//
// What the journal names must be what the target did, so the relay does
// not trust the client's bookkeeping: a request id still in flight may not
// be used again (the reply would complete the wrong record), a handle is
// known only from the target's HANDLE reply (and forgotten once its CLOSE
// is sent), and paths are judged as the target resolves them: relative to
// the login directory, with ".", ".." and repeated slashes removed.
//
// A file opened under a live mask rule is masked as it is read, or its
// open refused under transfers: refuse (sftp_mask.go).
type sftpRelay struct {
	s *sessionChan

	mu      sync.Mutex
	pending map[uint32]*sftpOp
	handles map[string]*sftpHandle

	// clientMu keeps writes to the client whole packets: the relay of the
	// target's packets and the refusals interlock answers itself.
	clientMu sync.Mutex

	// cwd is the target's answer to interlock's REALPATH ".": the
	// directory relative paths are resolved against. askedCwd is
	// clientToTarget's.
	askedCwd bool
	cwd      string
	// A REALPATH of interlock's own (realpath): askWait is set while its
	// answer is awaited; askID, askDone and askAns are written by
	// clientToTarget before askWait is set, askAns by targetToClient
	// before it closes askDone ("" if the target would not say).
	askWait atomic.Bool
	askID   uint32
	askDone chan struct{}
	askAns  string

	// ended is set once the relay ended the session.
	ended atomic.Bool
}

type sftpOp struct {
	op string // "" for a request interlock passes on without judging
	// path and target are as the target resolves them; raw and rawTarget
	// as the client sent them.
	path, target   string
	raw, rawTarget string
	// realPath and realTarget are where the target's REALPATH says they
	// lead (symbolic links followed), when that is elsewhere.
	realPath, realTarget string
	flags                []string
	// access and targetAccess are what the operation needs of path and
	// target, in open's terms (model.Operation.Open).
	access, targetAccess []string
	handle               string
	// fh is the handle the request names, resolved when it was sent;
	// nil (with unknownHandle set) when the target never issued it.
	fh            *sftpHandle
	unknownHandle bool
	// unsupported is set for an extension interlock does not know.
	unsupported bool
	n           int64 // a write's length
	off         int64 // a read's offset
	decision    model.Decision
	// mask is the masking an open's reads get (sftp_mask.go);
	// srcMasked says a copy-data reads a masked handle.
	mask      *outputMask
	srcMasked bool
}

type sftpHandle struct {
	path          string
	flags         []string
	dir           bool
	read, written int64
	// closing is set when the client's CLOSE goes to the target: a
	// request naming the handle after that is refused, since the target
	// may issue the same handle string to the next open.
	closing bool
	// mask masks what its reads return; nil when no live rule applies.
	mask *fileMask
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
		if r.ended.Load() {
			return false
		}
		if pkt[4] != fxpInit && !r.askedCwd {
			// The first request: learn the login directory before any
			// path is judged. INIT went ahead of it.
			r.askedCwd = true
			if sendBefore() != nil {
				return false
			}
			if !r.learnCwd() {
				return false
			}
		}
		op, id, ok := r.parseRequest(pkt[4:])
		if !ok {
			// Its reply would complete no record, and what it asks is
			// unknown.
			r.violation(id, "malformed-request", fmt.Sprintf("request type %d is too short for its fields", pkt[4]))
			return false
		}
		if op == nil {
			return true
		}
		r.mu.Lock()
		_, dup := r.pending[id]
		r.mu.Unlock()
		if dup {
			// Two requests with one id in flight: the target's replies
			// cannot be told apart, so neither could the journal's
			// records. No client does this by mistake.
			r.violation(id, "duplicate-request-id", fmt.Sprintf("request id %d is already in flight (%s)", id, op.describe()))
			return false
		}
		if op.unsupported {
			op.decision = model.Decision{Action: model.Deny, Rule: "unknown-extension",
				Reason: "interlock does not know what the extension " + strings.TrimPrefix(op.op, "extended ") + " does"}
			r.recordOp(op, "denied", model.Synced)
			r.refuse(id, fxOpUnsupported, op.decision)
			return false
		}
		if op.unknownHandle {
			op.decision = model.Decision{Action: model.Deny, Rule: "unknown-handle",
				Reason: "the request names a handle the target has not issued (or that is being closed)"}
			r.recordOp(op, "denied", model.Synced)
			r.refuse(id, fxFailure, op.decision)
			return false
		}
		if op.srcMasked {
			op.decision = model.Decision{Action: model.Deny, Rule: "masking",
				Reason: "copy-data would copy a masked file's contents where its masking does not follow"}
			r.recordOp(op, "denied", model.Synced)
			r.refuse(id, fxPermissionDenied, op.decision)
			return false
		}
		if op.judged() {
			// Policy may take its time (a review): what came before this
			// packet goes on first.
			if sendBefore() != nil {
				return false
			}
			if !r.realPaths(op) {
				return false
			}
			op.decision = r.judge(op)
			if permits(op.decision) && op.op == "open" && !r.planTransfer(op) {
				r.recordOp(op, "denied", model.Synced)
				r.refuse(id, fxPermissionDenied, op.decision)
				return false
			}
			if !permits(op.decision) {
				r.recordOp(op, "denied", model.Synced)
				r.refuse(id, fxPermissionDenied, op.decision)
				return false
			}
		}
		r.mu.Lock()
		r.pending[id] = op
		if op.op == "close" && op.fh != nil {
			op.fh.closing = true
		}
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
	err := packets(s.uch, w, &s.c.bytesDown, func(pkt []byte, sendBefore func() error) bool {
		return r.response(pkt, sendBefore)
	})
	if err != nil {
		r.protocolError("target", err)
	}
	r.finish()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Access sets in open's terms: what each operation needs of the paths it
// names.
var (
	accessRead      = []string{"read"}
	accessWrite     = []string{"write"}
	accessCreate    = []string{"create", "write"}
	accessReadWrite = []string{"read", "write"}
)

// handleOp fills in an operation on a handle: the handle as the target
// issued it, or unknownHandle.
func (r *sftpRelay) handleOp(op *sftpOp, name, h string) {
	op.op, op.handle = name, h
	r.mu.Lock()
	defer r.mu.Unlock()
	if fh := r.handles[h]; fh != nil && !fh.closing {
		op.fh, op.path = fh, fh.path
		return
	}
	op.unknownHandle = true
}

// response completes the operation a target packet answers (pkt, with
// its length); false keeps the packet from the client (the answer to
// interlock's own request, or a masked read's reply, which its fileMask
// sends). sendBefore sends what the relay holds before pkt.
func (r *sftpRelay) response(pkt []byte, sendBefore func() error) bool {
	p := &reader{b: pkt[4:]}
	typ := p.u8()
	if typ == fxpInit+1 { // VERSION has no request id
		return true
	}
	id := p.u32()
	if r.askWait.Load() && id == r.askID {
		r.askReply(p, typ)
		return false
	}
	r.mu.Lock()
	op := r.pending[id]
	delete(r.pending, id)
	if op == nil || p.bad {
		r.mu.Unlock()
		if op == nil && !p.bad && !r.ended.Load() {
			// A reply to nothing asked: the target and the relay
			// disagree about the session.
			r.violation(id, "unexpected-reply", fmt.Sprintf("the target answered request id %d, which is not in flight", id))
			return false
		}
		return true
	}
	fh := op.fh
	var fm *fileMask
	if fh != nil {
		fm = fh.mask
	}
	switch {
	case typ == fxpData && op.op == "read":
		n := p.strLen()
		if fh != nil && !p.bad {
			fh.read += int64(n)
		}
		r.mu.Unlock()
		if fm != nil {
			if p.bad {
				// A masked file's reply interlock cannot read is not
				// sent.
				r.violation(id, "malformed-reply", "a DATA reply to a masked file's read does not parse")
				return false
			}
			return fm.data(op, id, pkt, sendBefore)
		}
	case typ == fxpStatus && op.op == "read":
		r.mu.Unlock()
		if fm != nil {
			fm.status(op, p.u32(), sendBefore)
		}
	case typ == fxpStatus && op.op == "write":
		if fh != nil && p.u32() == 0 {
			fh.written += op.n
		}
		r.mu.Unlock()
	case typ == fxpStatus && op.op == "close":
		if r.handles[op.handle] == fh {
			delete(r.handles, op.handle)
		}
		r.mu.Unlock()
		if fm != nil {
			fm.closed(sendBefore)
		}
		if fh != nil && !fh.dir {
			r.recordClose(fh, statusName(p.u32()))
		}
	case typ == fxpHandle && (op.op == "open" || op.op == "opendir"):
		h := p.str()
		if p.bad {
			r.mu.Unlock()
			return true
		}
		if r.handles[h] != nil {
			// The target would not issue a handle that is still open.
			r.mu.Unlock()
			r.violation(id, "duplicate-handle", fmt.Sprintf("the target issued handle %q for %s while it was still open for another file", h, op.path))
			return false
		}
		fh := &sftpHandle{path: op.path, flags: op.flags, dir: op.op == "opendir"}
		if op.mask != nil {
			fh.mask = r.newFileMask(op.path, op.mask)
		}
		r.handles[h] = fh
		r.mu.Unlock()
		r.recordOp(op, "ok", model.Committed)
	case typ == fxpStatus:
		r.mu.Unlock()
		if op.op != "" {
			r.recordOp(op, statusName(p.u32()), model.Committed)
		}
	default:
		r.mu.Unlock()
		if op.judged() {
			r.recordOp(op, "unexpected reply", model.Committed)
		}
	}
	return true
}

func (r *sftpRelay) recordOp(op *sftpOp, status string, d model.Durability) {
	rec := model.SSHSFTP{
		Channel: r.s.id, Op: op.op, Path: op.path, Target: op.target, Flags: op.flags,
		Status: status, Decision: op.decision, OffsetNS: r.s.c.offset(),
	}
	// The names as sent, when the target resolves them otherwise.
	if op.raw != "" && op.raw != op.path {
		rec.SentPath = op.raw
	}
	if op.rawTarget != "" && op.rawTarget != op.target {
		rec.SentTarget = op.rawTarget
	}
	rec.RealPath, rec.RealTarget = op.realPath, op.realTarget
	r.s.c.record(model.KindSSHSFTP, rec, d)
}

func (r *sftpRelay) recordClose(fh *sftpHandle, status string) {
	r.s.c.record(model.KindSSHSFTP, model.SSHSFTP{
		Channel: r.s.id, Op: "close", Path: fh.path, Flags: fh.flags,
		BytesRead: fh.read, BytesWritten: fh.written,
		Status: status, Decision: allowed, OffsetNS: r.s.c.offset(),
	}, model.Committed)
}

// refuse answers a request interlock refused with a status.
func (r *sftpRelay) refuse(id, code uint32, d model.Decision) {
	msg := "interlock: refused by policy (" + d.Rule + "): " + d.Reason
	if d.Rule == "unknown-handle" || d.Rule == "unknown-extension" {
		msg = "interlock: " + d.Reason
	}
	r.sendStatus(id, code, msg)
}

func (r *sftpRelay) sendStatus(id, code uint32, msg string) {
	body := gossh.Marshal(struct {
		Type      byte
		ID, Code  uint32
		Msg, Lang string
	}{fxpStatus, id, code, msg, ""})
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	pkt = append(pkt, body...)
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	r.s.cch.Write(pkt)
}

// violation ends the session over a request or reply whose effect the
// journal could not name truthfully. The record is synced first; the
// client gets a failure status for the request, then the connection (both
// legs) closes: the request never reaches the target.
func (r *sftpRelay) violation(id uint32, rule, reason string) {
	if !r.ended.CompareAndSwap(false, true) {
		return
	}
	c := r.s.c
	c.log.Warn("sftp: ending the session", "rule", rule, "reason", reason)
	c.record(model.KindSSHSFTP, model.SSHSFTP{Channel: r.s.id, Op: "error", Status: "session ended: " + reason,
		Decision: model.Decision{Action: model.Deny, Rule: rule, Reason: reason}, OffsetNS: c.offset()}, model.Synced)
	if id != ownID {
		r.sendStatus(id, fxFailure, "interlock: "+reason+"; the session ends")
	}
	r.s.uch.Close()
	r.s.cch.Close()
	if c.up != nil && c.up.conn != nil {
		c.up.conn.Close()
	}
	if c.client != nil {
		c.client.Close()
	}
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
	if r.askWait.CompareAndSwap(true, false) {
		close(r.askDone)
	}
	r.mu.Lock()
	handles, pending := r.handles, r.pending
	r.handles, r.pending = map[string]*sftpHandle{}, map[uint32]*sftpOp{}
	r.mu.Unlock()
	for _, fh := range handles {
		if fh.mask != nil {
			fh.mask.mu.Lock()
			fh.mask.end(nil)
			fh.mask.mu.Unlock()
		}
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

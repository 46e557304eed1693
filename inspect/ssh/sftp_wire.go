package ssh

// The sftp wire format: a client's request parsed into the operation it
// asks for, and the reading of packet fields.

import (
	"encoding/binary"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// parseRequest reads what interlock tracks of a client packet: every
// request with an id gets an op (op "" for those it does not judge); nil
// for INIT. ok is false for a packet too short for its fields.
func (r *sftpRelay) parseRequest(b []byte) (*sftpOp, uint32, bool) {
	p := &reader{b: b}
	typ := p.u8()
	if typ == fxpInit {
		return nil, 0, true
	}
	id := p.u32()
	op := &sftpOp{}
	pathOp := func(name string, access []string) {
		op.op, op.raw, op.access = name, p.str(), access
		op.path = r.resolve(op.raw)
	}
	// twoPaths reads a rename's or a link's two paths, in wire order.
	twoPaths := func(name string, firstIsTarget bool, access, targetAccess []string) {
		a, b := p.str(), p.str()
		if firstIsTarget {
			a, b = b, a
		}
		op.op, op.raw, op.rawTarget, op.access, op.targetAccess = name, a, b, access, targetAccess
		op.path, op.target = r.resolve(a), r.resolve(b)
	}
	switch typ {
	case fxpOpen:
		pathOp("open", nil)
		op.flags = openFlags(p.u32())
		op.access = op.flags
	case fxpOpendir:
		pathOp("opendir", accessRead)
	case fxpClose:
		r.handleOp(op, "close", p.str())
	case fxpRead:
		r.handleOp(op, "read", p.str())
		op.off = int64(p.u64())
		op.n = int64(p.u32())
	case fxpWrite:
		r.handleOp(op, "write", p.str())
		p.u64()
		op.n = int64(p.u32())
	case fxpFstat, fxpReaddir:
		r.handleOp(op, "", p.str())
	case fxpRemove:
		pathOp("remove", accessWrite)
	case fxpRmdir:
		pathOp("rmdir", accessWrite)
	case fxpMkdir:
		pathOp("mkdir", accessCreate)
	case fxpSetstat:
		pathOp("setstat", nil)
		op.flags = attrs(p)
		op.access = setstatAccess(op.flags)
	case fxpFsetstat:
		r.handleOp(op, "fsetstat", p.str())
		op.flags = attrs(p)
		op.access = setstatAccess(op.flags)
	case fxpRename:
		twoPaths("rename", false, accessWrite, accessCreate)
	case fxpSymlink:
		// OpenSSH sends the link target first, then the link's path.
		// The link gives whoever follows it the target: the target is
		// judged as read and written, resolved as the kernel will,
		// from the link's directory.
		twoPaths("symlink", true, accessCreate, accessReadWrite)
		if !strings.HasPrefix(op.rawTarget, "/") {
			op.target = resolveIn(path.Dir(op.path), op.rawTarget)
		}
	case fxpExtended:
		switch name := p.str(); name {
		case "posix-rename@openssh.com":
			twoPaths("rename", false, accessWrite, accessCreate)
		case "hardlink@openssh.com":
			// The old path first; the new name shares its inode.
			twoPaths("link", true, accessCreate, accessReadWrite)
		case "lsetstat@openssh.com":
			pathOp("setstat", nil)
			op.flags = attrs(p)
			op.access = setstatAccess(op.flags)
		case "fsync@openssh.com", "fstatvfs@openssh.com":
			r.handleOp(op, "", p.str())
		case "copy-data":
			rh := p.str()
			p.u64()
			p.u64()
			wh := p.str()
			r.handleOp(op, "copy-data", wh)
			rop := &sftpOp{}
			r.handleOp(rop, "", rh)
			op.unknownHandle = op.unknownHandle || rop.unknownHandle
			op.srcMasked = rop.fh != nil && rop.fh.mask != nil
			if op.fh != nil && rop.fh != nil {
				op.path, op.target = op.fh.path, rop.fh.path
			}
			op.access, op.targetAccess = accessWrite, accessRead
		case "statvfs@openssh.com", "limits@openssh.com", "expand-path@openssh.com",
			"home-directory", "users-groups-by-id@openssh.com":
			// They only read: passed on.
		default:
			// An extension interlock does not know may change anything
			// (unknown never opens anything): it is refused as
			// unsupported, and clients fall back as they do with an
			// older server.
			op.op, op.unsupported = "extended "+name, true
		}
	}
	if p.bad {
		return nil, id, false
	}
	return op, id, true
}

// setstatAccess is what a setstat needs: write, and truncate when it
// sets the size (as open's truncate does).
func setstatAccess(attrs []string) []string {
	if slices.ContainsFunc(attrs, func(a string) bool { return strings.HasPrefix(a, "size=") }) {
		return []string{"write", "truncate"}
	}
	return accessWrite
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

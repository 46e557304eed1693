package ssh

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// pathPolicy denies sftp operations on paths under one of deny, and those
// needing write access under one of readOnly.
type pathPolicy struct {
	testPolicy
	deny, readOnly []string
}

func (p pathPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	if op.Kind == "sftp" {
		for _, d := range p.deny {
			if strings.HasPrefix(op.Path, d+"/") {
				return model.Decision{Action: model.Deny, Rule: "private", Reason: "private"}
			}
		}
		for _, d := range p.readOnly {
			if strings.HasPrefix(op.Path, d+"/") && slices.ContainsFunc(op.Open, func(a string) bool { return a != "read" }) {
				return model.Decision{Action: model.Deny, Rule: "read-only", Reason: "read-only"}
			}
		}
	}
	return p.testPolicy.Decide(ctx, o, op)
}

// rawSFTP is an sftp channel spoken packet by packet.
type rawSFTP struct {
	t *testing.T
	c *gossh.Client
	w io.WriteCloser
	r io.Reader
}

// startRawSFTP opens the sftp subsystem (or, with exec set, runs it as a
// command) and exchanges INIT and VERSION.
func startRawSFTP(t *testing.T, r *rig, exec string) *rawSFTP {
	t.Helper()
	_, err := os.Stat(sftpServer)
	testenv.Require(t, "sftp-server (openssh-server installs it)", err)
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := sess.StdinPipe()
	rd, _ := sess.StdoutPipe()
	if exec != "" {
		err = sess.Start(exec)
	} else {
		err = sess.RequestSubsystem("sftp")
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSFTP{t: t, c: c, w: w, r: rd}
	s.send(sftpPacket(fxpInit, 0, uint32(3)))
	if typ, _, _ := readSFTP(t, rd); typ != 2 {
		t.Fatalf("no VERSION: %d", typ)
	}
	return s
}

// send writes packets in one write.
func (s *rawSFTP) send(pkts ...[]byte) {
	s.t.Helper()
	if _, err := s.w.Write(slices.Concat(pkts...)); err != nil {
		s.t.Fatal(err)
	}
}

// reply reads one packet, or ok false at the channel's end.
func (s *rawSFTP) reply() (typ byte, id uint32, rest []byte, ok bool) {
	var l [4]byte
	if _, err := io.ReadFull(s.r, l[:]); err != nil {
		return 0, 0, nil, false
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(s.r, b); err != nil {
		return 0, 0, nil, false
	}
	return b[0], binary.BigEndian.Uint32(b[1:5]), b[5:], true
}

// status reads the reply to id, which must be a status, and returns its
// code.
func (s *rawSFTP) status(id uint32) uint32 {
	s.t.Helper()
	typ, got, rest, ok := s.reply()
	if !ok || typ != fxpStatus || got != id {
		s.t.Fatalf("want a status for %d, got type %d id %d ok %v (%q)", id, typ, got, ok, rest)
	}
	return binary.BigEndian.Uint32(rest)
}

func (s *rawSFTP) handle(id uint32) string {
	s.t.Helper()
	typ, got, rest, ok := s.reply()
	if !ok || typ != fxpHandle || got != id {
		s.t.Fatalf("want a handle for %d, got type %d id %d ok %v (%q)", id, typ, got, ok, rest)
	}
	return string(rest[4:])
}

// end closes the channel's input and the connection, once the target
// answered everything.
func (s *rawSFTP) end(r *rig) {
	s.w.Close()
	s.drain()
	s.c.Close()
	r.waitClosed(1)
}

// drain reads until the channel ends, returning the replies' ids.
func (s *rawSFTP) drain() []uint32 {
	var ids []uint32
	for {
		_, id, _, ok := s.reply()
		if !ok {
			return ids
		}
		ids = append(ids, id)
	}
}

func sftpOps(r *rig) []model.SSHSFTP { return testkit.Data[model.SSHSFTP](r.j, model.KindSSHSFTP) }

func findOp(ops []model.SSHSFTP, pred func(model.SSHSFTP) bool) *model.SSHSFTP {
	for i := range ops {
		if pred(ops[i]) {
			return &ops[i]
		}
	}
	return nil
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestSFTPDuplicateRequestID: two REMOVEs with one id in one write end
// the session; the second file is never removed, and whatever the target
// removed is named by the journal.
func TestSFTPDuplicateRequestID(t *testing.T) {
	r := newRig(t, rigOpts{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("a"), 0o600)
	os.WriteFile(b, []byte("b"), 0o600)
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpRemove, 7, a), sftpPacket(fxpRemove, 7, b))
	s.drain()
	r.waitClosed(1)
	if !exists(b) {
		t.Errorf("the second remove with the same id reached the target")
	}
	ops := sftpOps(r)
	if !exists(a) && findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "remove" && o.Path == a }) == nil {
		t.Errorf("a was removed and the journal does not say so: %+v", ops)
	}
	if findOp(ops, func(o model.SSHSFTP) bool { return o.Path == b }) != nil {
		t.Errorf("the journal names b: %+v", ops)
	}
	if findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "error" && o.Decision.Rule == "duplicate-request-id" }) == nil {
		t.Errorf("no duplicate-request-id record: %+v", ops)
	}
}

// TestSFTPDuplicateOpenID: two OPENs with one id end the session before
// a write through a guessed handle can land in either file.
func TestSFTPDuplicateOpenID(t *testing.T) {
	r := newRig(t, rigOpts{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	const wcTrunc = uint32(2 | 8 | 0x10)
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpOpen, 3, a, wcTrunc, uint32(0)), sftpPacket(fxpOpen, 3, b, wcTrunc, uint32(0)),
		sftpPacket(fxpWrite, 4, "\x00\x00\x00\x00", uint64(0), []byte("payload")))
	s.drain()
	r.waitClosed(1)
	if exists(b) {
		t.Errorf("the second open with the same id reached the target")
	}
	if st, err := os.Stat(a); err == nil && st.Size() != 0 {
		t.Errorf("a has %d bytes", st.Size())
	}
	ops := sftpOps(r)
	if findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "error" && o.Decision.Rule == "duplicate-request-id" }) == nil {
		t.Errorf("no duplicate-request-id record: %+v", ops)
	}
}

// TestSFTPHandleBeforeReply: a write and an fsetstat naming a handle the
// target has not issued yet are refused, and the session goes on.
func TestSFTPHandleBeforeReply(t *testing.T) {
	r := newRig(t, rigOpts{})
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	s := startRawSFTP(t, r, "")
	guess := "\x00\x00\x00\x00"
	s.send(sftpPacket(fxpOpen, 1, a, uint32(2|8|0x10), uint32(0)),
		sftpPacket(fxpWrite, 2, guess, uint64(0), []byte("guessed")),
		sftpPacket(fxpFsetstat, 3, guess, uint32(4), uint32(0o777)))
	got := map[uint32]uint32{}
	var h string
	for range 3 {
		typ, id, rest, ok := s.reply()
		if !ok {
			t.Fatal("the session ended")
		}
		if typ == fxpHandle {
			h = string(rest[4:])
			continue
		}
		got[id] = binary.BigEndian.Uint32(rest)
	}
	if h == "" || got[2] != fxFailure || got[3] != fxFailure {
		t.Errorf("handle %q, statuses %v: want the write and fsetstat refused", h, got)
	}
	s.send(sftpPacket(fxpWrite, 4, h, uint64(0), []byte("real")))
	if c := s.status(4); c != 0 {
		t.Errorf("write through the real handle: status %d", c)
	}
	s.send(sftpPacket(fxpClose, 5, h))
	s.status(5)
	s.end(r)
	if b, _ := os.ReadFile(a); string(b) != "real" {
		t.Errorf("a holds %q", b)
	}
	if st, _ := os.Stat(a); st.Mode().Perm() == 0o777 {
		t.Errorf("the guessed fsetstat reached the target")
	}
	ops := sftpOps(r)
	for _, op := range []string{"write", "fsetstat"} {
		if findOp(ops, func(o model.SSHSFTP) bool { return o.Op == op && o.Decision.Rule == "unknown-handle" }) == nil {
			t.Errorf("no refused %s: %+v", op, ops)
		}
	}
	if c := findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "close" }); c == nil || c.Path != a || c.BytesWritten != 4 {
		t.Errorf("close record %+v", c)
	}
}

// TestSFTPPathsResolved: ".", "..", "//" and relative paths are judged as
// the target resolves them; rename, symlink and hard link on both paths;
// a read-only directory refuses what needs write access.
func TestSFTPPathsResolved(t *testing.T) {
	dir := t.TempDir()
	private, pub, ro := filepath.Join(dir, "private"), filepath.Join(dir, "pub"), filepath.Join(dir, "ro")
	for _, d := range []string{private, pub, ro} {
		os.Mkdir(d, 0o755)
	}
	for _, f := range []string{private + "/f", pub + "/x", ro + "/r"} {
		os.WriteFile(f, []byte("data"), 0o644)
	}
	r := newRig(t, rigOpts{policy: pathPolicy{deny: []string{private}, readOnly: []string{ro}}})
	cwd, _ := os.Getwd()
	rel, err := filepath.Rel(cwd, private+"/f")
	if err != nil {
		t.Fatal(err)
	}
	s := startRawSFTP(t, r, "")
	for i, p := range []string{pub + "/./../private/f", dir + "//private/f", rel} {
		s.send(sftpPacket(fxpRemove, uint32(10+i), p))
		if c := s.status(uint32(10 + i)); c != fxPermissionDenied {
			t.Errorf("remove %s: status %d", p, c)
		}
	}
	// Rename from an allowed to a denied path; links to a denied path.
	s.send(sftpPacket(fxpRename, 20, pub+"/x", private+"/x"))
	s.send(sftpPacket(fxpSymlink, 21, private+"/f", pub+"/l1"))
	s.send(sftpPacket(fxpSymlink, 22, "../private/f", pub+"/l2"))
	s.send(sftpPacket(fxpExtended, 23, "hardlink@openssh.com", private+"/f", pub+"/l3"))
	for id := uint32(20); id <= 23; id++ {
		if c := s.status(id); c != fxPermissionDenied {
			t.Errorf("request %d: status %d", id, c)
		}
	}
	// A read-only directory: read yes, write, create, remove no.
	s.send(sftpPacket(fxpOpen, 30, ro+"/r", uint32(1), uint32(0)))
	h := s.handle(30)
	s.send(sftpPacket(fxpClose, 31, h))
	s.status(31)
	s.send(sftpPacket(fxpOpen, 32, ro+"/r", uint32(2), uint32(0)))
	s.send(sftpPacket(fxpOpen, 33, ro+"/new", uint32(8|2), uint32(0)))
	s.send(sftpPacket(fxpRemove, 34, ro+"/r"))
	s.send(sftpPacket(fxpExtended, 35, "posix-rename@openssh.com", pub+"/x", ro+"/x"))
	for id := uint32(32); id <= 35; id++ {
		if c := s.status(id); c != fxPermissionDenied {
			t.Errorf("request %d: status %d", id, c)
		}
	}
	s.end(r)
	for _, f := range []string{private + "/f", pub + "/x", ro + "/r"} {
		if b, _ := os.ReadFile(f); string(b) != "data" {
			t.Errorf("%s: %q", f, b)
		}
	}
	for _, f := range []string{private + "/x", pub + "/l1", pub + "/l2", pub + "/l3", ro + "/new", ro + "/x"} {
		if exists(f) {
			t.Errorf("%s exists", f)
		}
	}
	ops := sftpOps(r)
	removes := 0
	for _, o := range ops {
		if o.Op == "remove" && o.Path == private+"/f" && o.Status == "denied" {
			removes++
			if o.SentPath == "" {
				t.Errorf("remove record lacks the path as sent: %+v", o)
			}
		}
	}
	if removes != 3 {
		t.Errorf("%d denied removes of %s journaled, want 3: %+v", removes, private+"/f", ops)
	}
	if o := findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "symlink" && o.SentTarget == "../private/f" }); o == nil || o.Target != private+"/f" || o.Decision.Rule != "private" {
		t.Errorf("relative symlink record %+v", o)
	}
}

// TestSFTPServerByExec: an sftp-server started with exec is relayed as
// sftp: its operations are judged and journaled.
func TestSFTPServerByExec(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o755)
	os.WriteFile(private+"/f", []byte("data"), 0o644)
	r := newRig(t, rigOpts{policy: pathPolicy{deny: []string{private}}})
	s := startRawSFTP(t, r, sftpServer+" -l INFO")
	s.send(sftpPacket(fxpRemove, 1, private+"/f"))
	if c := s.status(1); c != fxPermissionDenied {
		t.Errorf("remove: status %d", c)
	}
	s.send(sftpPacket(fxpMkdir, 2, dir+"/made", uint32(0)))
	if c := s.status(2); c != 0 {
		t.Errorf("mkdir: status %d", c)
	}
	s.end(r)
	if !exists(private + "/f") {
		t.Errorf("the remove reached the target")
	}
	ops := sftpOps(r)
	if findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "mkdir" && o.Path == dir+"/made" && o.Status == "ok" }) == nil ||
		findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "remove" && o.Status == "denied" }) == nil {
		t.Errorf("sftp records %+v", ops)
	}
}

// TestSFTPClosingHandle: after a CLOSE is sent, its handle is not the
// closed file's any more: OpenSSH issues the same string to the next open.
// A write naming it before the replies came is refused, so it can neither
// land in the next file unrecorded nor be counted against the closed one.
func TestSFTPClosingHandle(t *testing.T) {
	r := newRig(t, rigOpts{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpOpen, 1, a, uint32(2|8|0x10), uint32(0)))
	h := s.handle(1)
	s.send(sftpPacket(fxpClose, 2, h),
		sftpPacket(fxpOpen, 3, b, uint32(2|8|0x10), uint32(0)),
		sftpPacket(fxpWrite, 4, h, uint64(0), []byte("stale")))
	got := map[uint32]byte{}
	var hb string
	for range 3 {
		typ, id, rest, ok := s.reply()
		if !ok {
			t.Fatal("the session ended")
		}
		got[id] = typ
		if typ == fxpStatus && id == 4 && binary.BigEndian.Uint32(rest) != fxFailure {
			t.Errorf("the stale write got status %d", binary.BigEndian.Uint32(rest))
		}
		if typ == fxpHandle {
			hb = string(rest[4:])
		}
	}
	if got[2] != fxpStatus || got[3] != fxpHandle || got[4] != fxpStatus {
		t.Fatalf("replies %v", got)
	}
	if hb != h {
		t.Logf("the target issued %q for b, not the closed %q: the case is weaker", hb, h)
	}
	s.send(sftpPacket(fxpClose, 5, hb))
	s.status(5)
	s.end(r)
	for _, f := range []string{a, b} {
		if st, err := os.Stat(f); err != nil || st.Size() != 0 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	ops := sftpOps(r)
	if findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "write" && o.Decision.Rule == "unknown-handle" }) == nil {
		t.Errorf("no refused write: %+v", ops)
	}
	for _, o := range ops {
		if o.Op == "close" && o.BytesWritten != 0 {
			t.Errorf("a close counts written bytes: %+v", o)
		}
	}
}

// TestSFTPSetstatSizeNeedsTruncate: a setstat that sets the size is judged
// as a truncate.
func TestSFTPSetstatSizeNeedsTruncate(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("data"), 0o644)
	var seen []model.Operation
	r := newRig(t, rigOpts{policy: recordingPolicy{ops: &seen}})
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpSetstat, 1, f, uint32(1), uint64(0)))
	s.status(1)
	s.end(r)
	i := slices.IndexFunc(seen, func(o model.Operation) bool { return o.Detail == "setstat" })
	if i < 0 || !slices.Equal(seen[i].Open, []string{"write", "truncate"}) || seen[i].Path != f {
		t.Errorf("operations judged: %+v", seen)
	}
}

// recordingPolicy allows everything and keeps the sftp operations it was
// asked about (one session at a time).
type recordingPolicy struct {
	testPolicy
	ops *[]model.Operation
}

func (p recordingPolicy) Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision {
	if op.Kind == "sftp" {
		*p.ops = append(*p.ops, op)
	}
	return p.testPolicy.Decide(ctx, o, op)
}

// TestSFTPUnknownExtension: an extension interlock does not know is
// refused as unsupported (it might change anything); the read-only ones
// OpenSSH's client uses pass.
func TestSFTPUnknownExtension(t *testing.T) {
	r := newRig(t, rigOpts{})
	dir := t.TempDir()
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpExtended, 1, "evil@example.com", dir))
	if c := s.status(1); c != fxOpUnsupported {
		t.Errorf("unknown extension: status %d", c)
	}
	s.send(sftpPacket(fxpExtended, 2, "statvfs@openssh.com", dir))
	if typ, id, rest, ok := s.reply(); !ok || id != 2 || typ != 201 { // SSH_FXP_EXTENDED_REPLY
		t.Errorf("statvfs: type %d id %d %q", typ, id, rest)
	}
	s.end(r)
	if findOp(sftpOps(r), func(o model.SSHSFTP) bool {
		return o.Op == "extended evil@example.com" && o.Decision.Rule == "unknown-extension"
	}) == nil {
		t.Errorf("no refused extension: %+v", sftpOps(r))
	}
}

// TestSFTPSymlinkedDirectory: a symbolic link already on the target that
// leads into a denied directory does not carry operations past the rule:
// each path is also judged where the target's REALPATH says it leads.
func TestSFTPSymlinkedDirectory(t *testing.T) {
	dir := t.TempDir()
	private, pub := filepath.Join(dir, "private"), filepath.Join(dir, "pub")
	os.Mkdir(private, 0o755)
	os.Mkdir(pub, 0o755)
	os.WriteFile(private+"/f", []byte("data"), 0o644)
	os.Symlink(private, pub+"/link")
	os.Symlink(private+"/f", pub+"/flink")
	r := newRig(t, rigOpts{policy: pathPolicy{deny: []string{private}}})
	s := startRawSFTP(t, r, "")
	s.send(sftpPacket(fxpRemove, 1, pub+"/link/f"))
	s.send(sftpPacket(fxpOpen, 2, pub+"/link/f", uint32(1), uint32(0)))
	s.send(sftpPacket(fxpOpen, 3, pub+"/link/new", uint32(2|8), uint32(0)))
	s.send(sftpPacket(fxpOpen, 4, pub+"/flink", uint32(1), uint32(0)))
	for id := uint32(1); id <= 4; id++ {
		if c := s.status(id); c != fxPermissionDenied {
			t.Errorf("request %d: status %d", id, c)
		}
	}
	// An ordinary file beside them is not affected.
	os.WriteFile(pub+"/ok", []byte("x"), 0o644)
	s.send(sftpPacket(fxpOpen, 5, pub+"/ok", uint32(1), uint32(0)))
	h := s.handle(5)
	s.send(sftpPacket(fxpClose, 6, h))
	s.status(6)
	s.end(r)
	if b, _ := os.ReadFile(private + "/f"); string(b) != "data" {
		t.Errorf("private/f: %q", b)
	}
	if exists(private + "/new") {
		t.Errorf("private/new was created through the link")
	}
	ops := sftpOps(r)
	if o := findOp(ops, func(o model.SSHSFTP) bool { return o.Op == "remove" }); o == nil || o.Path != pub+"/link/f" || o.RealPath != private+"/f" || o.Decision.Rule != "private" {
		t.Errorf("remove record %+v", o)
	}
}

package e2e

// Issue 13, classes 2 and 5 against a real sshd and sftp-server: a raw
// sftp client (x/crypto/ssh, packets written by hand) runs under
// `interlock run` and tries to make the journal name the wrong file or to
// get past the sftp path rules. Each case checks the target's file system
// and what the journal recorded.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/internal/testkit/sshtest"
	"github.com/interlock/interlock/model"
)

// sftpRawHelper is argv[1] of the test binary run as the raw client: it
// must act before TestMain (which builds binaries and runs tests).
const sftpRawHelper = "interlock-e2e-sftp-raw-client"

func init() {
	if len(os.Args) > 1 && os.Args[1] == sftpRawHelper {
		if err := sftpRawClient(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sftp raw client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// rawDial is the raw clients' login: as root at addr, the host key
// (authorized_keys form) pinned, with the private key at keyPath.
func rawDial(addr, hostKey, keyPath string) (*gossh.Client, error) {
	hk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(pem)
	if err != nil {
		return nil, err
	}
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{User: "root", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(hk), Timeout: 20 * time.Second})
}

// sftpRawClient ADDR HOSTKEY CLIENTKEY MODE logs in as root at ADDR (host
// key HOSTKEY, in authorized_keys form), opens the sftp subsystem (MODE
// "subsystem") or runs MODE as a command, and relays its stdin to the
// channel and the channel to its stdout, each read in one write: the
// test writes sftp packets and reads the replies.
func sftpRawClient(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want ADDR HOSTKEY CLIENTKEY MODE, got %q", args)
	}
	c, err := rawDial(args[0], args[1], args[2])
	if err != nil {
		return err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	w, _ := sess.StdinPipe()
	r, _ := sess.StdoutPipe()
	sess.Stderr = os.Stderr
	if args[3] == "subsystem" {
		err = sess.RequestSubsystem("sftp")
	} else {
		err = sess.Start(args[3])
	}
	if err != nil {
		return err
	}
	go func() {
		io.CopyBuffer(w, os.Stdin, make([]byte, 1<<20))
		w.Close()
	}()
	io.Copy(os.Stdout, r)
	return nil
}

// rawClient is the raw client under `interlock run`.
type rawClient struct {
	t   *testing.T
	cmd *exec.Cmd
	w   io.WriteCloser
	r   io.Reader
	err bytes.Buffer
}

func startRawClient(t *testing.T, e *env, st *sshTarget, mode string) *rawClient {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t}
	rc.cmd = exec.Command(interlockBin, "run", "-c", e.cfgPath, "--", self, sftpRawHelper, st.addr(), st.hostKey.Authorized(), st.clientKey.Path, mode)
	rc.cmd.Stderr = &rc.err
	rc.w, _ = rc.cmd.StdinPipe()
	out, _ := rc.cmd.StdoutPipe()
	rc.r = out
	if err := rc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRun(rc.cmd) })
	rc.send(sftpPkt(1, 0, uint32(3)))
	if typ, _, _, ok := rc.reply(); !ok || typ != 2 {
		t.Fatalf("no sftp VERSION (type %d, ok %v); stderr: %s", typ, ok, rc.err.String())
	}
	return rc
}

// send writes packets in one write.
func (rc *rawClient) send(pkts ...[]byte) {
	rc.t.Helper()
	if _, err := rc.w.Write(slices.Concat(pkts...)); err != nil {
		rc.t.Fatal(err)
	}
}

// reply reads one packet: type, id, the rest; ok false at the end.
func (rc *rawClient) reply() (byte, uint32, []byte, bool) {
	var l [4]byte
	if _, err := io.ReadFull(rc.r, l[:]); err != nil {
		return 0, 0, nil, false
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(rc.r, b); err != nil || len(b) < 5 {
		return 0, 0, nil, false
	}
	return b[0], binary.BigEndian.Uint32(b[1:5]), b[5:], true
}

// status reads a status reply to id and returns its code.
func (rc *rawClient) status(id uint32) uint32 {
	rc.t.Helper()
	typ, got, rest, ok := rc.reply()
	if !ok || typ != 101 || got != id || len(rest) < 4 {
		rc.t.Fatalf("want a status for request %d, got type %d id %d ok %v %q; stderr: %s", id, typ, got, ok, rest, rc.err.String())
	}
	return binary.BigEndian.Uint32(rest)
}

// end closes the client's input, reads what is left and waits for the
// run to finish.
func (rc *rawClient) end() {
	rc.w.Close()
	for {
		if _, _, _, ok := rc.reply(); !ok {
			break
		}
	}
	rc.cmd.Wait()
}

// sftpPkt frames one sftp packet (type 1, INIT, has no id).
func sftpPkt(typ byte, id uint32, fields ...any) []byte {
	body := []byte{typ}
	if typ != 1 {
		body = binary.BigEndian.AppendUint32(body, id)
	}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// sftp packet types and status codes the cases use.
const (
	sshFxpOpen     = 3
	sshFxpClose    = 4
	sshFxpWrite    = 6
	sshFxpFsetstat = 10
	sshFxpRemove   = 13
	sshFxpRename   = 18
	sshFxpSymlink  = 20
	sshFxpHandle   = 102
	sshFxpExtended = 200

	sshFxOK               = 0
	sshFxPermissionDenied = 3
	sshFxFailure          = 4

	openRead, openWrite, openCreat, openTrunc = 1, 2, 8, 0x10
)

func fileIs(t *testing.T, p, want string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != want {
		t.Errorf("%s: %q %v, want %q", p, b, err, want)
	}
}

func absent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("%s exists", p)
	}
}

// TestSSHSFTPAdversarial: the raw-client cases of issue 13 (classes 2 and
// 5) and `sftp -s /usr/lib/openssh/sftp-server`, against one sshd with a
// policy that denies <dir>/private and makes <dir>/ro read-only.
func TestSSHSFTPAdversarial(t *testing.T) {
	st := startSSHD(t)
	dir := filepath.Join(st.dir, "srv")
	private, pub, ro := filepath.Join(dir, "private"), filepath.Join(dir, "pub"), filepath.Join(dir, "ro")
	for _, d := range []string{private, pub, ro} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := newSSHEnv(t, st, sshTargetOpts{global: fmt.Sprintf(`policy:
  default: allow
  rules:
    - name: private
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q, %q]}}
      action: deny
      reason: private files
    - name: ro
      match: {protocols: [ssh], operation: {kinds: [sftp], paths: [%q], open: [write, create, truncate, append]}}
      action: deny
      reason: read-only directory
`, private, private+"/*", ro+"/*")})
	// seen is how many sftp records earlier cases left.
	seen := 0
	newOps := func() []model.SSHSFTP {
		all := entriesOf[model.SSHSFTP](e, model.KindSSHSFTP)
		ops := all[seen:]
		seen = len(all)
		return ops
	}
	has := func(ops []model.SSHSFTP, pred func(model.SSHSFTP) bool) bool { return slices.ContainsFunc(ops, pred) }
	dump := func(ops []model.SSHSFTP) string {
		var b strings.Builder
		for _, o := range ops {
			fmt.Fprintf(&b, "%s %s -> %s (sent %s -> %s, real %s -> %s) %s %s/%s\n", o.Op, o.Path, o.Target, o.SentPath, o.SentTarget, o.RealPath, o.RealTarget, o.Status, o.Decision.Action, o.Decision.Rule)
		}
		return b.String()
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("duplicate-remove-id", func(t *testing.T) {
		a, b := filepath.Join(pub, "dup-a"), filepath.Join(pub, "dup-b")
		write(a, "a")
		write(b, "b")
		rc := startRawClient(t, e, st, "subsystem")
		rc.send(sftpPkt(sshFxpRemove, 7, a), sftpPkt(sshFxpRemove, 7, b))
		rc.end()
		fileIs(t, b, "b")
		ops := newOps()
		if _, err := os.Stat(a); err != nil && !has(ops, func(o model.SSHSFTP) bool { return o.Op == "remove" && o.Path == a }) {
			t.Errorf("the target removed %s and the journal does not say so:\n%s", a, dump(ops))
		}
		if has(ops, func(o model.SSHSFTP) bool { return o.Path == b && o.Status == "ok" }) {
			t.Errorf("the journal says %s was removed:\n%s", b, dump(ops))
		}
		if !has(ops, func(o model.SSHSFTP) bool { return o.Op == "error" && o.Decision.Rule == "duplicate-request-id" }) {
			t.Errorf("no duplicate-request-id record:\n%s", dump(ops))
		}
	})

	t.Run("duplicate-open-id", func(t *testing.T) {
		a, b := filepath.Join(pub, "open-a"), filepath.Join(pub, "open-b")
		rc := startRawClient(t, e, st, "subsystem")
		// OpenSSH's first handle is the 4-byte index 0.
		rc.send(sftpPkt(sshFxpOpen, 3, a, uint32(openWrite|openCreat|openTrunc), uint32(0)),
			sftpPkt(sshFxpOpen, 3, b, uint32(openWrite|openCreat|openTrunc), uint32(0)),
			sftpPkt(sshFxpWrite, 4, "\x00\x00\x00\x00", uint64(0), []byte("payload")))
		rc.end()
		absent(t, b)
		if st, err := os.Stat(a); err == nil && st.Size() != 0 {
			t.Errorf("%s has %d bytes", a, st.Size())
		}
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool { return o.Op == "error" && o.Decision.Rule == "duplicate-request-id" }) {
			t.Errorf("no duplicate-request-id record:\n%s", dump(ops))
		}
		if has(ops, func(o model.SSHSFTP) bool { return o.Path == b }) {
			t.Errorf("the journal names %s:\n%s", b, dump(ops))
		}
	})

	t.Run("handle-before-reply", func(t *testing.T) {
		a := filepath.Join(pub, "early")
		rc := startRawClient(t, e, st, "subsystem")
		guess := "\x00\x00\x00\x00"
		rc.send(sftpPkt(sshFxpOpen, 1, a, uint32(openWrite|openCreat|openTrunc), uint32(0)),
			sftpPkt(sshFxpWrite, 2, guess, uint64(0), []byte("guessed")),
			sftpPkt(sshFxpFsetstat, 3, guess, uint32(4), uint32(0o777)))
		var h string
		codes := map[uint32]uint32{}
		for range 3 {
			typ, id, rest, ok := rc.reply()
			if !ok {
				t.Fatalf("the session ended; stderr: %s", rc.err.String())
			}
			if typ == sshFxpHandle {
				h = string(rest[4:])
			} else {
				codes[id] = binary.BigEndian.Uint32(rest)
			}
		}
		if h == "" || codes[2] != sshFxFailure || codes[3] != sshFxFailure {
			t.Errorf("handle %q, statuses %v; want the guessed write and fsetstat refused", h, codes)
		}
		rc.send(sftpPkt(sshFxpWrite, 4, h, uint64(0), []byte("real")))
		if c := rc.status(4); c != sshFxOK {
			t.Errorf("write through the issued handle: status %d", c)
		}
		rc.send(sftpPkt(sshFxpClose, 5, h))
		rc.status(5)
		rc.end()
		fileIs(t, a, "real")
		if fi, err := os.Stat(a); err == nil && fi.Mode().Perm() == 0o777 {
			t.Errorf("the guessed fsetstat reached the target")
		}
		ops := newOps()
		for _, op := range []string{"write", "fsetstat"} {
			if !has(ops, func(o model.SSHSFTP) bool { return o.Op == op && o.Decision.Rule == "unknown-handle" }) {
				t.Errorf("no refused %s:\n%s", op, dump(ops))
			}
		}
		if !has(ops, func(o model.SSHSFTP) bool { return o.Op == "close" && o.Path == a && o.BytesWritten == 4 }) {
			t.Errorf("the close does not count the 4 bytes written to %s:\n%s", a, dump(ops))
		}
	})

	t.Run("path-escapes", func(t *testing.T) {
		secret := filepath.Join(private, "secret")
		write(secret, "secret")
		home := "/root"
		if u, err := user.Lookup("root"); err == nil {
			home = u.HomeDir
		}
		rel, err := filepath.Rel(home, secret)
		if err != nil {
			t.Fatal(err)
		}
		rc := startRawClient(t, e, st, "subsystem")
		sent := []string{pub + "/./../private/secret", dir + "//private//secret", rel}
		for i, p := range sent {
			rc.send(sftpPkt(sshFxpRemove, uint32(10+i), p))
			if c := rc.status(uint32(10 + i)); c != sshFxPermissionDenied {
				t.Errorf("remove %s: status %d", p, c)
			}
		}
		rc.end()
		fileIs(t, secret, "secret")
		ops := newOps()
		for _, p := range sent {
			if !has(ops, func(o model.SSHSFTP) bool {
				return o.Op == "remove" && o.Path == secret && o.SentPath == p && o.Decision.Rule == "private"
			}) {
				t.Errorf("no denied remove of %s sent as %s:\n%s", secret, p, dump(ops))
			}
		}
	})

	t.Run("symlink-and-rename", func(t *testing.T) {
		secret := filepath.Join(private, "secret2")
		moved := filepath.Join(pub, "moved")
		write(secret, "secret")
		write(moved, "pub")
		rc := startRawClient(t, e, st, "subsystem")
		// OpenSSH's SYMLINK sends the link's target first.
		rc.send(sftpPkt(sshFxpSymlink, 1, secret, pub+"/link1"))
		rc.send(sftpPkt(sshFxpSymlink, 2, "../private/secret2", pub+"/link2"))
		rc.send(sftpPkt(sshFxpExtended, 3, "hardlink@openssh.com", secret, pub+"/link3"))
		rc.send(sftpPkt(sshFxpRename, 4, moved, private+"/moved"))
		rc.send(sftpPkt(sshFxpExtended, 5, "posix-rename@openssh.com", moved, private+"/moved"))
		for id := uint32(1); id <= 5; id++ {
			if c := rc.status(id); c != sshFxPermissionDenied {
				t.Errorf("request %d: status %d", id, c)
			}
		}
		rc.end()
		for _, p := range []string{pub + "/link1", pub + "/link2", pub + "/link3", private + "/moved"} {
			absent(t, p)
		}
		fileIs(t, moved, "pub")
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "symlink" && o.Path == pub+"/link2" && o.Target == secret && o.SentTarget == "../private/secret2" && o.Decision.Rule == "private"
		}) {
			t.Errorf("no denied relative symlink to %s:\n%s", secret, dump(ops))
		}
		if !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "rename" && o.Path == moved && o.Target == private+"/moved" && o.Decision.Rule == "private"
		}) {
			t.Errorf("no denied rename into %s:\n%s", private, dump(ops))
		}
	})

	t.Run("symlinked-directory", func(t *testing.T) {
		// A link that is already on the target, leading into the
		// denied directory.
		secret := filepath.Join(private, "secret4")
		write(secret, "secret")
		if err := os.Symlink(private, pub+"/plink"); err != nil {
			t.Fatal(err)
		}
		rc := startRawClient(t, e, st, "subsystem")
		rc.send(sftpPkt(sshFxpRemove, 1, pub+"/plink/secret4"))
		rc.send(sftpPkt(sshFxpOpen, 2, pub+"/plink/new", uint32(openWrite|openCreat), uint32(0)))
		for id := uint32(1); id <= 2; id++ {
			if c := rc.status(id); c != sshFxPermissionDenied {
				t.Errorf("request %d: status %d", id, c)
			}
		}
		rc.end()
		fileIs(t, secret, "secret")
		absent(t, private+"/new")
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "remove" && o.Path == pub+"/plink/secret4" && o.RealPath == secret && o.Decision.Rule == "private"
		}) {
			t.Errorf("no denied remove through the link, with where it leads:\n%s", dump(ops))
		}
	})

	t.Run("read-only-directory", func(t *testing.T) {
		f := filepath.Join(ro, "f")
		write(f, "ro")
		rc := startRawClient(t, e, st, "subsystem")
		rc.send(sftpPkt(sshFxpOpen, 1, f, uint32(openRead), uint32(0)))
		typ, _, rest, ok := rc.reply()
		if !ok || typ != sshFxpHandle {
			t.Fatalf("open for reading: type %d %q", typ, rest)
		}
		rc.send(sftpPkt(sshFxpClose, 2, string(rest[4:])))
		rc.status(2)
		rc.send(sftpPkt(sshFxpOpen, 3, f, uint32(openWrite), uint32(0)))
		rc.send(sftpPkt(sshFxpOpen, 4, ro+"/new", uint32(openWrite|openCreat), uint32(0)))
		rc.send(sftpPkt(sshFxpOpen, 5, f, uint32(openRead|openTrunc), uint32(0)))
		rc.send(sftpPkt(sshFxpRemove, 6, f))
		for id := uint32(3); id <= 6; id++ {
			if c := rc.status(id); c != sshFxPermissionDenied {
				t.Errorf("request %d: status %d", id, c)
			}
		}
		rc.end()
		fileIs(t, f, "ro")
		absent(t, ro+"/new")
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool { return o.Op == "open" && o.Path == f && o.Status == "ok" }) ||
			!has(ops, func(o model.SSHSFTP) bool {
				return o.Op == "open" && o.Path == f && o.Decision.Rule == "ro" && slices.Contains(o.Flags, "write")
			}) {
			t.Errorf("want the read open allowed and the write open denied by ro:\n%s", dump(ops))
		}
	})

	t.Run("real-clients-relative-paths", func(t *testing.T) {
		// scp (sftp since OpenSSH 9) sends a relative remote path as it
		// is: sftp-server resolves it from the login directory, and so
		// must the rules and the journal.
		home := "/root"
		if u, err := user.Lookup("root"); err == nil {
			home = u.HomeDir
		}
		relPub, _ := filepath.Rel(home, pub)
		relPrivate, _ := filepath.Rel(home, private)
		local := t.TempDir()
		src := filepath.Join(local, "src.bin")
		sum := randomFile(t, src, 4<<20)
		scp := append(append([]string{"scp"}, st.clientOpts("")...), "-P", strconv.Itoa(st.port))
		out, stderr, code := e.runUnder(append(scp, src, "root@127.0.0.3:"+relPub+"/scp-rel.bin")...)
		if code != 0 {
			t.Fatalf("scp exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		if got := fileSHA256(t, pub+"/scp-rel.bin"); got != sum {
			t.Errorf("uploaded sha256 %s, want %s", got, sum)
		}
		_, stderr, code = e.runUnder(append(scp, src, "root@127.0.0.3:"+relPrivate+"/scp-rel.bin")...)
		if code == 0 {
			t.Errorf("scp into %s through a relative path succeeded", private)
		}
		absent(t, private+"/scp-rel.bin")
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "open" && o.Path == pub+"/scp-rel.bin" && o.SentPath == relPub+"/scp-rel.bin" && o.Status == "ok"
		}) || !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "close" && o.Path == pub+"/scp-rel.bin" && o.BytesWritten == 4<<20
		}) || !has(ops, func(o model.SSHSFTP) bool {
			return o.Path == private+"/scp-rel.bin" && o.Decision.Rule == "private"
		}) {
			t.Errorf("the journal does not name the absolute paths:\n%s\nscp stderr: %s", dump(ops), stderr)
		}
	})

	t.Run("sftp-server-by-exec", func(t *testing.T) {
		secret := filepath.Join(private, "secret3")
		write(secret, "secret")
		local := t.TempDir()
		batch := filepath.Join(local, "batch")
		// "-" lets the batch go on after the refused command.
		os.WriteFile(batch, []byte(fmt.Sprintf("-rm %s\nmkdir %s/made-by-exec\n", secret, pub)), 0o644)
		before := st.started("command")
		sftp := append(append([]string{"sftp"}, st.clientOpts("")...), "-P", strconv.Itoa(st.port), "-s", sshtest.SFTPServer, "-b", batch, "root@127.0.0.3")
		out, stderr, code := e.runUnder(sftp...)
		if code != 0 {
			t.Fatalf("sftp exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
		}
		fileIs(t, secret, "secret")
		if _, err := os.Stat(pub + "/made-by-exec"); err != nil {
			t.Errorf("mkdir through the exec'd sftp-server: %v", err)
		}
		if n := st.started("command") - before; n != 1 {
			t.Errorf("sshd started %d commands, want 1 (the sftp-server)", n)
		}
		ops := newOps()
		if !has(ops, func(o model.SSHSFTP) bool {
			return o.Op == "remove" && o.Path == secret && o.Decision.Rule == "private"
		}) ||
			!has(ops, func(o model.SSHSFTP) bool {
				return o.Op == "mkdir" && o.Path == pub+"/made-by-exec" && o.Status == "ok"
			}) {
			t.Errorf("the exec'd sftp-server's operations are not judged and journaled:\n%s", dump(ops))
		}
		execd := false
		for _, q := range entriesOf[model.SSHRequest](e, model.KindSSHRequest) {
			execd = execd || (q.Type == "exec" && q.Command == sshtest.SFTPServer)
		}
		if !execd {
			t.Errorf("no exec record of %s", sshtest.SFTPServer)
		}
	})
}

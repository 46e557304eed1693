package ssh

// Paths as the target resolves them, and the judgement of an sftp
// operation on them.

import (
	"encoding/binary"
	"path"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/model"
)

// learnCwd asks the target for its working directory (sftp-server's is
// the login directory, against which it resolves relative paths). False
// ends the session: paths the relay cannot resolve, it cannot judge.
func (r *sftpRelay) learnCwd() bool {
	cwd, alive := r.realpath(".")
	if !alive {
		return false
	}
	if cwd == "" {
		r.violation(ownID, "working-directory", "the target did not say what its working directory is, so relative paths cannot be judged")
		return false
	}
	r.cwd = cwd
	return true
}

// realPaths asks the target how it resolves the paths an operation names,
// symbolic links followed: a link among a path's parts (or at its end)
// may lead where the rules deny, so what it leads to is judged as well.
// It runs while the client's requests wait, so its request id is one no
// request in flight has and no new one can take. False: the session
// ended.
func (r *sftpRelay) realPaths(op *sftpOp) bool {
	for _, x := range []struct{ raw, p, real *string }{{&op.raw, &op.path, &op.realPath}, {&op.rawTarget, &op.target, &op.realTarget}} {
		if *x.raw == "" {
			continue
		}
		real, alive := r.realpath(*x.p)
		if !alive {
			return false
		}
		if real != "" && real != *x.p {
			*x.real = real
		}
	}
	return true
}

// realpath sends a REALPATH of interlock's own and waits for the answer,
// which targetToClient keeps from the client: the resolved path, or ""
// if the target would not say (a missing directory on the way). alive is
// false when the channel ended or the answer did not come in time.
func (r *sftpRelay) realpath(p string) (real string, alive bool) {
	r.mu.Lock()
	id := uint32(ownID)
	for r.pending[id] != nil {
		id--
	}
	r.mu.Unlock()
	body := gossh.Marshal(struct {
		Type byte
		ID   uint32
		Path string
	}{fxpRealpath, id, p})
	r.askID, r.askAns, r.askDone = id, "", make(chan struct{})
	r.askWait.Store(true)
	if _, err := r.s.uch.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
		return "", false
	}
	t := time.NewTimer(askTimeout)
	defer t.Stop()
	select {
	case <-r.askDone:
	case <-t.C:
		r.violation(ownID, "no-answer", "the target did not answer interlock's REALPATH within "+askTimeout.String())
		return "", false
	case <-r.s.c.ctx.Done():
		return "", false
	}
	return r.askAns, !r.ended.Load()
}

// askReply takes the answer to interlock's REALPATH.
func (r *sftpRelay) askReply(p *reader, typ byte) {
	if !r.askWait.CompareAndSwap(true, false) {
		return
	}
	if typ == fxpName && p.u32() >= 1 {
		if d := p.str(); !p.bad && strings.HasPrefix(d, "/") {
			r.askAns = path.Clean(d)
		}
	}
	close(r.askDone)
}

// resolve returns a path as the target resolves it, lexically: relative
// to the working directory, without ".", ".." or repeated slashes.
// Symbolic links are the target's to follow (realPaths).
func (r *sftpRelay) resolve(p string) string {
	return resolveIn(r.cwd, p)
}

func resolveIn(dir, p string) string {
	if !strings.HasPrefix(p, "/") {
		p = dir + "/" + p
	}
	return path.Clean(p)
}

// judged says whether policy sees the operation before it runs.
func (op *sftpOp) judged() bool {
	switch op.op {
	case "", "read", "write", "close":
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

// describe names the request for a record about it.
func (op *sftpOp) describe() string {
	if op.op == "" {
		return "a request interlock does not judge"
	}
	return op.text()
}

// judge asks policy about an operation: about each path it names (a
// rename's both names, a link's name and what it links to), each with
// the access it needs. The first refusal wins.
func (r *sftpRelay) judge(op *sftpOp) model.Decision {
	var first model.Decision
	var masks [4]*model.MaskSpec
	for i, x := range []struct {
		p      string
		access []string
	}{{op.path, op.access}, {op.realPath, op.access}, {op.target, op.targetAccess}, {op.realTarget, op.targetAccess}} {
		if x.p == "" && i > 0 {
			continue
		}
		d := r.s.decide(model.Operation{Kind: "sftp", Text: op.text(), Path: x.p, Detail: op.op, Open: x.access})
		if !permits(d) {
			return d
		}
		masks[i] = d.Mask
		if i == 0 {
			first = d
		}
	}
	// What a symbolic link leads to is masked as its rules say, and a
	// file does not leave its rules by a new name.
	if d, escape := maskEscape(op, masks); escape {
		return d
	}
	return withMask(first, mergeMasks(masks[:]...))
}

package identity

import (
	"bytes"
	"context"

	"github.com/interlock/interlock/model"
)

// The human behind a process is the audit login uid and session id the
// kernel keeps for it: pam_loginuid writes them when a person logs in
// (sshd, login, a display manager), every child inherits them, and only a
// process with CAP_AUDIT_CONTROL can write them again (with the kernel's
// loginuid_immutable, not even that once set). So whatever user sudo or
// su made the process since, they still name who logged in. Services
// started by the init system have none.

// loginUnset is the value of /proc/PID/loginuid (and sessionid) for a
// process that descends from no login.
const loginUnset = 1<<32 - 1

// procLogin is what readLogin found.
type procLogin struct {
	uid, session uint32
	// read: loginuid was read (the kernel has audit support and the
	// process was there); without it the human is unknown.
	read bool
}

// readLogin reads loginuid and sessionid through the process's directory
// fd, between the two reads of its start time like every other file.
func (r *Resolver) readLogin(ctx context.Context, s *procfsScratch, dirfd int, tgid uint32) procLogin {
	uid, err := readProcUint32(s, dirfd, "loginuid")
	if err != nil {
		r.debugMiss(ctx, "reading loginuid", tgid, err)
		return procLogin{}
	}
	l := procLogin{uid: uid, session: loginUnset, read: true}
	if sess, err := readProcUint32(s, dirfd, "sessionid"); err == nil {
		l.session = sess
	} else {
		r.debugMiss(ctx, "reading sessionid", tgid, err)
	}
	return l
}

// readProcUint32 reads a file holding one decimal number.
func readProcUint32(s *procfsScratch, dirfd int, name string) (uint32, error) {
	data, _, err := procfsReadAt(s, dirfd, name, 32)
	if err != nil {
		return 0, err
	}
	v, ok := procfsParseUint(bytes.TrimSpace(data))
	if !ok || v > loginUnset {
		return 0, errUnparsable(name)
	}
	return uint32(v), nil
}

type errUnparsable string

func (e errUnparsable) Error() string { return "identity: unparsable " + string(e) }

// human returns the login part of the Human; nil when it was not read.
func (l procLogin) human() *model.Human {
	if !l.read {
		return nil
	}
	h := &model.Human{Provenance: model.ProvProc}
	if l.uid == loginUnset {
		h.NoLogin = true
		return h
	}
	uid := l.uid
	h.LoginUID = &uid
	if l.session != loginUnset {
		sess := l.session
		h.SessionID = &sess
	}
	return h
}

// human fills id.Human: the login user's name, and the changes of user
// along the parent chain. id.Human was set by Resolve from the login read
// with the process (nil: unknown, and left so).
func (r *Resolver) human(ctx context.Context, id *model.Identity) {
	h, pf := id.Human, id.Proc
	if h == nil || pf == nil {
		return
	}
	if h.LoginUID != nil {
		h.LoginUser = r.names.User(*h.LoginUID)
	}
	self := model.ProcessRef{PID: id.Kernel.TGID, Exe: pf.Exe, UID: id.Kernel.UID}
	h.Chain, h.ChainIncomplete = userChain(pf.Parents, self, pf.EUID, !pf.IDsUnread, h.LoginUID)
	for i := range h.Chain {
		h.Chain[i].FromUser = r.names.User(h.Chain[i].FromUID)
		h.Chain[i].ToUser = r.names.User(h.Chain[i].ToUID)
	}
}

// userChain lists each change of real uid from parent to child along
// parents (nearest first, as ProcFacts has them) down to self, outermost
// first, with Via the parent's executable: the program that made the
// change (sudo, su, runuser). With a login uid, the changes before the
// outermost process running as that uid are the login itself (sshd
// becoming the user) and are left out. A setuid executable that the
// process itself runs shows as one more change, to its effective uid,
// with Via that executable.
//
// A uid that could not be read (UIDUnread, or !euidRead for selfEUID)
// reads as 0: no hop is made from it (it would be a change to root that
// never was), and incomplete says a change may be missing.
func userChain(parents []model.ProcessRef, self model.ProcessRef, selfEUID uint32, euidRead bool, login *uint32) (hops []model.UserHop, incomplete bool) {
	line := make([]model.ProcessRef, 0, len(parents)+1)
	for i := len(parents) - 1; i >= 0; i-- {
		line = append(line, parents[i])
	}
	line = append(line, self)
	from := 1
	if login != nil {
		for i := range line {
			if !line[i].UIDUnread && line[i].UID == *login {
				from = i + 1
				break
			}
		}
	}
	// An unread uid before the login's outermost process: the login
	// may have been elsewhere.
	for i := 0; i < from-1; i++ {
		incomplete = incomplete || line[i].UIDUnread
	}
	for i := from; i < len(line); i++ {
		p, c := line[i-1], line[i]
		if p.UIDUnread || c.UIDUnread {
			incomplete = true
			continue
		}
		if c.UID != p.UID {
			hops = append(hops, model.UserHop{PID: c.PID, Via: p.Exe, FromUID: p.UID, ToUID: c.UID})
		}
	}
	switch {
	case !euidRead:
		incomplete = true
	case selfEUID != self.UID:
		hops = append(hops, model.UserHop{PID: self.PID, Via: self.Exe, FromUID: self.UID, ToUID: selfEUID})
	}
	return hops, incomplete
}

package identity

import (
	"bytes"
	"context"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// A process that opens many connections (a connection pool, a load test)
// is resolved in full once; later connections within identProcTTL reuse
// the result after checking, on every hit, that it still describes the
// process: same pid and start time (not reused), same uid, gid and cgroup
// in the kernel facts, the same executable file (statx key of
// /proc/TGID/exe) and the same command line. An exec changes the exe or
// the command line, and then the process is read again. The ids from
// status and the parent are re-read every time, since setuid calls and
// reparenting do not show in the key.
const (
	identProcTTL       = 2 * time.Second
	identProcCacheSize = 4096
)

type identProcKey struct {
	tgid       uint32
	startTicks uint64
	uid, gid   uint32
	cgroupID   uint64
}

type identProc struct {
	pf      model.ProcFacts
	claims  map[string]string
	job     map[string]string
	exe     identFileKey
	cmdline []byte
	// login is kept with the rest: only a process with CAP_AUDIT_CONTROL
	// can change its login uid or session id (and, with the kernel's
	// loginuid_immutable, only once, from unset), so within identProcTTL
	// nothing short of root makes the cached one wrong.
	login   procLogin
	expires time.Time
}

// cachedProc returns the cached facts for key if they still hold.
func (r *Resolver) cachedProc(ctx context.Context, s *procfsScratch, d procDir, key identProcKey, ppid uint32, k model.KernelFacts) (*model.ProcFacts, map[string]string, bool) {
	c, ok := r.procs.get(key)
	if !ok || time.Now().After(c.expires) {
		return nil, nil, false
	}
	var st unix.Statx_t
	if identStatx(d.fd, "exe", &st) != nil || identFileKeyOf(&st) != c.exe {
		return nil, nil, false
	}
	// cmdline is read under the process's mmap lock: the same bounded
	// slots as a full resolution.
	if !identAcquire(ctx, r.mmSlots, identMMWait) {
		return nil, nil, false
	}
	data, _, err := d.read(s, "cmdline", procfsCmdlineMaxBytes)
	same := err == nil && bytes.Equal(data, c.cmdline)
	<-r.mmSlots
	if !same {
		return nil, nil, false
	}
	pf := c.pf
	// Ids that cannot be read now send the process to a full read,
	// which says so.
	data, _, err = d.read(s, "status", procfsMaxSmallFile)
	if err != nil {
		return nil, nil, false
	}
	sts := procfsParseStatus(data)
	if !sts.haveUID || !sts.haveGID {
		return nil, nil, false
	}
	pf.EUID, pf.EGID, pf.IDsUnread = sts.euid, sts.egid, false
	if r.testHookMidRead != nil {
		r.testHookMidRead(key.tgid)
	}
	// The start time again: the process was the same one all along.
	data, _, err = d.read(s, "stat", procfsMaxSmallFile)
	if err != nil {
		return nil, nil, false
	}
	st2, parsed := procfsParseStat(data)
	if !parsed || st2.startTicks != key.startTicks {
		return nil, nil, false
	}
	pf.PPID = ppid
	s.login = c.login
	// The cached facts are of the same file; whether that file is the
	// one this connect was made by is the kernel record's to say. Runner
	// and Program are the cached ones: the same exe and command line.
	s.degraded = r.judgeProgram(d.fd, k, c.exe, &pf)
	pf.Parents = r.parentChain(ctx, s, ppid, key.tgid, time.Now())
	pf.Cmdline = append([]string(nil), c.pf.Cmdline...)
	s.job = c.job
	return &pf, c.claims, true
}

// rememberProc caches a fresh resolution with what validates it: the key
// of the executable that was hashed and the command line that was parsed,
// as read for this resolution (read again now, they could belong to a
// program the process exec'd since). It reports whether it did.
func (r *Resolver) rememberProc(key identProcKey, pf *model.ProcFacts, claims, job map[string]string, exe identFileKey, cmdline []byte, login procLogin) bool {
	// A resolution that had to skip cmdline and environ (no slot) or lacks
	// the hash is not worth keeping: the next one may do better.
	if len(pf.Cmdline) == 0 || cmdline == nil || pf.ExeSHA256 == "" {
		return false
	}
	r.procs.add(key, identProc{
		pf: *pf, claims: claims, job: job, exe: exe,
		cmdline: cmdline, login: login, expires: time.Now().Add(identProcTTL),
	})
	return true
}

package identity

import (
	"bytes"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Bounds on what is read from /proc. Every file read by the identity
// resolver is capped: a process controls its own cmdline and environment
// and may make them as large and as strange as it likes.
const (
	procfsSmallRead       = 4 << 10  // stat, status, cgroup: one read normally
	procfsMaxSmallFile    = 64 << 10 // hard cap for those
	procfsCmdlineMaxBytes = 64 << 10
	procfsCmdlineMaxArgs  = 256
	procfsEnvironMaxBytes = 1 << 20
	procfsClaimMaxValue   = 256
	procfsSecretMaxValue  = 16 << 10
	procfsTruncatedMark   = "…(truncated)"
	// procfsPoolMaxBuf is the largest scratch buffer kept for reuse; bigger
	// ones (a huge environment) are left to the garbage collector.
	procfsPoolMaxBuf = 256 << 10
)

// procfsScratch is the per-Resolve scratch space: one growable buffer that
// every /proc read in turn reuses (each file is parsed before the next read).
type procfsScratch struct {
	buf  []byte
	link [unix.PathMax]byte
	// degraded says why a resolution's facts are incomplete or not
	// trusted (it becomes the identity's ProcError).
	degraded string
	// hashWhy is why the executable was not hashed, if it was not.
	hashWhy string
	// login is the audit login uid and session id read for this
	// resolution (human.go).
	login procLogin
	// job holds the process's token variables (workload.go) for this
	// resolution only: cleared before the scratch is reused or pooled.
	job map[string]string
}

// procfsScratchPool recycles scratch space between resolutions.
type procfsScratchPool struct{ pool sync.Pool }

func (p *procfsScratchPool) get() *procfsScratch {
	if s, ok := p.pool.Get().(*procfsScratch); ok {
		s.degraded, s.hashWhy, s.login, s.job = "", "", procLogin{}, nil
		return s
	}
	return &procfsScratch{buf: make([]byte, 16<<10)}
}

func (p *procfsScratchPool) put(s *procfsScratch) {
	s.job = nil
	if cap(s.buf) > procfsPoolMaxBuf {
		s.buf = make([]byte, 16<<10)
	}
	p.pool.Put(s)
}

// procfsReadAt reads file name (relative to dirfd) into s.buf, up to limit
// bytes. It reads limit+1 bytes at most so that truncation is detected.
//
// A read that returns fewer bytes than asked is taken as the end of the
// file: procfs (seq_file, cmdline, environ) and regular files fill the
// whole request when they can, so this saves a syscall per file.
func procfsReadAt(s *procfsScratch, dirfd int, name string, limit int) (data []byte, truncated bool, err error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, false, err
	}
	defer unix.Close(fd)
	return procfsReadFD(s, fd, limit, false)
}

// procfsReadFD reads the open file fd like procfsReadAt. With pread it
// reads from offset 0 whatever was read before (a descriptor kept open:
// procfs makes the content afresh for a read at offset 0).
func procfsReadFD(s *procfsScratch, fd, limit int, pread bool) (data []byte, truncated bool, err error) {
	buf := s.buf[:cap(s.buf)]
	n := 0
	for n <= limit {
		if n == len(buf) {
			nc := 2 * len(buf)
			if nc > limit+1 {
				nc = limit + 1
			}
			if nc <= len(buf) {
				nc = len(buf) + 1
			}
			nb := make([]byte, nc)
			copy(nb, buf[:n])
			buf = nb
			s.buf = nb
		}
		want := len(buf) - n
		if lim := limit + 1 - n; want > lim {
			want = lim
		}
		var m int
		var rerr error
		if pread {
			m, rerr = unix.Pread(fd, buf[n:n+want], int64(n))
		} else {
			m, rerr = unix.Read(fd, buf[n:n+want])
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr != nil {
			return buf[:n], false, rerr
		}
		if m <= 0 {
			break
		}
		n += m
		if m < want {
			break
		}
	}
	if n > limit {
		return buf[:limit], true, nil
	}
	return buf[:n], false, nil
}

// procfsStat is what the resolver needs from /proc/PID/stat. Comm aliases
// the read buffer.
type procfsStat struct {
	comm       []byte
	state      byte
	ppid       uint32
	startTicks uint64
}

// procfsParseStat parses /proc/PID/stat. The comm field (2) is whatever the
// process named itself and may hold spaces and parentheses, so it runs from
// the first '(' to the LAST ')'; the fields after it are plain numbers.
func procfsParseStat(b []byte) (procfsStat, bool) {
	var st procfsStat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return st, false
	}
	st.comm = b[open+1 : closing]
	rest := b[closing+1:]
	if len(rest) < 2 || rest[0] != ' ' {
		return st, false
	}
	rest = rest[1:]
	// fields 3.. are separated by single spaces
	field, tokStart, got := 3, 0, 0
	for i := 0; i <= len(rest); i++ {
		if i < len(rest) && rest[i] != ' ' && rest[i] != '\n' {
			continue
		}
		tok := rest[tokStart:i]
		tokStart = i + 1
		switch field {
		case 3:
			if len(tok) != 1 {
				return st, false
			}
			st.state = tok[0]
			got++
		case 4:
			v, ok := procfsParseUint(tok)
			if !ok || v > 1<<32-1 {
				return st, false
			}
			st.ppid = uint32(v)
			got++
		case 22:
			v, ok := procfsParseUint(tok)
			if !ok {
				return st, false
			}
			st.startTicks = v
			return st, got == 2
		}
		field++
	}
	return st, false
}

func procfsParseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// procfsStatus holds the ids and thread count from /proc/PID/status.
type procfsStatus struct {
	ruid, euid, rgid, egid uint32
	threads                int
	haveUID, haveGID       bool
}

// procfsParseStatus reads the Uid:, Gid: and Threads: lines.
func procfsParseStatus(b []byte) procfsStatus {
	var st procfsStatus
	st.threads = -1
	if line := procfsStatusLine(b, "\nUid:"); line != nil {
		if r, e, ok := procfsTwoIDs(line); ok {
			st.ruid, st.euid, st.haveUID = r, e, true
		}
	}
	if line := procfsStatusLine(b, "\nGid:"); line != nil {
		if r, e, ok := procfsTwoIDs(line); ok {
			st.rgid, st.egid, st.haveGID = r, e, true
		}
	}
	if line := procfsStatusLine(b, "\nThreads:"); line != nil {
		if v, ok := procfsParseUint(bytes.TrimSpace(line)); ok && v < 1<<31 {
			st.threads = int(v)
		}
	}
	return st
}

// procfsStatusLine returns the rest of the line that starts with key (key
// includes the leading newline; status never starts with these lines).
func procfsStatusLine(b []byte, key string) []byte {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	line := b[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	return line
}

// procfsTwoIDs returns the first two numbers (real, effective) of a
// "Uid:\tR\tE\tS\tF" line body.
func procfsTwoIDs(b []byte) (uint32, uint32, bool) {
	var ids [2]uint32
	n := 0
	for n < 2 {
		b = bytes.TrimLeft(b, " \t")
		if len(b) == 0 {
			return 0, 0, false
		}
		j := 0
		for j < len(b) && b[j] != ' ' && b[j] != '\t' {
			j++
		}
		v, ok := procfsParseUint(b[:j])
		if !ok || v > 1<<32-1 {
			return 0, 0, false
		}
		ids[n] = uint32(v)
		n++
		b = b[j:]
	}
	return ids[0], ids[1], true
}

// procfsString copies b into a string that survives JSON: invalid UTF-8
// becomes U+FFFD.
func procfsString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// procfsParseCmdline splits a NUL-separated argument vector. At most
// procfsCmdlineMaxArgs arguments are kept; truncated (by bytes, from the
// read, or by count) adds a final procfsTruncatedMark element.
func procfsParseCmdline(b []byte, truncated bool) []string {
	if len(b) == 0 && !truncated {
		return nil
	}
	if !truncated && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	n := bytes.Count(b, []byte{0}) + 1
	if n > procfsCmdlineMaxArgs {
		n = procfsCmdlineMaxArgs
		truncated = true
	}
	extra := 0
	if truncated {
		extra = 1
	}
	out := make([]string, 0, n+extra)
	for len(out) < n {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, procfsString(b))
			break
		}
		out = append(out, procfsString(b[:i]))
		b = b[i+1:]
	}
	if truncated {
		out = append(out, procfsTruncatedMark)
	}
	return out
}

// procfsClaimVars is the allow-list of environment variables copied into
// Identity.Claimed. The environment holds secrets: nothing else is copied.
// Values are the canonical key strings, so a lookup needs no allocation.
var procfsClaimVars = func() map[string]string {
	names := []string{
		"GITHUB_ACTIONS", "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
		"GITHUB_WORKFLOW", "GITHUB_JOB", "GITHUB_ACTOR", "GITHUB_REF", "GITHUB_SHA",
		"RUNNER_NAME",
		"GITLAB_CI", "CI_PROJECT_PATH", "CI_JOB_ID", "CI_PIPELINE_ID", "CI_JOB_NAME",
		"GITLAB_USER_LOGIN", "CI_COMMIT_SHA",
		"BUILDKITE", "BUILDKITE_ORGANIZATION_SLUG", "BUILDKITE_PIPELINE_SLUG",
		"BUILDKITE_BUILD_NUMBER", "BUILDKITE_JOB_ID", "BUILDKITE_BUILD_CREATOR",
		"JENKINS_URL", "BUILD_TAG", "JOB_NAME", "BUILD_NUMBER",
		"CI",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()

// procfsParseClaims extracts the allow-listed variables from a
// NUL-separated environment block. When the block was truncated its last,
// possibly partial, entry is ignored. The first occurrence of a name wins,
// as with getenv(3). Values are capped at procfsClaimMaxValue bytes.
func procfsParseClaims(b []byte, truncated bool) map[string]string {
	claims, _ := procfsParseEnv(b, truncated, nil)
	return claims
}

// procfsParseEnv is procfsParseClaims that also returns, apart, the
// variables named in secret (a job's ID token and what requests one):
// whole, up to procfsSecretMaxValue bytes (a longer or cut value is
// left out, since part of a token is no token), and never among the
// claims.
func procfsParseEnv(b []byte, truncated bool, secret map[string]struct{}) (claims, secrets map[string]string) {
	if truncated {
		if i := bytes.LastIndexByte(b, 0); i >= 0 {
			b = b[:i]
		} else {
			return nil, nil
		}
	}
	for len(b) > 0 {
		var ent []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			ent, b = b[:i], b[i+1:]
		} else {
			ent, b = b, nil
		}
		eq := bytes.IndexByte(ent, '=')
		if eq <= 0 {
			continue
		}
		if _, ok := secret[string(ent[:eq])]; ok {
			name := string(ent[:eq])
			if _, dup := secrets[name]; dup || len(ent)-eq-1 > procfsSecretMaxValue {
				continue
			}
			if secrets == nil {
				secrets = make(map[string]string, len(secret))
			}
			secrets[name] = string(ent[eq+1:])
			continue
		}
		name, ok := procfsClaimVars[string(ent[:eq])]
		if !ok {
			continue
		}
		if _, dup := claims[name]; dup {
			continue
		}
		val := ent[eq+1:]
		if len(val) > procfsClaimMaxValue {
			cut := procfsClaimMaxValue
			// do not split a UTF-8 sequence (at most 3 bytes back)
			for i := 0; i < 3 && cut > 0 && !utf8.RuneStart(val[cut]); i++ {
				cut--
			}
			val = val[:cut]
		}
		if claims == nil {
			claims = make(map[string]string, 8)
		}
		claims[name] = procfsString(val)
	}
	return claims, secrets
}

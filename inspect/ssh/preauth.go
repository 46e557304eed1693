package ssh

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/interlock/interlock/inspect"
)

// preauthSlots count each uid's connections that have not finished their
// SSH handshake and authentication with interlock
// (limits.per_uid.ssh_preauth). Such a connection costs the target
// nothing (the upstream is made after authentication), but each holds a
// descriptor and goroutines of interlock's for up to the handshake
// timeout; the cap keeps one user's idle connects from taking them all.
type preauthSlots struct {
	mu sync.Mutex
	// max is the cap (0: none); root is subject to it only with
	// includeRoot, as with the engine's per-uid limits.
	max         int
	includeRoot bool
	held        map[uint32]int
}

// configure sets the cap; connections already counted stay counted.
func (p *preauthSlots) configure(max int, includeRoot bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.max, p.includeRoot = max, includeRoot
}

// settings returns what configure set, so a failed reload can put it back.
func (p *preauthSlots) settings() (max int, includeRoot bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max, p.includeRoot
}

// enter takes a slot for uid. When uid holds the cap already, ok is false
// and max is the cap it hit. release gives the slot back; it may be
// called more than once.
func (p *preauthSlots) enter(uid uint32) (release func(), max int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = map[uint32]int{}
	}
	if p.max > 0 && (uid != 0 || p.includeRoot) && p.held[uid] >= p.max {
		return func() {}, p.max, false
	}
	p.held[uid]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.held[uid]--; p.held[uid] <= 0 {
				delete(p.held, uid)
			}
		})
	}, p.max, true
}

// heldBy is how many slots uid holds (tests).
func (p *preauthSlots) heldBy(uid uint32) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held[uid]
}

// refusePreauth turns away a connection of a uid that has as many
// unauthenticated connections as limits.per_uid.ssh_preauth allows. The
// client is told in a line before any version line (RFC 4253 4.2 lets a
// server send such lines; `nc` shows it, ssh -v logs it), and the refusal
// is journaled as a refused session.
func (c *conn) refusePreauth(client net.Conn, uid uint32, max int) inspect.Outcome {
	r := &refusal{rule: "limits.per_uid.ssh_preauth",
		reason: fmt.Sprintf("uid %d has %d SSH connections to interlock that have not finished authenticating, "+
			"as many as limits.per_uid.ssh_preauth allows; this one was closed at once", uid, max)}
	client.SetWriteDeadline(time.Now().Add(time.Second))
	client.Write([]byte(fmt.Sprintf("interlock: refused: uid %d has %d SSH connections still authenticating "+
		"(limits.per_uid.ssh_preauth); finish or close them and retry\r\n", uid, max)))
	c.log.Info("ssh session refused", "reason", r.reason)
	c.openRecord(denied(r), nil)
	return inspect.Outcome{Refused: true, Err: r}
}

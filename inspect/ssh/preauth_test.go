package ssh

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// countingProxy stands between interlock and the target and counts the
// connections interlock opened to it.
type countingProxy struct {
	ln net.Listener
	n  atomic.Int32
}

func startCounting(t *testing.T, to netip.AddrPort) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.n.Add(1)
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", to.String())
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	return p
}

func (p *countingProxy) addr() netip.AddrPort { return p.ln.Addr().(*net.TCPAddr).AddrPort() }

// serveAs serves the rig's handler on a new listener for connections of
// uid, whose original destination is dst. It returns the address.
func serveAs(t *testing.T, r *rig, dst netip.AddrPort, uid uint32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := &inspect.Session{ID: "p-" + c.RemoteAddr().String(), Origin: model.Origin{
					Target:   model.Target{Name: "box", Protocol: model.ProtoSSH, Address: r.cfg.Targets[0].Address},
					OrigDst:  dst,
					Client:   c.RemoteAddr().(*net.TCPAddr).AddrPort(),
					Accepted: time.Now(),
					Identity: model.Identity{Kernel: model.KernelFacts{UID: uid}},
				}}
				r.life.Serve(ctx, r.h, c, s)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestNoUpstreamBeforeAuthentication: connections that send nothing, or
// stop after their version line, open nothing to the target; a client
// that authenticates opens exactly one connection.
func TestNoUpstreamBeforeAuthentication(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.h.preauth.configure(0, false)
	cp := startCounting(t, r.target.addr())
	addr := serveAs(t, r, cp.addr(), 1000)

	var idle []net.Conn
	for i := range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1\r\n")
		}
		idle = append(idle, c)
	}
	// Long enough for the old order (dial at accept) to have dialled.
	time.Sleep(300 * time.Millisecond)
	if n := cp.n.Load(); n != 0 {
		t.Fatalf("the target saw %d connections for %d clients that never authenticated, want 0", n, len(idle))
	}

	c, err := sshDial(addr, r)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sess, _ := c.NewSession()
	if out, err := sess.Output("echo ok"); err != nil || string(out) != "ok\n" {
		t.Errorf("authenticated client: %q %v", out, err)
	}
	c.Close()
	if n := cp.n.Load(); n != 1 {
		t.Errorf("the target saw %d connections, want 1 (the authenticated client's)", n)
	}
}

// TestPreauthCap: a uid with limits.per_uid.ssh_preauth connections still
// authenticating gets its next one refused at once, told why and
// journaled; other uids are not affected, and a slot frees when a
// connection authenticates or goes away. Root is exempt unless
// include_root.
func TestPreauthCap(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.h.preauth.configure(2, false)
	addrA := serveAs(t, r, r.target.addr(), 1001)
	addrB := serveAs(t, r, r.target.addr(), 1002)
	addrRoot := serveAs(t, r, r.target.addr(), 0)

	dial := func(addr string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	firstLine := func(c net.Conn) string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read first line: %v", err)
		}
		return l
	}
	a1, a2 := dial(addrA), dial(addrA)
	// Each gets interlock's version line once its slot is taken.
	for _, c := range []net.Conn{a1, a2} {
		if l := firstLine(c); !strings.HasPrefix(l, "SSH-2.0-") {
			t.Fatalf("first line %q, want a version line", l)
		}
	}
	a3 := dial(addrA)
	if l := firstLine(a3); !strings.Contains(l, "uid 1001 has 2 SSH connections still authenticating") {
		t.Errorf("refused client read %q", l)
	}
	if _, err := a3.Read(make([]byte, 1)); err == nil {
		t.Error("the refused connection stays open")
	}
	// Another uid, and root, are not held up by uid 1001.
	for _, addr := range []string{addrB, addrRoot} {
		c, err := sshDial(addr, r)
		if err != nil {
			t.Fatalf("another uid's client (%s): %v", addr, err)
		}
		c.Close()
	}
	// An idle connection closing frees its slot.
	a1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for r.h.preauth.heldBy(1001) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("uid 1001 still holds %d slots after a connection closed", r.h.preauth.heldBy(1001))
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := sshDial(addrA, r)
	if err != nil {
		t.Fatalf("uid 1001 after a slot freed: %v", err)
	}
	// Authenticated, it holds no slot (given back just after the client
	// hears of its success).
	deadline = time.Now().Add(5 * time.Second)
	for r.h.preauth.heldBy(1001) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("uid 1001 holds %d slots with one idle and one authenticated connection, want 1", r.h.preauth.heldBy(1001))
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()

	var refused []model.SessionOpen
	for _, o := range testkit.Data[model.SessionOpen](r.j, model.KindSessionOpen) {
		if o.Decision.Rule == "limits.per_uid.ssh_preauth" {
			refused = append(refused, o)
		}
	}
	if len(refused) != 1 || refused[0].Decision.Action != model.Deny || refused[0].Identity.Kernel.UID != 1001 ||
		!strings.Contains(refused[0].Decision.Reason, "limits.per_uid.ssh_preauth") {
		t.Errorf("journaled refusals %+v, want one deny of uid 1001", refused)
	}

	// include_root subjects root too.
	r.h.preauth.configure(1, true)
	dial(addrRoot)
	time.Sleep(100 * time.Millisecond)
	if l := firstLine(dial(addrRoot)); !strings.Contains(l, "uid 0 has 1 SSH connections") {
		t.Errorf("root's second connection with include_root: %q", l)
	}
}

// sshDial authenticates to interlock at addr as the rig's client.
func sshDial(addr string, r *rig) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(r.clientKey)}, HostKeyCallback: r.hostKeyCB, Timeout: 10 * time.Second,
	})
}

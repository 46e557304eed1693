package identity

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestIdentityChainCache(t *testing.T) {
	f := newIdentTestFake(t)
	ctx := context.Background()
	// 100 → 50 → 40 → 1
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 40, comm: "bash", startTicks: 500, uid: 7, exe: "/usr/bin/bash"})
	identTestWrite(t, f.proc, identTestProc{pid: 40, ppid: 1, comm: "sshd", startTicks: 400, exe: "/usr/sbin/sshd"})
	chain := func() string {
		id := f.r.Resolve(ctx, f.k)
		var b strings.Builder
		for _, p := range id.Proc.Parents {
			fmt.Fprintf(&b, "%d:%s:%s ", p.PID, p.Comm, p.Exe)
		}
		return b.String()
	}
	if got := chain(); got != "50:bash:/usr/bin/bash 40:sshd:/usr/sbin/sshd 1:systemd:/usr/lib/systemd/systemd " {
		t.Fatalf("chain %q", got)
	}
	// the grandparent execs: within identChainTTL the chain above the
	// parent may be the cached one ...
	identTestWrite(t, f.proc, identTestProc{pid: 40, ppid: 1, comm: "evil", startTicks: 400, exe: "/tmp/evil"})
	if got := chain(); !strings.Contains(got, "40:sshd") {
		t.Fatalf("chain cache not used: %q", got)
	}
	// ... the parent's own facts are always fresh ...
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 40, comm: "bash", startTicks: 500, uid: 7, exe: "/usr/bin/dash"})
	if got := chain(); !strings.HasPrefix(got, "50:bash:/usr/bin/dash ") {
		t.Fatalf("parent not fresh: %q", got)
	}
	// ... and a reparented parent (grandparent gone) invalidates the cache
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 1, comm: "bash", startTicks: 500, uid: 7, exe: "/usr/bin/dash"})
	if got := chain(); got != "50:bash:/usr/bin/dash 1:systemd:/usr/lib/systemd/systemd " {
		t.Fatalf("after reparenting: %q", got)
	}
	// after identChainTTL everything is read again
	identTestWrite(t, f.proc, identTestProc{pid: 50, ppid: 40, comm: "bash", startTicks: 500, uid: 7, exe: "/usr/bin/dash"})
	identTestWrite(t, f.proc, identTestProc{pid: 40, ppid: 1, comm: "sshd", startTicks: 400, exe: "/usr/sbin/sshd"})
	if got := chain(); !strings.Contains(got, "40:sshd") {
		t.Fatalf("chain %q", got)
	}
	identTestWrite(t, f.proc, identTestProc{pid: 40, ppid: 1, comm: "evil", startTicks: 400, exe: "/tmp/evil"})
	if got := chain(); !strings.Contains(got, "40:sshd") {
		t.Fatalf("chain cache not used: %q", got)
	}
	time.Sleep(identChainTTL + 50*time.Millisecond)
	if got := chain(); !strings.Contains(got, "40:evil:/tmp/evil") {
		t.Fatalf("chain cache outlived its TTL: %q", got)
	}
}

func TestIdentityLRU(t *testing.T) {
	c := newIdentLRU[int, string](3)
	for i := 0; i < 3; i++ {
		c.add(i, fmt.Sprint(i))
	}
	c.get(0) // 0 is now the most recent; 1 is the oldest
	c.add(3, "3")
	if _, ok := c.get(1); ok {
		t.Fatal("oldest not evicted")
	}
	for _, k := range []int{0, 2, 3} {
		if v, ok := c.get(k); !ok || v != fmt.Sprint(k) {
			t.Fatalf("lost %d", k)
		}
	}
	if c.len() != 3 {
		t.Fatalf("len %d", c.len())
	}
	c.remove(2)
	c.add(0, "zero")
	if v, _ := c.get(0); v != "zero" || c.len() != 2 {
		t.Fatalf("update: %q len %d", v, c.len())
	}
}

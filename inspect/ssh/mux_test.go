package ssh

import (
	"fmt"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// A flood of requests that carry no operation is counted, not journaled
// one by one: one ssh.request entry per type, with the count, before
// session.close; past maxCountedTypes the types are counted together.
func TestCountedGlobalRequests(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	const n = 5000
	for i := range n {
		if _, _, err := c.SendRequest("flood@example.com", false, nil); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if _, _, err := c.SendRequest("keepalive@openssh.com", false, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 * maxCountedTypes {
		c.SendRequest(fmt.Sprintf("t%d@example.com", i), false, nil)
	}
	// A reply orders this after everything sent before it.
	if ok, _, err := c.SendRequest("last@example.com", true, nil); ok || err != nil {
		t.Fatalf("unknown request answered %v %v", ok, err)
	}
	c.Close()
	r.waitClosed(1)

	got := map[string]countedRequests{}
	for _, q := range testkit.Data[countedRequests](r.j, model.KindSSHRequest) {
		if _, dup := got[q.Type]; dup {
			t.Errorf("two entries for %s", q.Type)
		}
		got[q.Type] = q
	}
	if len(got) != maxCountedTypes+1 {
		t.Errorf("%d ssh.request entries, want %d", len(got), maxCountedTypes+1)
	}
	if q := got["flood@example.com"]; q.Count != n || q.Decision.Action != model.Deny || !q.Global || q.LastOffsetNS < q.OffsetNS {
		t.Errorf("flood counted as %+v", q)
	}
	if q := got["keepalive@openssh.com"]; q.Count != n/10 || q.Decision.Action != model.Allow {
		t.Errorf("keepalives counted as %+v", q)
	}
	// 14 more types fit apart; the other 18 and "last" go together.
	if q := got[otherType]; q.Count != 2*maxCountedTypes-(maxCountedTypes-2)+1 {
		t.Errorf("other types counted as %+v", q)
	}
	recs := r.j.Records()
	if k := recs[len(recs)-1].Kind; k != model.KindSessionClose {
		t.Errorf("last entry is %s, want session.close after the counts", k)
	}
}

// The same on a session channel: made-up channel requests are refused and
// counted per type and channel, not journaled one by one, and the counts
// come before session.close.
func TestCountedChannelRequests(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for range n {
		if _, err := sess.SendRequest("flood@example.com", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := sess.SendRequest("last@example.com", true, nil); ok || err != nil {
		t.Fatalf("unknown channel request answered %v %v", ok, err)
	}
	// The channel still works after the flood.
	out, err := sess.Output("echo after-flood")
	if err != nil || string(out) != "after-flood\n" {
		t.Fatalf("exec after the flood: %q %v", out, err)
	}
	c.Close()
	r.waitClosed(1)

	got := map[string]countedRequests{}
	for _, q := range testkit.Data[countedRequests](r.j, model.KindSSHRequest) {
		if q.Type == "exec" {
			continue
		}
		if _, dup := got[q.Type]; dup {
			t.Errorf("two entries for %s", q.Type)
		}
		got[q.Type] = q
	}
	if q := got["flood@example.com"]; q.Count != n || q.Global || q.Decision.Action != model.Deny || q.Decision.Rule != "unknown-request" {
		t.Errorf("channel flood counted as %+v", q)
	}
	if q := got["last@example.com"]; q.Count != 1 {
		t.Errorf("last request counted as %+v", q)
	}
	if len(got) != 2 {
		t.Errorf("ssh.request entries besides the exec: %+v", got)
	}
	recs := r.j.Records()
	if k := recs[len(recs)-1].Kind; k != model.KindSessionClose {
		t.Errorf("last entry is %s, want session.close after the counts", k)
	}
}

// An ssh.channel entry carries its monotonic offset, so a view orders it
// with the channel's requests: not after the exec it carried.
func TestChannelRecordHasOffset(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Output("true"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.waitClosed(1)
	chans := testkit.Data[model.SSHChannel](r.j, model.KindSSHChannel)
	var exec model.SSHRequest
	for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
		if q.Type == "exec" {
			exec = q
		}
	}
	if len(chans) != 1 || chans[0].OffsetNS <= 0 || exec.Type == "" || chans[0].OffsetNS > exec.OffsetNS {
		t.Fatalf("channel %+v, exec %+v: want the channel's offset set and not after its exec", chans, exec)
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// pendingList is `interlock approvals list --json`.
type pendingList []struct {
	Request   model.ApprovalRequest `json:"request"`
	MayDecide bool                  `json:"may_decide"`
	Socket    string                `json:"socket"`
}

// pendingAt is what the approver user "daemon" lists on the approvals
// socket sock; nothing when the list fails.
func pendingAt(t *testing.T, sock string) pendingList {
	t.Helper()
	var list pendingList
	if o, _, code := asUser(t, "daemon", "approvals", "list", "--socket", sock, "--json"); code == 0 {
		json.Unmarshal([]byte(o), &list)
	}
	return list
}

// asUser runs interlock as another (unprivileged) user.
func asUser(t *testing.T, user string, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, exec.Command("runuser", append([]string{"-u", user, "--", interlockBin}, args...)...))
}

// TestApprovalHoldsAConnect: a review rule holds a tcp connect until an
// approver (another uid, identified by the kernel) approves it; the
// requester's own uid is refused; a timeout denies; the webhook hears of
// every request; all of it is journaled.
func TestApprovalHoldsAConnect(t *testing.T) {
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	cgPath, cgDir := makeCgroup(t, "approvals")

	hook := startWebhook(t)
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf(`intercept:
  cgroups: [%s]
policy:
  webhook:
    url: %s
  rules:
    - name: hold-connects
      match: {protocols: [tcp]}
      action: review
      review:
        approvers: [daemon]
        timeout: 4s
`, cgPath, hook.url))
	e.startDaemon()
	sock := filepath.Join(filepath.Dir(e.socket), "approvals.sock")

	// A client connects and is held.
	client := inCgroup(t, cgDir, clientBin, "-addr", srv.addr())
	var out bytes.Buffer
	client.Stdout = &out
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	var list pendingList
	waitFor(t, func() bool { list = pendingAt(t, sock); return len(list) == 1 })
	req := list[0].Request
	if !list[0].MayDecide || req.Rule != "hold-connects" || req.Target != "echo" || req.Requester.Kernel.UID != 0 {
		t.Fatalf("pending request %+v (may decide %v)", req, list[0].MayDecide)
	}
	if len(srv.peers()) != 0 {
		t.Fatalf("the target was reached before approval")
	}
	waitFor(t, func() bool { return len(hook.got()) > 0 })
	if got := hook.got(); len(got) != 1 || got[0] != req.ID {
		t.Errorf("the webhook heard of requests %v, want %s", got, req.ID)
	}

	// The requester's uid (root) cannot approve; a user not named cannot.
	if _, stderr, code := e.interlock("approvals", "approve", req.ID, "--socket", sock); code != 77 || !strings.Contains(stderr, "same uid") {
		t.Errorf("self-approval: exit %d %s", code, stderr)
	}
	if _, stderr, code := asUser(t, "nobody", "approvals", "approve", req.ID, "--socket", sock); code != 77 || !strings.Contains(stderr, "not an approver") {
		t.Errorf("approval by a non-approver: exit %d %s", code, stderr)
	}
	if o, stderr, code := asUser(t, "daemon", "approvals", "approve", req.ID, "--socket", sock, "--reason", "change 42"); code != 0 {
		t.Fatalf("approve: exit %d %s %s", code, o, stderr)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("held client failed after approval: %v %s", err, out.String())
	}
	if res := parseClient(t, out.Bytes()); !strings.Contains(res.Reply, "pid=") {
		t.Errorf("client reply %q", res.Reply)
	}

	// Journal: request, decision by uid 1 with the reason, and the session
	// naming the request.
	var gotReq, gotDec bool
	for _, en := range e.entries() {
		switch en.Kind {
		case model.KindApprovalRequest:
			gotReq = strings.Contains(string(en.Data), req.ID)
		case model.KindApprovalDecision:
			var d model.ApprovalDecision
			json.Unmarshal(en.Data, &d)
			gotDec = d.ID == req.ID && d.Verdict == "approve" && d.Approver.Kernel.UID == 1 && d.Reason == "change 42"
		}
	}
	if !gotReq || !gotDec {
		t.Errorf("journal: request %v, decision %v", gotReq, gotDec)
	}
	sessions := e.sessions()
	if len(sessions) != 1 {
		t.Errorf("%d sessions journaled for the one approved connect", len(sessions))
	}
	for _, so := range sessions {
		if so.Decision.Request != req.ID || so.Decision.Action != model.Allow {
			t.Errorf("session decision %+v does not name the approval", so.Decision)
		}
	}

	// Nobody decides: the timeout denies, and the target is never reached.
	before := len(srv.peers())
	o, _, code := runCmd(t, inCgroup(t, cgDir, clientBin, "-addr", srv.addr()))
	if code == 0 {
		t.Errorf("a request nobody approved went through: %s", o)
	}
	if len(srv.peers()) != before {
		t.Errorf("the target was reached without approval")
	}
	timedOut := false
	for _, en := range e.entries() {
		if en.Kind == model.KindApprovalDecision && strings.Contains(string(en.Data), `"verdict":"timeout"`) {
			timedOut = true
		}
	}
	if !timedOut {
		t.Errorf("the timeout was not journaled")
	}
}

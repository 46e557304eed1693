package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// TestKubeExecReview (issue 20): a review rule on exec into a privileged
// pod in namespace prod (a fact interlock reads from the API server)
// holds kubectl exec before the stream is opened (kubectl waits); once an
// approver approves, the command runs once; when one denies, kubectl
// prints the rule and nothing runs, and kubectl's retry over SPDY is not
// a second request for the approvers. An exec into another namespace or
// into an unprivileged pod of prod is not held.
func TestKubeExecReview(t *testing.T) {
	k := newKubeEnv(t, `policy:
  rules:
    - name: hold-prod-exec
      match: {protocols: [kubernetes], operation: {kinds: [exec], namespaces: [prod], pod: {privileged: true}}}
      action: review
      review:
        approvers: [daemon]
        timeout: 60s
`)
	if out, stderr, code := k.kubectl("alice", nil, "exec", kubetest.PodName, "--", "echo", "default-not-held"); code != 0 || out != "default-not-held\n" {
		t.Fatalf("exec in default: exit %d %q %s", code, out, stderr)
	}
	if err := k.c.MakePod(context.Background(), "prod", "calm", false); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := k.kubectl("alice", nil, "-n", "prod", "exec", "calm", "--", "echo", "calm-not-held"); code != 0 || out != "calm-not-held\n" {
		t.Fatalf("exec into an unprivileged pod of prod: exit %d %q %s", code, out, stderr)
	}
	start := func(marker string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		cmd := exec.Command(interlockBin, "run", "-c", k.cfgPath, "--", "kubectl", "--kubeconfig", k.kc["alice"],
			"-n", "prod", "exec", kubetest.PodName, "--", "echo", marker)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &out, &errb
	}
	decide := func(marker, verdict, reason string) model.ApprovalRequest {
		t.Helper()
		req := k.heldOne(t)
		if req.Rule != "hold-prod-exec" || req.Operation.Kind != "exec" || req.Operation.Namespace != "prod" ||
			req.Operation.Pod == nil || !req.Operation.Pod.Privileged {
			t.Errorf("held request %+v", req)
		}
		time.Sleep(300 * time.Millisecond)
		if n := k.c.Kubelet.ExecCount(marker); n != 0 {
			t.Errorf("%s ran while held: %v", marker, k.c.Kubelet.Execs())
		}
		k.decide(t, req.ID, verdict, reason)
		return req
	}

	cmd, out, errb := start("approved-ran")
	req := decide("approved-ran", "approve", "change 7")
	if err := cmd.Wait(); err != nil || out.String() != "approved-ran\n" {
		t.Errorf("approved exec: %v %q %s", err, out.String(), errb.String())
	}
	// kubectl shows nothing while held; after, its stderr names the
	// request, the rule and the outcome (a line on the exec's stream).
	if e := errb.String(); !strings.Contains(e, req.ID) || !strings.Contains(e, "approved") || !strings.Contains(e, "hold-prod-exec") {
		t.Errorf("kubectl's stderr after the approval does not name request %s: %q", req.ID, e)
	}
	if n := k.c.Kubelet.ExecCount("approved-ran"); n != 1 {
		t.Errorf("the approved command ran %d times", n)
	}

	cmd, _, errb = start("denied-ran")
	req = decide("denied-ran", "deny", "not during the freeze")
	err := cmd.Wait()
	if err == nil || !strings.Contains(errb.String(), `policy rule "hold-prod-exec"`) || !strings.Contains(errb.String(), req.ID) {
		t.Errorf("denied exec: %v: stderr does not name the rule and request %s: %s", err, req.ID, errb.String())
	}
	if n := k.c.Kubelet.ExecCount("denied-ran"); n != 0 {
		t.Errorf("the denied command ran %d times", n)
	}
	// kubectl retried over SPDY: the retry took the denial, no second
	// request was held.
	if list := k.pending(t); len(list) != 0 {
		t.Errorf("requests pending after the denial: %+v", list)
	}
	// Both attempts are journaled as refused, with the one request.
	ids := map[string]bool{}
	retried := false
	for _, r := range entriesOf[model.K8sRequest](k.env, model.KindK8sRequest) {
		if strings.Contains(r.Query, "denied-ran") {
			if r.Pod == nil || !r.Pod.Privileged || r.Pod.ServiceAccount != "default" {
				t.Errorf("the pod facts journaled: %+v", r.Pod)
			}
			if r.Decision.Action != model.Deny {
				t.Errorf("an attempt of the denied exec was %s", r.Decision.Action)
			}
			ids[r.Decision.Request] = true
			retried = retried || strings.Contains(r.Decision.Reason, "retry of the same process")
		}
	}
	if len(ids) != 1 || !retried {
		t.Errorf("the denied exec's attempts: approval requests %v, SPDY retry seen %v", ids, retried)
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestKubePodSwap (issue 20): policy judges the pod an exec or a
// port-forward opens into by facts read from the API server before the
// decision. A pod deleted and made again under the same name while the
// request is held for review (privileged now) is another pod: once the
// first is approved, interlock reads the pod again, finds another UID and
// opens nothing: the command does not run, nothing reaches the pod's
// port. kubectl's retry of the port-forward is judged anew, on the new
// pod.
func TestKubePodSwap(t *testing.T) {
	k := newKubeEnv(t, `policy:
  rules:
    - name: hold-prod
      match: {protocols: [kubernetes], operation: {kinds: [exec, portforward], namespaces: [prod]}}
      action: review
      review:
        approvers: [daemon]
        timeout: 60s
`)
	ctx := context.Background()
	const pod = "swap"
	if err := k.c.MakePod(ctx, "prod", pod, false); err != nil {
		t.Fatal(err)
	}
	uid := func() string {
		p, err := k.c.Client.CoreV1().Pods("prod").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	// swap deletes the pod at once (no kubelet is asked) and makes it
	// again under the same name.
	swap := func(privileged bool) {
		t.Helper()
		zero := int64(0)
		if err := k.c.Client.CoreV1().Pods("prod").Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			_, err := k.c.Client.CoreV1().Pods("prod").Get(ctx, pod, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		if err := k.c.MakePod(ctx, "prod", pod, privileged); err != nil {
			t.Fatal(err)
		}
	}
	start := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(interlockBin, append([]string{"run", "-c", k.cfgPath, "--", "kubectl", "--kubeconfig", k.kc["alice"], "-n", "prod"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &out
	}

	// exec: judged on the unprivileged pod, approved after the swap.
	first := uid()
	cmd, out := start("exec", pod, "--", "echo", "swapped-ran")
	req := k.heldOne(t)
	if p := req.Operation.Pod; p == nil || p.UID != first || p.Privileged {
		t.Fatalf("held exec judged pod %+v, want uid %s unprivileged", p, first)
	}
	swap(true)
	k.decide(t, req.ID, "approve", "test")
	if err := cmd.Wait(); err == nil || !strings.Contains(out.String(), "changed after policy judged it") {
		t.Errorf("exec into the swapped pod: %v: %s", err, out.String())
	}
	if n := k.c.Kubelet.ExecCount("swapped-ran"); n != 0 {
		t.Errorf("the command ran %d times in the swapped pod", n)
	}
	var execResp string
	for _, en := range k.entries() {
		if en.Kind == model.KindK8sResponse {
			if r := decodeJSON[model.K8sResponse](t, en.Data); strings.Contains(r.Error, "changed after policy judged it") {
				execResp = r.Error
			}
		}
	}
	if !strings.Contains(execResp, first) {
		t.Errorf("no response journaled naming the judged pod %s: %q", first, execResp)
	}

	// port-forward: judged on the privileged pod, approved after a swap
	// to an unprivileged one; kubectl's retry is another request.
	port := newPodPort(t, func(c net.Conn) { c.Write([]byte("hello")) })
	second := uid()
	cmd, out = start("port-forward", pod, fmt.Sprintf("%d:%d", testkit.FreePort(t, "127.0.0.1"), port.port))
	req = k.heldOne(t)
	if p := req.Operation.Pod; p == nil || p.UID != second || !p.Privileged {
		t.Fatalf("held port-forward judged pod %+v, want uid %s privileged", p, second)
	}
	swap(false)
	third := uid()
	k.decide(t, req.ID, "approve", "test")
	var retry model.ApprovalRequest
	// kubectl retries after a back-off of its own, slower on a loaded
	// machine than the harness's usual 10 s.
	for deadline := time.Now().Add(30 * time.Second); retry.ID == ""; time.Sleep(20 * time.Millisecond) {
		list := k.pending(t)
		if len(list) == 1 && list[0].Request.ID != req.ID {
			retry = list[0].Request
		} else if time.Now().After(deadline) {
			var pfs []string
			for _, r := range k.portForwards(t) {
				pfs = append(pfs, fmt.Sprintf("%+v", r.resp))
			}
			t.Fatalf("no retry held within 30 s; pending %+v; port-forward responses %v; kubectl: %s", list, pfs, out.String())
		}
	}
	if p := retry.Operation.Pod; p == nil || p.UID != third || p.Privileged {
		t.Errorf("the retry judged pod %+v, want uid %s unprivileged", p, third)
	}
	k.decide(t, retry.ID, "deny", "test")
	if err := cmd.Wait(); err == nil || !strings.Contains(out.String(), "hold-prod") {
		t.Errorf("port-forward: %v: %s", err, out.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if n := port.accepts.Load(); n != 0 {
		t.Errorf("the pod's port saw %d connections", n)
	}
	var conflict bool
	for _, r := range k.portForwards(t) {
		conflict = conflict || r.resp.Code == 409 && strings.Contains(r.resp.Error, second)
		if len(r.streams) != 0 {
			t.Errorf("streams journaled %+v", r.streams)
		}
	}
	if !conflict {
		t.Errorf("no port-forward refused for the swapped pod %s", second)
	}
}

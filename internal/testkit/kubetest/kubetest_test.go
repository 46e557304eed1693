package kubetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/test/testenv"
)

// TestClusterExec runs kubectl against the real API server directly: the
// fake kubelet runs the command once, over websockets and over SPDY, and
// the exit code reaches kubectl.
func TestClusterExec(t *testing.T) {
	testenv.Require(t, "kubernetes test cluster", Prerequisites())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	caPEM, _ := os.ReadFile(c.CA.CertFile)
	kc := filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(kc, "https://"+c.Host, caPEM, &c.Admin); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{"true", "false"} {
		marker := "direct-ws-" + ws
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "exec", PodName, "--", "sh", "-c", "echo out "+marker+"; echo err >&2; exit 3")
		cmd.Env = append(os.Environ(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+ws)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 {
			t.Fatalf("websockets=%s: kubectl exec: %v, want exit 3; stderr: %s\n%s", ws, err, stderr.String(), c.Logs())
		}
		if stdout.String() != "out "+marker+"\n" || !strings.Contains(stderr.String(), "err\n") {
			t.Errorf("websockets=%s: stdout %q stderr %q", ws, stdout.String(), stderr.String())
		}
		if n := c.Kubelet.ExecCount(marker); n != 1 {
			t.Errorf("websockets=%s: the kubelet ran the command %d times, want 1", ws, n)
		}
	}
}

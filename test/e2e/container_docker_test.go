package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/test/testenv"
)

// TestContainerDocker: a real dockerd whose cgroup-parent is an
// intercepted cgroup, its own data and exec roots and socket (the host's
// docker, if any, is left alone), and an image imported from a local root
// filesystem (no pull). A container's connect to a target goes through
// interlock from its first one the namespace is served for.
func TestContainerDocker(t *testing.T) {
	requireRunc(t)
	for _, tool := range []string{"dockerd", "docker"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool+" (docker.io)", err)
	}
	srv := startEcho(t, "tcp4", "127.0.0.2:0")
	parent, _ := makeCgroup(t, "docker")
	e := newEnv(t, []target{{name: "echo", address: srv.addr()}}, fmt.Sprintf("intercept:\n  cgroups: [%s]\n", parent))
	e.startDaemon()

	dir, err := os.MkdirTemp("", "interlock-e2e-docker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := "unix://" + filepath.Join(dir, "d.sock")
	// runc's state in dockerd's usual exec root, where identity reads it,
	// unless the host's own dockerd uses it.
	execRoot, hostDocker := "/run/docker", false
	if b, err := os.ReadFile("/run/docker.pid"); err == nil {
		var pid int
		fmt.Sscan(string(b), &pid)
		hostDocker = pid > 0 && syscall.Kill(pid, 0) == nil
	}
	if hostDocker {
		execRoot = filepath.Join(dir, "exec")
	}
	dlog := &testkit.SyncBuffer{}
	dockerd := exec.Command("dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", execRoot,
		"-H", sock, "--pidfile", filepath.Join(dir, "d.pid"), "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", parent)
	dockerd.Stdout, dockerd.Stderr = dlog, dlog
	if err := dockerd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { dockerd.Wait(); close(done) }()
	t.Cleanup(func() {
		dockerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			dockerd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("dockerd:\n%s", testkit.Tail(dlog.String(), 3000))
		}
	})
	docker := func(stdin []byte, args ...string) (string, error) {
		cmd := exec.Command("docker", append([]string{"-H", sock}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	testkit.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() bool {
		_, err := docker(nil, "version")
		return err == nil
	})
	if out, err := docker(rootfsTar(t), "import", "-", "interlock-e2e-busybox"); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
	// --network none: a namespace of the container's own, loopback only;
	// the target is on the host's 127.0.0.2, reachable only through
	// interlock.
	out, err := docker(nil, "run", "-d", "--network", "none", "--label", "com.buildkite.job_id=e2e-77",
		"interlock-e2e-busybox", "sleep", "600")
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { docker(nil, "rm", "-f", id) })

	var r clientResult
	for i := 0; i < 50; i++ {
		out, _ = docker(nil, "exec", id, "/bin/tcpclient", "-addr", srv.addr())
		r = clientResult{}
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
			t.Fatalf("client in the docker container: %q", out)
		}
		if r.Error == "" || !strings.Contains(r.Error, "operation not permitted") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.Error != "" {
		t.Fatalf("client in the docker container: %s", r.Error)
	}
	waitSessions(t, e, 1)
	so, ok := e.sessions()[r.Local]
	if !ok {
		t.Fatalf("no session for %s", r.Local)
	}
	if so.Identity.Proc == nil || so.Identity.Proc.CgroupPath != parent+"/"+id || int(so.Identity.Kernel.TGID) == r.PID {
		t.Errorf("the docker container's session: kernel %+v, proc %+v", so.Identity.Kernel, so.Identity.Proc)
	}
	// The cgroupfs driver names the container's cgroup by its bare id;
	// runc's state under dockerd's exec root says whose it is.
	if c := so.Identity.Container; hostDocker {
		t.Logf("the host's dockerd uses /run/docker: this dockerd's runc state is elsewhere, container identity not checked (%+v)", c)
	} else if c == nil || c.ID != id || c.Runtime != "docker" {
		t.Errorf("the docker container's identity: %+v (%s)", c, so.Identity.ContainerError)
	}
}

// rootfsTar is busybox-static and the static client as a tar stream for
// docker import.
func rootfsTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name, src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	bb, _ := exec.LookPath("busybox")
	tw.WriteHeader(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir})
	add("bin/busybox", bb)
	add("bin/tcpclient", staticClientBin)
	for _, l := range []string{"sh", "sleep"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + l, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777})
	}
	tw.Close()
	return buf.Bytes()
}

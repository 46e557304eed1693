package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/test/testenv"
)

// Containers for the tests: OCI bundles run by Debian's runc, with a
// busybox-static root filesystem, the static test client, and the host's
// /usr bind-mounted read-only (psql and its libraries). No image is
// pulled. Each test makes its own bridge, namespaces and addresses.

var (
	staticClientOnce sync.Once
	staticClientBin  string
	staticClientErr  error
)

// requireRunc finds runc and busybox-static (make deps installs them)
// and builds the test client without cgo, so it runs in a root filesystem
// without the host's libc.
func requireRunc(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"runc", "busybox", "ip"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool, err)
	}
	staticClientOnce.Do(func() {
		staticClientBin = filepath.Join(binDir, "tcpclient-static")
		cmd := exec.Command("go", "build", "-o", staticClientBin, "./tcpclient")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticClientErr = fmt.Errorf("build the static tcpclient: %v: %s", err, out)
		}
	})
	if staticClientErr != nil {
		t.Fatal(staticClientErr)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testBridge is a bridge on the host with a /24 the test chose.
type testBridge struct {
	name   string
	prefix string // "10.X.Y."
	gw     string // prefix + "1"
}

func newBridge(t *testing.T) *testBridge {
	t.Helper()
	rnd := randHex(2)
	b := &testBridge{name: "ilkbr" + rnd}
	var x [2]byte
	rand.Read(x[:])
	b.prefix = fmt.Sprintf("10.%d.%d.", 200+int(x[0])%50, x[1])
	b.gw = b.prefix + "1"
	mustRun(t, "ip", "link", "add", b.name, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", b.name).Run() })
	mustRun(t, "ip", "addr", "add", b.gw+"/24", "dev", b.name)
	mustRun(t, "ip", "link", "set", b.name, "up")
	return b
}

func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// netnsOn makes a network namespace with a veth to the bridge at
// address prefix+host, and its loopback up unless loDown.
func (b *testBridge) netnsOn(t *testing.T, host int, loDown bool) string {
	t.Helper()
	name := "ilkns" + randHex(4)
	veth := "ilkv" + randHex(4)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	mustRun(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() })
	mustRun(t, "ip", "link", "set", veth, "master", b.name, "up")
	mustRun(t, "ip", "-n", name, "addr", "add", fmt.Sprintf("%s%d/24", b.prefix, host), "dev", "eth0")
	mustRun(t, "ip", "-n", name, "link", "set", "eth0", "up")
	if !loDown {
		mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	}
	return name
}

// ctr is one runc container.
type ctr struct {
	id     string
	bundle string
	// shared is a host directory mounted read-write at /shared.
	shared string
	// cgroup is its cgroup path (relative to the cgroup2 root).
	cgroup string
}

// ctrSpec shapes a container.
type ctrSpec struct {
	// netns is a namespace from netnsOn; "" has runc make a new one
	// (loopback only).
	netns string
	// parent is the cgroup the container's goes below.
	parent string
	args   []string
	// labels become OCI annotations (runc's state labels).
	labels map[string]string
}

// runContainer starts a container in the background (runc run -d) and
// removes it at the end of the test.
func runContainer(t *testing.T, s ctrSpec) *ctr {
	t.Helper()
	c := newBundle(t, s)
	// A file, not a pipe: the detached container keeps runc's stdio,
	// and a pipe would never see EOF.
	logPath := filepath.Join(c.bundle, "stdio.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("runc", "run", "-d", "--bundle", c.bundle, c.id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("runc run %s: %v: %s", c.id, err, out)
	}
	t.Cleanup(func() { c.remove() })
	return c
}

// runContainerFg runs a container to its end and returns its output.
func runContainerFg(t *testing.T, s ctrSpec) (string, *ctr) {
	t.Helper()
	c := newBundle(t, s)
	defer c.remove()
	out, _ := exec.Command("runc", "run", "--bundle", c.bundle, c.id).CombinedOutput()
	return string(out), c
}

func (c *ctr) remove() {
	exec.Command("runc", "kill", c.id, "KILL").Run()
	for i := 0; i < 50; i++ {
		if exec.Command("runc", "delete", "-f", c.id).Run() == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.RemoveAll(c.bundle)
}

// exec runs argv in the container (runc exec) and returns its stdout.
func (c *ctr) exec(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("runc", append([]string{"exec", c.id}, argv...)...)
	out, err := cmd.Output()
	return string(out), err
}

// newBundle writes an OCI bundle: busybox-static, the static client at
// /bin/tcpclient, the host's /usr read-only (psql), /shared read-write.
func newBundle(t *testing.T, s ctrSpec) *ctr {
	t.Helper()
	c := &ctr{id: "ilkc" + randHex(4)}
	c.bundle = filepath.Join(os.TempDir(), "interlock-e2e-bundle-"+c.id)
	c.shared = filepath.Join(c.bundle, "shared")
	c.cgroup = s.parent + "/" + c.id
	root := filepath.Join(c.bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "usr", "shared"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(c.shared, 0o777)
	os.Chmod(c.shared, 0o777)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, bb, filepath.Join(root, "bin", "busybox"))
	for _, l := range []string{"sh", "sleep", "cat", "touch"} {
		os.Symlink("busybox", filepath.Join(root, "bin", l))
	}
	copyFile(t, staticClientBin, filepath.Join(root, "bin", "tcpclient"))
	for _, l := range []string{"lib", "lib64"} {
		os.Symlink("usr/"+l, filepath.Join(root, l))
	}
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\n"), 0o644)

	ns := []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}
	if s.netns != "" {
		ns = append(ns, map[string]string{"type": "network", "path": "/run/netns/" + s.netns})
	} else {
		ns = append(ns, map[string]string{"type": "network"})
	}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false,
			"user":     map[string]int{"uid": 0, "gid": 0},
			"args":     s.args,
			"env":      []string{"PATH=/bin:/usr/bin", "HOME=/"},
			"cwd":      "/",
			"capabilities": map[string][]string{
				"bounding":  {"CAP_KILL", "CAP_NET_BIND_SERVICE"},
				"effective": {"CAP_KILL", "CAP_NET_BIND_SERVICE"},
				"permitted": {"CAP_KILL", "CAP_NET_BIND_SERVICE"},
			},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": true},
		"hostname": c.id,
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}},
			{"destination": "/usr", "type": "bind", "source": "/usr", "options": []string{"rbind", "ro"}},
			{"destination": "/shared", "type": "bind", "source": c.shared, "options": []string{"rbind", "rw"}},
		},
		"annotations": s.labels,
		"linux": map[string]any{
			"cgroupsPath": c.cgroup,
			"namespaces":  ns,
		},
	}
	b, _ := json.MarshalIndent(spec, "", " ")
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// hostPIDs lists the processes in a container's cgroup, by host pid.
func (c *ctr) hostPIDs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupRoot, c.cgroup, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

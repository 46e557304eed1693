package identity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/interlock/interlock/model"
)

func writeJSON(t *testing.T, p string, v any, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// containerTestRoots makes runtime state directories only root may write
// (t.TempDir is 0700 below a sticky /tmp).
func containerTestRoots(t *testing.T) (containerRoots, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the runtime state must be root-owned: run as root (CI=true: failing, not skipping)")
		}
		t.Skip("the runtime state must be root-owned: run as root")
	}
	d := t.TempDir()
	os.Chmod(d, 0o755)
	return containerRoots{
		runc:   []string{filepath.Join(d, "runc")},
		docker: filepath.Join(d, "docker"),
		tasks:  filepath.Join(d, "tasks"),
		podman: filepath.Join(d, "podman"),
	}, d
}

func runcState(cgroup string, labels ...string) map[string]any {
	return map[string]any{
		"id":           "job-7",
		"cgroup_paths": map[string]string{"": cgroup, "memory": "/sys/fs/cgroup/memory/x"},
		"config":       map[string]any{"labels": labels},
	}
}

func TestReadContainerRunc(t *testing.T) {
	roots, _ := containerTestRoots(t)
	const cgRoot = "/sys/fs/cgroup/unified"
	state := filepath.Join(roots.runc[0], "job-7", "state.json")
	writeJSON(t, state, runcState(cgRoot+"/ci.slice/job-7", "com.gitlab.gitlab-runner.job.id=42", "bundle=/b"), 0o600)

	c, err := readContainer(roots, cgRoot, "/ci.slice/job-7", "")
	if err != nil || c == nil {
		t.Fatalf("runc container: %+v, %v", c, err)
	}
	if c.ID != "job-7" || c.Runtime != "runc" || c.Provenance != model.ProvProc || c.Source != state ||
		c.Labels["com.gitlab.gitlab-runner.job.id"] != "42" {
		t.Errorf("runc container: %+v", c)
	}

	// A cgroup that is named like a container but is not the one runc's
	// state names (a job that made ci.slice/x/job-7 itself) is none.
	if c, err := readContainer(roots, cgRoot, "/ci.slice/other/job-7", ""); c != nil || err != nil {
		t.Errorf("a cgroup runc's state does not name: %+v, %v", c, err)
	}
	// Names that would leave the state directory are not looked up.
	for _, p := range []string{"/ci.slice/..", "/ci.slice/a b"} {
		if c, _ := readContainer(roots, cgRoot, p, ""); c != nil {
			t.Errorf("%s: %+v", p, c)
		}
	}
	// runc's systemd driver names the scope runc-<id>.scope.
	writeJSON(t, state, runcState(cgRoot+"/system.slice/runc-job-7.scope"), 0o600)
	if c, _ := readContainer(roots, cgRoot, "/system.slice/runc-job-7.scope", ""); c == nil || c.ID != "job-7" {
		t.Errorf("runc-<id>.scope: %+v", c)
	}
}

// TestReadContainerNotRootOnly: state another user may write is the
// job's claim, not the runtime's word, and is not read.
func TestReadContainerNotRootOnly(t *testing.T) {
	roots, _ := containerTestRoots(t)
	const cgRoot = "/sys/fs/cgroup"
	state := filepath.Join(roots.runc[0], "job-7", "state.json")
	writeJSON(t, state, runcState(cgRoot+"/ci/job-7"), 0o666)
	if c, err := readContainer(roots, cgRoot, "/ci/job-7", ""); c != nil || err == nil {
		t.Errorf("a world-writable state file: %+v, %v", c, err)
	}
	os.Chmod(state, 0o600)
	os.Chown(state, 1000, 1000)
	if c, err := readContainer(roots, cgRoot, "/ci/job-7", ""); c != nil || err == nil {
		t.Errorf("a state file owned by uid 1000: %+v, %v", c, err)
	}
	os.Chown(state, 0, 0)
	os.Chmod(filepath.Dir(state), 0o777)
	if c, err := readContainer(roots, cgRoot, "/ci/job-7", ""); c != nil || err == nil {
		t.Errorf("a state file in a world-writable directory: %+v, %v", c, err)
	}
}

// cgroupDirs makes a cgroup path below a stand-in cgroup2 root in d and
// returns the root.
func cgroupDirs(t *testing.T, d, path string) string {
	t.Helper()
	root := filepath.Join(d, "cgroup")
	if err := os.MkdirAll(filepath.Join(root, path), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// A user's delegated cgroup subtree may hold a directory named after
// another container; the user made it, so its name is not the runtime's.
func TestReadContainerDelegatedCgroup(t *testing.T) {
	roots, d := containerTestRoots(t)
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	writeJSON(t, filepath.Join(roots.docker, "containers", id, "config.v2.json"), map[string]any{
		"Name": "/deploy", "Config": map[string]any{"Image": "deployer:1"},
	}, 0o600)
	user := "/user.slice/user-1000.slice/user@1000.service"
	path := user + "/app.slice/docker-" + id + ".scope"
	cgRoot := cgroupDirs(t, d, path)
	if err := os.Chown(filepath.Join(cgRoot, user), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	c, err := readContainer(roots, cgRoot, path, id)
	if c != nil || err == nil {
		t.Errorf("a container id named in a cgroup below a user's delegated subtree was attributed: %+v, %v", c, err)
	}
}

func TestReadContainerDocker(t *testing.T) {
	roots, d := containerTestRoots(t)
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	writeJSON(t, filepath.Join(roots.docker, "containers", id, "config.v2.json"), map[string]any{
		"Name":  "/runner-abc-project-1-concurrent-0",
		"Image": "sha256:feed",
		"Config": map[string]any{
			"Image":  "golang:1.23",
			"Labels": map[string]string{"com.gitlab.gitlab-runner.job.id": "99"},
		},
	}, 0o600)
	cgRoot := cgroupDirs(t, d, "/system.slice/docker-"+id+".scope")
	c, err := readContainer(roots, cgRoot, "/system.slice/docker-"+id+".scope", id)
	if err != nil || c == nil {
		t.Fatalf("docker container: %+v, %v", c, err)
	}
	if c.Runtime != "docker" || c.Name != "runner-abc-project-1-concurrent-0" || c.Image != "golang:1.23" ||
		c.ImageDigest != "sha256:feed" || c.Labels["com.gitlab.gitlab-runner.job.id"] != "99" || c.Provenance != model.ProvProc {
		t.Errorf("docker container: %+v", c)
	}
	// Without dockerd's record the id and runtime still stand (they are
	// the cgroup path's), with no provenance for what is missing.
	other := "f123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cgroupDirs(t, d, "/system.slice/docker-"+other+".scope")
	c, err = readContainer(roots, cgRoot, "/system.slice/docker-"+other+".scope", other)
	if err != nil || c == nil || c.ID != other || c.Image != "" || c.Provenance != "" {
		t.Errorf("docker container without a record: %+v, %v", c, err)
	}
}

func TestReadContainerContainerd(t *testing.T) {
	roots, d := containerTestRoots(t)
	id := "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	writeJSON(t, filepath.Join(roots.tasks, "k8s.io", id, "config.json"), map[string]any{
		"annotations": map[string]string{"io.kubernetes.cri.image-name": "docker.io/library/busybox:1", "io.kubernetes.cri.container-name": "job"},
	}, 0o644)
	path := "/kubepods.slice/kubepods-pod1234_5678.slice/cri-containerd-" + id + ".scope"
	c, err := readContainer(roots, cgroupDirs(t, d, path), path, id)
	if err != nil || c == nil || c.Runtime != "containerd" || c.Image != "docker.io/library/busybox:1" || c.Name != "job" {
		t.Errorf("containerd container: %+v, %v", c, err)
	}
}

func TestContainerRuntime(t *testing.T) {
	for path, want := range map[string]string{
		"/system.slice/docker-x.scope":           "docker",
		"/docker/abc":                            "docker",
		"/machine.slice/libpod-x.scope":          "podman",
		"/kubepods.slice/cri-containerd-x.scope": "containerd",
		"/kubepods.slice/crio-x.scope":           "cri-o",
		"/kubepods/burstable/podx/abc":           "kubernetes",
		"/ci.slice/job":                          "runc",
	} {
		if got := containerRuntime(path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
}

// TestReadContainerDockerCgroupParent: dockerd with the cgroupfs driver
// and a cgroup parent puts a container at /<parent>/<id>; runc's state
// under dockerd's names that cgroup, and dockerd's record says the rest.
func TestReadContainerDockerCgroupParent(t *testing.T) {
	roots, d := containerTestRoots(t)
	roots.dockerRunc = filepath.Join(d, "docker-runc")
	roots.runc = append(roots.runc, roots.dockerRunc)
	const cgRoot = "/sys/fs/cgroup"
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	st := runcState(cgRoot + "/ci.slice/" + id)
	st["id"] = id
	writeJSON(t, filepath.Join(roots.dockerRunc, id, "state.json"), st, 0o600)
	writeJSON(t, filepath.Join(roots.docker, "containers", id, "config.v2.json"), map[string]any{
		"Name": "/job", "Image": "sha256:feed",
		"Config": map[string]any{"Image": "alpine:3", "Labels": map[string]string{"com.buildkite.job_id": "b-1"}},
	}, 0o600)
	c, err := readContainer(roots, cgRoot, "/ci.slice/"+id, "")
	if err != nil || c == nil || c.ID != id || c.Runtime != "docker" || c.Image != "alpine:3" || c.Labels["com.buildkite.job_id"] != "b-1" {
		t.Errorf("docker container below a cgroup parent: %+v, %v", c, err)
	}
}

package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/model"
)

// Containers: which container a process runs in, and what its runtime
// says about it.
//
// The id and the runtime come from the cgroup path, which the kernel
// reports and which a process cannot choose (docker-<id>.scope,
// libpod-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, or, for
// runc started with a cgroup parent, the container's own directory
// named after it). Name, image and labels come from the runtime's state
// on the host, read only from files owned by root and writable by no one
// else: the job in the container cannot write them, so they are not its
// claim. A runc container found by its directory name counts only when
// runc's state for that name says the container's cgroup is exactly this
// one.

// containerRoots are where runtimes keep their state; tests point them
// elsewhere.
type containerRoots struct {
	// runc holds state directories with one <id>/state.json per
	// container (runc's --root).
	runc []string
	// dockerRunc is the one of runc that dockerd's runc uses.
	dockerRunc string
	// docker is dockerd's data root (containers/<id>/config.v2.json).
	docker string
	// tasks holds containerd's task bundles (<namespace>/<id>/config.json).
	tasks string
	// podman is containers/storage's overlay-containers directory.
	podman string
}

var defaultContainerRoots = containerRoots{
	runc:       []string{"/run/runc", "/run/docker/runtime-runc/moby", "/run/containerd/runc/k8s.io", "/run/containerd/runc/default"},
	dockerRunc: "/run/docker/runtime-runc/moby",
	docker:     "/var/lib/docker",
	tasks:      "/run/containerd/io.containerd.runtime.v2.task",
	podman:     "/var/lib/containers/storage/overlay-containers",
}

// containerEntry is a cached answer; a miss is kept briefly, a container
// for as long as its cgroup (ids are never reused).
type containerEntry struct {
	c     *model.Container
	err   string
	until time.Time
}

const (
	containerCacheSize = 1024
	containerMissTTL   = 2 * time.Second
	// containerMaxFile bounds a runtime state file (docker's
	// config.v2.json of a container with a large environment).
	containerMaxFile   = 4 << 20
	containerMaxLabels = 128
	containerMaxValue  = 1024
)

// container fills id.Container from the process's cgroup.
func (r *Resolver) container(id *model.Identity) {
	pf := id.Proc
	if pf == nil || pf.CgroupPath == "" {
		return
	}
	key := id.Kernel.CgroupID
	if key != 0 {
		if e, ok := r.containers.get(key); ok && (e.until.IsZero() || time.Now().Before(e.until)) {
			id.Container, id.ContainerError = e.c, e.err
			return
		}
	}
	c, err := readContainer(r.croots, r.cg.root, pf.CgroupPath, pf.ContainerID)
	e := containerEntry{c: c}
	if err != nil {
		e.err = err.Error()
	}
	if c == nil || err != nil {
		e.until = time.Now().Add(containerMissTTL)
	}
	if key != 0 {
		r.containers.add(key, e)
	}
	id.Container, id.ContainerError = e.c, e.err
}

// readContainer describes the container whose cgroup is path (relative
// to the cgroup2 root cgRoot), nil when it is none. knownID is the id the
// cgroup path names, if any.
func readContainer(roots containerRoots, cgRoot, path, knownID string) (*model.Container, error) {
	runtime := containerRuntime(path)
	if knownID == "" {
		// runc with a cgroup parent: the container's cgroup is named
		// after it (runc-<id>.scope with the systemd driver).
		name := strings.TrimSuffix(filepath.Base(path), ".scope")
		name = strings.TrimPrefix(name, "runc-")
		if !containerNameOK(name) {
			return nil, nil
		}
		for _, dir := range roots.runc {
			c, err := readRuncState(filepath.Join(dir, name, "state.json"), cgRoot, path)
			if err != nil || c == nil {
				if err != nil {
					return nil, err
				}
				continue
			}
			if dir == roots.dockerRunc {
				// dockerd with the cgroupfs driver and a cgroup
				// parent: /<parent>/<id>, runc's state under
				// dockerd's, and dockerd's record of it.
				d := &model.Container{ID: c.ID, Runtime: "docker"}
				if err := readDocker(d, filepath.Join(roots.docker, "containers", c.ID, "config.v2.json")); err == nil && d.Provenance != "" {
					return d, nil
				}
				c.Runtime = "docker"
			}
			return c, nil
		}
		return nil, nil
	}
	if err := cgroupNotDelegated(cgRoot, path); err != nil {
		return nil, err
	}
	c := &model.Container{ID: knownID, Runtime: runtime}
	var err error
	switch runtime {
	case "docker":
		err = readDocker(c, filepath.Join(roots.docker, "containers", knownID, "config.v2.json"))
	case "podman":
		err = readOCIBundle(c, filepath.Join(roots.podman, knownID, "userdata", "config.json"))
	default:
		// containerd and CRI-O bundles: <namespace>/<id>/config.json.
		matches, _ := filepath.Glob(filepath.Join(roots.tasks, "*", knownID, "config.json"))
		if len(matches) == 1 {
			err = readOCIBundle(c, matches[0])
		}
	}
	return c, err
}

// cgroupNotDelegated checks that root owns the cgroup directory and those
// above it. A subtree delegated to a user (systemd's user@UID.service, a
// rootless or user-namespaced runtime) is owned by that user, who may name
// a cgroup docker-<id>.scope after another container and move into it;
// the id would then be the job's claim, not the runtime's.
func cgroupNotDelegated(cgRoot, path string) error {
	top := filepath.Clean(cgRoot)
	for dir := filepath.Join(top, path); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return fmt.Errorf("cgroup of the container: %w", err)
		}
		if st.Uid != 0 {
			return fmt.Errorf("cgroup %s is delegated to uid %d, who may name it after any container: not attributed", dir, st.Uid)
		}
		if dir == top || dir == "/" {
			return nil
		}
	}
}

// containerRuntime names the runtime by the cgroup path's form.
func containerRuntime(path string) string {
	for _, c := range strings.Split(path, "/") {
		switch {
		case strings.HasPrefix(c, "docker-") || c == "docker":
			return "docker"
		case strings.HasPrefix(c, "libpod-") || c == "libpod_parent":
			return "podman"
		case strings.HasPrefix(c, "cri-containerd-"):
			return "containerd"
		case strings.HasPrefix(c, "crio-"):
			return "cri-o"
		}
	}
	if strings.Contains(path, "kubepods") {
		return "kubernetes"
	}
	return "runc"
}

// containerNameOK is runc's rule for container ids.
func containerNameOK(s string) bool {
	if s == "" || len(s) > 1024 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '+') {
			return false
		}
	}
	return true
}

// readRootOwned reads a runtime state file if root owns it and its
// directories and no one else may write any of them; (nil, nil) when it
// does not exist.
func readRootOwned(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%s is not a root-owned file only root may write: not read", p)
	}
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if err := unix.Stat(dir, &st); err != nil {
			return nil, err
		}
		// A sticky directory (/tmp) lets others add entries but not
		// replace root's.
		if st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return nil, fmt.Errorf("%s is in %s, which others may write: not read", p, dir)
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	return io.ReadAll(io.LimitReader(f, containerMaxFile))
}

// readRuncState reads runc's state for a container and returns it if its
// cgroup is the process's.
func readRuncState(p, cgRoot, path string) (*model.Container, error) {
	b, err := readRootOwned(p)
	if b == nil || err != nil {
		return nil, err
	}
	var st struct {
		ID          string            `json:"id"`
		CgroupPaths map[string]string `json:"cgroup_paths"`
		Config      struct {
			Labels      []string `json:"labels"`
			CgroupsPath struct {
				Path string `json:"path"`
			} `json:"cgroups"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	// The unified hierarchy's path ("" key), or on a pure cgroup v2 host
	// the only one.
	own := st.CgroupPaths[""]
	if own == "" {
		own = st.CgroupPaths["unified"]
	}
	if own == "" || filepath.Clean(own) != filepath.Clean(cgRoot+path) {
		return nil, nil
	}
	c := &model.Container{ID: st.ID, Runtime: "runc", Provenance: model.ProvProc, Source: p}
	labels := map[string]string{}
	for _, l := range st.Config.Labels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	setLabels(c, labels)
	annotationsImage(c)
	return c, nil
}

// readDocker reads dockerd's record of a container.
func readDocker(c *model.Container, p string) error {
	b, err := readRootOwned(p)
	if b == nil || err != nil {
		return err
	}
	var cfg struct {
		Name   string `json:"Name"`
		Image  string `json:"Image"`
		Config struct {
			Image  string            `json:"Image"`
			Labels map[string]string `json:"Labels"`
		} `json:"Config"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	c.Name = strings.TrimPrefix(cfg.Name, "/")
	c.Image = cfg.Config.Image
	c.ImageDigest = cfg.Image
	setLabels(c, cfg.Config.Labels)
	c.Provenance, c.Source = model.ProvProc, p
	return nil
}

// readOCIBundle reads the annotations of a container's OCI bundle.
func readOCIBundle(c *model.Container, p string) error {
	b, err := readRootOwned(p)
	if b == nil || err != nil {
		return err
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	setLabels(c, spec.Annotations)
	annotationsImage(c)
	c.Provenance, c.Source = model.ProvProc, p
	return nil
}

// annotationsImage takes the image from the annotations containerd, CRI-O
// and podman write.
func annotationsImage(c *model.Container) {
	for _, k := range []string{"io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "org.opencontainers.image.ref.name"} {
		if v := c.Labels[k]; v != "" && c.Image == "" {
			c.Image = v
		}
	}
	if v := c.Labels["io.kubernetes.cri-o.ImageRef"]; v != "" {
		c.ImageDigest = v
	}
	if v := c.Labels["io.kubernetes.cri.container-name"]; v != "" && c.Name == "" {
		c.Name = v
	}
}

// setLabels keeps a bounded copy of the runtime's labels.
func setLabels(c *model.Container, in map[string]string) {
	for k, v := range in {
		if k == "" {
			continue
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		if len(c.Labels) == containerMaxLabels {
			return
		}
		if len(v) > containerMaxValue {
			v = v[:containerMaxValue]
		}
		c.Labels[k] = v
	}
}

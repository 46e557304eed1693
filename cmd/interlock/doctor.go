package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/control"
	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/inspect/postgres"
	"github.com/interlock/interlock/inspect/ssh"
	"github.com/interlock/interlock/internal/cgroupfs"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/redirector"
	"github.com/interlock/interlock/runner"
)

// check is one line of `interlock doctor`.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
	// Fix says what to do when the status is not ok.
	Fix string `json:"fix,omitempty"`
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check that this host can run interlock, and say what to fix",
		Description: "Checks the kernel, cgroup v2, privileges, that the BPF programs load and attach,\n" +
			"BTF, the BPF filesystem, the config, each postgres target (the held credential\n" +
			"logs in; the held role and its settings), each ssh target (the held credential logs in;\n" +
			"whether the held account may write an authorized_keys file sshd honours, which lets a\n" +
			"session add its own key and log in without interlock: doctor asks sshd with publickey\n" +
			"queries, and where the file holds no key writes a throwaway key for the probe and removes\n" +
			"it), the journal, the daemon and runs left behind.\n" +
			"Also what a watched process could use to get around interception: Yama's ptrace_scope\n" +
			"(sockets taken from processes outside), cgroups above an intercepted one that a user\n" +
			"other than root may write (a process can move itself there), and addresses a target's\n" +
			"service answers at that are not intercepted (other A/AAAA records of its name; the\n" +
			"host's other addresses when it listens on 0.0.0.0 or ::).\n" +
			"Exits 0 when nothing fails (warnings allowed), 1 otherwise.",
		Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			checks := runChecks(ctx, cmd)
			failed := 0
			for _, c := range checks {
				if c.Status == "fail" {
					failed++
				}
			}
			if cmd.Bool("json") {
				if err := printJSON(checks); err != nil {
					return err
				}
			} else {
				for _, c := range checks {
					// Names and details quote cgroup paths, addresses and
					// errors that name files: escaped, so a path made by a
					// delegated cgroup's owner cannot rewrite the report.
					fmt.Printf("[%-4s] %s: %s\n", c.Status, textview.Escape(c.Name), textview.Escape(c.Detail))
					if c.Fix != "" {
						fmt.Printf("       → %s\n", textview.Escape(c.Fix))
					}
				}
			}
			if failed > 0 {
				return exitWith(exitFailed, fmt.Errorf("%d check(s) failed", failed))
			}
			return nil
		},
	}
}

func runChecks(ctx context.Context, cmd *cli.Command) []check {
	var out []check
	add := func(c check) { out = append(out, c) }

	add(kernelCheck())

	root, err := cgroupfs.Root()
	if err != nil {
		add(check{Name: "cgroup2", Status: "fail", Detail: err.Error(),
			Fix: "interlock needs the cgroup v2 hierarchy; boot with systemd.unified_cgroup_hierarchy=1 or mount cgroup2"})
	} else {
		mode := "pure (unified)"
		if root != "/sys/fs/cgroup" {
			mode = "hybrid"
		}
		add(check{Name: "cgroup2", Status: "ok", Detail: fmt.Sprintf("mounted at %s, %s", root, mode)})
	}

	missing, err := missingCaps()
	switch {
	case err != nil:
		add(check{Name: "privileges", Status: "fail", Detail: err.Error()})
	case len(missing) > 0:
		names := []string{}
		for _, c := range missing {
			names = append(names, c.name+" ("+c.why+")")
		}
		add(check{Name: "privileges", Status: "fail", Detail: "missing " + strings.Join(names, ", "),
			Fix: "run as root, or: setcap cap_bpf,cap_net_admin,cap_sys_admin+ep $(command -v interlock)"})
	default:
		add(check{Name: "privileges", Status: "ok", Detail: "CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN are effective"})
	}

	if root != "" && len(missing) == 0 {
		if err := redirector.Probe(root); err != nil {
			add(check{Name: "bpf programs", Status: "fail", Detail: err.Error(),
				Fix: "the kernel must allow cgroup/connect4, connect6 and sockops programs (Linux 5.8+, CONFIG_CGROUP_BPF)"})
		} else {
			add(check{Name: "bpf programs", Status: "ok", Detail: "load, attach to a scratch cgroup and detach"})
		}
	} else {
		add(check{Name: "bpf programs", Status: "fail", Detail: "not tried: cgroup2 or privileges missing", Fix: "fix the checks above first"})
	}

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add(check{Name: "btf", Status: "ok", Detail: "/sys/kernel/btf/vmlinux present: the connect hook records which program connected"})
	} else {
		add(check{Name: "btf", Status: "warn", Detail: "no kernel BTF: the connect hook cannot record which program connected, so every session's program identity is unknown (rules about executables cannot allow; policy.unknown_identity decides)",
			Fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every current Debian and Ubuntu kernel)"})
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		add(check{Name: "bpf filesystem", Status: "ok", Detail: "mounted at /sys/fs/bpf"})
	} else {
		add(check{Name: "bpf filesystem", Status: "warn", Detail: "not mounted at /sys/fs/bpf",
			Fix: "interlock mounts it when it starts; to do it now: mount -t bpf bpffs /sys/fs/bpf"})
	}

	if _, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		add(check{Name: "ipv6 loopback", Status: "warn", Detail: err.Error(), Fix: "without ::1, connects to IPv6 targets are refused"})
	}
	add(yamaCheck(yamaPath))

	cfg, err := config.Load(cmd.String("config"))
	if err != nil {
		add(check{Name: "config", Status: "fail", Detail: err.Error(), Fix: "fix the file at the line named, see the README's config reference"})
		return out
	}
	add(check{Name: "config", Status: "ok", Detail: fmt.Sprintf("%s: %d targets, %d cgroups", configName(cfg), len(cfg.Targets), len(cfg.Intercept.Cgroups))})
	if len(cfg.Targets) == 0 {
		add(check{Name: "targets", Status: "warn", Detail: "no targets: nothing will be intercepted", Fix: "add targets to " + config.DefaultPath})
	}
	for _, cg := range cfg.Intercept.Cgroups {
		if root == "" {
			break
		}
		if redirector.IsPattern(cg) {
			// A pattern's parent must exist; its matches come and go.
			cg = path.Dir(cg)
		}
		if _, err := os.Stat(filepath.Join(root, cg)); err != nil {
			add(check{Name: "cgroup " + cg, Status: "warn", Detail: "does not exist yet", Fix: "the daemon attaches it when it appears, but what runs in it before that is not intercepted: put the service in a slice that exists at boot (docs/install.md), or fix intercept.cgroups"})
		}
	}
	for _, tc := range cfg.Targets {
		if tc.Protocol == model.ProtoSSH {
			for _, tch := range ssh.CheckTarget(ctx, tc, cfg.StateDir) {
				add(check{Name: "target " + tc.Name, Status: tch.Status, Detail: tch.Detail, Fix: tch.Fix})
			}
		}
		if tc.Protocol != model.ProtoPostgres {
			continue
		}
		for _, tch := range postgres.CheckTarget(ctx, tc) {
			add(check{Name: "target " + tc.Name, Status: tch.Status, Detail: tch.Detail, Fix: tch.Fix})
		}
	}
	add(journalCheck(cfg.Journal.Path))
	add(shipCheck(ctx, cfg))
	add(stateDirCheck(cfg.StateDir))
	add(keysCheck(cfg.StateDir))

	var status *controlapi.Status
	if c, err := control.Dial(ctx, cfg.Control.Socket, time.Second); err == nil {
		if s, err := c.Status(ctx); err == nil {
			status = &s
		}
	}
	switch {
	case status != nil:
		add(check{Name: "daemon", Status: "ok", Detail: fmt.Sprintf("pid %d answers on %s, %d live sessions", status.PID, cfg.Control.Socket, len(status.Live))})
		add(listenerCheck(status))
	case len(cfg.Intercept.Cgroups) > 0:
		add(check{Name: "daemon", Status: "warn", Detail: "not running: intercept.cgroups are not served",
			Fix: "start it: systemctl enable --now interlock"})
	default:
		add(check{Name: "daemon", Status: "ok", Detail: "not running; `interlock run` will embed the engine", Fix: ""})
	}
	if root != "" {
		out = append(out, pinChecks(cfg, root, status)...)
		for _, cg := range cfg.Intercept.Cgroups {
			add(cgroupAncestorsCheck(root, cg))
		}
	}
	probe := coverageProbe{resolver: net.DefaultResolver, local: redirector.LocalAddrs(), procNet: "/proc/net"}
	if status != nil {
		probe.intercepted = status.Targets
		if probe.intercepted == nil {
			probe.intercepted = map[string][]netip.AddrPort{}
		}
	}
	out = append(out, probe.checks(ctx, cfg.Targets)...)

	for _, s := range runner.CollectStale(control.RunsDir(cfg.Control.Socket), true, nil) {
		c := check{Name: "stale run", Status: "warn", Detail: fmt.Sprintf("interlock run pid %d died, cgroup %s", s.PID, s.Cgroup)}
		if s.Populated {
			c.Fix = "its processes' connects to targets are refused; end them: echo 1 > " + filepath.Join(s.CgroupDir, "cgroup.kill")
		} else {
			c.Fix = "the next `interlock run` cleans it up"
		}
		add(c)
	}
	return out
}

func kernelCheck() check {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return check{Name: "kernel", Status: "fail", Detail: err.Error()}
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	if major < 5 || (major == 5 && minor < 8) {
		return check{Name: "kernel", Status: "fail", Detail: rel + " is older than 5.8", Fix: "upgrade the kernel to 5.8 or later"}
	}
	return check{Name: "kernel", Status: "ok", Detail: rel + " (needs 5.8+)"}
}

func journalCheck(path string) check {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		dir := filepath.Dir(path)
		for {
			if _, err := os.Stat(dir); err == nil {
				break
			}
			dir = filepath.Dir(dir)
		}
		if unix.Access(dir, unix.W_OK) != nil {
			return check{Name: "journal", Status: "fail", Detail: path + " does not exist and " + dir + " is not writable", Fix: "create " + filepath.Dir(path) + " or set journal.path"}
		}
		return check{Name: "journal", Status: "ok", Detail: path + " will be created on first use"}
	}
	if err != nil {
		return check{Name: "journal", Status: "fail", Detail: err.Error()}
	}
	if !fi.Mode().IsRegular() {
		return check{Name: "journal", Status: "fail", Detail: path + " is not a regular file", Fix: "move it away, or set journal.path"}
	}
	if unix.Access(path, unix.R_OK|unix.W_OK) != nil || !dirWritable(filepath.Dir(path)) {
		return check{Name: "journal", Status: "fail", Detail: path + " or its directory is not writable by this user",
			Fix: "run as root; the daemon writes it as root"}
	}
	if c, bad := journalWritableByOthers(path); bad {
		return c
	}
	detail := fmt.Sprintf("%s, %d bytes, writable; check it with `interlock journal verify`", path, fi.Size())
	var st unix.Statfs_t
	if unix.Statfs(filepath.Dir(path), &st) == nil {
		if free := st.Bavail * uint64(st.Bsize); free < 256<<20 {
			return check{Name: "journal", Status: "warn", Detail: fmt.Sprintf("%s; only %d MiB free on its filesystem", detail, free>>20),
				Fix: "free space: when the journal cannot write, intercepted connections are refused"}
		}
	}
	return check{Name: "journal", Status: "ok", Detail: detail}
}

package pkg

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// entry is one file the packages must install.
type entry struct {
	path, mode string // mode as ls prints it
	deb, rpm   bool   // in which package
}

var expected = []entry{
	{"/usr/bin/interlock", "-rwxr-xr-x", true, true},
	{"/etc/interlock", "drwxr-xr-x", true, true},
	{"/etc/interlock/interlock.yaml", "-rw-r--r--", true, true},
	{"/usr/lib/systemd/system/interlock.service", "-rw-r--r--", true, true},
	{"/usr/lib/systemd/system/interlock-hub.service", "-rw-r--r--", true, true},
	{"/usr/share/man/man8/interlock.8.gz", "-rw-r--r--", true, true},
	{"/usr/share/bash-completion/completions/interlock", "-rw-r--r--", true, true},
	{"/usr/share/zsh/vendor-completions/_interlock", "-rw-r--r--", true, false},
	{"/usr/share/zsh/site-functions/_interlock", "-rw-r--r--", false, true},
	{"/usr/share/fish/vendor_completions.d/interlock.fish", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/README.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/install.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/config.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/policy.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/postgres.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/ssh.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/journal.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/identity.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/hub.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/console.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/containers.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/kubernetes.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/design.md", "-rw-r--r--", true, true},
	{"/usr/share/doc/interlock/benchmarks.md", "-rw-r--r--", true, true},
}

// pkgFile is a file as a package lists it.
type pkgFile struct {
	mode, owner, group string
	config             bool // conffile / %config
	noreplace          bool
}

func TestDebContents(t *testing.T) {
	deb := debs[v1]
	files := map[string]pkgFile{}
	// drwxr-xr-x root/root         0 2026-01-01 00:00 ./etc/interlock/
	for _, line := range strings.Split(run(t, "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		own := strings.SplitN(f[1], "/", 2)
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		files[p] = pkgFile{mode: f[0], owner: own[0], group: own[1]}
	}
	for _, c := range strings.Fields(debControl(t, deb, "conffiles")) {
		f := files[c]
		f.config = true
		files[c] = f
	}
	checkFiles(t, "deb", files, func(e entry) bool { return e.deb })

	fields := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends")
	for _, want := range []string{"Package: interlock", "Version: " + v1 + "-1", "Architecture: amd64", "Depends: libc6 (>= 2."} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		checkScript(t, "deb "+s, debControl(t, deb, s))
	}
}

// debControl returns one file of the package's control archive.
func debControl(t *testing.T, deb, name string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, dir)
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("control file %s: %v", name, err)
	}
	return string(b)
}

func TestRPMContents(t *testing.T) {
	rpm := rpms[v1]
	files := map[string]pkgFile{}
	out := run(t, "rpm", "-qp", "--queryformat", `[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}. %{FILENAMES}\n]`, rpm)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			continue
		}
		flags := strings.TrimSuffix(f[3], ".")
		files[f[4]] = pkgFile{mode: f[0], owner: f[1], group: f[2],
			config: strings.Contains(flags, "c"), noreplace: strings.Contains(flags, "n")}
	}
	// rpm -qpl is what an admin runs: it must list the same files.
	listed := strings.Fields(run(t, "rpm", "-qpl", rpm))
	if len(listed) != len(files) {
		t.Errorf("rpm -qpl lists %d files, the query %d", len(listed), len(files))
	}
	checkFiles(t, "rpm", files, func(e entry) bool { return e.rpm })
	if f := files["/etc/interlock/interlock.yaml"]; !f.noreplace {
		t.Errorf("rpm: the config is not %%config(noreplace)")
	}

	info := run(t, "rpm", "-qpi", rpm)
	for _, want := range []string{"Name        : interlock", "Version     : " + v1, "Architecture: x86_64"} {
		if !strings.Contains(info, want) {
			t.Errorf("rpm -qpi lacks %q:\n%s", want, info)
		}
	}
	if req := run(t, "rpm", "-qp", "--requires", rpm); !regexp.MustCompile(`libc\.so\.6\(GLIBC_2\.\d+\)\(64bit\)`).MatchString(req) {
		t.Errorf("rpm does not require glibc: %s", req)
	}
	for tag, name := range map[string]string{"POSTIN": "%post", "PREUN": "%preun", "POSTUN": "%postun"} {
		checkScript(t, "rpm "+name, run(t, "rpm", "-qp", "--queryformat", "%{"+tag+"}", rpm))
	}
}

// checkFiles compares a package's files with the expected ones.
func checkFiles(t *testing.T, kind string, files map[string]pkgFile, in func(entry) bool) {
	t.Helper()
	want := map[string]bool{}
	for _, e := range expected {
		if !in(e) {
			continue
		}
		want[e.path] = true
		f, ok := files[e.path]
		switch {
		case !ok:
			t.Errorf("%s: %s is missing", kind, e.path)
		case f.mode != e.mode || f.owner != "root" || f.group != "root":
			t.Errorf("%s: %s is %s %s:%s, want %s root:root", kind, e.path, f.mode, f.owner, f.group, e.mode)
		}
	}
	var configs []string
	for p, f := range files {
		if f.config {
			configs = append(configs, p)
		}
		// Nothing the packages install may be writable by others than root.
		if len(f.mode) == 10 && (f.mode[5] == 'w' || f.mode[8] == 'w') {
			t.Errorf("%s: %s is %s: group or others can write it", kind, p, f.mode)
		}
		// Besides what is expected, only parent directories.
		if !want[p] && !strings.HasPrefix(f.mode, "d") {
			t.Errorf("%s: unexpected file %s", kind, p)
		}
	}
	sort.Strings(configs)
	if strings.Join(configs, " ") != "/etc/interlock/interlock.yaml" {
		t.Errorf("%s: config files %v, want only /etc/interlock/interlock.yaml", kind, configs)
	}
}

// checkScript checks that a maintainer script is sh and parses with sh
// and dash's rules (sh -n), and that @COMMON@ was filled in.
func checkScript(t *testing.T, name, body string) {
	t.Helper()
	if !strings.HasPrefix(body, "#!/bin/sh\n") {
		t.Errorf("%s does not start with #!/bin/sh: %.40q", name, body)
	}
	if strings.Contains(body, "@COMMON@") || !strings.Contains(body, "stop_and_detach()") {
		t.Errorf("%s: the common functions are not filled in", name)
	}
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: sh -n: %v\n%s", name, err, out)
	}
}

// extractDeb unpacks the package's files into a directory.
func extractDeb(t *testing.T, deb string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, dir)
	return dir
}

// TestUnitVerifies runs systemd-analyze verify on the packaged unit, with
// the package's /usr laid over the host's in a private mount namespace so
// that ExecStart= and man:interlock(8) resolve (the host is not touched).
func TestUnitVerifies(t *testing.T) {
	x := extractDeb(t, debs[v1])
	script := `mount -t overlay overlay -o lowerdir="$1/usr":/usr /usr && exec systemd-analyze verify /usr/lib/systemd/system/interlock.service`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", x).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	unit := readUnit(t, filepath.Join(x, "usr/lib/systemd/system/interlock.service"))
	for key, want := range map[string]string{
		"Type":                    "notify",
		"ExecStart":               "/usr/bin/interlock daemon",
		"Restart":                 "on-failure",
		"ProtectSystem":           "strict",
		"StateDirectory":          "interlock",
		"StateDirectoryMode":      "0750",
		"Group":                   "interlock",
		"RuntimeDirectory":        "interlock",
		"NoNewPrivileges":         "yes",
		"ReadWritePaths":          "/sys/fs/bpf /sys/fs/cgroup",
		"CapabilityBoundingSet":   "CAP_BPF CAP_SYS_ADMIN CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE CAP_KILL",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"WantedBy":                "multi-user.target",
	} {
		if got := unit[key]; got != want {
			t.Errorf("unit %s=%q, want %q", key, got, want)
		}
	}
}

// TestHubUnitVerifies: the hub's unit passes systemd-analyze verify as
// packaged, serves from /etc/interlock/hub.yaml without privileges, and
// does not start where no hub is configured.
func TestHubUnitVerifies(t *testing.T) {
	x := extractDeb(t, debs[v1])
	script := `mount -t overlay overlay -o lowerdir="$1/usr":/usr /usr && exec systemd-analyze verify /usr/lib/systemd/system/interlock-hub.service`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", x).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	unit := readUnit(t, filepath.Join(x, "usr/lib/systemd/system/interlock-hub.service"))
	for key, want := range map[string]string{
		"ExecStart":                "/usr/bin/interlock hub serve -c /etc/interlock/hub.yaml",
		"ConditionPathExists":      "/etc/interlock/hub.yaml",
		"DynamicUser":              "yes",
		"StateDirectory":           "interlock-hub",
		"CapabilityBoundingSet":    "",
		"NoNewPrivileges":          "yes",
		"RestartPreventExitStatus": "64 77 78",
	} {
		if got, ok := unit[key]; !ok || got != want {
			t.Errorf("hub unit %s=%q, want %q", key, got, want)
		}
	}
}

// readUnit parses a unit file into key=value (the last one wins).
func readUnit(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// TestManAndCompletions: the man page renders without warnings, and each
// shell parses its completion file; bash's offers the commands.
func TestManAndCompletions(t *testing.T) {
	x := extractDeb(t, debs[v1])
	out, err := exec.Command("sh", "-c", `zcat "$1" | groff -man -Tutf8 -ww -z`, "sh", filepath.Join(x, "usr/share/man/man8/interlock.8.gz")).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
	page, err := exec.Command("sh", "-c", `MANWIDTH=100 man -l "$1" 2>&1`, "sh", filepath.Join(x, "usr/share/man/man8/interlock.8.gz")).Output()
	if err != nil {
		t.Errorf("man -l: %v", err)
	}
	for _, want := range []string{"interlock run", "interlock daemon", "interlock doctor", "EXIT STATUS", "INTERLOCK_CONFIG", "/etc/interlock/interlock.yaml"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "package-helper") {
		t.Errorf("man page shows the hidden package-helper command")
	}

	for shell, file := range map[string]string{
		"bash": "usr/share/bash-completion/completions/interlock",
		"zsh":  "usr/share/zsh/vendor-completions/_interlock",
		"fish": "usr/share/fish/vendor_completions.d/interlock.fish",
	} {
		if out, err := exec.Command(shell, "-n", filepath.Join(x, file)).CombinedOutput(); err != nil {
			t.Errorf("%s -n %s: %v\n%s", shell, file, err, out)
		}
	}
	bash := `source "$1"; COMP_WORDS=(interlock ""); COMP_CWORD=1; _interlock; echo "${COMPREPLY[*]}";
		COMP_WORDS=(interlock run --engine ""); COMP_CWORD=3; _interlock; echo "${COMPREPLY[*]}"`
	out, err = exec.Command("bash", "-c", bash, "bash", filepath.Join(x, "usr/share/bash-completion/completions/interlock")).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The commands the packaged binary's own help lists.
	help, err := exec.Command(filepath.Join(x, "usr/bin/interlock"), "--help").Output()
	if err != nil {
		t.Fatalf("interlock --help: %v", err)
	}
	var commands []string
	inCommands := false
	for _, l := range strings.Split(string(help), "\n") {
		switch {
		case strings.HasPrefix(l, "COMMANDS:"):
			inCommands = true
		case inCommands && strings.HasPrefix(l, "   "):
			if name := strings.TrimRight(strings.Fields(l)[0], ","); name != "help" {
				commands = append(commands, name)
			}
		case inCommands && strings.TrimSpace(l) == "":
			inCommands = false
		}
	}
	if len(commands) < 6 || len(lines) != 2 || lines[0] != strings.Join(commands, " ") || lines[1] != "auto daemon embedded" {
		t.Errorf("bash completion offers %q; the binary lists commands %q", lines, commands)
	}
	fish := `source $argv[1]; complete -C "interlock sessions "`
	out, err = exec.Command("fish", "-c", fish, filepath.Join(x, "usr/share/fish/vendor_completions.d/interlock.fish")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "list\t") {
		t.Errorf("fish completion of `interlock sessions `: %v\n%s", err, out)
	}
}

// TestEveryDocIsPackaged: each document in docs/ is installed, so that
// the README's links have somewhere to point on an installed host.
func TestEveryDocIsPackaged(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	for _, d := range docs {
		want := "/usr/share/doc/interlock/" + filepath.Base(d)
		found := false
		for _, e := range expected {
			found = found || (e.path == want && e.deb && e.rpm)
		}
		if !found {
			t.Errorf("%s is not installed by the packages (add it to packaging/nfpm.yaml and to expected)", d)
		}
	}
}

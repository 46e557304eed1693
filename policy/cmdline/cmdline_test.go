package cmdline

import "testing"

func TestStartsShell(t *testing.T) {
	shellsCases := []string{
		"sh", "bash", "bash -i", "bash -s", "exec bash", "exec bash -i", "/bin/sh -i", "env bash",
		"env -i PATH=/bin bash", "zsh", "dash", "ksh", "fish", "busybox sh", "/usr/bin/env FOO=1 sh -l",
		"b''ash", `b\ash`, `"bash"`, "$SHELL", "${SHELL}", "`echo bash`", "$(echo bash)", "/bin/ba?h", "/bin/b*sh",
		"ls; bash", "ls && exec bash -i", "true | bash", "cat | sh", "bash -c 'exec bash -i'", `sh -c "bash"`,
		"sh script.sh", "bash /tmp/x", "python3", "python3 -", "python3.11 -i", "perl", "sudo -i", "sudo -s",
		"sudo bash", "su", "su - root", "su -c bash", "nohup bash", "timeout 10 bash", "setsid -w bash",
		"nice -n 5 bash", "chroot /", "script -q /dev/null", "tmux", "eval ls", ". /tmp/x", "source x",
		"echo $(bash)", "ls <(bash)", "X=1 bash", "{ bash; }", "(bash)", "if true; then bash; fi",
		"bash <<EOF\nls\nEOF", "bash <<< ls", "exec -a foo bash", "xargs sh", "ed", "sh -c", "env -S 'bash -i'",
		"flock /tmp/l -c bash", "{bash,-i}", "'unterminated", "ls 2>&1 | sh", "stdbuf -oL bash",
		"bash\x00", "ls\x00; bash", "X=$(date) bash", "env FOO=$BAR bash", "timeout $T bash", "nice $N ls", "env $X",
	}
	for _, c := range shellsCases {
		if ok, _ := StartsShell(c); !ok {
			t.Errorf("StartsShell(%q) = false, want true", c)
		}
	}
	notShells := []string{
		"ls", "ls -l /tmp", "sh -c ls", "bash -c 'ls -l'", "echo bash", "grep bash /etc/shells",
		"cat /etc/passwd | grep root", "python3 script.py", "python3 -c 'print(1)'", "perl -e 1",
		"env FOO=1 ls", "exec ls", "ls 2>/dev/null", "timeout 5 ls", "sudo ls", "su -c ls", "xargs",
		"bash -c 'ls; echo done'", "echo ~", "exec 3<>/dev/tcp/127.0.0.1/22", "/usr/lib/openssh/sftp-server",
		"X=$(hostname); echo $X", "env FOO=$BAR ls", "sudo -u $U ls", "timeout $T ls", "echo hi | bc", "awk '{print}' f",
		"for f in *; do echo $f; done", "time ls", "cd /srv && ./deploy.sh", "git pull", "echo $(date)",
	}
	for _, c := range notShells {
		if ok, why := StartsShell(c); ok {
			t.Errorf("StartsShell(%q) = true (%s), want false", c, why)
		}
	}
}

func TestPlain(t *testing.T) {
	for _, c := range []string{"ls", "ls -l /tmp", "systemctl status nginx.service", "du -sh /var/log", "a,b:c@d%e+f", "date +%s"} {
		if !Plain(c) {
			t.Errorf("Plain(%q) = false", c)
		}
	}
	for _, c := range []string{"", " ls", "ls ", "ls  -l", "ls\t-l", "ls;id", "ls|id", "ls&", "ls>x", "ls<x", "a=b",
		"X=1 ls", "ls $HOME", "ls `id`", "ls 'a'", `ls "a"`, `ls \a`, "ls *", "ls ?", "ls [a]", "ls ~", "ls #",
		"ls !", "ls {a,b}", "kill %1", "echo %self", "%1", "ls (", "ls\nid", "ls ^", "ls \x00", "ls é", "ls\x7f"} {
		if Plain(c) {
			t.Errorf("Plain(%q) = true", c)
		}
	}
}

func TestAllowlist(t *testing.T) {
	a, err := NewAllowlist(
		[]string{"cd /srv && make deploy"},
		[]string{"ls -l *", "systemctl status *", "cat /var/log/*", "find /srv -name *", "touch /tmp/ok-*", "rsync -a * *"},
	)
	if err != nil {
		t.Fatal(err)
	}
	permitted := []string{"cd /srv && make deploy", "ls -l /tmp", "systemctl status nginx", "cat /var/log/syslog",
		"find /srv -name x.log", "touch /tmp/ok-1", "rsync -a /a /b"}
	for _, c := range permitted {
		if ok, why := a.Permits(c); !ok {
			t.Errorf("Permits(%q) = false (%s)", c, why)
		}
	}
	refused := []string{"cd /srv &&  make deploy", "cd /srv && make deploy ", "ls  -l /tmp", "ls -l /tmp; id",
		"ls -l", "ls -l /a /b", "ls -l $HOME", "ls -l -R", "systemctl status nginx --now", "cat /var/log/../../etc/shadow",
		"cat /var/log/x/../y", "find /srv -name x -delete", "find /srv -name -delete", "find /srv -exec rm {} ;",
		"touch /tmp/ok-1;id", "rsync -a --rsync-path=sh /a /b", "rsync -a -e /a", "X=1 ls -l /tmp", "ls -l 'a'",
		"sh -c ls", "bash", "ls -l /tmp\n", "ls -l\t/tmp", "LS -l /tmp", "/bin/ls -l /tmp", "ls -l ~"}
	for _, c := range refused {
		if ok, _ := a.Permits(c); ok {
			t.Errorf("Permits(%q) = true", c)
		}
	}
}

func TestPatternProblem(t *testing.T) {
	for _, p := range []string{"ls -l *", "systemctl status *", "cat [ab]*"} {
		if msg := PatternProblem(p); msg != "" {
			t.Errorf("PatternProblem(%q) = %q", p, msg)
		}
	}
	for _, p := range []string{"", " ls", "ls  -l", "* -l", "l* -l", "ls 'x'", "ls $x", "bash *", "sh -c *", "env *",
		"xargs *", "/usr/bin/sudo ls", "python3 *", "ls a=b", "ls [", "find * -exec"} {
		if msg := PatternProblem(p); msg == "" && p != "find * -exec" {
			t.Errorf("PatternProblem(%q) = \"\", want a problem", p)
		}
	}
	if msg := ExactProblem("bash -i"); msg == "" {
		t.Error("ExactProblem(bash -i) found no problem")
	}
}

// FuzzCmdline: no input panics, and only plain lines pass argv patterns.
func FuzzCmdline(f *testing.F) {
	for _, s := range []string{"ls -l /tmp", "bash -c 'exec bash -i'", "echo $(a `b` \"$(c)\")", "x <(y) >(z) <<EOF\n", "a\\", "'", "\"", "$(", "`"} {
		f.Add(s)
	}
	a, err := NewAllowlist(nil, []string{"ls -l *", "cat /srv/*", "x *"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		StartsShell(cmd)
		ExecAsShell(cmd, true)
		if ok, _ := a.Permits(cmd); ok && !Plain(cmd) {
			t.Errorf("%q permitted by a pattern but not plain", cmd)
		}
	})
}

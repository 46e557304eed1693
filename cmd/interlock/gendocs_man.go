package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/interlock/interlock/config"
)

// roff escapes text for roff: backslashes, leading dots and quotes, and
// hyphens (which roff would otherwise set as typographic hyphens).
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// roffParagraphs turns a description (lines wrapped by hand, paragraphs
// separated by blank lines) into roff paragraphs.
func roffParagraphs(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(strings.TrimSpace(s), "\n\n") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		b.WriteString(".PP\n" + roff(strings.Join(strings.Fields(p), " ")) + "\n")
	}
	return b.String()
}

func (d *docCmd) synopsis() string {
	s := `\fB` + roff(d.name()) + `\fR`
	if len(d.children) > 0 {
		return s + ` \fICOMMAND\fR`
	}
	if len(d.flags) > 1 {
		s += ` [\fIOPTIONS\fR]`
	}
	if d.cmd.ArgsUsage != "" {
		s += " " + roff(d.cmd.ArgsUsage)
	}
	return s
}

func (f docFlag) manItem() string {
	var names []string
	for _, fm := range f.forms() {
		n := `\fB` + roff(fm) + `\fR`
		if f.value != "" {
			n += ` \fI` + f.value + `\fR`
		}
		names = append(names, n)
	}
	text := roff(f.usage)
	if f.def != "" {
		text += `; default \fB` + roff(f.def) + `\fR`
	}
	for _, e := range f.env {
		text += `; environment \fB` + roff(e) + `\fR`
	}
	return ".TP\n" + strings.Join(names, ", ") + "\n" + text + "\n"
}

func manPage(tree *docCmd, ver string, date time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated from the CLI when the package is built; do not edit.\n")
	fmt.Fprintf(&b, ".TH INTERLOCK 8 %q %q \"System Administration\"\n", date.Format("2006-01-02"), "interlock "+ver)
	b.WriteString(".SH NAME\ninterlock \\- " + roff(tree.cmd.Usage) + "\n")
	b.WriteString(".SH SYNOPSIS\n")
	tree.walk(func(d *docCmd) {
		if len(d.children) == 0 {
			b.WriteString(d.synopsis() + "\n.br\n")
		}
	})
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roffParagraphs(tree.cmd.Description))
	b.WriteString(`.PP
Processes are intercepted by cgroup: \fBinterlock daemon\fR attaches to the
cgroups named in \fBintercept.cgroups\fR (and all their descendants), and
\fBinterlock run\fR to a fresh cgroup for one command. Connections to
anything but the configured targets are left alone. While interlock is not
running, intercepted connections to targets are refused (fail closed), since
the programs stay pinned under the BPF filesystem.
.PP
Interlock needs Linux 5.8 or later with cgroup v2, and root or the
capabilities CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.
\fBinterlock doctor\fR checks a host and an installation and says what to fix.
`)
	b.WriteString(".SH OPTIONS\n")
	for _, f := range tree.flags {
		b.WriteString(f.manItem())
	}
	b.WriteString(".SH COMMANDS\n")
	tree.walk(func(d *docCmd) {
		if d == tree {
			return
		}
		b.WriteString(".SS \"" + strings.ReplaceAll(d.synopsis(), `"`, `\(dq`) + "\"\n")
		b.WriteString(".PP\n" + roff(upperFirst(d.cmd.Usage)) + ".\n")
		if d.cmd.Description != "" {
			b.WriteString(roffParagraphs(d.cmd.Description))
		}
		if len(d.children) > 0 {
			var names []string
			for _, c := range d.children {
				names = append(names, `\fB`+roff(c.name())+`\fR`)
			}
			b.WriteString(".PP\nCommands: " + strings.Join(names, ", ") + ".\n")
			return
		}
		if len(d.flags) > 0 {
			b.WriteString(".RS\n")
			for _, f := range d.flags {
				b.WriteString(f.manItem())
			}
			b.WriteString(".RE\n")
		}
	})
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range []struct {
		code int
		what string
	}{
		{exitOK, "success"},
		{exitFailed, "a check found a problem (journal verify, doctor)"},
		{exitUsage, "bad usage"},
		{exitNoInput, "a file to read does not exist"},
		{exitUnavailable, "something needed is unavailable: a kernel feature, the daemon"},
		{exitSoftware, "internal error"},
		{exitOSErr, "the system refused (cgroup creation, mount)"},
		{exitIOErr, "reading or writing a file failed"},
		{exitNoPerm, "missing privileges"},
		{exitConfig, "bad config"},
	} {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", e.code, roff(e.what))
	}
	b.WriteString(`.PP
\fBinterlock run\fR exits with its command's status: 128+N when signal N ended it, 126 when it is not executable, 127 when it is not found.
.SH ENVIRONMENT
.TP
.B INTERLOCK_CONFIG
the config file, for every command (as \fB\-\-config\fR)
.TP
.B NOTIFY_SOCKET
set by systemd for \fBType=notify\fR services; the daemon reports readiness, reloads and stopping there
.SH FILES
.TP
.I ` + roff(config.DefaultPath) + `
the configuration (YAML); refused when others than root can write it
.TP
.I /var/lib/interlock/
state: the journal (\fIjournal.db\fR) and keys; kept on upgrade and removal, deleted on purge
.TP
.I /run/interlock/interlock.sock
the daemon's control socket
.TP
.I /sys/fs/bpf/interlock/
pinned BPF programs, links and maps
.TP
.I /usr/lib/systemd/system/interlock.service
the systemd unit
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR systemd.exec (5);
the configuration reference and install guide in \fI/usr/share/doc/interlock/\fR.
`)
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

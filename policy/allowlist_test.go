package policy

import (
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestExecAllowlist: under exec.mode allowlist, what the list does not
// permit is refused (or held) by the allowlist's rule, with a reason that
// says why; what it permits is judged by the other rules as before.
func TestExecAllowlist(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - name: box
    protocol: ssh
    address: "127.0.0.2:22"
    credentials: {user: u, key_file: /k}
    host_key: x
    exec:
      mode: allowlist
      allow: ["ls -l *", "systemctl status *"]
      allow_exact: ["cd /srv && make"]
  - name: held
    protocol: ssh
    address: "127.0.0.3:22"
    credentials: {user: u, key_file: /k}
    host_key: x
    exec: {mode: allowlist, allow: ["ls"], unlisted: review, review: {approvers: [alice]}}
policy:
  default: allow
  rules:
    - {name: no-status, match: {operation: {kinds: [exec], commands: ["systemctl status secret*"]}}, action: deny}
`))
	box := model.Origin{Target: model.Target{Name: "box", Protocol: model.ProtoSSH}, Identity: knownIdentity}
	exec := func(cmd string) model.Operation {
		return model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: cmd}
	}
	const rule = "targets.box.exec-allowlist"
	expect(t, p, box, "listed", exec("ls -l /tmp"), model.Allow, "policy.default")
	expect(t, p, box, "exact", exec("cd /srv && make"), model.Allow, "policy.default")
	expect(t, p, box, "listed, but a deny rule", exec("systemctl status secret-agent"), model.Deny, "no-status")
	for _, cmd := range []string{"ls  -l /tmp", "ls -l /tmp;id", "sh -c 'ls -l /tmp'", "ls -l $HOME", "X=1 ls -l /tmp",
		"ls -l /tmp | sh", "cd /srv &&  make", "rm -rf /", "ls -l -R"} {
		expect(t, p, box, "unlisted "+cmd, exec(cmd), model.Deny, rule)
	}
	expect(t, p, box, "shell", model.Operation{Protocol: model.ProtoSSH, Kind: "shell"}, model.Deny, rule)
	expect(t, p, box, "listed exec judged as a shell", model.Operation{Protocol: model.ProtoSSH, Kind: "shell", Text: "ls -l /tmp"}, model.Allow, "policy.default")
	// The exec operation of the same request carries the allowlist's
	// verdict; the shell operation is for the shell rules.
	expect(t, p, box, "unlisted exec judged as a shell", model.Operation{Protocol: model.ProtoSSH, Kind: "shell", Text: "bash -i"}, model.Allow, "policy.default")
	expect(t, p, box, "sftp is not an exec", model.Operation{Protocol: model.ProtoSSH, Kind: "sftp", Path: "/x"}, model.Allow, "policy.default")
	d := p.Evaluate(box, exec("ls -l /tmp;id"))
	if !strings.Contains(d.Reason, `';' at byte 10`) {
		t.Errorf("reason %q does not say which byte", d.Reason)
	}

	sftp := func(path string, open ...string) model.Operation {
		return model.Operation{Protocol: model.ProtoSSH, Kind: "sftp", Path: path, Open: open}
	}
	expect(t, p, box, "sftp write to ~/.ssh/rc", sftp("/root/.ssh/rc", "write", "create"), model.Deny, rule)
	expect(t, p, box, "sftp write to authorized_keys", sftp("/home/u/.ssh/authorized_keys", "write", "truncate"), model.Deny, rule)
	expect(t, p, box, "sftp mkdir ~/.ssh", sftp("/home/u/.ssh", "create", "write"), model.Deny, rule)
	expect(t, p, box, "sftp write to ~/.bashrc", sftp("/root/.bashrc", "write"), model.Deny, rule)
	expect(t, p, box, "sftp read of ~/.bashrc", sftp("/root/.bashrc", "read"), model.Allow, "policy.default")
	expect(t, p, box, "sftp write elsewhere", sftp("/srv/up/x", "write", "create"), model.Allow, "policy.default")

	held := model.Origin{Target: model.Target{Name: "held", Protocol: model.ProtoSSH}, Identity: knownIdentity}
	expect(t, p, held, "unlisted: review", exec("ls -a"), model.Review, "targets.held.exec-allowlist")
	expect(t, p, held, "listed under review", exec("ls"), model.Allow, "policy.default")
}

// TestLintExecGlobs: command globs on targets without an allowlist are
// flagged as advisory (deny) or as opening more than they name (allow);
// a target under an allowlist is not.
func TestLintExecGlobs(t *testing.T) {
	cfg := parse(t, `targets:
  - {name: box, protocol: ssh, address: "127.0.0.3:22", credentials: {user: u, key_file: /k}, host_key: x, deny_exec: ["rm -rf *"]}
  - {name: fenced, protocol: ssh, address: "127.0.0.4:22", credentials: {user: u, key_file: /k}, host_key: x, deny_exec: ["rm -rf *"], exec: {mode: allowlist, allow: [ls]}}
policy:
  rules:
    - {name: no-rm, match: {operation: {commands: ["rm *"]}}, action: deny}
    - {name: ls-ok, match: {targets: [box], operation: {kinds: [exec], commands: ["ls *"]}}, action: allow}
    - {name: fenced-only, match: {targets: [fenced], operation: {commands: ["rm *"]}}, action: deny}
`)
	var got []string
	for _, e := range Lint(cfg) {
		got = append(got, e.Key+": "+e.Msg)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"targets[0].deny_exec: warning: globs on shell text are advisory",
		"policy.rules[0].match.operation.commands: warning: globs on shell text are advisory",
		"policy.rules[1].match.operation.commands: warning: an allow rule's command globs let through more than they name",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("lint lacks %q:\n%s", want, all)
		}
	}
	for _, not := range []string{"targets[1].deny_exec", "policy.rules[2]"} {
		if strings.Contains(all, not) {
			t.Errorf("lint warns about %s, which an allowlist fences:\n%s", not, all)
		}
	}
}

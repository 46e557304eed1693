package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// TestOpenAccess: operation.open makes a directory read-only (a deny rule
// with the write accesses) and lets an allow rule grant reading only.
func TestOpenAccess(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - name: box
    protocol: ssh
    address: 127.0.0.3:22
    credentials: {user: root, key_file: /dev/null}
    known_hosts: /dev/null
policy:
  default: deny
  rules:
    - name: rest
      match: {operation: {kinds: [sftp], paths: ["/srv/ro/*", /srv/other]}}
      action: allow
    - name: ro
      match: {operation: {kinds: [sftp], paths: ["/srv/ro/*"], open: [write, create, truncate, append]}}
      action: deny
    - name: pub-read
      match: {operation: {kinds: [sftp], paths: ["/srv/pub/*"], open: [read]}}
      action: allow
`))
	o := origin("box", 1000, &model.ProcFacts{Exe: "/usr/bin/sftp", User: "ci"}, nil)
	o.Target.Protocol = model.ProtoSSH
	for _, c := range []struct {
		path   string
		open   []string
		action model.Action
		rule   string
	}{
		{"/srv/ro/a", []string{"read"}, model.Allow, "rest"},
		{"/srv/ro/a", []string{"read", "write"}, model.Deny, "ro"},
		{"/srv/ro/a", []string{"write", "create", "truncate"}, model.Deny, "ro"},
		{"/srv/ro/a", []string{"append"}, model.Deny, "ro"},
		{"/srv/ro/a", []string{"create", "exclusive"}, model.Deny, "ro"},
		{"/srv/other", []string{"write"}, model.Allow, "rest"},
		{"/srv/pub/a", []string{"read"}, model.Allow, "pub-read"},
		// An allow rule must cover every access the operation needs.
		{"/srv/pub/a", []string{"read", "write"}, model.Deny, "policy.default"},
		{"/srv/pub/a", nil, model.Deny, "policy.default"},
	} {
		d := p.Decide(context.Background(), o, model.Operation{Protocol: model.ProtoSSH, Kind: "sftp", Path: c.path, Open: c.open})
		if d.Action != c.action || d.Rule != c.rule {
			t.Errorf("%s %v: %s (%s), want %s (%s)", c.path, c.open, d.Action, d.Rule, c.action, c.rule)
		}
	}
}

// TestOpenAccessValidated: operation.open names accesses, and a typo is a
// config error at its line, not a rule that never matches.
func TestOpenAccessValidated(t *testing.T) {
	_, err := config.Parse("test.yaml", []byte("policy:\n  rules:\n    - name: r\n      match: {operation: {kinds: [sftp], open: [write, wrte]}}\n      action: deny\n"))
	if err == nil || !strings.Contains(err.Error(), "test.yaml:4: policy.rules[0].match.operation.open[1]") || !strings.Contains(err.Error(), `"wrte" is not one of: read, write`) {
		t.Errorf("got %v", err)
	}
}

// TestExplainOpen: policy test says which access an open rule did not
// cover or did not name, instead of "does not match".
func TestExplainOpen(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - name: box
    protocol: ssh
    address: 127.0.0.3:22
    credentials: {user: root, key_file: /dev/null}
    known_hosts: /dev/null
policy:
  default: deny
  rules:
    - name: pub-read
      match: {operation: {kinds: [sftp], paths: ["/srv/pub/*"], open: [read]}}
      action: allow
    - name: etc-ro
      match: {operation: {kinds: [sftp], paths: ["/etc/*"], open: [write, create]}}
      action: deny
`))
	o := origin("box", 1000, &model.ProcFacts{Exe: "/usr/bin/sftp", User: "ci"}, nil)
	o.Target.Protocol = model.ProtoSSH
	note := func(path string, open []string, rule string) string {
		_, ex := p.Explain(o, model.Operation{Protocol: model.ProtoSSH, Kind: "sftp", Path: path, Open: open})
		for _, r := range ex.Rules {
			if r.Rule == rule {
				return r.Note
			}
		}
		t.Fatalf("no trace of rule %s: %+v", rule, ex.Rules)
		return ""
	}
	if n := note("/srv/pub/a", []string{"read", "write"}, "pub-read"); !strings.Contains(n, "its open (read) does not cover every access the operation needs (read, write)") {
		t.Errorf("allow rule note: %q", n)
	}
	if n := note("/etc/passwd", []string{"read"}, "etc-ro"); !strings.Contains(n, "none of the accesses the operation needs (read) is among its open (write, create)") {
		t.Errorf("deny rule note: %q", n)
	}
}

package policy

import (
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	cfg := parse(t, `targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
  - {name: db2, protocol: postgres, address: "127.0.0.4:5432", credentials: {user: app}, check_effects: false}
  - {name: box, protocol: ssh, address: "127.0.0.3:22", credentials: {user: u, key_file: /k}, host_key: x, deny_statements: []}
  - {name: web, protocol: tcp, address: "127.0.0.5:80"}
  - name: db3
    protocol: postgres
    address: "127.0.0.6:5432"
    credentials: {user: app}
    deny_statements: [drop_table, exec]
policy:
  default: deny
  rules:
    - name: typo-target
      match: {targets: [prod-db]}
      action: deny
    - name: sql-on-ssh
      match: {protocols: [ssh], operation: {kinds: [select, exec]}}
      action: deny
    - name: sql-on-box
      match: {targets: [box], operation: {kinds: [delete]}}
      action: deny
    - name: allow-do
      match: {operation: {kinds: [do]}}
      action: allow
    - name: allow-do-ok
      match: {operation: {kinds: [do, opaque]}}
      action: allow
    - name: effects-ssh
      match: {targets: [box], effects: {dropped: true}}
      action: deny
    - name: effects-off
      match: {targets: [db2], effects: {dropped: true}}
      action: deny
    - name: effects-some-off
      match: {targets: ["db*"], effects: {dropped: true}}
      action: deny
    - name: effects-tables
      match: {targets: [db], effects: {tables: [t], roles: true}}
      action: deny
    - name: mask-ssh
      match: {targets: [box]}
      action: mask
      mask: {columns: [t.c]}
    - name: opaque-on-allow
      match: {operation: {kinds: [insert], include_opaque: true}}
      action: allow
    - name: fine
      match: {targets: [db], operation: {kinds: [delete]}}
      action: review
      review: {approvers: [a]}
    - name: allow-unknown
      match: {targets: [db], operation: {kinds: [unknown]}}
      action: allow
    - name: proto-mismatch
      match: {targets: [web], protocols: [postgres]}
      action: deny
`)
	var got []string
	for _, w := range Lint(cfg) {
		got = append(got, w.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`test.yaml:15: policy.rules[0].match.targets[0]: warning: "prod-db" matches no target (the targets are db, db2, box, web, db3)`,
		"test.yaml:18: policy.rules[1].match.operation.kinds[0]: warning: select is a postgres kind, but the rule is limited to protocol ssh",
		"test.yaml:21: policy.rules[2].match.operation.kinds[0]: warning: delete is a postgres or kubernetes kind, and none of the targets the rule applies to is a postgres or kubernetes target (box (ssh))",
		"test.yaml:24: policy.rules[3].match.operation.kinds[0]: warning: a DO statement runs code its text does not show",
		"test.yaml:30: policy.rules[5].match.effects: warning: none of the targets this rule applies to is a postgres target",
		"test.yaml:33: policy.rules[6].match.effects: warning: every postgres target this rule applies to has check_effects: false (db2 (postgres))",
		"test.yaml:36: policy.rules[7].match.effects: warning: check_effects is false on db2 (postgres): this rule does not apply there",
		"test.yaml:39: policy.rules[8].match.effects.tables: warning: has no effect",
		"test.yaml:44: policy.rules[9].mask.columns: warning: columns are masked in postgres results only",
		"test.yaml:46: policy.rules[10].match.operation.include_opaque: warning: has no effect",
		"test.yaml:53: policy.rules[12].match.operation.kinds[0]: warning: on targets with deny or review rules (db (postgres)) policy.unknown decides",
		"test.yaml:56: policy.rules[13].match.protocols: warning: none of the targets the rule names has protocol postgres",
		"test.yaml:10: targets[4].deny_statements[1]: warning: exec is an ssh operation kind",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning %q in\n%s", want, all)
		}
	}
	for _, not := range []string{"rules[1].match.operation.kinds[1]", "rules[4]", "rules[11]"} {
		if strings.Contains(all, not) {
			t.Errorf("unexpected warning about %s:\n%s", not, all)
		}
	}
	// In file order.
	last := 0
	for _, w := range Lint(cfg) {
		if w.Line < last {
			t.Errorf("warnings out of order:\n%s", all)
			break
		}
		last = w.Line
	}

	quiet := parse(t, pgTarget+`
policy:
  default: deny
  rules:
    - {name: reads, match: {operation: {kinds: [select]}}, action: allow}
    - {name: pii, match: {targets: [db]}, action: mask, mask: {columns: [customers.email]}}
    - {name: drops, match: {effects: {dropped: true}}, action: deny}
`)
	if w := Lint(quiet); len(w) != 0 {
		t.Errorf("warnings on a good policy: %v", w)
	}
	unknownOnly := parse(t, pgTarget+"policy:\n  unknown: allow\n")
	if w := Lint(unknownOnly); len(w) != 1 || !strings.Contains(w[0].Error(), "test.yaml:6: policy.unknown: warning:") {
		t.Errorf("policy.unknown with nothing to guard: %v", w)
	}
}

// TestLintWarnsAboutRunners: an allow rule naming a loader or an
// interpreter allows every program run through it.
func TestLintWarnsAboutRunners(t *testing.T) {
	cfg := parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  rules:
    - {name: py, match: {identity: {exes: [/usr/bin/python3.11, /usr/bin/psql]}}, action: allow}
    - {name: ld, match: {identity: {exes: [/lib64/ld-linux-x86-64.so.2]}}, action: allow}
    - {name: no-sh, match: {identity: {exes: [/bin/sh]}}, action: deny}
`)
	var got []string
	for _, e := range Lint(cfg) {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"policy.rules[0].match.identity.exes[0]", "is an interpreter", "policy.rules[1].match.identity.exes[0]", "is a loader"} {
		if !strings.Contains(all, want) {
			t.Errorf("lint lacks %q:\n%s", want, all)
		}
	}
	for _, not := range []string{"exes[1]", "policy.rules[2]"} {
		if strings.Contains(all, not) {
			t.Errorf("lint warns about %s:\n%s", not, all)
		}
	}
}

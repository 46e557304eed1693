package policy

import (
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// TestExeRulesNeedVerifiedExecutable: a rule about the executable applies
// only to facts checked against the kernel's record of the connect. For a
// claimed or unknown executable an allow rule does not apply and a deny
// rule does, whatever the facts say.
func TestExeRulesNeedVerifiedExecutable(t *testing.T) {
	cfg := parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  default: deny
  unknown_identity: allow
  rules:
    - {name: psql-ok, match: {identity: {exes: [/usr/bin/psql], exe_sha256: [`+sha+`]}}, action: allow}
    - {name: no-curl, match: {identity: {exes: [/usr/bin/curl]}, operation: {kinds: [select]}}, action: deny}
    - {name: cel-psql, match: {targets: [db]}, when: 'identity.exe == "/usr/bin/psql" && op.kind == "update"', action: allow}
`)
	p := MustNew(cfg)
	for _, trust := range []string{model.ExeVerified, model.ExeClaimed, model.ExeUnknown} {
		o := origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", ExeSHA256: sha, ExeTrust: trust}, nil)
		d := p.Evaluate(o, pg("insert", nil, false, false))
		if want := trust == model.ExeVerified; (d.Action == model.Allow) != want {
			t.Errorf("exe %s: insert %+v, want allowed=%v", trust, d, want)
		}
		d = p.Evaluate(o, pg("update", nil, false, false))
		if want := trust == model.ExeVerified; (d.Action == model.Allow) != want {
			t.Errorf("exe %s: CEL identity.exe update %+v, want allowed=%v", trust, d, want)
		}
		d = p.Evaluate(o, pg("select", nil, true, false))
		if want := trust != model.ExeVerified; (d.Rule == "no-curl") != want {
			t.Errorf("exe %s: select %+v, want the curl deny rule to apply=%v", trust, d, want)
		}
	}
}

const sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// TestUnknownIdentity: a session of a process interlock could not identify
// is denied on a target with deny or review rules unless the policy says
// allow, and everywhere when it says deny.
func TestUnknownIdentity(t *testing.T) {
	const targets = `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
  - {name: open, protocol: postgres, address: "127.0.0.3:5432", credentials: {user: app}}
`
	const rules = `
  rules:
    - {name: no-drop, match: {targets: [db], operation: {kinds: [drop_table]}}, action: deny}
`
	gone := origin("db", 1000, nil, nil)
	gone.Identity.ProcError = "process exited before it could be inspected"
	swapped := origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeUnknown}, nil)
	swapped.Identity.ProcError = "the executable at accept is not the file that made the connect"
	claimed := origin("db", 1000, &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeClaimed}, nil)
	openGone := gone
	openGone.Target.Name = "open"

	for _, c := range []struct {
		setting string
		o       model.Origin
		want    model.Action
	}{
		{"", gone, model.Deny},
		{"", swapped, model.Deny},
		{"", claimed, model.Allow},
		{"", openGone, model.Allow},
		{"unknown_identity: allow", gone, model.Allow},
		{"unknown_identity: allow", swapped, model.Allow},
		{"unknown_identity: deny", openGone, model.Deny},
	} {
		p := MustNew(parse(t, targets+"policy:\n  "+c.setting+"\n"+rules))
		d := p.Evaluate(c.o, pg("select", nil, true, false))
		if d.Action != c.want {
			t.Errorf("%q, %s (%s): %+v, want %s", c.setting, c.o.Target.Name, c.o.Identity.ProcError, d, c.want)
		}
		if d.Action == model.Deny && d.Rule != "policy.unknown_identity" {
			t.Errorf("denied by %s, want policy.unknown_identity", d.Rule)
		}
		if d.Action == model.Deny && c.o.Identity.ProcError != "" && !strings.Contains(d.Reason, c.o.Identity.ProcError) {
			t.Errorf("reason %q does not say why the identity is unknown", d.Reason)
		}
	}
}

// TestUnhashedExecutableIsUnknownForHashRules: an executable interlock did
// not hash (too large, over budget) matches no allow rule about hashes,
// and every deny rule about hashes applies to it.
func TestUnhashedExecutableIsUnknownForHashRules(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  rules:
    - {name: no-bad-tool, match: {identity: {exe_sha256: [`+sha+`]}}, action: deny}
`))
	o := origin("db", 1000, &model.ProcFacts{Exe: "/opt/big", ExeTrust: model.ExeVerified}, nil)
	if d := p.Evaluate(o, pg("select", nil, true, false)); d.Action != model.Deny || d.Rule != "no-bad-tool" {
		t.Errorf("unhashed executable: %+v, want the hash deny rule to apply", d)
	}
	o = origin("db", 1000, &model.ProcFacts{Exe: "/opt/big", ExeSHA256: "bbbb", ExeTrust: model.ExeVerified}, nil)
	if d := p.Evaluate(o, pg("select", nil, true, false)); d.Action != model.Allow {
		t.Errorf("another hash: %+v", d)
	}
}

// TestMaskRulesApplyWhenUnknown: a mask rule whose identity condition
// cannot be evaluated, or whose `when` fails, applies: unknown never
// unmasks data.
func TestMaskRulesApplyWhenUnknown(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - {name: db, protocol: postgres, address: "127.0.0.2:5432", credentials: {user: app}}
policy:
  unknown_identity: allow
  rules:
    - {name: psql-pii, match: {identity: {exes: [/usr/bin/psql]}}, action: mask, mask: {detectors: [email]}}
    - {name: cel-pii, match: {targets: [db]}, when: 'identity.claimed["NOPE"] == "x"', action: mask, mask: {detectors: [card]}}
`))
	for _, c := range []struct {
		name string
		proc *model.ProcFacts
		want []string
	}{
		{"verified psql", &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeVerified}, []string{"psql-pii", "cel-pii"}},
		{"verified other", &model.ProcFacts{Exe: "/usr/bin/other", ExeTrust: model.ExeVerified}, []string{"cel-pii"}},
		{"claimed psql", &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeClaimed}, []string{"psql-pii", "cel-pii"}},
		{"process gone", nil, []string{"psql-pii", "cel-pii"}},
	} {
		d := p.Evaluate(origin("db", 1000, c.proc, nil), pg("select", nil, true, false))
		var got []string
		if d.Mask != nil {
			for _, r := range d.Mask.Rules {
				got = append(got, r.Rule)
			}
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: mask rules %v, want %v (%+v)", c.name, got, c.want, d)
		}
	}
}

package policy

import (
	"context"
	"testing"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

func TestDecide(t *testing.T) {
	cfg := config.Default()
	cfg.Targets = []config.TargetConfig{
		{Name: "db", Protocol: model.ProtoPostgres, DenyStatements: []string{"drop_database", "truncate"}},
		{Name: "host", Protocol: model.ProtoSSH, DenyExec: []string{"rm -rf *", "shutdown*"}, Allow: &config.SSHAllow{X11: true}},
	}
	p := MustNew(cfg)
	db := model.Origin{Target: model.Target{Name: "db", Protocol: model.ProtoPostgres}, Identity: knownIdentity}
	host := model.Origin{Target: model.Target{Name: "host", Protocol: model.ProtoSSH}, Identity: knownIdentity}
	cases := []struct {
		o    model.Origin
		op   model.Operation
		want model.Action
	}{
		{db, model.Operation{Protocol: model.ProtoPostgres, Kind: "drop_database", Kinds: []string{"drop_database"}}, model.Deny},
		{db, model.Operation{Protocol: model.ProtoPostgres, Kind: "select", Kinds: []string{"select", "truncate"}}, model.Deny},
		{db, model.Operation{Protocol: model.ProtoPostgres, Kind: "select", Kinds: []string{"select"}}, model.Allow},
		{host, model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: "rm -rf /srv/data"}, model.Deny},
		{host, model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: "  shutdown -h now"}, model.Deny},
		{host, model.Operation{Protocol: model.ProtoSSH, Kind: "exec", Text: "ls -l /srv"}, model.Allow},
		{host, model.Operation{Protocol: model.ProtoSSH, Kind: "port_forwarding", Detail: "10.0.0.1:5432"}, model.Deny},
		{host, model.Operation{Protocol: model.ProtoSSH, Kind: "x11"}, model.Allow},
		{model.Origin{Target: model.Target{Name: "gone"}}, model.Operation{Protocol: model.ProtoSSH, Kind: "exec"}, model.Deny},
	}
	for _, c := range cases {
		d := p.Decide(context.Background(), c.o, c.op)
		if d.Action != c.want {
			t.Errorf("%s %+v: %s (%s), want %s", c.o.Target.Name, c.op, d.Action, d.Rule, c.want)
		}
		if d.Action == model.Deny && d.Rule == "" {
			t.Errorf("a deny must name its rule: %+v", d)
		}
	}
}

// knownIdentity is a connection whose process interlock identified.
var knownIdentity = model.Identity{Kernel: model.KernelFacts{UID: 1000, TGID: 100}, Proc: &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeVerified}}

func knownProc() *model.ProcFacts {
	return &model.ProcFacts{Exe: "/usr/bin/psql", ExeTrust: model.ExeVerified}
}

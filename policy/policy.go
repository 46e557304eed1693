// Package policy decides what an identity may do to a target: allow, deny,
// hold for review, or mask. It is pure: it reads the config and the facts
// it is given, and knows nothing of the kernel, the wire or the journal.
//
// This version applies each target's minimal rules: deny_statements for
// postgres, deny_exec for ssh, and the allow section for ssh forwarding.
// The rule language arrives with its own issue and plugs in here.
package policy

import (
	"context"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// Policy is the decision function handlers consult. It is safe for
// concurrent use; SetConfig swaps the rules atomically.
type Policy struct {
	cfg atomic.Pointer[config.Config]
}

// New returns a Policy for cfg.
func New(cfg *config.Config) *Policy {
	p := &Policy{}
	p.cfg.Store(cfg)
	return p
}

// SetConfig replaces the rules (on SIGHUP).
func (p *Policy) SetConfig(cfg *config.Config) { p.cfg.Store(cfg) }

// DecideConnect allows a session to reach a configured target.
func (p *Policy) DecideConnect(_ context.Context, o model.Origin) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "default", Reason: "connects to configured targets are allowed"}
}

// Decide judges one operation inside a session.
func (p *Policy) Decide(_ context.Context, o model.Origin, op model.Operation) model.Decision {
	t, ok := p.cfg.Load().Target(o.Target.Name)
	if !ok {
		return model.Decision{Action: model.Deny, Rule: "no-target", Reason: "the target is no longer configured"}
	}
	switch op.Protocol {
	case model.ProtoPostgres:
		for _, k := range op.Kinds {
			if slices.Contains(t.DenyStatements, k) {
				return model.Decision{Action: model.Deny, Rule: "targets." + t.Name + ".deny_statements",
					Reason: k + " statements are denied on " + t.Name}
			}
		}
	case model.ProtoSSH:
		switch op.Kind {
		case "exec":
			for _, g := range t.DenyExec {
				if GlobMatch(g, op.Text) {
					return model.Decision{Action: model.Deny, Rule: "targets." + t.Name + ".deny_exec",
						Reason: "command matches deny_exec " + g}
				}
			}
		case "port_forwarding", "agent_forwarding", "x11":
			allow := t.Allow != nil && (op.Kind == "port_forwarding" && t.Allow.PortForwarding ||
				op.Kind == "agent_forwarding" && t.Allow.AgentForwarding ||
				op.Kind == "x11" && t.Allow.X11)
			if !allow {
				return model.Decision{Action: model.Deny, Rule: "targets." + t.Name + ".allow",
					Reason: strings.ReplaceAll(op.Kind, "_", " ") + " is not allowed on " + t.Name}
			}
		}
	}
	return model.Decision{Action: model.Allow, Rule: "default"}
}

// GlobMatch matches a command line against a glob where * matches any
// run of characters, spaces and slashes included, and ? one character.
// Leading and trailing blanks of the command are ignored.
func GlobMatch(glob, cmd string) bool {
	cmd = strings.TrimSpace(cmd)
	// path.Match stops * at '/', which a command line glob must cross:
	// match segment by segment on a copy where '/' cannot occur.
	const sep = "\x00"
	ok, err := path.Match(strings.ReplaceAll(glob, "/", sep), strings.ReplaceAll(cmd, "/", sep))
	return err == nil && ok
}

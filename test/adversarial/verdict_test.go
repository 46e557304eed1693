package adversarial

import (
	"regexp"
	"strings"

	"github.com/interlock/interlock/model"
)

// The verdict: what the client saw (refusals naming a rule, sessions
// interlock ended) against the contract of the case's mode.

var ruleRE = regexp.MustCompile(`rule "([^"]+)"`)

// refusals are the rules named by refusals the client saw, with the
// SQLSTATEs they came with.
type refusal struct{ rule, code, message string }

func (c *caseRun) refusals() []refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []refusal
	for _, r := range c.replies {
		for _, e := range r.Errors() {
			for _, m := range ruleRE.FindAllStringSubmatch(e.Message, -1) {
				out = append(out, refusal{m[1], e.Code, e.Message})
			}
		}
	}
	for _, o := range c.outputs {
		for _, line := range strings.Split(o, "\n") {
			if !strings.Contains(line, "ERROR") && !strings.Contains(line, "FATAL") {
				continue
			}
			for _, m := range ruleRE.FindAllStringSubmatch(line, -1) {
				code := ""
				if strings.Contains(line, "42501") {
					code = "42501"
				}
				out = append(out, refusal{m[1], code, line})
			}
		}
	}
	return out
}

// endedByInterlock says the client got interlock's FATAL.
func (c *caseRun) endedByInterlock() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.replies {
		for _, e := range r.Errors() {
			if e.Severity == "FATAL" && strings.HasPrefix(e.Message, "interlock ended the session") {
				return true
			}
		}
	}
	for _, o := range c.outputs {
		if strings.Contains(o, "FATAL:  interlock ended the session") || strings.Contains(o, "FATAL:  XX000: interlock ended the session") ||
			regexp.MustCompile(`FATAL:  [0-9A-Z]{5}: interlock ended the session`).MatchString(o) {
			return true
		}
	}
	return false
}

// verdict applies the contract.
func verdict(c *caseRun) {
	t, cs := c.t, c.cs
	eff := ""
	if cs.effect != nil {
		eff = cs.effect(c)
	}
	refs := c.refusals()
	var named []string
	okRule := false
	for _, r := range refs {
		named = append(named, r.rule)
		if len(cs.rules) == 0 || contains(cs.rules, r.rule) {
			okRule = true
			if r.code != "42501" {
				t.Errorf("the refusal naming rule %q came with SQLSTATE %q, want 42501: %s", r.rule, r.code, r.message)
			}
		}
	}
	ended := c.endedByInterlock()
	anomalies := c.kindCount(model.KindAnomaly)
	if ended && anomalies == 0 {
		t.Errorf("interlock ended the session but journaled no anomaly record")
	}
	mismatches := c.oracle()
	switch {
	case cs.mode == custom:
	case eff != "" && cs.mode != either:
		t.Errorf("GOT THROUGH: %s (mode %s: policy must stop this). Refusals seen: %v", eff, cs.mode, named)
	case eff != "" && len(mismatches) > 0:
		t.Errorf("GOT THROUGH UNRECORDED: %s, and the journal does not name what the server ran", eff)
	case eff != "":
		t.Logf("the effect happened and the journal names what ran: %s", eff)
	case okRule:
		t.Logf("refused, naming %v", named)
	case c.loginRefused != "":
		t.Logf("interlock refused the session at login: %s", c.loginRefused)
	case ended:
		t.Logf("interlock ended the session (%d anomaly records)", anomalies)
	case cs.mode == harmless:
		t.Logf("harmless on the server, no refusal needed")
	case len(named) > 0:
		t.Errorf("the effect did not happen, but the refusal named %v, want one of %v", named, cs.rules)
	default:
		t.Errorf("NO REFUSAL: the effect did not happen, yet the client got no error naming a rule (want one of %v) and the session was not ended by interlock", cs.rules)
	}
	for _, m := range mismatches {
		t.Errorf("JOURNAL/SERVER MISMATCH: %s", m)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package config

import (
	"strconv"
	"strings"
)

// AgentConfig names one AI agent or automation, and how to recognise its
// process: by the executable that runs (exes and sha256: facts from
// /proc the process cannot change) or by its command line (what an
// interpreter runs, such as node .../claude-code/cli.js; a process can
// rewrite its own argv, so that match is only claimed).
type AgentConfig struct {
	Name string `yaml:"name"`
	// Exes are globs over the executable's path (the link
	// /proc/PID/exe, never the comm a process can rename).
	Exes []string `yaml:"exes,omitempty"`
	// SHA256 pins the executable's content: with exes as well, both must
	// hold, so a copy of the binary with another hash is not the agent.
	SHA256 []string `yaml:"sha256,omitempty"`
	// Cmdlines are globs over the command line, its arguments joined
	// with spaces.
	Cmdlines []string `yaml:"cmdlines,omitempty"`
}

// AgentNone is the agent name policy uses for "no agent found"; no agent
// may take it.
const AgentNone = "none"

func validateAgents(l *errorList, agents []AgentConfig) {
	names := map[string]int{}
	for i, a := range agents {
		key := "identity.agents[" + strconv.Itoa(i) + "]"
		switch msg := nameProblem(a.Name); {
		case msg != "":
			l.add(key+".name", msg)
		case a.Name == AgentNone:
			l.add(key+".name", quote(a.Name)+" is reserved: match.identity.agents uses it for a process with no agent")
		default:
			if j, dup := names[a.Name]; dup {
				l.add(key+".name", quote(a.Name)+" is already the name of "+l.describeKey("identity.agents["+strconv.Itoa(j)+"]"))
			} else {
				names[a.Name] = i
			}
		}
		if len(a.Exes) == 0 && len(a.SHA256) == 0 && len(a.Cmdlines) == 0 {
			l.add(key, "names no way to recognise the agent; give exes, sha256 or cmdlines")
		}
		for j, g := range a.Exes {
			globOK(l, key+".exes["+strconv.Itoa(j)+"]", g)
		}
		for j, g := range a.Cmdlines {
			globOK(l, key+".cmdlines["+strconv.Itoa(j)+"]", g)
		}
		for j, h := range a.SHA256 {
			if len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
				l.add(key+".sha256["+strconv.Itoa(j)+"]", quote(h)+" is not a SHA-256 in hex (64 characters)")
			}
		}
	}
}

// AgentNames are the names of the configured agents.
func (c *IdentityConfig) AgentNames() []string {
	out := make([]string, len(c.Agents))
	for i, a := range c.Agents {
		out[i] = a.Name
	}
	return out
}

// validateAgentRefs checks a rule's match.identity.agents: each must name
// a configured agent, or be "none".
func validateAgentRefs(l *errorList, key string, refs []string, agents []AgentConfig) {
	for j, name := range refs {
		if name == AgentNone || slicesContainsAgent(agents, name) {
			continue
		}
		names := []string{AgentNone}
		for _, a := range agents {
			names = append(names, a.Name)
		}
		msg := quote(name) + " is not an agent of identity.agents"
		if s := closestName(name, names); s != "" {
			msg += "; did you mean " + quote(s) + "?"
		} else {
			msg += " (nor " + quote(AgentNone) + ", for a process with no agent)"
		}
		l.add(key+"["+strconv.Itoa(j)+"]", msg)
	}
}

// closestName is the name within two edits of n, or "".
func closestName(n string, names []string) string {
	best, bestDist := "", 3
	for _, c := range names {
		if d := editDistance(n, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func slicesContainsAgent(agents []AgentConfig, name string) bool {
	for _, a := range agents {
		if a.Name == name {
			return true
		}
	}
	return false
}

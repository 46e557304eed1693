package policy

import (
	"slices"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// humanMatch is identity.login_users, login_uids and agents compiled; nil
// when the rule names none.
type humanMatch struct {
	loginUsers []pattern
	loginUIDs  []int
	agents     []string
}

func compileHuman(m *config.IdentityMatch) *humanMatch {
	if len(m.LoginUsers) == 0 && len(m.LoginUIDs) == 0 && len(m.Agents) == 0 {
		return nil
	}
	return &humanMatch{loginUsers: compileGlobs(m.LoginUsers), loginUIDs: m.LoginUIDs, agents: m.Agents}
}

// match says whether id's human and agent are what the rule names. A nil
// match matches anything. What interlock could not establish is unknown,
// never a no: without the process's facts (Proc nil) neither its login
// nor its agents were looked for, without a Human its login uid could
// not be read, and with an AgentError the agent could not be established
// (an ancestor unread, the kernel-kept lineage unread). A process that
// descends from no login has no login user: that is a known no.
func (h *humanMatch) match(id model.Identity) matchResult {
	if h == nil {
		return match
	}
	if len(h.loginUsers) > 0 || len(h.loginUIDs) > 0 {
		hu := id.Human
		switch {
		case id.Proc == nil || hu == nil:
			return unknown
		case hu.NoLogin:
			return noMatch
		case hu.LoginUID == nil:
			return unknown
		}
		if len(h.loginUIDs) > 0 && !slices.Contains(h.loginUIDs, int(*hu.LoginUID)) {
			return noMatch
		}
		if len(h.loginUsers) > 0 {
			if hu.LoginUser == "" {
				// A login uid without a name: whether it is one of
				// the names is unknown.
				return unknown
			}
			if !anyMatch(h.loginUsers, hu.LoginUser) {
				return noMatch
			}
		}
	}
	if len(h.agents) > 0 {
		// An agent that could not be established (AgentError) leaves
		// both a named agent and none unknown: an unread ancestor
		// may be the agent, or a nearer one than the one found, and
		// an unread lineage may name the agent it was orphaned from.
		if id.Proc == nil || id.AgentError != "" {
			return unknown
		}
		name := config.AgentNone
		if id.Agent != nil {
			name = id.Agent.Name
		}
		if !slices.Contains(h.agents, name) {
			return noMatch
		}
		if id.Agent != nil && id.Agent.Provenance == model.ProvClaimed {
			// Found by its command line (or a link the process
			// controls): the process could have written it, so a
			// rule about that agent applies as unknown: deny and
			// review rules hold, an allow rule does not open.
			return unknown
		}
	}
	return match
}

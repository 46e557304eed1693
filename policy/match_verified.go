package policy

import (
	"slices"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// verifiedMatch is identity.verified compiled; nil when the rule has none.
type verifiedMatch struct {
	claims []claimMatch
}

func compileVerified(m *config.IdentityMatch) *verifiedMatch {
	if len(m.Verified) == 0 {
		return nil
	}
	v := &verifiedMatch{}
	for name, glob := range m.Verified {
		v.claims = append(v.claims, claimMatch{name, compileGlob(glob)})
	}
	// A stable order, so that an explanation reads the same each time.
	slices.SortFunc(v.claims, func(a, b claimMatch) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return v
}

// match says whether id's workload is verified and its claims match. A
// nil match matches anything.
//
// Only a workload whose token was verified is known to be, or not to
// be, what the rule names. Without one (no token, a token that failed,
// claims from the environment alone, a process that could not be read)
// which job it is cannot be established: unknown, so an allow rule does
// not apply and a deny, review or mask rule does. Were it noMatch, a job
// could walk past a deny rule on its repository by showing no token.
func (v *verifiedMatch) match(id model.Identity) matchResult {
	if v == nil {
		return match
	}
	w := id.Workload
	if id.Proc == nil || w == nil || w.Provenance != model.ProvVerified {
		return unknown
	}
	for _, c := range v.claims {
		val, ok := w.Claims[c.name]
		if !ok || !c.glob.match(val) {
			return noMatch
		}
	}
	return match
}

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
// Only a workload whose token was verified can match: claims from the
// environment, or from a token that failed, are what the process says of
// itself, and a rule that asks for verified claims never takes them
// (noMatch: an allow rule does not apply). When the process could not be
// read at all, whether it had a token is not known (unknown: a deny or
// review rule applies, an allow rule does not).
func (v *verifiedMatch) match(id model.Identity) matchResult {
	if v == nil {
		return match
	}
	if id.Proc == nil {
		return unknown
	}
	w := id.Workload
	if w == nil || w.Provenance != model.ProvVerified {
		return noMatch
	}
	for _, c := range v.claims {
		val, ok := w.Claims[c.name]
		if !ok || !c.glob.match(val) {
			return noMatch
		}
	}
	return match
}

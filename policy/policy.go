// Package policy decides what an identity may do to a target: allow, deny,
// hold for review, or mask. It is pure: it reads the config and the facts
// it is given, and knows nothing of the kernel, the wire or the journal.
//
// This first version decides tcp connects only, and allows every connect
// to a configured target; the rule language arrives with its own issue.
package policy

import (
	"context"

	"github.com/interlock/interlock/model"
)

// Policy is the decision function handlers consult.
type Policy struct{}

// DecideConnect allows a session to reach its target.
func (Policy) DecideConnect(_ context.Context, o model.Origin) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "default", Reason: "connects to configured targets are allowed"}
}

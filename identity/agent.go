package identity

import (
	"context"

	"github.com/interlock/interlock/model"
)

// agent fills id.Agent.
func (r *Resolver) agent(ctx context.Context, id *model.Identity) {}

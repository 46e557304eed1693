package identity

import (
	"context"

	"github.com/interlock/interlock/model"
)

// workload fills id.Workload.
func (r *Resolver) workload(ctx context.Context, id *model.Identity) {}

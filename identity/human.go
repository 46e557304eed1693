package identity

import (
	"context"

	"github.com/interlock/interlock/model"
)

// human fills id.Human.
func (r *Resolver) human(ctx context.Context, id *model.Identity) {}

package identity

import (
	"context"

	"github.com/interlock/interlock/model"
)

// principals fills the human (human.go), the agent (agent.go) and the
// workload (workload.go) behind a resolved process. Each leaves its field
// nil when it finds nothing, and none of them opens anything on its own:
// policy decides what a missing or claimed principal means. job holds the
// process's token variables, read with its environment (workload.go).
func (r *Resolver) principals(ctx context.Context, id *model.Identity, job map[string]string) {
	r.human(ctx, id)
	r.agent(ctx, id)
	r.workload(ctx, id, job)
}

package console

import (
	"context"
	"iter"

	"github.com/interlock/interlock/hub/store"
)

// Source is what the console reads: the hub's store (*store.Store), or
// one host's own journal (console/local) for a one-host setup. Its
// errors are the store's: store.ErrNoHost, store.ErrNoSession and
// store.ErrNoFleetCheckpoint say a thing is absent.
type Source interface {
	Hosts(ctx context.Context) ([]store.Host, error)
	Host(ctx context.Context, id string) (store.Host, error)
	Sessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error)
	Operations(ctx context.Context, f store.OperationFilter) ([]store.FoundOperation, error)
	SessionOf(ctx context.Context, hostID, session string) (store.Session, error)
	// SessionEntries yields one session's entries in seq order, from its
	// session.open through its session.close.
	SessionEntries(ctx context.Context, hostID string, open store.Session) iter.Seq2[store.Entry, error]
	// Checkpoints are a host's checkpoints, smallest first; Cosigned is
	// empty for one the hub has not cosigned (a host's own).
	Checkpoints(ctx context.Context, hostID string) ([]store.Checkpoint, error)
	Refusals(ctx context.Context, hostID string) ([]store.StoredRefusal, error)
	LatestFleetCheckpoint(ctx context.Context) (store.FleetCheckpoint, error)
}

// The hub's store is the console's first source.
var _ Source = (*store.Store)(nil)

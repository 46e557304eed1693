// Package inspect defines what every protocol handler (postgres, ssh, tcp)
// is given and returns. Handlers speak their protocol on both legs, ask
// policy, and write the journal; they never see the kernel side.
package inspect

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

// Deps are what the engine gives every protocol handler that inspects its
// protocol.
type Deps struct {
	// Config holds the targets; its state_dir is where a handler keeps the
	// keys and certificates it makes.
	Config  *config.Config
	Journal model.Recorder
	Policy  Policy
	// Masker masks what mask rules cover; without one, an operation whose
	// output must be masked is refused.
	Masker Masker
	Logger *slog.Logger
	// Events, when set, hears what operators must see at once.
	Events Events
}

// Events are what handlers report to the daemon's metrics.
type Events interface {
	// UpstreamLoginFailed: interlock's own login to a target failed;
	// reason is "credentials" when the target refused the held
	// credential, "other" otherwise.
	UpstreamLoginFailed(target, reason string)
}

// Log is the logger to use: Logger, else slog's default.
func (d Deps) Log() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// StateDir is Config's state_dir ("" without a config).
func (d Deps) StateDir() string {
	if d.Config == nil {
		return ""
	}
	return d.Config.StateDir
}

// Session is one intercepted connection as a handler receives it.
type Session struct {
	// ID names the session in every journal entry it produces.
	ID     string
	Origin model.Origin
	// Idle is how long the session may stay idle before the handler ends
	// it with ErrIdle; 0 means never. What idle means is the protocol's,
	// but an operation waiting for a decision (held for approval) is
	// never idle.
	Idle time.Duration

	// life is the Lifecycle serving the session (lifecycle.go).
	life   *Lifecycle
	opened atomic.Bool
}

// ErrIdle is wrapped in Outcome.Err of a session a handler ended because
// it was idle longer than Session.Idle.
var ErrIdle = errors.New("idle longer than limits.timeouts allows")

// Outcome is what a handler reports when a session ends.
type Outcome struct {
	BytesUp   int64
	BytesDown int64
	// Refused is set when the session never reached the target: denied by
	// policy, the journal could not record it, or the target was down.
	Refused bool
	Err     error
}

// Handler serves intercepted connections of one protocol. Serve owns the
// client connection and closes it before returning.
type Handler interface {
	Serve(ctx context.Context, client net.Conn, s *Session) Outcome
}

// ConnectPolicy decides whether a session may reach its target at all.
type ConnectPolicy interface {
	DecideConnect(ctx context.Context, o model.Origin) model.Decision
}

// Policy is the decision function handlers ask before an operation
// reaches the target. Decide may block (a review holds the operation until
// a human decides); it must return when ctx is done, with a deny. A
// handler must journal the decision before acting on it, and act on
// anything but Allow by refusing the operation (Mask is applied by the
// handler to what flows back).
type Policy interface {
	ConnectPolicy
	Decide(ctx context.Context, o model.Origin, op model.Operation) model.Decision
	// DecideEffects judges a postgres transaction about to commit by
	// what it did (op.Kind "commit", op.Effects set) with the effects
	// rules only; with none that applies it allows. It may block for a
	// review like Decide.
	DecideEffects(ctx context.Context, o model.Origin, op model.Operation) model.Decision
	// EffectsRules says whether any effects rule can apply to sessions
	// of this origin: without one, reading a transaction's effects is
	// needed only for interlock's own built-in checks.
	EffectsRules(o model.Origin) bool
	// SessionMasks are the mask rules that can apply to a session of this
	// origin, whatever it does (nil: none): what the server sends outside
	// result rows is scrubbed with them.
	SessionMasks(o model.Origin) *model.MaskSpec
}

// SessionPolicy is a Policy that can keep a session's decisions from one
// operation to the next (policy.Session): Decide of its Decider is Decide
// for the origin it was made for.
type SessionPolicy interface {
	SessionDecider(o model.Origin) model.Decider
}

// SessionDecider returns the decision function for a session of origin
// o: p's own when p keeps a session's decisions, else Decide each time.
func SessionDecider(p Policy, o model.Origin) model.Decider {
	if sp, ok := p.(SessionPolicy); ok {
		return sp.SessionDecider(o)
	}
	return decideEach{p, o}
}

type decideEach struct {
	p Policy
	o model.Origin
}

func (d decideEach) Decide(ctx context.Context, op model.Operation) model.Decision {
	return d.p.Decide(ctx, d.o, op)
}

// Reloader is implemented by handlers that keep per-target settings from
// the config. On SIGHUP the engine prepares every handler's reload before
// it applies any, and applies them before new targets are intercepted, so
// one handler's bad settings leave the old config in force everywhere.
// Sessions already open may keep the settings they started with.
type Reloader interface {
	// PrepareReload checks and builds the settings of cfg's targets
	// (reads keys, credentials, certificates) without changing what the
	// handler serves. apply installs them and cannot fail; the undo it
	// returns puts back what apply replaced.
	PrepareReload(cfg *config.Config) (apply func() (undo func()), err error)
}

// Masker plans the masking of one result set: which columns a mask rule
// covers whole, and which values content detectors scan. Plan returns nil
// when nothing in the result needs masking.
type Masker interface {
	Plan(spec *model.MaskSpec, cols []model.MaskColumn) RowMasker
	// Hash is the keyed hash (16 bytes) kept in the journal in place of
	// an original it must not hold.
	Hash(original []byte) []byte
	// ColumnRule names the mask rule of spec that covers table.column
	// (table is schema.table), or "" when none does.
	ColumnRule(spec *model.MaskSpec, table, column string) string
	// Scrub redacts what spec's detectors find in free text; it reports
	// whether it changed anything.
	Scrub(spec *model.MaskSpec, text string) (string, bool)
	// Detect runs the named detectors over v and returns what they found,
	// in order and without overlaps.
	Detect(detectors []string, v []byte) []model.Finding
}

// RowMasker masks the rows of one result set in place and reports what it
// did. An error means the row must not be sent: fail closed.
type RowMasker interface {
	Mask(values [][]byte) error
	Decisions() []model.MaskDecision
}

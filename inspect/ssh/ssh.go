// Package ssh is the SSH handler: it terminates the client's SSH connection,
// opens its own to the target with the key interlock holds, asks policy
// before each exec, shell or subsystem, and journals channels, commands
// and terminal input and output.
//
// STUB: replaced by the handler; New refuses until then.
package ssh

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// Options are what the engine gives the handler.
type Options struct {
	Config   *config.Config
	Journal  model.Recorder
	Policy   inspect.Policy
	StateDir string
	Logger   *slog.Logger
}

// Handler serves ssh targets.
type Handler struct{}

// New checks the ssh targets of opts.Config and prepares the handler.
func New(opts Options) (*Handler, error) {
	for _, t := range opts.Config.Targets {
		if t.Protocol == model.ProtoSSH {
			return nil, errors.New("target " + t.Name + ": the ssh handler is not built yet")
		}
	}
	return &Handler{}, nil
}

// Serve implements inspect.Handler.
func (h *Handler) Serve(_ context.Context, client net.Conn, _ *inspect.Session) inspect.Outcome {
	client.Close()
	return inspect.Outcome{Refused: true, Err: errors.New("ssh handler not built yet")}
}

// Reload implements inspect.Reloader.
func (h *Handler) Reload(cfg *config.Config) error {
	_, err := New(Options{Config: cfg})
	return err
}

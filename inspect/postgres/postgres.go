// Package postgres is the PostgreSQL handler: it speaks the wire protocol
// on both legs, logs in to the server with the credentials interlock
// holds, asks policy before each statement, and journals one entry per
// statement.
//
// STUB: replaced by the handler; New refuses until then.
package postgres

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

// Handler serves postgres targets.
type Handler struct{}

// New checks the postgres targets of opts.Config and prepares the handler.
func New(opts Options) (*Handler, error) {
	for _, t := range opts.Config.Targets {
		if t.Protocol == model.ProtoPostgres {
			return nil, errors.New("target " + t.Name + ": the postgres handler is not built yet")
		}
	}
	return &Handler{}, nil
}

// Serve implements inspect.Handler.
func (h *Handler) Serve(_ context.Context, client net.Conn, _ *inspect.Session) inspect.Outcome {
	client.Close()
	return inspect.Outcome{Refused: true, Err: errors.New("postgres handler not built yet")}
}

// Reload implements inspect.Reloader.
func (h *Handler) Reload(cfg *config.Config) error {
	_, err := New(Options{Config: cfg})
	return err
}

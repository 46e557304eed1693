package local

import (
	"errors"
	"log/slog"
	"time"

	"github.com/interlock/interlock/hub/console"
)

// Config is a host's console.
type Config struct {
	Source *Source
	// Queue is the broker's held requests (Broker); nil shows none.
	Queue console.Approvals
	// Decide lets approvers decide (the Queue must have a Decider);
	// false makes the console read-only.
	Decide bool
	// HubKey is the hub's cosignature verifier key when the host ships
	// (the enrolment's hub.pub): the evidence view checks the
	// cosignatures the hub.cosignature entries hold with it.
	HubKey     string
	BaseURL    string
	OIDC       console.OIDC
	SessionTTL time.Duration
	Logger     *slog.Logger
}

// New makes the host's console: the hub's console over the journal, with
// no fleet export (`interlock journal export` writes the host's bundle),
// read-only (no decision is taken, whatever the person's roles) unless
// Decide.
func New(c Config) (*console.Console, error) {
	if c.Source == nil {
		return nil, errors.New("host console: no journal source")
	}
	opts := console.Options{Store: c.Source, ReadOnly: !c.Decide, Place: "host's journal", HubKey: c.HubKey,
		BaseURL: c.BaseURL, OIDC: c.OIDC, SessionTTL: c.SessionTTL, Logger: c.Logger}
	if c.Queue != nil {
		opts.Approvals = c.Queue
	}
	return console.New(opts)
}

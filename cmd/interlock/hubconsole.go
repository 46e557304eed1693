package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/server"
	"github.com/interlock/interlock/hub/store"
)

// hubConsole makes the web console of hub.console (docs/console.md), or
// nil when it is not configured. People sign in through hub.oidc.
func hubConsole(cfg *config.Config, st *store.Store, keys *server.Keys, log *slog.Logger) (*console.Console, error) {
	cc, o := cfg.Hub.Console, cfg.Hub.OIDC
	if !cc.Enabled() {
		return nil, nil
	}
	secret := ""
	if cc.ClientSecretFile != "" {
		b, err := os.ReadFile(cc.ClientSecretFile)
		if err != nil {
			return nil, exitWith(exitConfig, cfg.Errorf("hub.console.client_secret_file", "%v", err))
		}
		secret = strings.TrimSpace(string(b))
	}
	c, err := console.New(console.Options{
		Store: st, HubKey: keys.CosignerKey, BaseURL: cc.BaseURL, SessionTTL: cc.SessionLifetime(), Logger: log,
		OIDC: console.OIDC{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret,
			UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles.Map(), Scopes: cc.SignInScopes()},
		// The fleet bundle `interlock hub export` writes, against the
		// newest fleet checkpoint.
		Export: func(ctx context.Context, w io.Writer, flush func() error) error {
			plan, err := server.PlanExport(ctx, st, keys, server.ExportOptions{})
			if err != nil {
				return err
			}
			return plan.WriteTo(ctx, w, flush)
		},
	})
	if err != nil {
		return nil, exitWith(exitConfig, err)
	}
	return c, nil
}

// consoleAuth is the console's session as the approver API's
// Authenticator: a request with no console cookie is no credential (a
// bearer token is tried next); a cookie that names no live session, or
// a POST without its CSRF token, is refused.
type consoleAuth struct{ c *console.Console }

func (a consoleAuth) Authenticate(r *http.Request) (hubapi.Principal, error) {
	p, err := a.c.Authenticate(r)
	if errors.Is(err, console.ErrNoSession) {
		return p, server.ErrNoCredentials
	}
	return p, err
}

// consoleApprovals is the hub's approvals as the console asks them, its
// errors carrying the HTTP status the API answers them with.
type consoleApprovals struct{ s *server.Server }

func (a consoleApprovals) PendingApprovals(ctx context.Context, who hubapi.Principal) ([]hubapi.PendingApproval, error) {
	p, err := a.s.PendingApprovals(ctx, who)
	if err != nil {
		return nil, console.StatusError{Err: err, Status: server.ApprovalStatus(err)}
	}
	return p, nil
}

func (a consoleApprovals) DecideApproval(ctx context.Context, who hubapi.Principal, id string, d hubapi.DecideRequest) (hubapi.SignedDecision, error) {
	sd, err := a.s.DecideApproval(ctx, who, id, d)
	if err != nil {
		return sd, console.StatusError{Err: err, Status: server.ApprovalStatus(err)}
	}
	return sd, nil
}

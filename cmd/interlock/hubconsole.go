package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/hub/server"
	"github.com/interlock/interlock/hub/store"
)

// hubConsole makes the web console of hub.console (docs/console.md), or
// nil when it is not configured.
func hubConsole(cfg *config.Config, st *store.Store, keys *server.Keys, log *slog.Logger) (*console.Console, error) {
	cc := cfg.Hub.Console
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
		OIDC: console.OIDC{Issuer: cc.Issuer, ClientID: cc.ClientID, ClientSecret: secret,
			UsernameClaim: cc.Username(), GroupsClaim: cc.Groups(), Roles: cc.Roles.Map()},
		// The fleet bundle `interlock hub export` writes, against the
		// newest fleet checkpoint.
		Export: func(ctx context.Context, w io.Writer) error {
			plan, err := server.PlanExport(ctx, st, keys, server.ExportOptions{})
			if err != nil {
				return err
			}
			return plan.WriteTo(ctx, w, nil)
		},
	})
	if err != nil {
		return nil, exitWith(exitConfig, err)
	}
	return c, nil
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/console/local"
	"github.com/interlock/interlock/engine"
	"github.com/interlock/interlock/hub/console"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/ship"
)

// startConsole serves the host's web console of the console section (docs/console.md, "One host"), or nothing when it is off. A
// console that cannot start stops the daemon's start: its address was
// asked for, and an operator must not take its absence for its being up.
func startConsole(cfg *config.Config, eng *engine.Engine, log *slog.Logger) (stop func(), err error) {
	cc := cfg.Console
	if !cc.Enabled() {
		return func() {}, nil
	}
	h, err := localConsoleHandler(cfg, eng, log)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(cc.TLS.Cert, cc.TLS.Key)
	if err != nil {
		return nil, exitWith(exitConfig, cfg.Errorf("console.tls", "%v", err))
	}
	ln, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		return nil, exitWith(exitUnavailable, fmt.Errorf("console.listen %s: %w", cc.Listen, err))
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("console: serve", "err", err)
		}
	}()
	mode := "read-only"
	if cc.Decide {
		mode = "approvers decide"
	}
	log.Info("serving the host's console ("+mode+")", "listen", ln.Addr().String(), "base_url", cc.BaseURL)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// localConsoleHandler is the console over the daemon's journal and
// broker. The journal's key comes from the state directory's journal.pub
// and, when the host is enrolled with a hub, the hub's cosignature key
// and the host's id from the enrolment.
func localConsoleHandler(cfg *config.Config, eng *engine.Engine, log *slog.Logger) (http.Handler, error) {
	cc := cfg.Console
	pub, err := os.ReadFile(filepath.Join(cfg.StateDir, journal.PublicKeyFile))
	if err != nil {
		return nil, exitWith(exitUnavailable, fmt.Errorf("console: journal key: %w", err))
	}
	name, _ := os.Hostname()
	if name == "" {
		name = "this host"
	}
	src := &local.Source{Path: cfg.Journal.Path, HostID: "local", HostName: name, VerifierKey: strings.TrimSpace(string(pub))}
	hubKey := ""
	if cfg.Ship.Enabled() {
		dir := cfg.Ship.Resolve().StateDir
		if b, err := os.ReadFile(filepath.Join(dir, ship.HubKeyFile)); err == nil {
			hubKey = strings.TrimSpace(string(b))
		}
		if b, err := os.ReadFile(filepath.Join(dir, ship.HostIDFile)); err == nil && strings.TrimSpace(string(b)) != "" {
			src.HostID = strings.TrimSpace(string(b))
		}
	}
	secret := ""
	if cc.ClientSecretFile != "" {
		b, err := os.ReadFile(cc.ClientSecretFile)
		if err != nil {
			return nil, exitWith(exitConfig, cfg.Errorf("console.client_secret_file", "%v", err))
		}
		secret = strings.TrimSpace(string(b))
	}
	web, o := cc.Web(), cc.OIDC
	c, err := local.New(local.Config{Source: src, Queue: local.Broker(eng.Approvals(), src.HostID, name, cc.Decide), Decide: cc.Decide, HubKey: hubKey,
		BaseURL: cc.BaseURL, SessionTTL: web.SessionLifetime(), Logger: log,
		OIDC: console.OIDC{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret,
			UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles.Map(), Scopes: web.SignInScopes()}})
	if err != nil {
		return nil, exitWith(exitConfig, err)
	}
	return c.Handler(), nil
}

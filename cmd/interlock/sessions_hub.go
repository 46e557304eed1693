package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// sessionsHubFlags are the flags of `sessions list` that search a fleet
// hub's sessions instead of this host's journal.
func sessionsHubFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "hub", Usage: "search the sessions of every host at this fleet hub (https://HUB:PORT) instead of this host's journal"},
		&cli.StringFlag{Name: "operator", Usage: "with --hub: the `DIR` that interlock hub operator --out wrote (operator.key, operator.crt, ca.crt)"},
		&cli.StringFlag{Name: "host", Usage: "with --hub: only this host id"},
		&cli.StringFlag{Name: "user", Usage: "with --hub: only sessions of this user (the process's or the login's)"},
		&cli.StringFlag{Name: "target", Usage: "with --hub: only sessions to this target"},
	}
}

// sessionsHubList is `sessions list --hub`: the hub's session search
// (GET /v1/sessions, docs/hub.md), with an operator's certificate. The
// hub is trusted through the operator directory's ca.crt only.
func sessionsHubList(ctx context.Context, cmd *cli.Command) error {
	base, hc, err := operatorFlags(cmd)
	if err != nil {
		return err
	}
	q := hubQuery(cmd, map[string]string{"host": hubapi.QueryHost, "user": hubapi.QueryUser, "target": hubapi.QueryTarget})
	if n := cmd.Int("limit"); n > 0 {
		q.Set(hubapi.QueryLimit, strconv.Itoa(int(n)))
	}
	var found hubapi.Sessions
	if err := hubSearch(ctx, hc, base+hubapi.PathSessions, q, "sessions", &found); err != nil {
		return err
	}
	if found.Sessions == nil {
		found.Sessions = []hubapi.Session{}
	}
	if cmd.Bool("json") {
		return printJSON(found.Sessions)
	}
	return printHubSessions(os.Stdout, found.Sessions)
}

// hubQuery is a hub search's query: each string flag set on cmd under
// its query key, and --since as the time that long ago.
func hubQuery(cmd *cli.Command, keys map[string]string) url.Values {
	q := url.Values{}
	for flag, key := range keys {
		if v := cmd.String(flag); v != "" {
			q.Set(key, v)
		}
	}
	if d := cmd.Duration("since"); d > 0 {
		q.Set(hubapi.QuerySince, time.Now().Add(-d).UTC().Format(time.RFC3339))
	}
	return q
}

// operatorFlags reads --hub and --operator: the hub's base URL and a
// client with the operator's certificate.
func operatorFlags(cmd *cli.Command) (string, *http.Client, error) {
	base := strings.TrimSuffix(cmd.String("hub"), "/")
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" || u.Host == "" {
		return "", nil, exitWith(exitUsage, fmt.Errorf("--hub %q: want https://HUB:PORT", base))
	}
	dir := cmd.String("operator")
	if dir == "" {
		return "", nil, exitWith(exitUsage, errors.New("--hub needs --operator DIR: the operator certificate `interlock hub operator --out DIR` wrote on the hub"))
	}
	hc, err := operatorClient(dir)
	if err != nil {
		return "", nil, err
	}
	return base, hc, nil
}

// hubSearch GETs a search of the hub's and decodes its answer into out;
// what names the search in errors. Every failure is the hub's or the
// network's: exit 69.
func hubSearch(ctx context.Context, hc *http.Client, u string, q url.Values, what string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+q.Encode(), nil)
	if err != nil {
		return exitWith(exitUsage, fmt.Errorf("--hub: %w", err))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return exitWith(exitUnavailable, fmt.Errorf("search the hub's %s: %w", what, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return exitWith(exitUnavailable, fmt.Errorf("search the hub's %s: %w", what, err))
	}
	if resp.StatusCode != http.StatusOK {
		var ref hubapi.Refusal
		if json.Unmarshal(body, &ref) == nil && ref.Code != "" {
			return exitWith(exitUnavailable, fmt.Errorf("the hub refused the search of its %s (%s, %d): %s", what, ref.Code, resp.StatusCode, textview.Escape(ref.Message)))
		}
		return exitWith(exitUnavailable, fmt.Errorf("the hub answered the search of its %s with %s", what, resp.Status))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return exitWith(exitUnavailable, fmt.Errorf("the hub's answer to the search of its %s: %w", what, err))
	}
	return nil
}

// operatorClient is mutual TLS with the operator's certificate, trusting
// only the hub's CA for the hub's server certificate.
func operatorClient(dir string) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "operator.crt"), filepath.Join(dir, "operator.key"))
	if err != nil {
		return nil, exitWith(exitNoInput, fmt.Errorf("--operator %s: %w", dir, err))
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, exitWith(exitNoInput, fmt.Errorf("--operator %s: %w", dir, err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, exitWith(exitUsage, fmt.Errorf("--operator %s: ca.crt holds no certificate", dir))
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}, nil
}

// printHubSessions is the table of the hub's sessions: which host, and
// the session.open as that host journaled it. Every string in it is the
// host's or its client's to choose, so it is escaped.
func printHubSessions(w io.Writer, list []hubapi.Session) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPENED\tHOST\tHOST ID\tSEQ\tSESSION\tTARGET\tPID\tUID\tEXE\tHUMAN\tAGENT")
	for _, s := range list {
		var so model.SessionOpen
		exe := "?"
		if err := json.Unmarshal(s.Data, &so); err == nil && so.Identity.Proc != nil && so.Identity.Proc.Exe != "" {
			exe = textview.Escape(so.Identity.Proc.Exe)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n",
			time.Unix(0, s.TimeNS).Local().Format("2006-01-02 15:04:05"), textview.Escape(s.HostName), textview.Escape(s.HostID), s.Seq,
			textview.Escape(s.Session), textview.Escape(so.Target.Name), so.Identity.Kernel.TGID, so.Identity.Kernel.UID, exe,
			orDash(sessionview.LoginText(so.Identity.Human)), orDash(sessionview.AgentText(so.Identity.Agent)))
	}
	return tw.Flush()
}

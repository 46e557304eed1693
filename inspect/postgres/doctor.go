package postgres

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect/postgres/sqlclass"
)

// TargetCheck is one finding of CheckTarget, for `interlock doctor`.
type TargetCheck struct {
	Status string // ok, warn, fail
	Detail string
	Fix    string
}

// CheckTarget logs in to a postgres target the way the handler does, with
// the credential interlock holds, and reports what would make sessions
// fail or interlock's controls weaker: a refused credential, a held role
// that is a superuser, role-level settings the parser cannot follow, a
// server newer than interlock's grammar.
func CheckTarget(ctx context.Context, tc config.TargetConfig) []TargetCheck {
	t, err := newTarget(tc)
	if err != nil {
		return []TargetCheck{{Status: "fail", Detail: err.Error(), Fix: "fix the target's credentials or tls settings in the config"}}
	}
	host, port, err := tc.HostPort()
	if err != nil {
		return []TargetCheck{{Status: "fail", Detail: err.Error()}}
	}
	addr, err := resolveTarget(ctx, host, port)
	if err != nil {
		return []TargetCheck{{Status: "fail", Detail: err.Error(), Fix: "the target's address must resolve from this host"}}
	}
	cfg := t.config(addr, tc.Credentials.User)
	cfg.Database = "postgres"
	cfg.RuntimeParams = map[string]string{}
	for k, v := range ownParams {
		cfg.RuntimeParams[k] = v
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		le := t.loginError(err)
		fix := "check that the server is up and reachable from this host, and the target's tls setting"
		if strings.Contains(le.Error(), "credentials interlock holds") {
			fix = "the credential in " + credentialSource(tc) + " is not the role's password: fix it, or find out who changed the password (an ALTER ROLE through interlock is refused; look for one made directly)"
		}
		return []TargetCheck{{Status: "fail", Detail: le.Error(), Fix: fix}}
	}
	defer pc.Close(context.Background())
	var out []TargetCheck
	version := pc.ParameterStatus("server_version")
	major := serverMajor(version)
	login := fmt.Sprintf("logs in as %s (PostgreSQL %s", tc.Credentials.User, version)
	if tc.TLSMode() != "disable" {
		login += ", tls " + tc.TLSMode()
	}
	out = append(out, TargetCheck{Status: "ok", Detail: login + ")"})
	switch {
	case major > sqlclass.GrammarVersion:
		out = append(out, TargetCheck{Status: "warn",
			Detail: fmt.Sprintf("the server is PostgreSQL %d; interlock's SQL grammar is PostgreSQL %d's, so statements in newer syntax are unknown to it and refused by default (policy.unknown)", major, sqlclass.GrammarVersion),
			Fix:    "upgrade interlock to a release whose grammar covers this server"})
	default:
		out = append(out, TargetCheck{Status: "ok", Detail: fmt.Sprintf("interlock's SQL grammar (PostgreSQL %d) covers this server; syntax newer than the server's is refused", sqlclass.GrammarVersion)})
	}
	rr := pc.ExecParams(cctx, `/* interlock: doctor */
SELECT r.rolsuper::pg_catalog.text, pg_catalog.array_to_string(r.rolconfig, ',')
FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1`, [][]byte{[]byte(tc.Credentials.User)}, nil, nil, nil)
	var super, settings string
	for rr.NextRow() {
		v := rr.Values()
		super, settings = string(v[0]), string(v[1])
	}
	if _, err := rr.Close(); err != nil {
		out = append(out, TargetCheck{Status: "warn", Detail: "could not read the held role's attributes: " + t.scrub(err.Error())})
		return out
	}
	if super == "true" {
		out = append(out, TargetCheck{Status: "warn",
			Detail: "the role interlock logs in as is a superuser: a session can then change anything interlock relies on (the catalog it trusts, server files, other roles)",
			Fix:    "give interlock a role with only the privileges the jobs need"})
	}
	for _, set := range strings.Split(settings, ",") {
		name, value, _ := strings.Cut(set, "=")
		switch {
		case name == "standard_conforming_strings" && !isOn(value),
			name == "client_encoding" && unsafeEncoding(value):
			out = append(out, TargetCheck{Status: "fail",
				Detail: fmt.Sprintf("the held role has %s=%s as a role setting: every session through interlock is refused", name, value),
				Fix:    fmt.Sprintf("ALTER ROLE %s RESET %s (as an administrator, not through interlock)", tc.Credentials.User, name)})
		}
	}
	return out
}

func credentialSource(tc config.TargetConfig) string {
	switch {
	case tc.Credentials.PasswordFile != "":
		return tc.Credentials.PasswordFile
	case tc.Credentials.PasswordEnv != "":
		return "$" + tc.Credentials.PasswordEnv
	}
	return "the config"
}

func resolveTarget(ctx context.Context, host string, port uint16) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a, port), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %v", host, err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), port), nil
}

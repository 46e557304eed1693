package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/internal/rawconn"
)

// target is a postgres target's settings, read at start and on reload.
type target struct {
	name     string
	user     string
	password string
	host     string
	port     uint16
	tlsMode  string
	// upTLS verifies (or, under prefer and require, merely encrypts) the
	// server leg.
	upTLS    *tls.Config
	results  string
	rowsMax  int
	base     *pgconn.Config
	dialTime time.Duration
	// checkEffects: transactions that may write go through the gate.
	checkEffects bool
	// onLoginFail hears of each of interlock's own logins the target
	// refused (reason "credentials" or "other").
	onLoginFail func(reason string)
	log         *slog.Logger
}

func newTarget(tc config.TargetConfig) (*target, error) {
	if tc.Credentials == nil || tc.Credentials.User == "" {
		return nil, errors.New("credentials.user is required")
	}
	t := &target{name: tc.Name, user: tc.Credentials.User, tlsMode: tc.TLSMode(), results: tc.ResultsMode(), rowsMax: tc.RowsMax(),
		dialTime: 10 * time.Second, checkEffects: tc.EffectsChecked()}
	pw, err := tc.Credentials.Password()
	if err != nil {
		return nil, err
	}
	t.password = pw
	host, port, err := tc.HostPort()
	if err != nil {
		return nil, err
	}
	t.host, t.port = host, port
	switch t.tlsMode {
	case "disable":
	case "prefer", "require":
		// libpq's meaning: encrypted, the certificate not checked.
		t.upTLS = &tls.Config{InsecureSkipVerify: true, ServerName: serverName(host)}
	case "verify-full":
		pem, err := os.ReadFile(tc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", tc.CAFile)
		}
		t.upTLS = &tls.Config{RootCAs: pool, ServerName: host}
	default:
		return nil, fmt.Errorf("tls: unknown mode %q", t.tlsMode)
	}
	// ParseConfig is the only way to get a usable Config; everything it
	// may have taken from interlock's environment is overwritten below.
	base, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("upstream connection settings: %w", err)
	}
	base.User = t.user
	base.Password = t.password
	base.TLSConfig = nil
	base.Fallbacks = nil
	base.RuntimeParams = map[string]string{}
	base.KerberosSrvName, base.KerberosSpn = "", ""
	base.ConnectTimeout = t.dialTime
	base.ValidateConnect = nil
	base.AfterConnect = nil
	base.OnNotice = nil
	base.OnNotification = nil
	base.MinProtocolVersion, base.MaxProtocolVersion = "3.0", "3.0"
	base.ChannelBinding = "prefer"
	base.RequireAuth = ""
	base.SSLNegotiation = "postgres"
	// The session relays the server's socket outside the runtime's
	// system-call accounting (internal/rawconn), under TLS if any.
	dial := base.DialFunc
	base.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return rawconn.Wrap(c), nil
	}
	t.base = base
	return t, nil
}

// serverName is what goes in SNI: a name, never an address.
func serverName(host string) string {
	if net.ParseIP(host) != nil {
		return ""
	}
	return host
}

// config is the connection to the server at dst and database, with the
// held credentials and the target's TLS mode.
func (t *target) config(dst netip.AddrPort, database string) *pgconn.Config {
	c := t.base.Copy()
	c.Host, c.Port = dst.Addr().String(), dst.Port()
	c.Database = database
	if t.upTLS != nil {
		c.TLSConfig = t.upTLS.Clone()
		if t.tlsMode == "prefer" {
			c.Fallbacks = []*pgconn.FallbackConfig{{Host: c.Host, Port: c.Port}}
		}
	}
	return c
}

// upstreamError is a failed login to the server, answered to the client.
type upstreamError struct {
	code, msg string
	err       error
}

func (e *upstreamError) Error() string { return e.msg }
func (e *upstreamError) Unwrap() error { return e.err }

// connect logs in to the server at dst with the held credentials, asking
// for the client's database and session parameters, and hands over the
// raw connection.
func (t *target) connect(ctx context.Context, dst netip.AddrPort, database string, params map[string]string) (*pgconn.HijackedConn, error) {
	c := t.config(dst, database)
	c.RuntimeParams = params
	cctx, cancel := context.WithTimeout(ctx, t.dialTime)
	defer cancel()
	pc, err := pgconn.ConnectConfig(cctx, c)
	if err != nil {
		t.loginFailed(err)
		return nil, t.loginError(err)
	}
	if err := pc.SyncConn(cctx); err != nil {
		pc.Close(context.Background())
		return nil, &upstreamError{code: "08006", msg: "interlock lost the connection to the server during login: " + t.scrub(err.Error()), err: err}
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	return hc, nil
}

// loginFailed reports a refused login of interlock's own, loudly when the
// target refused the held credential: every session of the target fails
// until an operator fixes it (or finds who changed it).
func (t *target) loginFailed(err error) {
	reason := "other"
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000") {
		reason = "credentials"
		if t.log != nil {
			t.log.Error("target refused the credential interlock holds: every session of this target fails until it is fixed", "target", t.name, "user", t.user, "sqlstate", pe.Code, "err", t.scrub(pe.Message))
		}
	}
	if t.onLoginFail != nil {
		t.onLoginFail(reason)
	}
}

func (t *target) loginError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := fmt.Sprintf("interlock could not log in to target %s as %q: %s", t.name, t.user, t.scrub(pe.Message))
		if pe.Code == "28P01" || pe.Code == "28000" {
			msg += " (the credentials interlock holds for this target were refused; fix them in interlock's configuration)"
		}
		return &upstreamError{code: pe.Code, msg: msg, err: err}
	}
	return &upstreamError{code: "08001", msg: fmt.Sprintf("interlock could not connect to target %s: %s", t.name, t.scrub(err.Error())), err: err}
}

// scrub keeps the held password out of any text that reaches a client.
func (t *target) scrub(s string) string {
	if len(t.password) >= 4 {
		s = strings.ReplaceAll(s, t.password, "********")
	}
	return s
}

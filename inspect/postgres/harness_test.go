package postgres

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// statements pairs each pg.statement with its pg.result.
type stmtRec struct {
	seq uint64
	dur model.Durability
	st  model.PGStatement
	res *model.PGResult
	pay any
}

func statements(j *testkit.Journal) []stmtRec {
	var out []stmtRec
	idx := map[uint64]int{}
	for _, e := range j.Entries() {
		switch d := e.Data.(type) {
		case model.PGStatement:
			idx[e.Seq] = len(out)
			out = append(out, stmtRec{seq: e.Seq, st: d, dur: e.Durability})
		case model.PGResult:
			if k, ok := idx[d.Statement]; ok {
				d := d
				out[k].res = &d
				out[k].pay = e.Payload
			}
		}
	}
	return out
}

// denyPolicy denies statements of the listed kinds.
type denyPolicy struct{ kinds []string }

func (p denyPolicy) DecideConnect(context.Context, model.Origin) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "default"}
}

func (p denyPolicy) DecideEffects(context.Context, model.Origin, model.Operation) model.Decision {
	return model.Decision{Action: model.Allow, Rule: "default"}
}

func (p denyPolicy) EffectsRules(model.Origin) bool { return false }

func (p denyPolicy) SessionMasks(model.Origin) *model.MaskSpec { return nil }

func (p denyPolicy) Decide(_ context.Context, _ model.Origin, op model.Operation) model.Decision {
	for _, k := range op.Kinds {
		if slices.Contains(p.kinds, k) {
			return model.Decision{Action: model.Deny, Rule: "targets.db.deny_statements", Reason: k + " statements are denied on db"}
		}
	}
	return model.Decision{Action: model.Allow, Rule: "default"}
}

// One PostgreSQL serves the package's tests.
var pg pgtest.Shared

// server is the package's PostgreSQL, started on first use.
func server(t testing.TB) *pgtest.Server {
	t.Helper()
	return pg.Server(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// proxy is a handler serving connections accepted on a local listener, as
// the engine would serve intercepted ones.
type proxy struct {
	h *Handler
	j *testkit.Journal
	// life serves the sessions as the engine does: it writes their
	// close records and counts their panics.
	life *inspect.Lifecycle
	ln   net.Listener
	addr string
	wg   sync.WaitGroup
	outs chan inspect.Outcome
}

type proxyOpts struct {
	tls, results string
	rowsMax      int
	password     string
	user         string
	deny         []string
	upstream     string // default: the test server
	// policy replaces denyPolicy{deny}.
	policy inspect.Policy
	masker inspect.Masker
	// idle is the sessions' inspect.Session.Idle.
	idle time.Duration
	// wrap, when set, wraps the journal the handler writes to.
	wrap func(model.Recorder) model.Recorder
}

func startProxy(t testing.TB, o proxyOpts) *proxy {
	t.Helper()
	up := o.upstream
	if up == "" {
		up = server(t).Addr()
	}
	if o.password == "" {
		o.password = pgtest.AppPassword
	}
	if o.user == "" {
		o.user = pgtest.AppUser
	}
	env := fmt.Sprintf("INTERLOCK_TEST_PW_%d", time.Now().UnixNano())
	os.Setenv(env, o.password)
	t.Cleanup(func() { os.Unsetenv(env) })
	tc := config.TargetConfig{Name: "db", Protocol: model.ProtoPostgres, Address: up,
		Credentials: &config.Credentials{User: o.user, PasswordEnv: env},
		TLS:         o.tls, RecordResults: o.results, RecordRowsMax: o.rowsMax, DenyStatements: o.deny}
	if o.tls == "verify-full" {
		tc.CAFile = server(t).CAFile
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Targets = []config.TargetConfig{tc}
	j := &testkit.Journal{}
	var pol inspect.Policy = denyPolicy{kinds: o.deny}
	if o.policy != nil {
		pol = o.policy
	}
	var rec model.Recorder = j
	if o.wrap != nil {
		rec = o.wrap(j)
	}
	h, err := New(Options{Deps: inspect.Deps{Config: cfg, Journal: rec, Policy: pol, Masker: o.masker,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{h: h, j: j, life: &inspect.Lifecycle{Journal: rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ln: ln, addr: ln.Addr().String(), outs: make(chan inspect.Outcome, 1000)}
	dst := netip.MustParseAddrPort(up)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n++
			p.wg.Add(1)
			go func(n int) {
				defer p.wg.Done()
				s := &inspect.Session{ID: fmt.Sprintf("s%d", n), Origin: model.Origin{
					Target:  model.Target{Name: "db", Protocol: model.ProtoPostgres, Address: up},
					OrigDst: dst, Client: netip.MustParseAddrPort(c.RemoteAddr().String()),
					Identity: model.Identity{Kernel: model.KernelFacts{UID: 0, TGID: 1}}, Accepted: time.Now()}, Idle: o.idle}
				out := p.life.Serve(ctx, h, c, s)
				select {
				case p.outs <- out:
				default:
				}
			}(n)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		p.wg.Wait()
		if n := p.life.Panics(); n != 0 {
			t.Errorf("%d sessions panicked", n)
		}
	})
	return p
}

func (p *proxy) dsn(extra string) string {
	host, port, _ := net.SplitHostPort(p.addr)
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable %s", host, port, pgtest.AppUser, pgtest.AppDB, extra)
}

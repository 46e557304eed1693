package postgres

import (
	"context"
	"encoding/json"
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
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/testenv"
)

// memJournal is a Recorder that keeps records in memory.
type memJournal struct {
	mu   sync.Mutex
	recs []model.Record
	seqs []uint64
	durs []model.Durability
	fail bool
}

func (j *memJournal) Append(_ context.Context, rec model.Record, d model.Durability) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail {
		return 0, fmt.Errorf("journal broken for the test")
	}
	// Encoded as the journal encodes it, so that benchmarks pay what the
	// daemon pays.
	if _, ok := model.AppendJSON(nil, rec.Data); !ok {
		if _, err := json.Marshal(rec.Data); err != nil {
			return 0, err
		}
	}
	j.recs = append(j.recs, rec)
	j.seqs = append(j.seqs, uint64(len(j.recs)))
	j.durs = append(j.durs, d)
	return uint64(len(j.recs)), nil
}

func (j *memJournal) Post(rec model.Record) { j.Append(context.Background(), rec, model.Committed) }

func (j *memJournal) kind(k string) []model.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []model.Record
	for _, r := range j.recs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// statements pairs each pg.statement with its pg.result.
type stmtRec struct {
	seq uint64
	dur model.Durability
	st  model.PGStatement
	res *model.PGResult
	pay any
}

func (j *memJournal) statements() []stmtRec {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []stmtRec
	idx := map[uint64]int{}
	for i, r := range j.recs {
		switch d := r.Data.(type) {
		case model.PGStatement:
			idx[j.seqs[i]] = len(out)
			out = append(out, stmtRec{seq: j.seqs[i], st: d, dur: j.durs[i]})
		case model.PGResult:
			if k, ok := idx[d.Statement]; ok {
				d := d
				out[k].res = &d
				out[k].pay = r.Payload
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

var (
	pgOnce sync.Once
	pgSrv  *pgtest.Server
	pgErr  error
)

// server starts one PostgreSQL for the package's tests (stopped by
// TestMain).
func server(t testing.TB) *pgtest.Server {
	t.Helper()
	pgOnce.Do(func() {
		if err := pgtest.Available(); err != nil {
			pgErr = err
			return
		}
		pgSrv, pgErr = pgtest.Start(pgtest.Options{})
	})
	testenv.Require(t, "PostgreSQL for tests", pgErr)
	return pgSrv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgSrv != nil {
		pgSrv.Stop()
	}
	os.Exit(code)
}

// proxy is a handler serving connections accepted on a local listener, as
// the engine would serve intercepted ones.
type proxy struct {
	h *Handler
	j *memJournal
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
	j := &memJournal{}
	var pol inspect.Policy = denyPolicy{kinds: o.deny}
	if o.policy != nil {
		pol = o.policy
	}
	h, err := New(Options{Deps: inspect.Deps{Config: cfg, Journal: j, Policy: pol, Masker: o.masker,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{h: h, j: j, life: &inspect.Lifecycle{Journal: j, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ln: ln, addr: ln.Addr().String(), outs: make(chan inspect.Outcome, 1000)}
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

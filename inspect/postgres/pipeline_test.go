package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

// gatedJournal is a model.Starter whose started records commit only when
// the test says so: the record is kept at once (so sequence numbers stay
// in order), and wait blocks until release is closed, then returns fail
// when set.
type gatedJournal struct {
	model.Recorder
	mu      sync.Mutex
	started []string // texts of the statements started
	at      []time.Time
	release chan struct{}
	fail    error
}

func (g *gatedJournal) Start(ctx context.Context, rec model.Record, d model.Durability) func() (uint64, error) {
	seq, err := g.Recorder.Append(ctx, rec, d)
	g.mu.Lock()
	if st, ok := rec.Data.(model.PGStatement); ok {
		g.started = append(g.started, st.SQL)
		g.at = append(g.at, time.Now())
	}
	release, fail := g.release, g.fail
	g.mu.Unlock()
	return sync.OnceValues(func() (uint64, error) {
		<-release
		if fail != nil {
			return 0, fail
		}
		return seq, err
	})
}

func (g *gatedJournal) startedText(marker string) bool {
	_, ok := g.startedAt(marker)
	return ok
}

// startedAt is when the statement containing marker was started: the
// statement is forwarded only after that.
func (g *gatedJournal) startedAt(marker string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, s := range g.started {
		if strings.Contains(s, marker) {
			return g.at[i], true
		}
	}
	return time.Time{}, false
}

// serverRan says whether a backend of the test server has started a query
// containing marker at or after since and is idle again: the server
// answered it. (A Parse of the text also shows it; since tells the
// execution from that.)
func serverRan(t *testing.T, marker string, since time.Time) bool {
	t.Helper()
	out, err := server(t).PSQL(pgtest.AppDB, fmt.Sprintf(
		`SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' AND query LIKE '%%%s%%' AND query NOT LIKE '%%pg_stat_activity%%'
		 AND query_start >= to_timestamp(%d / 1e6)`, marker, since.UnixMicro()))
	if err != nil {
		t.Fatalf("pg_stat_activity: %v: %s", err, out)
	}
	return out != "0"
}

// TestReadOnlyAnswerWaitsForItsRecord: a read-only statement reaches the
// server while its record commits (the server has answered it before the
// commit), and its answer reaches the client only once the record is
// committed; in both protocols.
func TestReadOnlyAnswerWaitsForItsRecord(t *testing.T) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			g := &gatedJournal{release: make(chan struct{})}
			p := startProxy(t, proxyOpts{wrap: func(r model.Recorder) model.Recorder { g.Recorder = r; return g }})
			c := connect(t, p.dsn(""))
			// Everything up to now (the login's reads) commits at once.
			close(g.release)
			g.mu.Lock()
			g.release = make(chan struct{})
			release := g.release
			g.mu.Unlock()
			var releaseOnce sync.Once
			free := func() { releaseOnce.Do(func() { close(release) }) }
			// A failure must not leave the session waiting on its record
			// (the proxy's cleanup waits for the session).
			t.Cleanup(free)

			marker := fmt.Sprintf("pipelined_%d", time.Now().UnixNano())
			got := make(chan error, 1)
			go func() {
				var v string
				got <- c.QueryRow(context.Background(), "SELECT '"+marker+"'::text", mode).Scan(&v)
			}()
			deadline := time.Now().Add(20 * time.Second)
			var since time.Time
			for ok := false; !ok; since, ok = g.startedAt(marker) {
				if time.Now().After(deadline) {
					t.Fatal("the statement was not journaled through Start")
				}
				time.Sleep(5 * time.Millisecond)
			}
			// Its execution starts after its record was started, and a
			// Parse of the text before it (cache_statement) ends before:
			// since tells them apart however late this loop saw the start.
			for !serverRan(t, marker, since) {
				if time.Now().After(deadline) {
					t.Fatal("the statement did not reach the server while its record was being committed")
				}
				time.Sleep(20 * time.Millisecond)
			}
			select {
			case err := <-got:
				t.Fatalf("the client had its answer before the record committed (err %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			free()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no answer after the record committed")
			}
			// The result is posted after the answer went out.
			for found := false; !found; time.Sleep(10 * time.Millisecond) {
				for _, s := range statements(p.j) {
					found = found || strings.Contains(s.st.SQL, marker) && s.res != nil && s.res.Statement == s.seq
				}
				if !found && time.Now().After(deadline) {
					t.Fatal("no statement and result pair for the pipelined statement")
				}
			}
		})
	}
}

// TestReadOnlyRecordFailureWithholdsAnswer: when a pipelined record
// fails, the client never sees the answer; the session ends with an error
// that says interlock could not record it.
func TestReadOnlyRecordFailureWithholdsAnswer(t *testing.T) {
	g := &gatedJournal{release: make(chan struct{})}
	close(g.release)
	p := startProxy(t, proxyOpts{wrap: func(r model.Recorder) model.Recorder { g.Recorder = r; return g }})
	c := connect(t, p.dsn(""))
	g.mu.Lock()
	g.fail = errors.New("disk gone")
	g.mu.Unlock()
	marker := fmt.Sprintf("secret_answer_%d", time.Now().UnixNano())
	rows, err := c.Query(context.Background(), "SELECT '"+marker+"'::text", pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		for rows.Next() {
			var v string
			rows.Scan(&v)
			if v == marker {
				t.Fatal("the client received the answer of a statement whose record failed")
			}
		}
		err = rows.Err()
	}
	if err == nil {
		t.Fatal("the query succeeded although its record failed")
	}
	if !strings.Contains(err.Error(), "record") {
		t.Errorf("error %q does not say interlock could not record the statement", err)
	}
	for _, r := range p.j.OfKind(model.KindPGResult) {
		if res, ok := r.Data.(model.PGResult); ok && res.Rows > 0 && strings.Contains(fmt.Sprint(r.Payload), marker) {
			t.Fatal("a result was journaled for the failed statement")
		}
	}
	if err := c.Ping(context.Background()); err == nil {
		t.Fatal("the session went on after a record failed")
	}
}

// TestSideEffectsAreNotPipelined: a read-only statement is forwarded while
// its record commits, so a crash then could leave it run and unrecorded.
// Nothing that changes state may pass for read-only once the session has
// judged it against the catalog: statements a session would use to act
// while looking like a read go through Append, committed first.
func TestSideEffectsAreNotPipelined(t *testing.T) {
	g := &gatedJournal{release: make(chan struct{})}
	close(g.release)
	p := startProxy(t, proxyOpts{wrap: func(r model.Recorder) model.Recorder { g.Recorder = r; return g }})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	tag := fmt.Sprintf("%d", time.Now().UnixNano())
	setup := fmt.Sprintf(`CREATE TEMP SEQUENCE s%[1]s; CREATE TEMP TABLE t%[1]s (id int);
		CREATE FUNCTION pg_temp.f%[1]s() RETURNS int LANGUAGE sql AS 'INSERT INTO t%[1]s VALUES (1) RETURNING 1'`, tag)
	if _, err := c.Exec(ctx, setup, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		"SELECT nextval('s" + tag + "')",
		"SELECT setval('s" + tag + "', 5)",
		"SELECT pg_advisory_lock(1)",
		"SELECT set_config('application_name', 'x', false)",
		"SELECT pg_cancel_backend(0)",
		"SELECT pg_temp.f" + tag + "()",
		"SELECT * FROM t" + tag + " FOR UPDATE",
		"WITH d AS (DELETE FROM t" + tag + " RETURNING *) SELECT * FROM d",
		"SELECT * FROM t" + tag + ", LATERAL (SELECT nextval('s" + tag + "')) n",
		"SELECT 1 INTO TEMP t2" + tag,
		// Stable in the catalog, yet each assigns the transaction an id.
		"SELECT txid_current()",
		"SELECT pg_current_xact_id()",
		"SELECT pg_try_advisory_xact_lock_shared(1)",
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			marked := text + " -- " + tag + mode.String()
			rows, err := c.Query(ctx, marked, mode)
			if err == nil {
				rows.Close()
			}
			if g.startedText(marked) {
				t.Errorf("%q (%s) was forwarded before its record committed, as a read", text, mode)
			}
		}
	}
	// The control: a plain read is.
	marked := "SELECT 1 -- " + tag
	if _, err := c.Exec(ctx, marked, pgx.QueryExecModeSimpleProtocol); err != nil || !g.startedText(marked) {
		t.Errorf("a plain read was not pipelined (%v)", err)
	}
}

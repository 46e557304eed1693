package postgres

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/e2e/pgtest"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect through interlock: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestQueriesAreProxiedAndJournaled(t *testing.T) {
	p := startProxy(t, proxyOpts{results: "rows"})
	c := connect(t, p.dsn(""))
	ctx := context.Background()

	// Simple protocol, several statements in one Query.
	rr := c.PgConn().Exec(ctx, "CREATE TEMP TABLE t(id int, v text); INSERT INTO t VALUES (1,'a'),(2,NULL); SELECT id, v FROM t ORDER BY id")
	res, err := rr.ReadAll()
	if err != nil {
		t.Fatalf("multi-statement query: %v", err)
	}
	if len(res) != 3 || len(res[2].Rows) != 2 || string(res[2].Rows[0][1]) != "a" {
		t.Fatalf("results %+v", res)
	}

	// Extended protocol, prepared, binary and NULL parameters.
	var id int
	var v *string
	if err := c.QueryRow(ctx, "SELECT id, v FROM t WHERE id = $1 AND ($2::text IS NULL OR v = $2)", 2, nil).Scan(&id, &v); err != nil {
		t.Fatalf("prepared query: %v", err)
	}
	if id != 2 || v != nil {
		t.Fatalf("got %d %v", id, v)
	}
	var b []byte
	if err := c.QueryRow(ctx, "SELECT $1::bytea", []byte{0, 1, 2, 255}).Scan(&b); err != nil || !bytes.Equal(b, []byte{0, 1, 2, 255}) {
		t.Fatalf("bytea round trip: %v %x", err, b)
	}

	sts := statements(p.j)
	want := []string{"CREATE TEMP TABLE t(id int, v text)", "INSERT INTO t VALUES (1,'a'),(2,NULL)", "SELECT id, v FROM t ORDER BY id"}
	if len(sts) < 5 {
		t.Fatalf("journal has %d statements: %+v", len(sts), sts)
	}
	for i, w := range want {
		if sts[i].st.SQL != w || sts[i].st.Protocol != "simple" {
			t.Errorf("statement %d = %q (%s), want %q", i, sts[i].st.SQL, sts[i].st.Protocol, w)
		}
		if sts[i].res == nil {
			t.Errorf("statement %d has no result", i)
		}
	}
	if sts[1].st.ReadOnly || !sts[2].st.ReadOnly {
		t.Errorf("read-only flags: insert %v select %v", sts[1].st.ReadOnly, sts[2].st.ReadOnly)
	}
	if r := sts[1].res; r == nil || r.Rows != 2 || r.Tag != "INSERT 0 2" {
		t.Errorf("insert result %+v", r)
	}
	if r := sts[2].res; r == nil || r.Rows != 2 || r.RowsRecorded != 2 || strings.Join(r.Columns, ",") != "id,v" {
		t.Errorf("select result %+v", r)
	}
	if rows, ok := sts[2].pay.([][]*string); !ok || len(rows) != 2 || *rows[0][1] != "a" || rows[1][1] != nil {
		t.Errorf("payload %#v", sts[2].pay)
	}
	ext := sts[3].st
	if ext.Protocol != "extended" || len(ext.Params) != 2 || ext.Params[0].Value == nil || *ext.Params[0].Value != "2" || ext.Params[1].Value != nil {
		t.Errorf("extended statement %+v", ext)
	}
	if ext.Params[0].Format != "binary" || ext.Params[0].Type != "int8" && ext.Params[0].Type != "int4" {
		t.Errorf("param 0 %+v", ext.Params[0])
	}
	if byt := sts[4].st; len(byt.Params) != 1 || *byt.Params[0].Value != "\\x000102ff" {
		t.Errorf("bytea param %+v", byt.Params)
	}
	if len(p.j.OfKind(model.KindSessionOpen)) != 1 {
		t.Errorf("no session.open")
	}
	so := p.j.OfKind(model.KindSessionOpen)[0].Data.(model.SessionOpen)
	if so.Postgres == nil || so.Postgres.User != pgtest.AppUser || so.Postgres.UpstreamPID == 0 || !so.Postgres.UpstreamTLS {
		t.Errorf("session open %+v", so.Postgres)
	}
}

func TestDeniedStatementKeepsSessionUsable(t *testing.T) {
	p := startProxy(t, proxyOpts{deny: []string{"drop_database", "drop_table"}})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	_, err := c.Exec(ctx, "DROP DATABASE appdb")
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), "deny_statements") {
		t.Fatalf("DROP DATABASE: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 41+1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("next statement: %v %d", err, n)
	}
	// Simple protocol, inside a transaction block: the block is aborted
	// as the server would abort it, and the status says so.
	pc := c.PgConn()
	if _, err := pc.Exec(ctx, "BEGIN; CREATE TABLE keep(x int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	_, err = pc.Exec(ctx, "SELECT 1; DROP TABLE keep; SELECT 2").ReadAll()
	if pgCode(err) != "42501" {
		t.Fatalf("denied in block: %v", err)
	}
	if pc.TxStatus() != 'E' {
		t.Errorf("tx status after denial in a block = %c, want E", pc.TxStatus())
	}
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if pc.TxStatus() != 'I' {
		t.Errorf("tx status after rollback = %c", pc.TxStatus())
	}
	// Extended protocol: the denied Bind fails, the pipeline recovers.
	_, err = c.Exec(ctx, "DROP TABLE IF EXISTS nothing_here_"+fmt.Sprint(1))
	if pgCode(err) != "42501" {
		t.Fatalf("extended drop table: %v", err)
	}
	if err := c.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n); err != nil || n != 7 {
		t.Fatalf("after extended denial: %v", err)
	}
	var denied int
	for _, s := range statements(p.j) {
		if s.st.Decision.Action == model.Deny {
			denied++
			if s.st.SQLState != "42501" || s.res != nil {
				t.Errorf("denied record %+v", s)
			}
		}
	}
	if denied != 3 {
		t.Errorf("%d denied statements journaled, want 3", denied)
	}
}

func TestPipelineErrorInTheMiddleRecovers(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 3")
	br := c.SendBatch(ctx, b)
	var n int
	if err := br.QueryRow().Scan(&n); err != nil || n != 1 {
		t.Fatalf("first: %v", err)
	}
	if err := br.QueryRow().Scan(&n); pgCode(err) != "22012" {
		t.Fatalf("second: %v", err)
	}
	if err := br.QueryRow().Scan(&n); err == nil {
		t.Fatalf("third ran after the error")
	}
	br.Close()
	if err := c.QueryRow(ctx, "SELECT 4").Scan(&n); err != nil || n != 4 {
		t.Fatalf("after the batch: %v", err)
	}
	// Raw pipeline with several syncs and a named statement, max rows.
	pc := c.PgConn()
	pl := pc.StartPipeline(ctx)
	pl.SendPrepare("s1", "SELECT generate_series(1, $1::int)", nil)
	pl.SendQueryPrepared("s1", [][]byte{[]byte("5")}, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("SELECT nope", nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryPrepared("s1", [][]byte{[]byte("2")}, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 20; i++ {
		r, err := pl.GetResults()
		if err != nil {
			got = append(got, "err:"+pgCode(err))
			continue
		}
		switch x := r.(type) {
		case *pgconn.StatementDescription:
			got = append(got, "prepared")
		case *pgconn.ResultReader:
			res := x.Read()
			got = append(got, fmt.Sprintf("rows:%d", len(res.Rows)))
		case *pgconn.PipelineSync:
			got = append(got, "sync")
		case nil:
			i = 20
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatalf("%v (results %v)", err, got)
	}
	if strings.Join(got, " ") != "prepared rows:5 sync err:42703 sync rows:2 sync" {
		t.Errorf("pipeline results: %v", got)
	}
	var notRun, failed int
	for _, s := range statements(p.j) {
		if s.res != nil && s.res.NotRun {
			notRun++
		}
		if s.res != nil && s.res.SQLState != "" {
			failed++
		}
	}
	if notRun < 2 || failed < 1 {
		t.Errorf("not run %d, failed %d", notRun, failed)
	}
}

func TestMaxRowsPortalSuspended(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "DECLARE cur CURSOR FOR SELECT generate_series(1,10)"); err != nil {
		t.Fatal(err)
	}
	rows, _ := tx.Query(ctx, "FETCH 4 FROM cur")
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n != 4 {
		t.Fatalf("fetch: %v %d", rows.Err(), n)
	}
	// The protocol's own max rows: Execute with a limit gives
	// PortalSuspended, then the rest.
	pc := c.PgConn()
	mrr := pc.ExecParams(ctx, "SELECT generate_series(1,3)", nil, nil, nil, nil)
	res := mrr.Read()
	if res.Err != nil || len(res.Rows) != 3 {
		t.Fatalf("exec params: %v", res.Err)
	}
}

func TestLoginRules(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	ctx := context.Background()
	// Another database user: refused with 28000, the server never asked.
	_, err := pgx.Connect(ctx, strings.Replace(p.dsn(""), "user="+pgtest.AppUser, "user=postgres", 1))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "holds no credentials") {
		t.Errorf("other user: %v", err)
	}
	// Replication connections are refused.
	_, err = pgconn.Connect(ctx, p.dsn("replication=database"))
	if pgCode(err) != "0A000" || !strings.Contains(err.Error(), "replication") {
		t.Errorf("replication: %v", err)
	}
	// Whatever password the client has is never asked for.
	c := connect(t, p.dsn("password=whatever"))
	var u string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&u); err != nil || u != pgtest.AppUser {
		t.Errorf("current_user %q %v", u, err)
	}
	if len(p.j.OfKind(model.KindSessionOpen)) != 3 {
		t.Errorf("%d session.open records, want 3 (2 refused)", len(p.j.OfKind(model.KindSessionOpen)))
	}

	// A wrong held password: a clear error, and the password interlock
	// holds never appears in it.
	bad := startProxy(t, proxyOpts{password: "wrong-held-password"})
	_, err = pgx.Connect(ctx, bad.dsn(""))
	if pgCode(err) != "28P01" || !strings.Contains(err.Error(), "credentials interlock holds") || strings.Contains(err.Error(), "wrong-held-password") {
		t.Errorf("wrong held password: %v", err)
	}
	// md5 upstream.
	md5 := startProxy(t, proxyOpts{user: pgtest.MD5User, password: pgtest.MD5Password, tls: "disable"})
	c2 := connect(t, strings.Replace(md5.dsn(""), "user="+pgtest.AppUser, "user="+pgtest.MD5User, 1))
	if err := c2.QueryRow(ctx, "SELECT current_user").Scan(&u); err != nil || u != pgtest.MD5User {
		t.Errorf("md5: %q %v", u, err)
	}
}

func TestUpstreamTLSModes(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"disable", "prefer", "require", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, proxyOpts{tls: mode})
			c := connect(t, p.dsn(""))
			var ssl bool
			if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl != (mode != "disable") {
				t.Errorf("upstream ssl = %v", ssl)
			}
			var mech string
			if err := c.QueryRow(ctx, "SELECT 1::text").Scan(&mech); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestClientTLS(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	ctx := context.Background()
	ca := p.h.state + "/tls/ca.crt"
	for _, extra := range []string{"sslmode=require", "sslmode=verify-full sslrootcert=" + ca, "sslmode=require sslnegotiation=direct"} {
		dsn := strings.Replace(p.dsn(extra), "sslmode=disable ", "", 1)
		dsn = strings.Replace(dsn, "host=127.0.0.1", "host=localhost", 1)
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("%s: %v", extra, err)
			continue
		}
		if _, ok := c.Conn().(*tls.Conn); !ok {
			t.Errorf("%s: the connection is not TLS", extra)
		}
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Errorf("%s: %v", extra, err)
		}
		c.Close(ctx)
	}
	for _, so := range p.j.OfKind(model.KindSessionOpen) {
		if !so.Data.(model.SessionOpen).Postgres.ClientTLS {
			t.Errorf("session without client TLS: %+v", so.Data.(model.SessionOpen).Postgres)
		}
	}
}

func TestProtocol32AndCancel(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, p.dsn("min_protocol_version=3.2 max_protocol_version=3.2"))
	if err != nil {
		t.Fatalf("protocol 3.2: %v", err)
	}
	defer c.Close(ctx)
	if len(c.SecretKey()) != 32 {
		t.Errorf("3.2 secret key of %d bytes", len(c.SecretKey()))
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(30)").ReadAll()
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	select {
	case err := <-done:
		if pgCode(err) != "57014" {
			t.Errorf("cancelled query: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not work")
	}
	if time.Since(start) > 10*time.Second {
		t.Error("too slow")
	}
	// The session goes on after the cancel.
	if _, err := c.Exec(ctx, "SELECT 5").ReadAll(); err != nil {
		t.Errorf("after the cancel: %v", err)
	}
	cancels := p.j.OfKind(model.KindPGCancel)
	if len(cancels) != 1 || !cancels[0].Data.(model.PGCancel).Forwarded {
		t.Errorf("cancel records %+v", cancels)
	}
}

func TestCopyAndNotifications(t *testing.T) {
	p := startProxy(t, proxyOpts{results: "rows", rowsMax: 2})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	pc := c.PgConn()
	if _, err := pc.Exec(ctx, "CREATE TEMP TABLE c(a int, b text)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	tag, err := pc.CopyFrom(ctx, strings.NewReader("1\tx\n2\ty\n3\tz\n"), "COPY c FROM STDIN")
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("copy from: %v %v", tag, err)
	}
	var out bytes.Buffer
	tag, err = pc.CopyTo(ctx, &out, "COPY c TO STDOUT")
	if err != nil || tag.RowsAffected() != 3 || out.String() != "1\tx\n2\ty\n3\tz\n" {
		t.Fatalf("copy to: %q %v %v", out.String(), tag, err)
	}
	// CopyFail: the client aborts.
	_, err = pc.CopyFrom(ctx, &failingReader{}, "COPY c FROM STDIN")
	if err == nil {
		t.Fatal("copy with a failing reader succeeded")
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM c").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after CopyFail: %d %v", n, err)
	}

	// A notification while the client is idle reaches it at once.
	if _, err := c.Exec(ctx, "LISTEN ch"); err != nil {
		t.Fatal(err)
	}
	other := connect(t, p.dsn(""))
	sent := make(chan struct{})
	defer func() { <-sent }()
	go func() {
		defer close(sent)
		time.Sleep(200 * time.Millisecond)
		other.Exec(ctx, "SELECT pg_notify('ch', 'hello')")
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nt, err := c.WaitForNotification(wctx)
	if err != nil || nt.Payload != "hello" {
		t.Fatalf("notification: %v %+v", err, nt)
	}
	var kinds []string
	for _, s := range statements(p.j) {
		kinds = append(kinds, s.st.Kinds[0])
		if s.st.Kinds[0] == "copy_to" && (s.res == nil || s.res.Rows != 3 || s.res.RowsRecorded != 2 || !s.res.Truncated) {
			t.Errorf("copy to result %+v", s.res)
		}
		if s.st.Kinds[0] == "copy_from" && s.st.ReadOnly {
			t.Errorf("COPY FROM marked read-only")
		}
	}
	if !strings.Contains(strings.Join(kinds, ","), "copy_from,copy_to,copy_from") {
		t.Errorf("kinds %v", kinds)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		f.n++
		return copy(p, "9\tq\n"), nil
	}
	return 0, errors.New("client gave up")
}

func TestLargeRowsStream(t *testing.T) {
	p := startProxy(t, proxyOpts{results: "rows"})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE blob(b bytea)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO blob VALUES ($1)", big); err != nil {
		t.Fatalf("insert 16 MiB: %v", err)
	}
	var got []byte
	if err := c.QueryRow(ctx, "SELECT b FROM blob").Scan(&got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back: %v (%d bytes)", err, len(got))
	}
	// Text format too (hex: 32 MiB on the wire).
	rr := c.PgConn().Exec(ctx, "SELECT b FROM blob")
	res, err := rr.ReadAll()
	if err != nil || len(res[0].Rows[0][0]) != 2+2*len(big) {
		t.Fatalf("text read: %v", err)
	}
	for _, s := range statements(p.j) {
		for _, pr := range s.st.Params {
			if pr.Value != nil && len(*pr.Value) > maxValue+64 {
				t.Errorf("param recorded with %d bytes", len(*pr.Value))
			}
		}
	}
}

func TestDurabilityLevels(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	for _, q := range []string{"CREATE TEMP TABLE d(x int)", "SELECT 1", "BEGIN", "INSERT INTO d VALUES (1)", "SELECT nextval('s')", "UPDATE d SET x = 2", "COMMIT",
		"BEGIN", "SELECT * FROM d", "COMMIT", "INSERT INTO d VALUES (3)"} {
		if q == "SELECT nextval('s')" {
			c.Exec(ctx, "SAVEPOINT a")
			c.Exec(ctx, q) // fails: no such sequence
			c.Exec(ctx, "ROLLBACK TO a")
			continue
		}
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var got []string
	for _, s := range statements(p.j) {
		name := "committed"
		if s.dur == model.Synced {
			name = "synced"
		}
		got = append(got, s.st.SQL+"="+name)
	}
	exp := "CREATE TEMP TABLE d(x int)=synced SELECT 1=committed BEGIN=committed INSERT INTO d VALUES (1)=committed SAVEPOINT a=committed SELECT nextval('s')=synced ROLLBACK TO a=committed UPDATE d SET x = 2=committed COMMIT=synced BEGIN=committed SELECT * FROM d=committed COMMIT=committed INSERT INTO d VALUES (3)=synced"
	if strings.Join(got, " ") != exp {
		t.Errorf("durability:\n got %s\nwant %s", strings.Join(got, " "), exp)
	}
	// Without an effects rule no transaction is held for its effects.
	if n := len(p.j.OfKind(model.KindPGEffects)); n != 0 {
		t.Errorf("%d pg.effects records without effects rules", n)
	}
}

func TestMaxRowsAndCloseRaw(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	c := connect(t, p.dsn(""))
	ctx := context.Background()
	pc := c.PgConn()
	fe := pc.Frontend()
	fe.Send(&pgproto3.Parse{Name: "g", Query: "SELECT generate_series(1, 3)"})
	fe.Send(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "g"})
	fe.Send(&pgproto3.Execute{Portal: "p", MaxRows: 2})
	fe.Send(&pgproto3.Execute{Portal: "p"})
	fe.Send(&pgproto3.Close{ObjectType: 'P', Name: "p"})
	fe.Send(&pgproto3.Close{ObjectType: 'S', Name: "g"})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Parse{Name: "g", Query: "SELECT 1"}) // "g" is free again
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 20 {
		m, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%T", m)[len("*pgproto3."):])
		if _, ok := m.(*pgproto3.ReadyForQuery); ok && strings.Count(strings.Join(got, " "), "ReadyForQuery") == 2 {
			break
		}
	}
	want := "ParseComplete BindComplete DataRow DataRow PortalSuspended DataRow CommandComplete CloseComplete CloseComplete ReadyForQuery ParseComplete ReadyForQuery"
	if strings.Join(got, " ") != want {
		t.Errorf("messages:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	sts := statements(p.j)
	last := sts[len(sts)-1]
	if last.st.SQL != "SELECT generate_series(1, 3)" || last.st.Portal != "p" || last.res == nil || last.res.Rows != 3 {
		t.Errorf("portal run record %+v %+v", last.st, last.res)
	}
}

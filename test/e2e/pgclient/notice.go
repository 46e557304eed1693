package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// notice is one NoticeResponse as pgx's OnNotice got it.
type notice struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Detail   string `json:"detail"`
	Hint     string `json:"hint"`
}

// runNotice runs statements a review rule holds: one through the
// extended protocol, one in the middle of a pipelined batch. The test
// reads the notices on stderr while they are held, approves them, and
// checks that pgx kept the protocol's order: every answer in its place.
func runNotice(ctx context.Context, dsn string, steps map[string]string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stderr)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(notice{n.Severity, n.Code, n.Message, n.Detail, n.Hint})
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(ctx)
	tag, err := c.Exec(ctx, "DELETE FROM held WHERE id = $1", 1)
	steps["extended"] = code(err) + " " + tag.String()

	b := &pgx.Batch{}
	b.Queue("SELECT 10")
	b.Queue("DELETE FROM held WHERE id = $1", 2)
	b.Queue("SELECT 30")
	br := c.SendBatch(ctx, b)
	var one, three int
	e1 := br.QueryRow().Scan(&one)
	tag, e2 := br.Exec()
	e3 := br.QueryRow().Scan(&three)
	if err := br.Close(); err != nil {
		return fmt.Errorf("batch close: %w", err)
	}
	steps["pipeline"] = fmt.Sprintf("%s %d,%s %s,%s %d", code(e1), one, code(e2), tag, code(e3), three)
	var left int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM held").Scan(&left); err != nil {
		return fmt.Errorf("after: %w", err)
	}
	steps["left"] = fmt.Sprint(left)
	return nil
}

// runNoRead is a client that stops reading: it asks for a result larger
// than the sockets hold, then sends a statement a review rule holds, and
// reads nothing more. Interlock must still end the review (its notice
// cannot reach the client) instead of keeping it pending for ever.
func runNoRead(ctx context.Context, dsn string, steps map[string]string) error {
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	hc, err := c.Hijack()
	if err != nil {
		return fmt.Errorf("hijack: %w", err)
	}
	// One extended-protocol segment: the SELECT's rows fill the sockets
	// (interlock's writer to this client blocks) before the DELETE
	// behind it is judged and held.
	send := func(msgs ...pgproto3.FrontendMessage) error {
		var buf []byte
		for _, m := range msgs {
			if buf, err = m.Encode(buf); err != nil {
				return err
			}
		}
		_, err := hc.Conn.Write(buf)
		return err
	}
	if err := send(&pgproto3.Parse{Query: "SELECT repeat('x', 1000000) FROM generate_series(1, 200)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	time.Sleep(2 * time.Second)
	if err := send(&pgproto3.Parse{Query: "DELETE FROM held WHERE id = 3"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	steps["sent"] = "ok"
	fmt.Fprintln(os.Stderr, "sent; reading nothing")
	<-ctx.Done()
	return nil
}

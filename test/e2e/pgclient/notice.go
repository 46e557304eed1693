package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

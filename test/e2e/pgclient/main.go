// Command pgclient is the end-to-end tests' pgx client. It runs one
// scenario against a PostgreSQL address (which interlock intercepts) and
// prints one JSON object: what it saw.
//
//	pgclient -dsn DSN -mode pgx     prepared statements, binary and NULL
//	                                parameters, a pipelined batch with an
//	                                error in the middle, a big bytea row
//	pgclient -dsn DSN -mode fuzz -bad ADDR
//	                                malformed messages on new sessions
//	                                (to DSN's server and to ADDR, a server
//	                                that answers garbage) while a healthy
//	                                session stays open and keeps working
//	pgclient -dsn DSN -mode notice  DELETE FROM held through the extended
//	                                protocol, then inside a pipelined
//	                                batch; each NoticeResponse is printed
//	                                to stderr as a JSON line as it arrives
//	                                (notice.go)
//	pgclient -dsn DSN -mode noread  a big SELECT, then a held DELETE, then
//	                                reads nothing until killed
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type result struct {
	PID    int               `json:"pid"`
	Steps  map[string]string `json:"steps"`
	Error  string            `json:"error,omitempty"`
	BigMiB int               `json:"big_mib,omitempty"`
}

func main() {
	dsn := flag.String("dsn", "", "connection string")
	mode := flag.String("mode", "pgx", "pgx or fuzz")
	bad := flag.String("bad", "", "fuzz: address of a server that answers garbage")
	bigMiB := flag.Int("big-mib", 64, "pgx: size of the bytea row")
	n := flag.Int("n", 200, "fuzz: malformed sessions")
	flag.Parse()
	r := result{PID: os.Getpid(), Steps: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	switch *mode {
	case "pgx":
		r.BigMiB = *bigMiB
		err = runPgx(ctx, *dsn, *bigMiB, r.Steps)
	case "fuzz":
		err = runFuzz(ctx, *dsn, *bad, *n, r.Steps)
	case "notice":
		err = runNotice(ctx, *dsn, r.Steps)
	case "noread":
		err = runNoRead(ctx, *dsn, r.Steps)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		r.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	if err != nil {
		os.Exit(1)
	}
}

func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func runPgx(ctx context.Context, dsn string, bigMiB int, steps map[string]string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TEMP TABLE items(id int8 PRIMARY KEY, name text, price numeric, data bytea)"); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	// Prepared statements with binary and NULL parameters.
	if _, err := c.Prepare(ctx, "ins", "INSERT INTO items VALUES ($1, $2, $3, $4)"); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	for i, row := range [][]any{{int64(1), "one", "1.50", []byte{1, 2}}, {int64(2), nil, nil, nil}, {int64(3), "three", "3", []byte{}}} {
		if _, err := c.Exec(ctx, "ins", row...); err != nil {
			return fmt.Errorf("insert %d: %w", i, err)
		}
	}
	var name *string
	var data []byte
	if err := c.QueryRow(ctx, "SELECT name, data FROM items WHERE id = $1", int64(2)).Scan(&name, &data); err != nil {
		return fmt.Errorf("select null: %w", err)
	}
	if name != nil || data != nil {
		return fmt.Errorf("NULLs came back as %v %v", name, data)
	}
	steps["prepared"] = "ok"

	// A pipelined batch with an error in the middle.
	b := &pgx.Batch{}
	b.Queue("SELECT count(*) FROM items")
	b.Queue("INSERT INTO items VALUES (1, 'duplicate', 0, NULL)")
	b.Queue("SELECT 3")
	br := c.SendBatch(ctx, b)
	var cnt int
	e1 := br.QueryRow().Scan(&cnt)
	_, e2 := br.Exec()
	_, e3 := br.Exec()
	br.Close()
	steps["batch"] = fmt.Sprintf("%s,%s,%s", code(e1), code(e2), code(e3))
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&cnt); err != nil || cnt != 3 {
		return fmt.Errorf("after the batch: %d %v", cnt, err)
	}
	steps["recovered"] = "ok"

	// A big bytea row, both ways.
	big := make([]byte, bigMiB<<20)
	rand.New(rand.NewSource(1)).Read(big)
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES (4, 'big', 0, $1)", big); err != nil {
		return fmt.Errorf("insert big: %w", err)
	}
	var back []byte
	if err := c.QueryRow(ctx, "SELECT data FROM items WHERE id = 4").Scan(&back); err != nil {
		return fmt.Errorf("select big: %w", err)
	}
	if !bytes.Equal(back, big) {
		return fmt.Errorf("big row came back with %d bytes, different", len(back))
	}
	steps["big"] = "ok"
	return nil
}

func startup(user, db string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), 3<<16)
	for _, s := range []string{"user", user, "database", db} {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// session opens a raw session to addr, logs in, sends payload and reads
// until the connection closes.
func session(addr, user, db string, payload []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(startup(user, db)); err != nil {
		return err
	}
	// Read up to ReadyForQuery.
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return err
		}
		if hdr[0] == 'Z' {
			break
		}
		if hdr[0] == 'E' {
			return fmt.Errorf("login refused: %q", body)
		}
	}
	c.Write(payload)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, c)
	return nil
}

var seeds = [][]byte{
	[]byte("Q\x00\x00\x00\x05"),
	[]byte("Q\xff\xff\xff\xff"),
	[]byte("Q\x00\x00\x00\x03"),
	[]byte("P\x00\x00\x00\x10\x00SELECT $1\x00\x00\x01"),
	[]byte("B\x00\x00\x00\x0e\x00\x00\x00\x01\x00\x01\x00\x01\x7f\xff\xff\xff"),
	[]byte("E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04"),
	[]byte("D\x00\x00\x00\x06Sx"),
	[]byte("F\x00\x00\x00\x08\x00\x00\x00\x01"),
	[]byte("Z\x00\x00\x00\x05I"),
	[]byte("Q\x00\x00\x00\x0dSELECT 1\x00"),
}

func runFuzz(ctx context.Context, dsn, bad string, n int, steps map[string]string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return err
	}
	healthy, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("healthy connect: %w", err)
	}
	defer healthy.Close(ctx)
	addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	sent := 0
	for i := 0; i < n; i++ {
		p := append([]byte(nil), seeds[rng.Intn(len(seeds))]...)
		for k := rng.Intn(3); k > 0 && len(p) > 0; k-- {
			switch rng.Intn(3) {
			case 0:
				p[rng.Intn(len(p))] = byte(rng.Intn(256))
			case 1:
				p = p[:rng.Intn(len(p))]
			default:
				p = append(p, seeds[rng.Intn(len(seeds))]...)
			}
		}
		if err := session(addr, cfg.User, cfg.Database, p); err == nil {
			sent++
		}
		if bad != "" && i%4 == 0 {
			session(bad, cfg.User, cfg.Database, []byte("Q\x00\x00\x00\x0dSELECT 1\x00"))
		}
		if i%50 == 0 {
			var one int
			if err := healthy.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				return fmt.Errorf("healthy session failed after %d malformed sessions: %w", i, err)
			}
		}
	}
	steps["malformed_sessions"] = fmt.Sprint(sent)
	var one int
	if err := healthy.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("healthy session at the end: %w", err)
	}
	c2, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("new session after fuzzing: %w", err)
	}
	c2.Close(ctx)
	steps["healthy"] = "ok"
	return nil
}

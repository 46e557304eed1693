package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// Operation is what statement searches filter an operation entry on: a
// pg.statement, or an ssh.request that runs something (exec, subsystem,
// shell).
type Operation struct {
	Seq     int64
	TimeNS  int64
	Session string
	// Kind is the entry's kind; Kinds the statement kinds the proxy's
	// parser found (select, insert, ...) or the ssh request's type.
	Kind   string
	Kinds  []string
	Tables []string
	// Text is the SQL as journaled (password literals redacted) or the
	// command or subsystem.
	Text   string
	Action string
	Rule   string
}

// sshOperations are the ssh request types indexed: those that run
// something on the target. The others (pty-req, env, signal, keepalive,
// ...) are a session's plumbing, read with the session.
var sshOperations = map[string]bool{"exec": true, "subsystem": true, "shell": true}

// OperationOf extracts an operation from an entry's body; ok is false
// for entries that are not operations. Data the hub cannot read is not
// indexed (the entry is stored all the same: its tree vouches for it).
func OperationOf(seq int64, body evidence.Body) (op Operation, ok bool) {
	op = Operation{Seq: seq, TimeNS: body.Time, Session: body.Session, Kind: body.Kind}
	switch body.Kind {
	case model.KindPGStatement:
		var d model.PGStatement
		if json.Unmarshal(body.Data, &d) != nil {
			return op, false
		}
		op.Kinds, op.Tables, op.Text = d.Kinds, d.Tables, d.SQL
		op.Action, op.Rule = string(d.Decision.Action), d.Decision.Rule
	case model.KindSSHRequest:
		var d model.SSHRequest
		if json.Unmarshal(body.Data, &d) != nil || !sshOperations[d.Type] {
			return op, false
		}
		op.Kinds, op.Text = []string{d.Type}, d.Command
		op.Action, op.Rule = string(d.Decision.Action), d.Decision.Rule
	default:
		return op, false
	}
	if op.Kinds == nil {
		op.Kinds = []string{}
	}
	if op.Tables == nil {
		op.Tables = []string{}
	}
	return op, true
}

// operationColumns are the columns of the operations table CopyFrom fills.
var operationColumns = []string{"host_id", "seq", "time_ns", "session", "kind", "op_kinds", "tables", "text", "action", "rule"}

func addOperations(ctx context.Context, tx pgx.Tx, hostID string, ops []Operation) error {
	if len(ops) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"operations"}, operationColumns,
		pgx.CopyFromSlice(len(ops), func(i int) ([]any, error) {
			o := &ops[i]
			return []any{hostID, o.Seq, o.TimeNS, o.Session, o.Kind, o.Kinds, o.Tables, o.Text, o.Action, o.Rule}, nil
		}))
	if err != nil {
		return fmt.Errorf("hub store: index operations of %s: %w", hostID, err)
	}
	return nil
}

// indexOperations fills the operations table from the entries a hub of
// schema 2 stored (the upgrade to 3), a page at a time so that a large
// store is not read into memory at once.
func indexOperations(ctx context.Context, tx pgx.Tx) error {
	const page = 1000
	host, seq := "", int64(0)
	for {
		rows, err := tx.Query(ctx, `SELECT host_id, seq, body FROM entries
			WHERE kind IN ($1, $2) AND (host_id, seq) > ($3, $4) ORDER BY host_id, seq LIMIT $5`,
			model.KindPGStatement, model.KindSSHRequest, host, seq, page)
		if err != nil {
			return fmt.Errorf("hub store: index stored operations: %w", err)
		}
		byHost := map[string][]Operation{}
		n := 0
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&host, &seq, &b); err != nil {
				rows.Close()
				return fmt.Errorf("hub store: index stored operations: %w", err)
			}
			n++
			// A body that does not parse was changed in the database:
			// the verifier names it; the index just leaves it out.
			if body, err := evidence.ParseBody(b); err == nil {
				if op, ok := OperationOf(seq, body); ok {
					byHost[host] = append(byHost[host], op)
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("hub store: index stored operations: %w", err)
		}
		for h, ops := range byHost {
			if err := addOperations(ctx, tx, h, ops); err != nil {
				return err
			}
		}
		if n < page {
			return nil
		}
	}
}

// OperationFilter narrows a statement search; zero fields match all.
type OperationFilter struct {
	HostID  string
	Session string
	// User matches the process's user or the human's login user of the
	// operation's session; Target the session's target.
	User   string
	Target string
	// Kind matches the entry's kind (pg.statement, ssh.request) or one of
	// the operation's kinds (select, drop_table, exec, ...); Table one of
	// the relations a statement names.
	Kind  string
	Table string
	// Action is the decision's action (allow, deny, review, mask).
	Action string
	// Text is a substring of the text, matched without regard to case.
	Text string
	// Since and Until bound the operation's time (Until exclusive).
	Since, Until time.Time
	// Limit caps the result to the newest; at most MaxOperations.
	Limit int
}

// MaxOperations bounds one search; MaxSearchText the length of a text
// filter, so that a search is a bounded scan.
const (
	MaxOperations = 1000
	MaxSearchText = 256
)

// FoundOperation is an operation a search found.
type FoundOperation struct {
	HostID   string
	HostName string
	Seq      int64
	// Target, ProcUser and LoginUser are the session's, "" when the hub
	// holds no session.open for it.
	Target    string
	ProcUser  string
	LoginUser string
	// Body is the entry's body, which the host's tree vouches for.
	Body []byte
}

// likeEscaper escapes a text filter for LIKE … ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// Operations searches the operations of all hosts, newest first.
func (s *Store) Operations(ctx context.Context, f OperationFilter) ([]FoundOperation, error) {
	limit := f.Limit
	if limit <= 0 || limit > MaxOperations {
		limit = MaxOperations
	}
	if len(f.Text) > MaxSearchText {
		return nil, fmt.Errorf("hub store: a text filter of %d bytes (at most %d)", len(f.Text), MaxSearchText)
	}
	since, until := timeRange(f.Since, f.Until)
	text := ""
	if f.Text != "" {
		text = "%" + likeEscaper.Replace(f.Text) + "%"
	}
	rows, err := s.pool.Query(ctx, `SELECT p.host_id, h.name, p.seq, coalesce(o.target, ''), coalesce(o.proc_user, ''),
			coalesce(o.login_user, ''), e.body
		FROM operations p JOIN hosts h ON h.id = p.host_id JOIN entries e ON e.host_id = p.host_id AND e.seq = p.seq
		LEFT JOIN LATERAL (SELECT target, proc_user, login_user FROM sessions s
			WHERE s.host_id = p.host_id AND s.session = p.session ORDER BY s.seq LIMIT 1) o ON true
		WHERE p.time_ns >= $1 AND p.time_ns < $2
		AND ($3 = '' OR p.host_id = $3)
		AND ($4 = '' OR p.session = $4)
		AND ($5 = '' OR o.proc_user = $5 OR o.login_user = $5)
		AND ($6 = '' OR o.target = $6)
		AND ($7 = '' OR p.kind = $7 OR $7 = ANY(p.op_kinds))
		AND ($8 = '' OR $8 = ANY(p.tables))
		AND ($9 = '' OR p.action = $9)
		AND ($10 = '' OR p.text ILIKE $10 ESCAPE '\')
		ORDER BY p.time_ns DESC, p.host_id, p.seq DESC LIMIT $11`,
		since, until, f.HostID, f.Session, f.User, f.Target, f.Kind, f.Table, f.Action, text, limit)
	if err != nil {
		return nil, fmt.Errorf("hub store: search operations: %w", err)
	}
	defer rows.Close()
	out := []FoundOperation{}
	for rows.Next() {
		var x FoundOperation
		if err := rows.Scan(&x.HostID, &x.HostName, &x.Seq, &x.Target, &x.ProcUser, &x.LoginUser, &x.Body); err != nil {
			return nil, fmt.Errorf("hub store: search operations: %w", err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: search operations: %w", err)
	}
	return out, nil
}

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/interlock/interlock/hub/hubapi"
)

// approvalsSchema is version 4: the approvals loop (docs/hub.md,
// "Approvals from anywhere"). held_requests are the operations hosts
// hold for review, as they posted them; approval_votes every approver's
// verdict on one (the hub's own record of who decided); and
// approval_decisions the decisions it signed, which the host fetches
// until it withdraws the request. A request id is the host's UUIDv7,
// unique across the fleet: a host posting another host's id is refused.
const approvalsSchema = `
CREATE TABLE held_requests (
	id text PRIMARY KEY,
	host_id text NOT NULL REFERENCES hosts,
	request_sha256 text NOT NULL,
	held bytea NOT NULL,
	deadline timestamptz NOT NULL,
	received_at timestamptz NOT NULL,
	-- pending, decided (a signed decision waits for the host), closed
	-- (the host took the decision), withdrawn (the host decided itself).
	state text NOT NULL DEFAULT 'pending',
	closed_at timestamptz
);
CREATE INDEX held_requests_host ON held_requests (host_id, state);
CREATE TABLE approval_votes (
	request_id text NOT NULL REFERENCES held_requests,
	issuer text NOT NULL,
	subject text NOT NULL,
	username text NOT NULL,
	approver bytea NOT NULL,
	approve boolean NOT NULL,
	reason text NOT NULL,
	at timestamptz NOT NULL,
	PRIMARY KEY (request_id, issuer, subject, approve)
);
CREATE TABLE approval_decisions (
	request_id text PRIMARY KEY REFERENCES held_requests,
	host_id text NOT NULL,
	decision bytea NOT NULL,
	signed bytea NOT NULL,
	decided_at timestamptz NOT NULL
);
`

// States of a held request.
const (
	HeldPending   = "pending"
	HeldDecided   = "decided"
	HeldClosed    = "closed"
	HeldWithdrawn = "withdrawn"
)

// Errors of the approvals loop.
var (
	ErrNoHeld = errors.New("hub store: no such held request")
	// ErrHeldConflict: a request with that id exists with another hash,
	// or on another host.
	ErrHeldConflict = errors.New("hub store: a held request with that id exists with other contents or on another host")
)

// Held is a held request as the hub keeps it.
type Held struct {
	HostID   string
	HostName string
	Held     hubapi.HeldRequest
	State    string
	Votes    []Vote
}

// Vote is one approver's verdict on a held request.
type Vote struct {
	Approver hubapi.Approver
	Approve  bool
	Reason   string
	At       time.Time
}

// PutHeld keeps a request a host holds. Posting it again (the host
// retries) changes nothing; the same id with another hash or from
// another host is ErrHeldConflict.
func (s *Store) PutHeld(ctx context.Context, hostID string, h hubapi.HeldRequest, now time.Time) error {
	raw, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("hub store: encode held request: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO held_requests (id, host_id, request_sha256, held, deadline, received_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
		h.Request.ID, hostID, h.RequestSHA256, raw, h.Deadline, now)
	if err != nil {
		return fmt.Errorf("hub store: keep held request: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var host, sha string
	if err := s.pool.QueryRow(ctx, `SELECT host_id, request_sha256 FROM held_requests WHERE id = $1`, h.Request.ID).Scan(&host, &sha); err != nil {
		return fmt.Errorf("hub store: read held request: %w", err)
	}
	if host != hostID || sha != h.RequestSHA256 {
		return ErrHeldConflict
	}
	return nil
}

// WithdrawHeld ends the hub's part in a request of hostID's: a pending
// one is withdrawn (the host decided it itself), a decided one closed
// (the host took the decision). It returns the state it left.
func (s *Store) WithdrawHeld(ctx context.Context, hostID, id string, now time.Time) (string, error) {
	var state string
	err := s.pool.QueryRow(ctx, `UPDATE held_requests SET
			state = CASE state WHEN 'pending' THEN 'withdrawn' WHEN 'decided' THEN 'closed' ELSE state END,
			closed_at = COALESCE(closed_at, $3)
		WHERE id = $1 AND host_id = $2 RETURNING state`, id, hostID, now).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNoHeld
	}
	if err != nil {
		return "", fmt.Errorf("hub store: withdraw held request: %w", err)
	}
	return state, nil
}

const heldColumns = `r.id, r.host_id, h.name, r.held, r.state`

func scanHeld(row pgx.Row) (Held, error) {
	var h Held
	var id string
	var raw []byte
	if err := row.Scan(&id, &h.HostID, &h.HostName, &raw, &h.State); err != nil {
		return h, err
	}
	if err := json.Unmarshal(raw, &h.Held); err != nil {
		return h, fmt.Errorf("hub store: held request %s: %w", id, err)
	}
	return h, nil
}

// PendingHeld returns the requests still pending whose deadline is after
// now, oldest first, with their votes.
func (s *Store) PendingHeld(ctx context.Context, now time.Time) ([]Held, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+heldColumns+` FROM held_requests r JOIN hosts h ON h.id = r.host_id
		WHERE r.state = 'pending' AND r.deadline > $1 ORDER BY r.received_at, r.id`, now)
	if err != nil {
		return nil, fmt.Errorf("hub store: list held requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Held, error) { return scanHeld(r) })
	if err != nil {
		return nil, fmt.Errorf("hub store: list held requests: %w", err)
	}
	for i := range out {
		if out[i].Votes, err = votes(ctx, s.pool, out[i].Held.Request.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetHeld returns one held request, whatever its state, with its votes.
func (s *Store) GetHeld(ctx context.Context, id string) (Held, error) {
	h, err := scanHeld(s.pool.QueryRow(ctx, `SELECT `+heldColumns+` FROM held_requests r JOIN hosts h ON h.id = r.host_id WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return h, ErrNoHeld
	}
	if err != nil {
		return h, fmt.Errorf("hub store: read held request: %w", err)
	}
	h.Votes, err = votes(ctx, s.pool, id)
	return h, err
}

type rowQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func votes(ctx context.Context, q rowQuerier, id string) ([]Vote, error) {
	rows, err := q.Query(ctx, `SELECT approver, approve, reason, at FROM approval_votes WHERE request_id = $1 ORDER BY at`, id)
	if err != nil {
		return nil, fmt.Errorf("hub store: read votes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Vote, error) {
		var v Vote
		var raw []byte
		if err := r.Scan(&raw, &v.Approve, &v.Reason, &v.At); err != nil {
			return v, err
		}
		v.At = v.At.UTC()
		return v, json.Unmarshal(raw, &v.Approver)
	})
	if err != nil {
		return nil, fmt.Errorf("hub store: read votes: %w", err)
	}
	return out, nil
}

// Decide records a vote on a held request under its row lock. decide
// sees the request as it is (state and votes) and returns the vote to
// keep and, when the vote decides the request, the signed decision; an
// error from it keeps nothing. The vote and the decision are kept in one
// transaction, the request then decided.
func (s *Store) Decide(ctx context.Context, id string, decide func(Held) (Vote, *hubapi.SignedDecision, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		h, err := scanHeld(tx.QueryRow(ctx, `SELECT `+heldColumns+` FROM held_requests r JOIN hosts h ON h.id = r.host_id WHERE r.id = $1 FOR UPDATE OF r`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoHeld
		}
		if err != nil {
			return fmt.Errorf("hub store: lock held request: %w", err)
		}
		if h.Votes, err = votes(ctx, tx, id); err != nil {
			return err
		}
		v, d, err := decide(h)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(v.Approver)
		if err != nil {
			return fmt.Errorf("hub store: encode approver: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO approval_votes (request_id, issuer, subject, username, approver, approve, reason, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, id, v.Approver.Issuer, v.Approver.Subject, v.Approver.Username, raw, v.Approve, v.Reason, v.At); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "23505" {
				return ErrHeldConflict
			}
			return fmt.Errorf("hub store: keep vote: %w", err)
		}
		if d == nil {
			return nil
		}
		draw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("hub store: encode decision: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO approval_decisions (request_id, host_id, decision, signed, decided_at) VALUES ($1, $2, $3, $4, $5)`,
			id, h.HostID, draw, []byte(d.Signed), d.DecidedAt); err != nil {
			return fmt.Errorf("hub store: keep decision: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE held_requests SET state = 'decided' WHERE id = $1`, id); err != nil {
			return fmt.Errorf("hub store: mark held request decided: %w", err)
		}
		return nil
	})
}

// DecisionsFor returns the signed decisions waiting for hostID: those of
// its requests the host has not closed yet.
func (s *Store) DecisionsFor(ctx context.Context, hostID string) ([]hubapi.SignedDecision, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.decision FROM approval_decisions d JOIN held_requests r ON r.id = d.request_id
		WHERE r.host_id = $1 AND r.state = 'decided' ORDER BY d.decided_at`, hostID)
	if err != nil {
		return nil, fmt.Errorf("hub store: read decisions: %w", err)
	}
	return collectDecisions(rows)
}

// Decision returns the decision the hub signed on a request.
func (s *Store) Decision(ctx context.Context, id string) (hubapi.SignedDecision, error) {
	rows, err := s.pool.Query(ctx, `SELECT decision FROM approval_decisions WHERE request_id = $1`, id)
	if err != nil {
		return hubapi.SignedDecision{}, fmt.Errorf("hub store: read decision: %w", err)
	}
	ds, err := collectDecisions(rows)
	if err != nil {
		return hubapi.SignedDecision{}, err
	}
	if len(ds) == 0 {
		return hubapi.SignedDecision{}, ErrNoHeld
	}
	return ds[0], nil
}

func collectDecisions(rows pgx.Rows) ([]hubapi.SignedDecision, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hubapi.SignedDecision, error) {
		var raw []byte
		var d hubapi.SignedDecision
		if err := r.Scan(&raw); err != nil {
			return d, err
		}
		return d, json.Unmarshal(raw, &d)
	})
	if err != nil {
		return nil, fmt.Errorf("hub store: read decisions: %w", err)
	}
	return out, nil
}

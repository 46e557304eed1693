package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Host is an enrolled host and what the hub holds of its journal.
type Host struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	JournalID string `json:"journal_id"`
	// JournalKey is the note verifier key the host's checkpoints must be
	// signed with; CertFingerprint the SHA-256 (hex) of the client
	// certificate the hub issued it.
	JournalKey      string    `json:"journal_key"`
	CertFingerprint string    `json:"cert_fingerprint"`
	EnrolledAt      time.Time `json:"enrolled_at"`
	// Size is the number of entries held, Root the tree hash over them,
	// ChainHash the chain hash of entry Size.
	Size         int64     `json:"size"`
	Root         []byte    `json:"root,omitempty"`
	ChainHash    []byte    `json:"-"`
	CosignedSize int64     `json:"cosigned_size"`
	LastBatchAt  time.Time `json:"last_batch_at,omitzero"`
}

// Errors of enrolment and lookup.
var (
	ErrBadToken = errors.New("hub store: the join token is unknown, used or expired")
	// ErrEnrolled: another host already enrolled that journal; a journal
	// has one hub identity, or two hosts could ship one log.
	ErrEnrolled = errors.New("hub store: that journal is already enrolled")
	ErrNoHost   = errors.New("hub store: no such host")
)

const hostColumns = `id, name, journal_id, journal_key, cert_fingerprint, enrolled_at, size, chain_hash, root, cosigned_size, last_batch_at`

func scanHost(row pgx.Row) (Host, error) {
	var h Host
	var last *time.Time
	err := row.Scan(&h.ID, &h.Name, &h.JournalID, &h.JournalKey, &h.CertFingerprint, &h.EnrolledAt,
		&h.Size, &h.ChainHash, &h.Root, &h.CosignedSize, &last)
	h.LastBatchAt = timeOrZero(last)
	h.EnrolledAt = h.EnrolledAt.UTC()
	return h, err
}

// AddToken keeps a join token's hash (never the token) until it expires.
func (s *Store) AddToken(ctx context.Context, hash []byte, expires time.Time) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO join_tokens (hash, created_at, expires_at) VALUES ($1, now(), $2)`, hash, expires); err != nil {
		return fmt.Errorf("hub store: add join token: %w", err)
	}
	return nil
}

// Enroll burns the join token with hash tokenHash and records the host,
// in one transaction: a token serves one host, even when two joins race.
// The host's size, root and chain hash start empty.
func (s *Store) Enroll(ctx context.Context, tokenHash []byte, h Host) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE join_tokens SET used_at = now(), used_by = $2
			WHERE hash = $1 AND used_at IS NULL AND expires_at > now()`, tokenHash, h.ID)
		if err != nil {
			return fmt.Errorf("hub store: burn join token: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return ErrBadToken
		}
		_, err = tx.Exec(ctx, `INSERT INTO hosts (id, name, journal_id, journal_key, cert_fingerprint, enrolled_at, chain_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, h.ID, h.Name, h.JournalID, h.JournalKey, h.CertFingerprint, h.EnrolledAt, make([]byte, 32))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return ErrEnrolled
		}
		if err != nil {
			return fmt.Errorf("hub store: record host %s: %w", h.ID, err)
		}
		return nil
	})
}

// Host returns one host.
func (s *Store) Host(ctx context.Context, id string) (Host, error) {
	h, err := scanHost(s.pool.QueryRow(ctx, `SELECT `+hostColumns+` FROM hosts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Host{}, ErrNoHost
	}
	if err != nil {
		return Host{}, fmt.Errorf("hub store: read host %s: %w", id, err)
	}
	return h, nil
}

// Hosts lists every host, by name.
func (s *Store) Hosts(ctx context.Context) ([]Host, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+hostColumns+` FROM hosts ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("hub store: list hosts: %w", err)
	}
	defer rows.Close()
	out := []Host{}
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, fmt.Errorf("hub store: list hosts: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("hub store: list hosts: %w", err)
	}
	return out, nil
}

// Package local serves one host's web console from its own SQLite
// journal, for a one-host setup (docs/console.md, "One host"): Source is
// the console's data source (hub/console.Source) over the journal, the
// host being the fleet's only host, and Queue shows the local broker's
// held requests, read-only.
//
// Every read opens its own snapshot of the journal: a page reads one
// state of the file while the daemon goes on appending.
package local

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// Source reads the host's journal as the console's data source.
type Source struct {
	// Path is the journal's database.
	Path string
	// HostID is the id pages name the host by; HostName its name.
	HostID, HostName string
	// VerifierKey is the journal's verifier key as the host's key file
	// has it: the evidence view checks the stored checkpoints with it,
	// never with the key the journal file itself names (whoever altered
	// the file could have changed both).
	VerifierKey string
}

func (s *Source) open(ctx context.Context) (*journal.Snapshot, error) {
	snap, err := journal.OpenSnapshot(ctx, s.Path)
	if err != nil {
		return nil, fmt.Errorf("host console: %w", err)
	}
	return snap, nil
}

// Hosts is the one host.
func (s *Source) Hosts(ctx context.Context) ([]store.Host, error) {
	h, err := s.Host(ctx, s.HostID)
	if err != nil {
		return nil, err
	}
	return []store.Host{h}, nil
}

// Host describes the host: its journal, how many entries it holds, and
// how far the newest hub.cosignature entry says a hub cosigned it.
func (s *Source) Host(ctx context.Context, id string) (store.Host, error) {
	if id != s.HostID {
		return store.Host{}, store.ErrNoHost
	}
	snap, err := s.open(ctx)
	if err != nil {
		return store.Host{}, err
	}
	defer snap.Close()
	h := store.Host{ID: s.HostID, Name: s.HostName, JournalID: snap.JournalID, JournalKey: s.VerifierKey, Size: snap.Head}
	err = snap.EntriesOfKinds([]string{model.KindHubCosignature}, minTime, maxTime, func(e journal.Entry) error {
		var c model.HubCosignature
		if err := decode(e.Body, &c); err != nil {
			return fmt.Errorf("host console: entry %d: %w", e.Seq, err)
		}
		h.CosignedSize, h.LastBatchAt = c.Size, time.Unix(0, c.CosignedNS).UTC()
		return journal.ErrStop
	})
	return h, err
}

const (
	minTime = int64(-1 << 63)
	maxTime = int64(1<<63 - 1)
)

func timeRange(since, until time.Time) (int64, int64) {
	lo, hi := minTime, maxTime
	if !since.IsZero() {
		lo = since.UnixNano()
	}
	if !until.IsZero() {
		hi = until.UnixNano()
	}
	return lo, hi
}

// opened is what a search filters a session.open on, as the hub indexes
// it (hub/server's accept).
type opened struct {
	target, procUser, loginUser string
}

func openedOf(body []byte) opened {
	var d model.SessionOpen
	if decode(body, &d) != nil {
		return opened{}
	}
	o := opened{target: d.Target.Name}
	if d.Identity.Proc != nil {
		o.procUser = d.Identity.Proc.User
	}
	if d.Identity.Human != nil {
		o.loginUser = d.Identity.Human.LoginUser
	}
	return o
}

func (o opened) matches(user, target string) bool {
	return (user == "" || o.procUser == user || o.loginUser == user) && (target == "" || o.target == target)
}

// Sessions searches the session.open entries, newest first, as the
// hub's store does.
func (s *Source) Sessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
	out := []store.Session{}
	if f.HostID != "" && f.HostID != s.HostID {
		return out, nil
	}
	limit := f.Limit
	if limit <= 0 || limit > store.MaxSessions {
		limit = store.MaxSessions
	}
	snap, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	since, until := timeRange(f.Since, f.Until)
	err = snap.SessionOpens(since, until, func(e journal.Entry) error {
		if !openedOf(e.Body).matches(f.User, f.Target) {
			return nil
		}
		out = append(out, s.session(e))
		if len(out) >= limit {
			return journal.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host console: search sessions: %w", err)
	}
	return out, nil
}

func (s *Source) session(e journal.Entry) store.Session {
	return store.Session{HostID: s.HostID, HostName: s.HostName, Seq: int64(e.Seq), TimeNS: e.TimeNS, Session: e.Session,
		Body: bytes.Clone(e.Body)}
}

// operationKinds are the entry kinds store.OperationOf indexes.
var operationKinds = []string{model.KindPGStatement, model.KindSSHRequest}

// Operations searches the statements and commands, newest first, with
// the hub's filters. The journal has no index over them (each would cost
// every commit a page): the search walks the journal back from its head
// until it has the rows asked for.
func (s *Source) Operations(ctx context.Context, f store.OperationFilter) ([]store.FoundOperation, error) {
	out := []store.FoundOperation{}
	if f.HostID != "" && f.HostID != s.HostID {
		return out, nil
	}
	if len(f.Text) > store.MaxSearchText {
		return nil, fmt.Errorf("host console: a text filter of %d bytes (at most %d)", len(f.Text), store.MaxSearchText)
	}
	limit := f.Limit
	if limit <= 0 || limit > store.MaxOperations {
		limit = store.MaxOperations
	}
	snap, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	opens := map[string]opened{}
	text := strings.ToLower(f.Text)
	since, until := timeRange(f.Since, f.Until)
	err = snap.EntriesOfKinds(operationKinds, since, until, func(e journal.Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.Session != "" && e.Session != f.Session {
			return nil
		}
		body, err := evidence.ParseBody(e.Body)
		if err != nil {
			return nil // not indexed, as on the hub
		}
		op, ok := store.OperationOf(int64(e.Seq), body)
		if !ok || !opMatches(op, f, text) {
			return nil
		}
		o, seen := opens[e.Session]
		if !seen {
			if oe, found, err := snap.SessionOpen(e.Session); err != nil {
				return err
			} else if found {
				o = openedOf(oe.Body)
			}
			opens[e.Session] = o
		}
		if !o.matches(f.User, f.Target) {
			return nil
		}
		out = append(out, store.FoundOperation{HostID: s.HostID, HostName: s.HostName, Seq: int64(e.Seq),
			Target: o.target, ProcUser: o.procUser, LoginUser: o.loginUser, Body: bytes.Clone(e.Body)})
		if len(out) >= limit {
			return journal.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host console: search operations: %w", err)
	}
	return out, nil
}

// opMatches applies the filters the hub's operations index applies
// (hub/store's Operations): text is the lowercased text filter, matched
// case-insensitively as ILIKE does.
func opMatches(op store.Operation, f store.OperationFilter, text string) bool {
	switch {
	case f.Kind != "" && op.Kind != f.Kind && !slices.Contains(op.Kinds, f.Kind):
		return false
	case f.Table != "" && !slices.Contains(op.Tables, f.Table):
		return false
	case f.Action != "" && op.Action != f.Action:
		return false
	case text != "" && !strings.Contains(strings.ToLower(op.Text), text):
		return false
	}
	return true
}

// SessionOf finds one session's session.open.
func (s *Source) SessionOf(ctx context.Context, hostID, session string) (store.Session, error) {
	if hostID != s.HostID {
		return store.Session{}, store.ErrNoSession
	}
	snap, err := s.open(ctx)
	if err != nil {
		return store.Session{}, err
	}
	defer snap.Close()
	e, found, err := snap.SessionOpen(session)
	if err != nil {
		return store.Session{}, fmt.Errorf("host console: %w", err)
	}
	if !found {
		return store.Session{}, store.ErrNoSession
	}
	return s.session(e), nil
}

// SessionEntries yields the session's entries from its session.open
// through its session.close (to the head while it is open), from one
// snapshot, one entry in memory at a time.
func (s *Source) SessionEntries(ctx context.Context, hostID string, open store.Session) iter.Seq2[store.Entry, error] {
	return func(yield func(store.Entry, error) bool) {
		if hostID != s.HostID {
			yield(store.Entry{}, store.ErrNoSession)
			return
		}
		snap, err := s.open(ctx)
		if err != nil {
			yield(store.Entry{}, err)
			return
		}
		defer snap.Close()
		stopped := false
		err = snap.SessionEntries(open.Session, snap.Head, func(e journal.Entry) error {
			if int64(e.Seq) < open.Seq {
				return nil
			}
			if !yield(store.Entry{Seq: int64(e.Seq), TimeNS: e.TimeNS, Kind: e.Kind, Session: e.Session, Body: e.Body, Payload: e.Payload}, nil) {
				stopped = true
				return journal.ErrStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, journal.ErrStop) && !stopped {
			yield(store.Entry{}, fmt.Errorf("host console: read session %s: %w", open.Session, err))
		}
	}
}

// Checkpoints are the journal's signed checkpoints, smallest first, each
// with the hub's cosignature when a hub.cosignature entry holds one of
// its size. They are not verified here: the evidence view checks each
// with the host's key (and the hub's).
func (s *Source) Checkpoints(ctx context.Context, hostID string) ([]store.Checkpoint, error) {
	if hostID != s.HostID {
		return nil, nil
	}
	snap, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	type cosigned struct {
		note []byte
		at   time.Time
	}
	co := map[int64]cosigned{}
	err = snap.EntriesOfKinds([]string{model.KindHubCosignature}, minTime, maxTime, func(e journal.Entry) error {
		var c model.HubCosignature
		if err := decode(e.Body, &c); err != nil {
			return fmt.Errorf("entry %d: %w", e.Seq, err)
		}
		if _, ok := co[c.Size]; !ok {
			co[c.Size] = cosigned{[]byte(c.Note), time.Unix(0, c.CosignedNS).UTC()}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host console: read cosignatures: %w", err)
	}
	stored, err := snap.StoredCheckpoints()
	if err != nil {
		return nil, fmt.Errorf("host console: %w", err)
	}
	out := make([]store.Checkpoint, 0, len(stored))
	for _, c := range stored {
		cp := store.Checkpoint{HostID: s.HostID, Size: c.Size, Root: noteRoot(c.Note), Note: c.Note}
		if x, ok := co[c.Size]; ok {
			cp.Cosigned, cp.CosignedAt = x.note, x.at
		}
		out = append(out, cp)
	}
	return out, nil
}

// noteRoot is the root hash a checkpoint note states (its third line),
// read without verifying: the view verifies, and compares with this.
func noteRoot(n []byte) []byte {
	lines := strings.SplitN(string(n), "\n", 4)
	if len(lines) < 4 {
		return nil
	}
	if _, err := strconv.ParseInt(lines[1], 10, 64); err != nil {
		return nil
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		return nil
	}
	return root
}

// Refusals: a host refuses no batch of its own.
func (s *Source) Refusals(context.Context, string) ([]store.StoredRefusal, error) { return nil, nil }

// LatestFleetCheckpoint: a host signs no fleet checkpoint.
func (s *Source) LatestFleetCheckpoint(context.Context) (store.FleetCheckpoint, error) {
	return store.FleetCheckpoint{}, store.ErrNoFleetCheckpoint
}

func decode(b []byte, v any) error {
	p, err := evidence.ParseBody(b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}

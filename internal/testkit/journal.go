package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/interlock/interlock/model"
)

// Journal is a model.Recorder that keeps records in memory, for the tests
// of what writes the journal (handlers, the approvals broker): their logic
// is tested without SQLite, and the end-to-end tests use the real journal.
// It is safe for concurrent use, and its readers return copies, so a test
// may read while a handler still writes.
type Journal struct {
	mu      sync.Mutex
	entries []Entry
	err     error
}

// Entry is a record as the Journal took it.
type Entry struct {
	model.Record
	// Seq is the sequence number Append returned, from 1.
	Seq uint64
	// Durability is what the writer asked for.
	Durability model.Durability
}

var _ model.Recorder = (*Journal)(nil)

// Append keeps rec, or returns the error set by Fail. Like the real
// journal, it refuses data that does not marshal to JSON, so a handler
// cannot pass a test with a record the journal would reject.
func (j *Journal) Append(_ context.Context, rec model.Record, d model.Durability) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return 0, j.err
	}
	// Encoded as the journal encodes it (its own encoder first), so
	// that benchmarks pay what the daemon pays.
	if _, ok := model.AppendJSON(nil, rec.Data); !ok {
		if _, err := json.Marshal(rec.Data); err != nil {
			return 0, fmt.Errorf("testkit: %s record: %w", rec.Kind, err)
		}
	}
	// The caller may reuse a []byte payload once this returns, as the
	// journal lets it (model.Recorder).
	if p, ok := rec.Payload.([]byte); ok {
		rec.Payload = bytes.Clone(p)
	}
	seq := uint64(len(j.entries)) + 1
	j.entries = append(j.entries, Entry{Record: rec, Seq: seq, Durability: d})
	return seq, nil
}

// Post is Append at model.Committed; a failure is dropped, as the
// batched path has no caller to tell.
func (j *Journal) Post(rec model.Record) { j.Append(context.Background(), rec, model.Committed) }

// Fail makes every later Append return err, as a journal whose storage
// broke; nil makes it keep records again.
func (j *Journal) Fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.err = err
}

// Entries returns every entry, in order.
func (j *Journal) Entries() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Entry(nil), j.entries...)
}

// Records returns every record, in order.
func (j *Journal) Records() []model.Record {
	return j.filter(func(model.Record) bool { return true })
}

// OfKind returns the records of a kind, in order.
func (j *Journal) OfKind(kind string) []model.Record {
	return j.filter(func(r model.Record) bool { return r.Kind == kind })
}

// OfSession returns the records of a session, in order.
func (j *Journal) OfSession(id string) []model.Record {
	return j.filter(func(r model.Record) bool { return r.Session == id })
}

func (j *Journal) filter(keep func(model.Record) bool) []model.Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []model.Record
	for _, e := range j.entries {
		if keep(e.Record) {
			out = append(out, e.Record)
		}
	}
	return out
}

// Kinds returns the kind of every record, in order.
func (j *Journal) Kinds() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.entries))
	for _, e := range j.entries {
		out = append(out, e.Kind)
	}
	return out
}

// Synced reports whether the first record of kind that match accepts was
// appended as model.Synced; false when there is none.
func (j *Journal) Synced(kind string, match func(model.Record) bool) bool {
	for _, e := range j.Entries() {
		if e.Kind == kind && match(e.Record) {
			return e.Durability == model.Synced
		}
	}
	return false
}

// Data returns the data of j's records of a kind, in order, decoded from
// JSON into T: what a reader of the real journal would get, and T may be
// a type of the test's own that keeps only the fields it checks.
func Data[T any](j *Journal, kind string) []T {
	var out []T
	for _, r := range j.OfKind(kind) {
		b, err := json.Marshal(r.Data)
		if err != nil {
			panic(fmt.Sprintf("testkit: %s record: %v", kind, err))
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			panic(fmt.Sprintf("testkit: %s record into %T: %v", kind, v, err))
		}
		out = append(out, v)
	}
	return out
}

package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// accept checks a batch against what the hub holds of its host, in the
// order docs/hub.md gives, and returns what to store, or the refusal and
// its evidence (a *store.Refusal as the error). It runs under the host's
// row lock.
func accept(st store.HostState, b *hubapi.Batch, cosigner note.Signer, now time.Time) (*store.Accepted, error) {
	h := st.Host
	n := int64(len(b.Entries))
	refuse := func(code, format string, args ...any) *store.Refusal {
		return &store.Refusal{Code: code, Message: fmt.Sprintf(format, args...), From: b.From, Entries: n, Checkpoint: b.Checkpoint}
	}

	// 1. Contiguity: a replay of an old range or a gap.
	if b.From != h.Size+1 {
		return nil, refuse(hubapi.CodeNotContiguous, "the batch starts at %d; the hub holds entries 1..%d of this host, so the next is %d", b.From, h.Size, h.Size+1)
	}

	// 2. The checkpoint: signed by the enrolled key, for the enrolled
	// journal, of exactly the tree the batch ends.
	v, err := note.NewVerifier(h.JournalKey)
	if err != nil {
		return nil, refuse(hubapi.CodeBadCheckpoint, "the host's enrolled journal key does not parse: %v", err)
	}
	cp, err := evidence.ParseCheckpoint(b.Checkpoint, v)
	if err != nil {
		return nil, refuse(hubapi.CodeBadCheckpoint, "%v", err)
	}
	if want := evidence.Origin(h.JournalID); cp.Origin != want {
		return nil, refuse(hubapi.CodeBadCheckpoint, "the checkpoint's origin is %q; this host enrolled journal %q", cp.Origin, want)
	}
	if last := b.From + n - 1; cp.Size != last {
		return nil, refuse(hubapi.CodeBadCheckpoint, "the checkpoint is of a tree of size %d; the batch ends at entry %d", cp.Size, last)
	}

	// 3. Every entry: canonical, in its place, its payload matching its
	// commitment; and chained.
	acc := &store.Accepted{Entries: make([]store.Entry, 0, n)}
	bodies := func() [][]byte {
		out := make([][]byte, len(b.Entries))
		for i := range b.Entries {
			out[i] = b.Entries[i].Body
		}
		return out
	}
	badEntry := func(e *hubapi.Entry, format string, args ...any) *store.Refusal {
		r := refuse(hubapi.CodeBadEntry, "entry %d: "+format, append([]any{e.Seq}, args...)...)
		r.BadSeq, r.BadBody, r.Bodies = e.Seq, e.Body, bodies()
		return r
	}
	prev := h.ChainHash
	cr, err := evidence.NewCompactRange(h.Size, st.Frontier)
	if err != nil {
		return nil, refuse(hubapi.CodeRootMismatch, "the hub's stored tree of this host is inconsistent: %v", err)
	}
	var stored []tlog.Hash
	for i := range b.Entries {
		e := &b.Entries[i]
		if want := b.From + int64(i); e.Seq != want {
			return nil, badEntry(e, "is in place %d of the batch, which is entry %d", i, want)
		}
		body, err := evidence.ParseBody(e.Body)
		if err != nil {
			return nil, badEntry(e, "%v", err)
		}
		if int64(body.Seq) != e.Seq {
			return nil, badEntry(e, "its body says seq %d", body.Seq)
		}
		if e.Seq == 1 {
			if err := checkOpen(body, h.JournalID); err != nil {
				return nil, badEntry(e, "%v", err)
			}
		}
		payload := e.Payload
		if payload == nil && e.Salt != nil {
			// An empty payload: JSON's omitempty dropped it, its salt
			// stayed.
			payload = []byte{}
		}
		switch {
		case payload != nil && body.Payload == nil:
			return nil, badEntry(e, "has a payload but its body commits to none")
		case payload != nil:
			if c := evidence.PayloadCommitment(e.Salt, payload); !bytes.Equal(c[:], body.Payload) {
				return nil, badEntry(e, "its payload does not match the commitment in its body")
			}
		}
		chain := evidence.ChainHash(prev, e.Body)
		prev = chain[:]
		leaf := evidence.LeafHash(e.Body)
		stored = cr.AddStored(leaf, stored)
		base := tlog.StoredHashIndex(0, e.Seq-1)
		for j, sh := range stored {
			acc.Hashes = append(acc.Hashes, store.IndexedHash{Index: base + int64(j), Hash: sh})
		}
		acc.Entries = append(acc.Entries, store.Entry{
			Seq: e.Seq, TimeNS: body.Time, Kind: body.Kind, Session: body.Session,
			Body: e.Body, Hash: chain[:], Leaf: leaf[:], Salt: e.Salt, Payload: payload,
		})
		if body.Kind == model.KindSessionOpen {
			acc.Sessions = append(acc.Sessions, sessionOpen(e.Seq, body))
		}
		if op, ok := store.OperationOf(e.Seq, body); ok {
			acc.Operations = append(acc.Operations, op)
		}
	}

	// 4. The root over the hub's tree and the batch is the checkpoint's:
	// otherwise the host presents a fork, or an altered entry.
	if root := cr.Root(); root != cp.Root {
		r := refuse(hubapi.CodeRootMismatch, "the tree of entries 1..%d the hub holds and this batch has root %s; the checkpoint says %s (a forked or altered tree)",
			cp.Size, root, cp.Root)
		r.Bodies = bodies()
		return nil, r
	}

	cosigned, err := evidence.Cosign(b.Checkpoint, cosigner, now)
	if err != nil {
		// Not the host's fault: no refusal is kept, the request fails.
		return nil, fmt.Errorf("hub: cosign checkpoint %d of %s: %w", cp.Size, h.ID, err)
	}
	acc.Size, acc.Root, acc.ChainHash = cp.Size, cp.Root, prev
	acc.Checkpoint, acc.Cosigned, acc.CosignedAt = b.Checkpoint, cosigned, now
	return acc, nil
}

// checkOpen checks entry 1: the journal.open entry of the enrolled
// journal, so a host cannot ship another journal's log under its key.
func checkOpen(body evidence.Body, journalID string) error {
	if body.Kind != model.KindJournalOpen {
		return fmt.Errorf("entry 1 is %q, not %s", body.Kind, model.KindJournalOpen)
	}
	var d evidence.OpenData
	if err := json.Unmarshal(body.Data, &d); err != nil {
		return fmt.Errorf("journal.open data: %w", err)
	}
	if d.JournalID != journalID {
		return fmt.Errorf("journal.open names journal %q; this host enrolled %q", d.JournalID, journalID)
	}
	return nil
}

// sessionOpen extracts what searches filter on. Data the hub cannot read
// still stores the entry: the tree vouches for it whatever it says.
func sessionOpen(seq int64, body evidence.Body) store.SessionOpen {
	var d struct {
		Target   model.Target `json:"target"`
		Identity struct {
			Proc *struct {
				User string `json:"user"`
			} `json:"proc"`
			Human *struct {
				LoginUser string `json:"login_user"`
			} `json:"human"`
		} `json:"identity"`
	}
	o := store.SessionOpen{Seq: seq, TimeNS: body.Time, Session: body.Session}
	if json.Unmarshal(body.Data, &d) != nil {
		return o
	}
	o.Target = d.Target.Name
	if d.Identity.Proc != nil {
		o.ProcUser = d.Identity.Proc.User
	}
	if d.Identity.Human != nil {
		o.LoginUser = d.Identity.Human.LoginUser
	}
	return o
}

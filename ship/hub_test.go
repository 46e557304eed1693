package ship

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/journal/evidence"
)

// testHub implements the hub's acceptance rules minimally (docs/hub.md):
// contiguity, the host's signature, and the root recomputed over what it
// holds and the batch. Hooks let a test make it fail.
type testHub struct {
	t       *testing.T
	hostKey note.Verifier
	signer  note.Signer
	vkey    string

	mu       sync.Mutex
	bodies   [][]byte
	entries  []hubapi.Entry
	leaves   []tlog.Hash
	cosigned int64
	// batches are the accepted batches' checkpoints; froms every From
	// the hub was sent, accepted or not.
	batches []evidence.Checkpoint
	froms   []int64
	// before runs first on every request; a true return means it
	// answered.
	before func(w http.ResponseWriter, r *http.Request) bool
	// after runs once a batch is stored; a true return means it answered
	// (the batch stays accepted).
	after func(w http.ResponseWriter) bool
}

func newTestHub(t *testing.T, hostKey note.Verifier) (*testHub, *httptest.Server) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "hub.test")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := evidence.NewCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t, hostKey: hostKey, signer: cs, vkey: vkey}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *testHub) head() hubapi.Head {
	hd := hubapi.Head{HostID: "host-1", Size: int64(len(h.leaves)), CosignedSize: h.cosigned}
	if len(h.leaves) > 0 {
		r := mth(h.leaves)
		hd.Root = r[:]
	}
	return hd
}

func (h *testHub) refuse(w http.ResponseWriter, status int, code, msg string) {
	hd := h.head()
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(hubapi.Refusal{Code: code, Message: msg, Head: &hd})
}

func (h *testHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.before != nil && h.before(w, r) {
		return
	}
	switch r.URL.Path {
	case hubapi.PathHead:
		json.NewEncoder(w).Encode(h.head())
	case hubapi.PathBatches:
		var b hubapi.Batch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			h.refuse(w, 400, hubapi.CodeBadEntry, err.Error())
			return
		}
		h.froms = append(h.froms, b.From)
		if b.From != int64(len(h.leaves))+1 {
			h.refuse(w, 409, hubapi.CodeNotContiguous, "not contiguous")
			return
		}
		cp, err := evidence.ParseCheckpoint(b.Checkpoint, h.hostKey)
		if err != nil || cp.Size != b.From+int64(len(b.Entries))-1 {
			h.refuse(w, 400, hubapi.CodeBadCheckpoint, "bad checkpoint")
			return
		}
		leaves := append([]tlog.Hash(nil), h.leaves...)
		for i, e := range b.Entries {
			if e.Seq != b.From+int64(i) {
				h.refuse(w, 400, hubapi.CodeBadEntry, "wrong seq")
				return
			}
			leaves = append(leaves, tlog.RecordHash(e.Body))
		}
		if mth(leaves) != cp.Root {
			h.refuse(w, 400, hubapi.CodeRootMismatch, "root mismatch")
			return
		}
		cosigned, err := evidence.Cosign(b.Checkpoint, h.signer, time.Now())
		if err != nil {
			h.t.Errorf("hub: cosign: %v", err)
			w.WriteHeader(500)
			return
		}
		h.leaves = leaves
		h.entries = append(h.entries, b.Entries...)
		h.cosigned = cp.Size
		h.batches = append(h.batches, cp)
		if h.after != nil && h.after(w) {
			return
		}
		json.NewEncoder(w).Encode(hubapi.BatchResponse{Head: h.head(), Cosigned: cosigned})
	default:
		w.WriteHeader(404)
	}
}

// size is how many entries the hub holds.
func (h *testHub) size() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.leaves))
}

// mth is the RFC 6962 Merkle tree hash, written out apart from tlog's
// stored-hash machinery the journal uses.
func mth(leaves []tlog.Hash) tlog.Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return tlog.NodeHash(mth(leaves[:k]), mth(leaves[k:]))
}

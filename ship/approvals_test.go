package ship

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// approvalsHub is the host side of the hub's approvals API, minimally:
// posts and withdrawals recorded, decisions served until withdrawn, and
// failures on demand.
type approvalsHub struct {
	mu        sync.Mutex
	failPosts int // answer 503 to this many posts
	refuse    bool
	posts     []string
	deletes   []string
	decisions []hubapi.SignedDecision
}

func (h *approvalsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Method == "POST" && r.URL.Path == hubapi.PathHostApprovals:
		var held hubapi.HeldRequest
		json.NewDecoder(r.Body).Decode(&held)
		h.posts = append(h.posts, held.Request.ID)
		if h.refuse {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(hubapi.Refusal{Code: hubapi.CodeBadRequest, Message: "no"})
			return
		}
		if h.failPosts > 0 {
			h.failPosts--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "{}")
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, hubapi.PathHostApprovals+"/"):
		id := strings.TrimPrefix(r.URL.Path, hubapi.PathHostApprovals+"/")
		h.deletes = append(h.deletes, id)
		var left []hubapi.SignedDecision
		for _, d := range h.decisions {
			if d.RequestID != id {
				left = append(left, d)
			}
		}
		h.decisions = left
		io.WriteString(w, `{"state":"closed"}`)
	case r.Method == "GET" && r.URL.Path == hubapi.PathHostDecisions:
		if len(h.decisions) == 0 {
			h.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			h.mu.Lock()
		}
		json.NewEncoder(w).Encode(append([]hubapi.SignedDecision{}, h.decisions...))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (h *approvalsHub) seen() (posts, deletes []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.posts...), append([]string(nil), h.deletes...)
}

type recordingDecider struct {
	mu  sync.Mutex
	got []string
}

func (d *recordingDecider) ApplyHubDecision(_ context.Context, sd hubapi.SignedDecision) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, sd.RequestID)
	return nil
}

func (d *recordingDecider) applied() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

func newLink(t *testing.T, h *approvalsHub) (*Approvals, *recordingDecider) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dec := &recordingDecider{}
	a := NewApprovals(ctx, NewClientHTTP(srv.URL, srv.Client()), dec, 10*time.Millisecond, 50*time.Millisecond,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.wait = 50 * time.Millisecond
	return a, dec
}

func heldReq(id string) hubapi.HeldRequest {
	return hubapi.HeldRequest{Request: model.ApprovalRequest{ID: id}, Deadline: time.Now().Add(time.Minute)}
}

// TestApprovalsLink: a held request is posted again until the hub takes
// it; one the hub refuses is not retried; a withdrawal stops the posting
// and withdraws at the hub; a decision goes to the broker and its request
// is withdrawn so the hub serves it no more.
func TestApprovalsLink(t *testing.T) {
	h := &approvalsHub{failPosts: 2}
	a, dec := newLink(t, h)
	a.Held(heldReq("r1"))
	testkit.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() bool { p, _ := h.seen(); return len(p) == 3 })
	time.Sleep(100 * time.Millisecond)
	if p, _ := h.seen(); len(p) != 3 {
		t.Errorf("posts after the hub took it: %v", p)
	}

	h.mu.Lock()
	h.refuse = true
	h.mu.Unlock()
	a.Held(heldReq("r2"))
	time.Sleep(150 * time.Millisecond)
	if p, _ := h.seen(); len(p) != 4 {
		t.Errorf("a refused post was retried: %v", p)
	}

	h.mu.Lock()
	h.refuse, h.failPosts = false, 1<<30
	h.mu.Unlock()
	a.Held(heldReq("r3"))
	time.Sleep(50 * time.Millisecond)
	a.Withdrawn("r3")
	testkit.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() bool { _, d := h.seen(); return len(d) == 1 && d[0] == "r3" })
	p1, _ := h.seen()
	time.Sleep(100 * time.Millisecond)
	if p2, _ := h.seen(); len(p2) != len(p1) {
		t.Errorf("posting went on after the withdrawal: %d then %d posts", len(p1), len(p2))
	}

	h.mu.Lock()
	h.decisions = []hubapi.SignedDecision{{RequestID: "r1", Signed: "n"}}
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	testkit.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() bool { _, d := h.seen(); return len(d) == 2 && d[1] == "r1" })
	time.Sleep(150 * time.Millisecond)
	cancel()
	<-done
	if got := dec.applied(); len(got) != 1 || got[0] != "r1" {
		t.Errorf("decisions applied: %v", got)
	}
}

package approvals

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// told collects what a held client is told.
func told(rr *model.Teller) chan model.ApprovalNotice {
	ch := make(chan model.ApprovalNotice, 4)
	*rr = func(n model.ApprovalNotice) { ch <- n }
	return ch
}

func next(t *testing.T, ch chan model.ApprovalNotice) model.ApprovalNotice {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("the client was told nothing")
	}
	return model.ApprovalNotice{}
}

// noControls fails when a notice could move a terminal's cursor or hide
// text: every field is one escaped line.
func noControls(t *testing.T, n model.ApprovalNotice) {
	t.Helper()
	for _, f := range []string{n.Request, n.Message, n.Detail, n.Hint} {
		for _, r := range f {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x202e {
				t.Errorf("notice field %q holds control %U", f, r)
			}
		}
	}
}

func TestTellHeldThenApproved(t *testing.T) {
	b := New(Options{Journal: &testkit.Journal{}, Host: "runner-1", ConsoleURL: "https://hub.example/console/"})
	rr := request("once", 1, "daemon")
	ch := told(&rr.Tell)
	id, result := held(t, b, rr)
	n := next(t, ch)
	if n.Request != id || n.Verdict != "" || !strings.Contains(n.Message, "statement held for approval, request "+id) {
		t.Errorf("held notice %+v", n)
	}
	for _, want := range []string{`rule "hold-deletes"`, "approvers: daemon (1 needed)", "denied at ", "(in 5s)"} {
		if !strings.Contains(n.Detail, want) {
			t.Errorf("detail %q lacks %q", n.Detail, want)
		}
	}
	for _, want := range []string{"interlock approvals approve " + id, "(on runner-1)", "https://hub.example/console/approvals/" + id} {
		if !strings.Contains(n.Hint, want) {
			t.Errorf("hint %q lacks %q", n.Hint, want)
		}
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, true, ""); err != nil {
		t.Fatal(err)
	}
	d := <-result
	n = next(t, ch)
	if d.Action != model.Allow || n.Verdict != model.VerdictApprove || !strings.Contains(n.Message, "approved, request "+id) {
		t.Errorf("decision %+v, notice %+v", d, n)
	}
}

func TestTellDeniedNamesRequestAndEscapes(t *testing.T) {
	b := New(Options{Journal: &testkit.Journal{}})
	rr := request("once", 1, "daemon", "evil\x1b[2J\x1b]0;pwned\x07")
	rr.Rule = "rule\x1b[31m\r\nFAKE: approved"
	rr.Reason = "kind delete\u202e"
	ch := told(&rr.Tell)
	id, result := held(t, b, rr)
	n := next(t, ch)
	noControls(t, n)
	if strings.Contains(n.Hint, "console") {
		t.Errorf("a link without a console: %q", n.Hint)
	}
	if _, err := b.Decide(context.Background(), id, Approver{UID: uidDaemon}, false, "not now\x1b[1A\rapproved"); err != nil {
		t.Fatal(err)
	}
	d := <-result
	n = next(t, ch)
	noControls(t, n)
	if d.Action != model.Deny || d.Request != id || n.Verdict != model.VerdictDeny ||
		!strings.Contains(n.Message, "denied, request "+id) || !strings.Contains(n.Detail, `not now\x1b[1A\rapproved`) {
		t.Errorf("decision %+v, notice %+v", d, n)
	}
}

func TestTellTimeout(t *testing.T) {
	b := New(Options{Journal: &testkit.Journal{}})
	rr := request("once", 1, "daemon")
	rr.Timeout = 50 * time.Millisecond
	ch := told(&rr.Tell)
	d := b.Review(context.Background(), rr)
	held, out := next(t, ch), next(t, ch)
	if d.Action != model.Deny || held.Verdict != "" || out.Verdict != model.VerdictTimeout ||
		out.Request != held.Request || !strings.Contains(out.Message, "not approved in time") {
		t.Errorf("decision %+v, notices %+v %+v", d, held, out)
	}
}

package control

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/model"
)

// ApprovalsSocketName is the approvals socket's name beside the control
// socket; an embedded `interlock run` serves RunApprovalsSocket in the
// runs directory.
const ApprovalsSocketName = "approvals.sock"

// RunsDir is the directory beside the control socket where embedded
// `interlock run`s keep their state and approvals sockets.
func RunsDir(controlSocket string) string {
	return filepath.Join(filepath.Dir(controlSocket), "runs")
}

// RunApprovalsSocket is the approvals socket of the `interlock run` with
// process id pid.
func RunApprovalsSocket(runsDir string, pid int) string {
	return filepath.Join(runsDir, strconv.Itoa(pid)+runApprovalsSuffix)
}

const runApprovalsSuffix = ".approvals.sock"

// ApprovalsSockets lists the approvals sockets that may serve requests:
// the daemon's, and those of embedded `interlock run`s.
func ApprovalsSockets(controlSocket string) []string {
	out := []string{filepath.Join(filepath.Dir(controlSocket), ApprovalsSocketName)}
	runs, _ := filepath.Glob(filepath.Join(RunsDir(controlSocket), "*"+runApprovalsSuffix))
	sort.Strings(runs)
	return append(out, runs...)
}

// ApprovalsClient talks to one approvals socket.
type ApprovalsClient struct{ c *Client }

// DialApprovals connects to an approvals socket.
func DialApprovals(path string) *ApprovalsClient {
	return &ApprovalsClient{c: newClient(path)}
}

// List returns the pending requests; with wait > 0 it first waits that
// long for a change.
func (a *ApprovalsClient) List(ctx context.Context, wait time.Duration) ([]controlapi.Pending, error) {
	var out []controlapi.Pending
	p := "/v1/approvals"
	if wait > 0 {
		p += "?wait=" + url.QueryEscape(wait.String())
	}
	err := a.c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// Decide approves or denies a request.
func (a *ApprovalsClient) Decide(ctx context.Context, id string, approve bool, reason string) (model.ApprovalDecision, error) {
	return a.DecideExpect(ctx, id, approve, reason, "")
}

// DecideExpect is Decide that approves only if the held text's SHA-256
// is expect (hex; "" checks nothing). A mismatch is a 409 StatusError.
func (a *ApprovalsClient) DecideExpect(ctx context.Context, id string, approve bool, reason, expect string) (model.ApprovalDecision, error) {
	var d model.ApprovalDecision
	err := a.c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id), controlapi.DecideRequest{Approve: approve, Reason: reason, Expect: expect}, &d)
	return d, err
}

package console

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// TestEventViewK8s: a kubernetes session's page shows each request as an
// operation with its decision, and its other entries as
// `interlock sessions show` prints them, names escaped.
func TestEventViewK8s(t *testing.T) {
	three := 3
	hostile := "web\x1b[2J\nallow\u202e"
	for _, c := range []struct {
		kind string
		data any
		op   bool
		want string
	}{
		{model.KindK8sRequest, model.K8sRequest{Seq: 1, Verb: "delete", APIVersion: "v1", Resource: "pods", Namespace: "prod", Name: hostile, User: "alice",
			Decision: model.Decision{Action: model.Deny, Rule: "no-delete"}}, true, `delete pods in "prod" name "web\x1b[2J\nallow\u202e", group core/v1`},
		{model.KindK8sResponse, model.K8sResponse{Seq: 1, Code: 403}, false, `k8s response 1: 403, 0 bytes, 0s`},
		{model.KindK8sExec, model.K8sExec{Channel: 0, Seq: 2, Type: "exec", Namespace: "prod", Pod: hostile, Command: []string{"id"}}, false, `exec in "prod"/"web\x1b[2J\nallow\u202e": "id"`},
		{model.KindK8sExit, model.SSHExit{Channel: 0, ExitStatus: &three}, false, `exit status 3`},
		{model.KindK8sPortFwd, model.K8sPortForward{Seq: 3, Stream: 1, Namespace: "prod", Pod: "db-0", Port: 5432, BytesUp: 1, BytesDown: 2}, false, `port 5432: 1 bytes up, 2 down`},
		{model.KindK8sIdentity, model.K8sIdentity{User: "sa", TokenID: "0a1b"}, false, `bearer token "0a1b" is "sa"`},
	} {
		b, err := json.Marshal(c.data)
		if err != nil {
			t.Fatal(err)
		}
		ch := uint32(0)
		row := eventView(sessionview.Event{Seq: 5, Kind: c.kind, Data: b, Channel: &ch})
		text := strings.Join(row.Lines, "\n")
		if row.Operation != c.op || !strings.Contains(text, c.want) || strings.ContainsAny(text, "\x1b\u202e") || strings.Contains(text, c.kind+" {") {
			t.Errorf("%s: operation %v, lines %q; want %v and %q", c.kind, row.Operation, text, c.op, c.want)
		}
		if c.op && (row.Action != "deny" || row.Decision != "deny (no-delete)") {
			t.Errorf("%s: action %q decision %q", c.kind, row.Action, row.Decision)
		}
	}
}

package kubernetes

import (
	"net/http"
	"strings"
	"testing"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/interlock/interlock/model"
)

// A notice whose words the client or the config chose cannot end the
// Warning's quoted string, add a header or put control bytes on a
// terminal: client-go reads back one warning, escaped, with the request.
func TestWarningValueEscapes(t *testing.T) {
	n := &notices{}
	n.tell(model.ApprovalNotice{Request: "r1", Message: "interlock: exec held, request r1"})
	if got := n.outcome("x"); got != "" {
		t.Fatalf("outcome before a verdict: %q", got)
	}
	n.tell(model.ApprovalNotice{Request: "r1", Verdict: model.VerdictDeny,
		Message: "interlock: exec denied, request r1", Detail: `no "way"\` + "\r\nX-Evil: 1\x1b[2J"})
	text := n.outcome(`rule" 299 - "fake`)
	h := http.Header{}
	setWarning(h, text)
	v := h.Values("Warning")
	if len(v) != 1 || strings.ContainsAny(v[0], "\r\n\x1b") {
		t.Fatalf("header %q", v)
	}
	ws, errs := utilnet.ParseWarningHeaders(v)
	if len(errs) != 0 || len(ws) != 1 || ws[0].Code != 299 {
		t.Fatalf("parsed %+v %v from %q", ws, errs, v[0])
	}
	got := ws[0].Text
	for _, want := range []string{"request r1", "denied", `rule "rule" 299 - "fake"`, `\r\nX-Evil: 1\x1b[2J`} {
		if !strings.Contains(got, want) {
			t.Errorf("warning %q lacks %q", got, want)
		}
	}
}

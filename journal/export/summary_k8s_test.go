package export

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// hostileName is a name a client or its API server chooses: an escape
// sequence, a newline followed by a forged line, a quote and a
// right-to-left override.
const hostileName = "web\x1b[2J\nallow (x)\"\u202egnp"

// page is text as html/template writes it in the page.
var page = strings.NewReplacer(`"`, "&#34;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

// TestSummaryK8s: a kubernetes session's requests are rows with verb,
// resource, namespace and name, API group, caller and decision, completed
// by their response, an exec's exit and bytes and port-forward streams;
// what the client named is escaped.
func TestSummaryK8s(t *testing.T) {
	s := newSummary(&evidence.Manifest{})
	seq := uint64(0)
	var ptys []uint64
	add := func(kind string, data any) {
		seq++
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		if s.add(seq, evidence.Body{Seq: seq, Time: int64(seq) * 1e9, Kind: kind, Session: "kube", Data: b}) {
			ptys = append(ptys, seq)
		}
	}
	allow := model.Decision{Action: model.Allow, Rule: "default"}
	three := 3
	add(model.KindSessionOpen, model.SessionOpen{Target: model.Target{Name: "cluster", Protocol: model.ProtoKubernetes}, Decision: allow,
		Kubernetes: &model.K8sStartup{User: "alice", Groups: []string{"dev"}, Source: "client-certificate", PassBearer: true}})
	add(model.KindK8sRequest, model.K8sRequest{Seq: 1, Method: "GET", Verb: "list", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Namespace: "prod",
		User: "alice", Groups: []string{"dev"}, Source: "client-certificate", Decision: allow}) // 2
	add(model.KindK8sResponse, model.K8sResponse{Seq: 1, Code: 200, Bytes: 512, DurationNS: 3e6})
	add(model.KindK8sIdentity, model.K8sIdentity{User: "system:serviceaccount:ci:runner", TokenID: "0a1b2c3d4e5f6071"})
	add(model.KindK8sRequest, model.K8sRequest{Seq: 2, Method: "GET", Verb: "get", APIVersion: "v1", Resource: "secrets", Namespace: "prod", Name: "db",
		User: "system:serviceaccount:ci:runner", Source: "bearer-token", TokenID: "0a1b2c3d4e5f6071",
		Decision: model.Decision{Action: model.Mask, Rule: "secrets", Mask: &model.MaskSpec{Rules: []model.MaskRule{{Rule: "secrets"}}}}}) // 5
	add(model.KindK8sResponse, model.K8sResponse{Seq: 2, Code: 200, Bytes: 300, Masked: 2})
	add(model.KindK8sRequest, model.K8sRequest{Seq: 3, Method: "POST", Verb: "exec", APIVersion: "v1", Resource: "pods", Subresource: "exec", Namespace: "prod",
		Name: "web-1", User: "alice", Command: []string{"sh", "-c", "exit 3"}, Pod: &model.K8sPod{Privileged: true},
		Decision: model.Decision{Action: model.Allow, Rule: "hold-privileged", Request: "req-1"}}) // 7
	add(model.KindK8sExec, model.K8sExec{Channel: 0, Seq: 3, Type: "exec", Namespace: "prod", Pod: "web-1", Container: "app", TTY: true})
	add(model.KindK8sIO, model.SSHIO{Channel: 0, Stream: "i", Bytes: 5})
	add(model.KindK8sIO, model.SSHIO{Channel: 0, Stream: "o", Bytes: 40})
	add(model.KindK8sExit, model.SSHExit{Channel: 0, ExitStatus: &three})
	add(model.KindK8sResponse, model.K8sResponse{Seq: 3, Code: 101})
	add(model.KindK8sRequest, model.K8sRequest{Seq: 4, Method: "POST", Verb: "portforward", APIVersion: "v1", Resource: "pods", Subresource: "portforward",
		Namespace: "prod", Name: "db-0", User: "alice", Decision: allow}) // 13
	add(model.KindK8sPortFwd, model.K8sPortForward{Seq: 4, Stream: 1, Namespace: "prod", Pod: "db-0", Port: 5432, BytesUp: 100, BytesDown: 2000})
	add(model.KindK8sPortFwd, model.K8sPortForward{Seq: 4, Stream: 2, Namespace: "prod", Pod: "db-0", Port: 22, Refused: true, Error: "port not allowed"})
	add(model.KindK8sRequest, model.K8sRequest{Seq: 5, Method: "DELETE", Verb: "delete\x1b[8m", APIVersion: "v1", Resource: "pods", Namespace: hostileName,
		Name: hostileName, User: hostileName, Decision: model.Decision{Action: model.Deny, Rule: "no-delete", Reason: "not in prod"}}) // 16
	add(model.KindK8sResponse, model.K8sResponse{Seq: 5, Code: 403, Error: hostileName})
	add(model.KindK8sMask, model.MaskDecision{Rule: "secrets", Column: "secrets/prod/db data.password", Count: 1})
	add(model.KindSessionClose, model.SessionClose{})
	var b bytes.Buffer
	if err := s.render(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()

	got := map[string]string{}
	for _, m := range regexp.MustCompile(`<tr id="e(\d+)" data-kind="([^"]*)" data-outcome="([^"]*)">`).FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2] + " " + m[3]
	}
	want := map[string]string{"2": "k8s list allow", "5": "k8s get mask", "7": "k8s exec review: approved", "13": "k8s portforward allow", "16": "k8s deny"}
	if len(got) != len(want) {
		t.Errorf("operation rows %v, want %v", got, want)
	}
	for seq, w := range want {
		if got[seq] != w {
			t.Errorf("entry %s: %q, want %q", seq, got[seq], w)
		}
	}
	for _, w := range []string{
		`list deployments in "prod", group apps/v1` + "\n" + `as "alice" groups "dev" (impersonated, client-certificate)`,
		`response 200, 512 bytes, 3ms`,
		`get secrets in "prod" name "db", group core/v1` + "\n" + `as "system:serviceaccount:ci:runner" (bearer token "0a1b2c3d4e5f6071", reviewed)`,
		`2 Secret values masked in the response`,
		`command "sh" "-c" "exit 3"` + "\n" + `pod privileged`,
		`stream opened as channel 0 in container "app" with a terminal`, `exit status 3`, `5 bytes in, 40 bytes out`, `response 101, 0 bytes, 0s`,
		`port-forward stream 1 to "prod"/"db-0" port 5432: 100 bytes up, 2000 down, 0s (request 4)`,
		`port-forward stream 2 to "prod"/"db-0" port 22: 0 bytes up, 0 down, 0s, refused, error "port not allowed" (request 4)`,
		`kubernetes user "alice" groups "dev" (client-certificate), bearer tokens passed`,
		`bearer token "0a1b2c3d4e5f6071" is "system:serviceaccount:ci:runner" (SelfSubjectReview)`,
		// The hostile names: escaped once, on their own line, the
		// forged text inside the quotes.
		`"delete\x1b[8m" pods in "web\x1b[2J\nallow (x)\"\u202egnp" name "web\x1b[2J\nallow (x)\"\u202egnp", group core/v1` + "\n" + `as "web\x1b[2J\nallow (x)\"\u202egnp" (impersonated)`,
		`response 403, 0 bytes, 0s, error "web\x1b[2J\nallow (x)\"\u202egnp"`,
		"Denials (1)", "Masking decisions (2)", `secrets/prod/db data.password`, `the response to entry 5`,
	} {
		if !strings.Contains(out, page.Replace(w)) {
			t.Errorf("summary.html lacks %q", page.Replace(w))
		}
	}
	if !strings.Contains(out, `<a href="#e5">→ 5</a>`) {
		t.Error("the masking row does not link to the request")
	}
	// The denial's text is escaped once, not twice.
	if strings.Contains(out, `\\x1b`) || strings.ContainsAny(out, "\x1b\u202e") {
		t.Error("summary.html holds a raw control or bidi override, or text escaped twice")
	}
	if len(ptys) != 1 || ptys[0] != 8 {
		t.Errorf("terminal starts at entries %v, want the tty exec (8): its cast is in the bundle", ptys)
	}
}

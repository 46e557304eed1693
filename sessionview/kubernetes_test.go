package sessionview

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/interlock/interlock/model"
)

// hostile is a name a client or its API server chooses: an escape
// sequence, a newline with a forged line after it, a quote that would
// close the quoting, and a right-to-left override.
const hostile = "web\x1b[2J\n+0.000009       k8s request 9 get pods: allow (x)\"\u202egnp"

func k8sRecord(t *testing.T, seq uint64, kind string, data any, payload []byte) Record {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Seq: seq, Kind: kind, TimeNS: 1_700_000_000_000_000_000 + int64(seq)*1000, Data: b, Payload: payload}
}

// TestK8sLines: each kubernetes entry has a line of its own saying what
// it was, with every client-chosen name quoted and escaped.
func TestK8sLines(t *testing.T) {
	zero, three := 0, 3
	for _, c := range []struct {
		name, kind string
		data       any
		want       []string
	}{
		{"open", model.KindSessionOpen, model.SessionOpen{Target: model.Target{Name: "kube", Protocol: model.ProtoKubernetes},
			Decision:   model.Decision{Action: model.Allow, Rule: "default"},
			Kubernetes: &model.K8sStartup{User: "alice", Groups: []string{"dev", "system:authenticated"}, Source: "client-certificate", PassBearer: true}},
			[]string{`target "kube" (kubernetes)`, `kubernetes user "alice" groups "dev" "system:authenticated" (client-certificate), bearer tokens passed: allow (default)`}},
		{"get", model.KindK8sRequest, model.K8sRequest{Seq: 1, Method: "GET", Path: "/apis/apps/v1/namespaces/prod/deployments/web", Verb: "get",
			APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Namespace: "prod", Name: "web", User: "alice", Groups: []string{"dev"}, Source: "client-certificate",
			Decision: model.Decision{Action: model.Allow, Rule: "read"}},
			[]string{`k8s request 1 get deployments in "prod" name "web", group apps/v1, as "alice" groups "dev" (impersonated, client-certificate): allow (read)`}},
		{"denied subresource", model.KindK8sRequest, model.K8sRequest{Seq: 2, Method: "GET", Verb: "get", APIVersion: "v1", Resource: "pods", Subresource: "log",
			Namespace: "prod", Name: "db-0", User: "alice", Decision: model.Decision{Action: model.Deny, Rule: "no-logs", Reason: "logs hold secrets"}},
			[]string{`k8s request 2 get pods/log in "prod" name "db-0", group core/v1, as "alice" (impersonated): deny (no-logs): "logs hold secrets"`}},
		{"bearer", model.KindK8sRequest, model.K8sRequest{Seq: 3, Method: "GET", Path: "/version", Verb: "get", User: "system:serviceaccount:ci:runner",
			UID: "u-1", Source: "bearer-token", TokenID: "0a1b2c3d4e5f6071", Decision: model.Decision{Action: model.Allow, Rule: "default"}},
			[]string{`k8s request 3 get GET "/version", as "system:serviceaccount:ci:runner" (bearer token "0a1b2c3d4e5f6071" uid "u-1", reviewed): allow (default)`}},
		{"exec", model.KindK8sRequest, model.K8sRequest{Seq: 4, Method: "POST", Verb: "exec", APIVersion: "v1", Resource: "pods", Subresource: "exec",
			Namespace: "prod", Name: "web-1", User: "alice", Command: []string{"sh", "-c", "echo a b; exit 3"},
			Pod:      &model.K8sPod{Privileged: true, HostPID: true, ServiceAccount: "default", UID: "p-1"},
			Decision: model.Decision{Action: model.Allow, Rule: "exec-ok", Request: "req-7"}},
			[]string{`k8s request 4 exec pods/exec in "prod" name "web-1", group core/v1, as "alice" (impersonated), command "sh" "-c" "echo a b; exit 3", pod privileged hostPID serviceaccount "default" uid "p-1": allow (exec-ok) request req-7`}},
		{"write", model.KindK8sRequest, model.K8sRequest{Seq: 5, Method: "POST", Verb: "create", APIVersion: "v1", Resource: "secrets", Namespace: "prod",
			User: "alice", BodyBytes: 300, BodyMasked: true, Decision: model.Decision{Action: model.Allow}},
			[]string{`k8s request 5 create secrets in "prod", group core/v1, as "alice" (impersonated), body 300 bytes (secret values masked): allow`}},
		{"response", model.KindK8sResponse, model.K8sResponse{Seq: 1, Code: 200, Bytes: 1234, DurationNS: 12e6, Masked: 2, BodyRecorded: true, BodyTruncated: true},
			[]string{`k8s response 1: 200, 1234 bytes, 12ms, 2 secret values masked, body recorded (truncated)`}},
		{"response error", model.KindK8sResponse, model.K8sResponse{Seq: 2, Code: 403, Error: "forbidden: " + hostile, BodyWithheld: "token in body"},
			[]string{`k8s response 2: 403, 0 bytes, 0s, body not recorded: "token in body", error "forbidden: web\x1b[2J\n+0.000009       k8s request 9 get pods: allow (x)\"\u202egnp"`}},
		{"exec stream", model.KindK8sExec, model.K8sExec{Channel: 0, Seq: 4, Type: "exec", Namespace: "prod", Pod: "web-1", Container: "app",
			Command: []string{"sh", "-c", "echo a b; exit 3"}, TTY: true, Stdin: true, Protocol: "v5.channel.k8s.io"},
			[]string{`ch 0  exec in "prod"/"web-1" container "app" tty stdin: "sh" "-c" "echo a b; exit 3" (request 4, v5.channel.k8s.io)`}},
		{"resize", model.KindK8sResize, model.SSHResize{Channel: 0, Cols: 120, Rows: 40}, []string{`ch 0  resize 120x40`}},
		{"exit", model.KindK8sExit, model.SSHExit{Channel: 0, ExitStatus: &three}, []string{`ch 0  exit status 3`}},
		{"exit 0", model.KindK8sExit, model.SSHExit{Channel: 1, ExitStatus: &zero}, []string{`ch 1  exit status 0`}},
		{"port-forward", model.KindK8sPortFwd, model.K8sPortForward{Seq: 6, Stream: 1, Namespace: "prod", Pod: "db-0", Port: 5432, BytesUp: 100, BytesDown: 2000, DurationNS: 1500e6},
			[]string{`port-forward stream 1 to "prod"/"db-0" port 5432: 100 bytes up, 2000 down, 1.5s (request 6)`}},
		{"port-forward refused", model.KindK8sPortFwd, model.K8sPortForward{Seq: 6, Stream: 2, Namespace: "prod", Pod: "db-0", Port: 22, Refused: true, Error: "port 22 not allowed"},
			[]string{`port-forward stream 2 to "prod"/"db-0" port 22: 0 bytes up, 0 down, 0s, refused, error "port 22 not allowed" (request 6)`}},
		{"identity", model.KindK8sIdentity, model.K8sIdentity{User: "system:serviceaccount:ci:runner", UID: "u-1", Groups: []string{"system:serviceaccounts"}, TokenID: "0a1b2c3d4e5f6071"},
			[]string{`bearer token "0a1b2c3d4e5f6071" is "system:serviceaccount:ci:runner" uid "u-1" groups "system:serviceaccounts" (SelfSubjectReview)`}},
		{"mask", model.KindK8sMask, model.MaskDecision{Rule: "secrets", Column: "secrets/prod/db data.password", Count: 2},
			[]string{`masked by rule "secrets" in "secrets/prod/db data.password": 2 values`}},
		{"hostile names", model.KindK8sRequest, model.K8sRequest{Seq: 9, Method: "GET", Verb: "get\x1b[31m", APIVersion: "v1", Resource: "pods", Namespace: hostile,
			Name: hostile, User: hostile, Groups: []string{hostile}, Command: []string{hostile}, Decision: model.Decision{Action: model.Deny, Rule: "r", Reason: hostile}},
			[]string{`k8s request 9 "get\x1b[31m" pods in "web\x1b[2J\n+0.000009       k8s request 9 get pods: allow (x)\"\u202egnp" name "web\x1b[2J\n`}},
		{"hostile exec", model.KindK8sExec, model.K8sExec{Channel: 2, Seq: 9, Type: "attach\n", Namespace: hostile, Pod: hostile, Protocol: "x y"},
			[]string{`ch 2  "attach\n" in "web\x1b[2J\n`, `(request 9, "x y")`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if _, err := WritePlain(&b, "K1", seq(k8sRecord(t, 1, c.kind, c.data, nil)), nil); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("plain view lacks %q:\n%s", w, out)
				}
			}
			// One entry, one line: the header, the entry, "channels:" and
			// at most one channel summary. A forged line cannot start.
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) < 3 || len(lines) > 4 || !strings.HasPrefix(lines[1], "+") || lines[2] != "channels:" {
				t.Errorf("%d lines:\n%s", len(lines), out)
			}
			if strings.ContainsAny(out, "\x1b\u202e") || strings.Contains(out, k8sFallback(c.kind)) {
				t.Errorf("raw control, bidi override or the generic fallback in:\n%q", out)
			}
		})
	}
}

// k8sFallback is how describe prints an entry it does not know: its kind
// followed by its raw JSON.
func k8sFallback(kind string) string { return kind + ` {"` }

// TestK8sExecChannel: an exec is a channel that replays, with its
// command, its exit and its stream's bytes.
func TestK8sExecChannel(t *testing.T) {
	three := 3
	var b bytes.Buffer
	s, err := WritePlain(&b, "K1", seq(
		k8sRecord(t, 1, model.KindK8sRequest, model.K8sRequest{Seq: 1, Verb: "exec", Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web-1",
			User: "alice", Command: []string{"sh", "-c", "exit 3"}, Decision: model.Decision{Action: model.Allow, Rule: "exec-ok"}}, nil),
		k8sRecord(t, 2, model.KindK8sExec, model.K8sExec{Channel: 0, Seq: 1, Type: "exec", Namespace: "prod", Pod: "web-1", Command: []string{"sh", "-c", "exit 3"}, TTY: true, OffsetNS: 2000}, nil),
		k8sRecord(t, 3, model.KindK8sIO, model.SSHIO{Channel: 0, Stream: "o", OffsetNS: 3000, Bytes: 4}, []byte("out\n")),
		k8sRecord(t, 4, model.KindK8sExit, model.SSHExit{Channel: 0, ExitStatus: &three, OffsetNS: 4000}, nil),
		k8sRecord(t, 5, model.KindK8sResponse, model.K8sResponse{Seq: 1, Code: 101}, nil),
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{
		`+0.000003 ch 0  out "out\n"`,
		`  ch 0 k8s.exec: pty (no size), exec "sh -c exit 3": allow (exec-ok), exit status 3, 0 bytes in, 4 out, 0 err`,
		`k8s response 1: 101, 0 bytes, 0s`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("plain view lacks %q:\n%s", w, out)
		}
	}
	if terms := s.Terminals(); len(terms) != 1 || terms[0].Channel != 0 {
		t.Errorf("terminals %+v, want channel 0", terms)
	}
}

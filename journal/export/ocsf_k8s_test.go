package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
)

// TestOCSFK8s: kubernetes requests and responses are API Activity with
// the verb as the operation, the object as the resource, the caller as
// actor.user and the response's status code; names are kept exact
// (JSON-escaped), the message is escaped for a person.
func TestOCSFK8s(t *testing.T) {
	st := &ocsfState{opens: map[string]*model.SessionOpen{}, k8s: map[string]map[uint64]*model.K8sRequest{}}
	seq := uint64(0)
	event := func(kind string, data any) map[string]any {
		t.Helper()
		seq++
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		ev := ocsfEvent("J", seq, evidence.Body{Seq: seq, Time: int64(seq) * 1e9, Kind: kind, Session: "kube", Data: b}, st)
		if ev == nil {
			return nil
		}
		// As OCSF writes it: one JSON line, no raw control byte.
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(line, "\x1b\n") {
			t.Errorf("raw control byte in %s", line)
		}
		var out map[string]any
		if err := json.Unmarshal(line, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	get := func(ev map[string]any, path ...string) string {
		var v any = ev
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				var i int
				fmt.Sscan(p, &i)
				if i < len(x) {
					v = x[i]
				} else {
					v = nil
				}
			default:
				v = nil
			}
		}
		if v == nil {
			return "<nil>"
		}
		return fmt.Sprint(v)
	}
	event(model.KindSessionOpen, model.SessionOpen{Target: model.Target{Name: "cluster", Protocol: model.ProtoKubernetes},
		Client: netip.MustParseAddrPort("127.0.0.1:40000"), OrigDst: netip.MustParseAddrPort("10.0.0.1:6443"),
		Identity: model.Identity{Kernel: model.KernelFacts{TGID: 42, UID: 1000, Comm: "kubectl"}},
		Decision: model.Decision{Action: model.Allow}, Kubernetes: &model.K8sStartup{User: "alice", Source: "process"}})
	list := event(model.KindK8sRequest, model.K8sRequest{Seq: 1, Method: "GET", Path: "/apis/apps/v1/namespaces/prod/deployments", Query: "limit=500",
		Verb: "list", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Namespace: "prod", User: "alice", Groups: []string{"dev"},
		Source: "process", Decision: model.Decision{Action: model.Allow, Rule: "read"}})
	listResp := event(model.KindK8sResponse, model.K8sResponse{Seq: 1, Code: 200, Bytes: 512, DurationNS: 3e6})
	del := event(model.KindK8sRequest, model.K8sRequest{Seq: 2, Method: "DELETE", Verb: "delete", APIVersion: "v1", Resource: "pods", Namespace: hostileName,
		Name: hostileName, User: "system:serviceaccount:ci:runner", UID: "u-1", Source: "bearer-token", TokenID: "0a1b2c3d4e5f6071",
		Decision: model.Decision{Action: model.Deny, Rule: "no-delete", Reason: "not in prod"}})
	delResp := event(model.KindK8sResponse, model.K8sResponse{Seq: 2, Code: 403, Error: "denied by interlock"})
	exec := event(model.KindK8sRequest, model.K8sRequest{Seq: 3, Method: "POST", Verb: "exec", APIVersion: "v1", Resource: "pods", Subresource: "exec",
		Namespace: "prod", Name: "web-1", User: "alice", Command: []string{"sh", "-c", "id"}, Decision: model.Decision{Action: model.Allow}})
	orphan := event(model.KindK8sResponse, model.K8sResponse{Seq: 9, Code: 500, Error: "upstream gone"})
	for _, c := range []struct {
		name string
		ev   map[string]any
		path []string
		want string
	}{
		{"list class", list, []string{"class_uid"}, "6003"},
		{"list category", list, []string{"category_uid"}, "6"},
		{"list activity", list, []string{"activity_id"}, "2"},
		{"list type", list, []string{"type_uid"}, "600302"},
		{"list operation", list, []string{"api", "operation"}, "list"},
		{"list group", list, []string{"api", "group", "name"}, "apps"},
		{"list version", list, []string{"api", "version"}, "v1"},
		{"list request uid", list, []string{"api", "request", "uid"}, "kube:1"},
		{"list resource", list, []string{"resources", "0", "type"}, "deployments"},
		{"list namespace", list, []string{"resources", "0", "data", "namespace"}, "prod"},
		{"list method", list, []string{"http_request", "http_method"}, "GET"},
		{"list query", list, []string{"http_request", "url", "query_string"}, "limit=500"},
		{"list caller", list, []string{"actor", "user", "name"}, "alice"},
		{"list caller groups", list, []string{"actor", "user", "groups", "0", "name"}, "dev"},
		{"list process", list, []string{"actor", "process", "pid"}, "42"},
		{"list policy", list, []string{"policy", "name"}, "read"},
		{"list status", list, []string{"status_id"}, "1"},
		{"list response class", listResp, []string{"type_uid"}, "600302"},
		{"list response code", listResp, []string{"api", "response", "code"}, "200"},
		{"list response http", listResp, []string{"http_response", "code"}, "200"},
		{"list response status code", listResp, []string{"status_code"}, "200"},
		{"list response same uid", listResp, []string{"api", "request", "uid"}, "kube:1"},
		{"list response resource", listResp, []string{"resources", "0", "type"}, "deployments"},
		{"list response status", listResp, []string{"status_id"}, "1"},
		{"list response duration", listResp, []string{"duration"}, "3"},
		{"delete activity", del, []string{"activity_id"}, "4"},
		{"delete refused", del, []string{"status_id"}, "2"},
		{"delete name exact", del, []string{"resources", "0", "name"}, hostileName},
		{"delete namespace exact", del, []string{"resources", "0", "data", "namespace"}, hostileName},
		{"delete token owner", del, []string{"actor", "user", "name"}, "system:serviceaccount:ci:runner"},
		{"delete token owner uid", del, []string{"actor", "user", "uid"}, "u-1"},
		{"delete token id", del, []string{"actor", "user", "credential_uid"}, "0a1b2c3d4e5f6071"},
		{"delete source", del, []string{"unmapped", "interlock", "kubernetes", "source"}, "bearer-token"},
		{"delete message escaped", del, []string{"message"}, `delete pods in "web\x1b[2J\nallow (x)\"\u202egnp" name "web\x1b[2J\nallow (x)\"\u202egnp", group core/v1, as "system:serviceaccount:ci:runner" (bearer token "0a1b2c3d4e5f6071" uid "u-1", reviewed): deny (no-delete): "not in prod"`},
		{"delete response failed", delResp, []string{"status_id"}, "2"},
		{"delete response code", delResp, []string{"api", "response", "code"}, "403"},
		{"delete response error", delResp, []string{"api", "response", "error_message"}, "denied by interlock"},
		{"delete response detail", delResp, []string{"status_detail"}, "403: denied by interlock"},
		{"exec activity", exec, []string{"activity_id"}, "99"},
		{"exec subresource", exec, []string{"resources", "0", "type"}, "pods/exec"},
		{"exec command", exec, []string{"unmapped", "interlock", "kubernetes", "command"}, "[sh -c id]"},
		{"orphan operation", orphan, []string{"api", "operation"}, "unknown"},
		{"orphan activity", orphan, []string{"activity_id"}, "0"},
		{"orphan uid", orphan, []string{"api", "request", "uid"}, "kube:9"},
		{"orphan failed", orphan, []string{"status_id"}, "2"},
	} {
		if got := get(c.ev, c.path...); got != c.want {
			t.Errorf("%s: %v = %q, want %q", c.name, c.path, got, c.want)
		}
	}
	// Answered requests are forgotten; the session's close forgets the rest.
	if n := len(st.k8s["kube"]); n != 1 {
		t.Errorf("%d requests remembered, want the exec's", n)
	}
	event(model.KindSessionClose, model.SessionClose{})
	if st.k8s["kube"] != nil {
		t.Error("requests remembered after the session closed")
	}
	// Streams and identities have no OCSF class.
	if ev := event(model.KindK8sPortFwd, model.K8sPortForward{Seq: 3}); ev != nil {
		t.Errorf("port-forward stream mapped: %v", ev)
	}
}

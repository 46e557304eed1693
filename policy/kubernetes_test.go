package policy

import (
	"testing"

	"github.com/interlock/interlock/model"
)

// TestKubernetesRules: kinds, resources, namespaces, names and pod facts
// of kubernetes requests; pod facts that could not be read are unknown,
// so a review rule on them holds the exec and an allow rule on them does
// not open it.
func TestKubernetesRules(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - name: k8s
    protocol: kubernetes
    address: 127.0.0.2:6443
    kubernetes: {ca_file: /etc/hostname, token_file: /etc/hostname}
policy:
  default: deny
  rules:
    - name: hold-privileged-prod-exec
      match: {protocols: [kubernetes], operation: {kinds: [exec], namespaces: [prod], pod: {privileged: true}}}
      action: review
      review: {approvers: [alice]}
    - name: no-secret-deletes
      match: {operation: {kinds: [delete], resources: [secrets], names: ["db-*"]}}
      action: deny
    - name: exec-into-plain-pods
      match: {operation: {kinds: [exec], pod: {privileged: false, host_namespaces: false}}}
      action: allow
    - name: reads-and-deletes
      match: {protocols: [kubernetes], operation: {kinds: [get, list, delete]}}
      action: allow
`))
	o := origin("k8s", 1000, &model.ProcFacts{Exe: "/usr/bin/kubectl", User: "ci"}, nil)
	o.Target.Protocol = model.ProtoKubernetes
	exec := func(ns string, pod *model.K8sPod) model.Operation {
		return model.Operation{Protocol: model.ProtoKubernetes, Kind: "exec", Resource: "pods/exec", Namespace: ns, Name: "p", Pod: pod}
	}
	for _, c := range []struct {
		name string
		op   model.Operation
		want model.Action
		rule string
	}{
		{"privileged in prod", exec("prod", &model.K8sPod{Privileged: true}), model.Review, "hold-privileged-prod-exec"},
		{"unknown pod in prod", exec("prod", nil), model.Review, "hold-privileged-prod-exec"},
		{"plain pod in prod", exec("prod", &model.K8sPod{}), model.Allow, "exec-into-plain-pods"},
		{"host network pod", exec("dev", &model.K8sPod{HostNetwork: true}), model.Deny, ""},
		{"unknown pod in dev", exec("dev", nil), model.Deny, ""},
		{"delete db secret", model.Operation{Protocol: model.ProtoKubernetes, Kind: "delete", Resource: "secrets", Namespace: "x", Name: "db-main"}, model.Deny, "no-secret-deletes"},
		{"delete other secret", model.Operation{Protocol: model.ProtoKubernetes, Kind: "delete", Resource: "secrets", Namespace: "x", Name: "web"}, model.Allow, "reads-and-deletes"},
		{"create", model.Operation{Protocol: model.ProtoKubernetes, Kind: "create", Resource: "configmaps", Namespace: "x"}, model.Deny, ""},
	} {
		d := p.Evaluate(o, c.op)
		if d.Action != c.want || c.rule != "" && d.Rule != c.rule {
			t.Errorf("%s: %s by %q, want %s by %q", c.name, d.Action, d.Rule, c.want, c.rule)
		}
	}
}

// TestKubernetesUsers: k8s_users and k8s_groups match who a request is
// made as, and a session's kept decision for one user does not answer
// for another (a pass_bearer session's token may change between
// requests).
func TestKubernetesUsers(t *testing.T) {
	p := MustNew(parse(t, `
targets:
  - name: k8s
    protocol: kubernetes
    address: 127.0.0.2:6443
    kubernetes: {ca_file: /etc/hostname, token_file: /etc/hostname}
policy:
  default: allow
  rules:
    - name: no-ci-deletes
      match: {operation: {kinds: [delete], k8s_users: ["system:serviceaccount:*:ci"]}}
      action: deny
    - name: no-masters
      match: {operation: {k8s_groups: ["system:masters"]}}
      action: deny
`))
	o := origin("k8s", 1000, &model.ProcFacts{Exe: "/usr/bin/kubectl", User: "ci"}, nil)
	o.Target.Protocol = model.ProtoKubernetes
	del := func(user string, groups ...string) model.Operation {
		return model.Operation{Protocol: model.ProtoKubernetes, Kind: "delete", Resource: "pods", Namespace: "default", Name: "p",
			K8sUser: user, K8sGroups: groups}
	}
	s := p.Session(o)
	for _, c := range []struct {
		name string
		op   model.Operation
		want model.Action
	}{
		{"another user", del("alice", "dev"), model.Allow},
		{"the ci account", del("system:serviceaccount:default:ci", "dev"), model.Deny},
		{"alice again", del("alice", "dev"), model.Allow},
		{"alice as a master", del("alice", "dev", "system:masters"), model.Deny},
		{"ci's get", model.Operation{Protocol: model.ProtoKubernetes, Kind: "get", Resource: "pods", K8sUser: "system:serviceaccount:default:ci"}, model.Allow},
	} {
		// Twice each, the second from the session's kept decisions.
		for i := 0; i < 2; i++ {
			if d := s.Decide(t.Context(), c.op); d.Action != c.want {
				t.Errorf("%s (%d): %s by %q, want %s", c.name, i, d.Action, d.Rule, c.want)
			}
		}
	}
}

package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlock/interlock/model"
)

// TestKubeRequests (issue 20): kubectl under `interlock run` reaches a real
// API server through a kubernetes target. Each request is journaled with
// its verb, resource, namespace, name, the user from the client
// certificate and the identity impersonated; RBAC still judges the real
// user; a client's own impersonation is refused; a process without a
// certificate is called as its uid.
func TestKubeRequests(t *testing.T) {
	k := newKubeEnv(t, "")
	out, stderr, code := k.kubectl("alice", nil, "get", "pods")
	if code != 0 || !strings.Contains(out, "shell") {
		t.Fatalf("alice get pods: exit %d\n%s\n%s", code, out, stderr)
	}
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings"},"data":{"mode":"fast"}}`
	cmFile := k.dir + "/cm.json"
	os.WriteFile(cmFile, []byte(cm), 0o644)
	if out, stderr, code := k.kubectl("alice", nil, "apply", "-f", cmFile); code != 0 {
		t.Fatalf("alice apply: exit %d\n%s\n%s", code, out, stderr)
	}
	if out, stderr, code := k.kubectl("alice", nil, "delete", "configmap", "settings"); code != 0 {
		t.Fatalf("alice delete: exit %d\n%s\n%s", code, out, stderr)
	}
	// RBAC judges bob as bob: he may not list pods.
	if _, stderr, code := k.kubectl("bob", nil, "get", "pods"); code == 0 || !strings.Contains(stderr, `User "bob" cannot list resource "pods"`) {
		t.Errorf("bob get pods: exit %d: %s", code, stderr)
	}
	// alice may not choose whom interlock calls as.
	if _, stderr, code := k.kubectl("alice", nil, "--as", "admin", "--as-group", "system:masters", "get", "secrets"); code == 0 || !strings.Contains(stderr, "may not send Impersonate-") {
		t.Errorf("alice --as admin: exit %d: %s", code, stderr)
	}
	// No certificate (curl: kubectl would prompt for a password): the
	// process's uid (root, 0) is the user.
	if out, stderr, code := k.runUnder("curl", "-sS", "--cacert", k.trust, "https://"+k.c.Host+"/api/v1/namespaces/default/pods"); code != 0 || !strings.Contains(out, `User \"interlock:uid:0\" cannot list resource \"pods\"`) {
		t.Errorf("no certificate get pods: exit %d: %s %s", code, out, stderr)
	}

	reqs := entriesOf[model.K8sRequest](k.env, model.KindK8sRequest)
	resps := map[uint64][]model.K8sResponse{}
	for _, r := range entriesOf[model.K8sResponse](k.env, model.KindK8sResponse) {
		resps[r.Seq] = append(resps[r.Seq], r)
	}
	find := func(user, verb, resource, name string) *model.K8sRequest {
		for i := range reqs {
			r := &reqs[i]
			if r.User == user && r.Verb == verb && r.Resource == resource && r.Name == name {
				return r
			}
		}
		t.Errorf("no %s %s %s %q of %s journaled", verb, resource, name, name, user)
		return nil
	}
	if r := find("alice", "list", "pods", ""); r != nil && (r.Namespace != "default" || len(r.Groups) != 1 || r.Groups[0] != "dev" || r.Decision.Action != model.Allow) {
		t.Errorf("alice's list: %+v", r)
	}
	if r := find("alice", "create", "configmaps", ""); r != nil && r.BodyBytes == 0 {
		t.Errorf("alice's create has no body: %+v", r)
	}
	find("alice", "delete", "configmaps", "settings")
	find("bob", "list", "pods", "")
	find("interlock:uid:0", "list", "pods", "")
	denied := false
	for _, r := range reqs {
		if r.User == "alice" && r.Decision.Action == model.Deny && strings.Contains(r.Decision.Reason, "Impersonate-") {
			denied = true
		}
	}
	if !denied {
		t.Errorf("alice's impersonation attempt is not journaled as denied")
	}
	users := map[string]bool{}
	for _, so := range k.sessions() {
		if so.Kubernetes != nil {
			users[so.Kubernetes.User+"/"+so.Kubernetes.Source] = true
		}
	}
	for _, u := range []string{"alice/client-certificate", "bob/client-certificate", "interlock:uid:0/process"} {
		if !users[u] {
			t.Errorf("no session opened as %s: %v", u, users)
		}
	}
	// Codes are journaled: bob's list was refused by the API server.
	refused := false
	for _, r := range reqs {
		if r.User == "bob" && r.Verb == "list" {
			for _, rs := range resps[r.Seq] {
				refused = refused || rs.Code == 403
			}
		}
	}
	if !refused {
		t.Errorf("bob's 403 is not journaled")
	}
}

// TestKubeSecretsMasked: a Secret's values never reach the client or the
// journal in clear: not in get -o yaml, not in a list, not in the body of
// the create that wrote them, not in kubectl apply's annotation.
func TestKubeSecretsMasked(t *testing.T) {
	k := newKubeEnv(t, "")
	ctx := context.Background()
	if _, err := k.c.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Data: map[string][]byte{"password": []byte("hunter2-direct")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := k.kubectl("alice", nil, "get", "secret", "db", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "password:") {
		t.Fatalf("get secret: exit %d\n%s\n%s", code, out, stderr)
	}
	if strings.Contains(out, "aHVudGVyMi1kaXJlY3Q") || !strings.Contains(out, "aW50ZXJsb2NrOm1hc2tlZA==") {
		t.Errorf("get secret -o yaml is not masked:\n%s", out)
	}
	if out, _, _ := k.kubectl("alice", nil, "get", "secrets", "-o", "json"); strings.Contains(out, "aHVudGVyMi1kaXJlY3Q") {
		t.Errorf("list secrets is not masked:\n%s", out)
	}
	// From a file: a value on kubectl's command line would be in the
	// process's identity interlock records.
	tokenFile := k.dir + "/token"
	os.WriteFile(tokenFile, []byte("hunter3-through"), 0o644)
	if out, stderr, code := k.kubectl("alice", nil, "create", "secret", "generic", "api", "--from-file=token="+tokenFile); code != 0 {
		t.Fatalf("create secret: exit %d\n%s\n%s", code, out, stderr)
	}
	sf := k.dir + "/s.json"
	os.WriteFile(sf, []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"applied"},"stringData":{"key":"hunter4-applied"}}`), 0o644)
	if out, stderr, code := k.kubectl("alice", nil, "apply", "-f", sf); code != 0 {
		t.Fatalf("apply secret: exit %d\n%s\n%s", code, out, stderr)
	}
	if out, _, _ := k.kubectl("alice", nil, "get", "secret", "applied", "-o", "yaml"); strings.Contains(out, "hunter4") || strings.Contains(out, "aHVudGVyNC1hcHBsaWVk") {
		t.Errorf("the applied secret's annotation is not masked:\n%s", out)
	}
	// The values did reach the cluster.
	s, err := k.c.Client.CoreV1().Secrets("default").Get(ctx, "api", metav1.GetOptions{})
	if err != nil || string(s.Data["token"]) != "hunter3-through" {
		t.Errorf("the created secret: %v %v", s, err)
	}
	if s, err := k.c.Client.CoreV1().Secrets("default").Get(ctx, "applied", metav1.GetOptions{}); err != nil || string(s.Data["key"]) != "hunter4-applied" {
		t.Errorf("the applied secret: %v %v", s, err)
	}
	// Nothing of the values is in the journal's files, plain or base64.
	for _, f := range []string{k.journal, k.journal + "-wal"} {
		b, _ := os.ReadFile(f)
		for _, secret := range []string{"hunter2", "aHVudGVyMi", "hunter3", "aHVudGVyMy", "hunter4", "aHVudGVyNC"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds %q", f, secret)
			}
		}
	}
	masked := 0
	for _, r := range entriesOf[model.K8sResponse](k.env, model.KindK8sResponse) {
		masked += r.Masked
	}
	if masked == 0 {
		t.Errorf("no masking journaled")
	}
}

package kubernetes

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/model"
)

func TestMaskPaths(t *testing.T) {
	out, ok := maskPaths([]byte(`{"kind":"TokenRequest","status":{"token":"eyJ.x.y","expirationTimestamp":"t"}}`), credentialPaths(reqInfo{resourceReq: true, resource: "serviceaccounts", subresource: "token"}))
	if !ok || strings.Contains(string(out), "eyJ") || !strings.Contains(string(out), MaskedValue) {
		t.Errorf("token request: %s %v", out, ok)
	}
	out, ok = maskPaths([]byte(`{"kind":"TokenReview","spec":{"token":"eyJ.x.y"},"status":{"authenticated":true}}`), credentialPaths(reqInfo{resourceReq: true, apiGroup: "authentication.k8s.io", resource: "tokenreviews"}))
	if !ok || strings.Contains(string(out), "eyJ") {
		t.Errorf("token review: %s %v", out, ok)
	}
	for _, doc := range []string{`[1]`, `{"a":1}{"b":2}`, `{"status":`, "\x0a\x03k8s"} {
		if _, ok := maskPaths([]byte(doc), [][]string{{"status", "token"}}); ok {
			t.Errorf("%q parsed", doc)
		}
	}
	if credentialPaths(reqInfo{resourceReq: true, resource: "pods"}) != nil {
		t.Errorf("pods hold a credential")
	}
	// A cut answer of a credential request is withheld, not recorded.
	cw := &countWriter{n: 100, head: []byte(`{"status":{"token":"eyJ`)}
	resp := &model.K8sResponse{}
	if p := recordResponse(reqInfo{resourceReq: true, resource: "serviceaccounts", subresource: "token"}, cw, resp); p != nil || resp.BodyRecorded || resp.BodyWithheld == "" {
		t.Errorf("a cut token answer: %q %+v", p, resp)
	}
}

// TestRecordResponses: with record_responses the answers' bodies are
// journaled as the client got them, cut at record_response_max with the
// whole size noted; a Secret's values and a TokenRequest's token are
// masked in the journal; watches and execs are not recorded.
func TestRecordResponses(t *testing.T) {
	s := serveWith(t, func(k *config.KubernetesConfig) { k.RecordResponses, k.RecordResponseMax = true, 2048 })
	ctx := context.Background()
	admin := s.c.Client.CoreV1()
	const secret = "hunter2-in-clear"
	if _, err := admin.Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": secret}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "small"},
		Data: map[string]string{"k": "small-value"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Data: map[string]string{"k": strings.Repeat("b", 10000)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// alice may ask for service account tokens.
	if _, err := s.c.Client.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tokens"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Client.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tokens"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tokens"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ci"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	c := s.client.CoreV1()
	got, err := c.Secrets("default").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != MaskedValue {
		t.Fatalf("get secret: %v %q", err, got.Data)
	}
	if _, err := c.ConfigMaps("default").Get(ctx, "small", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ConfigMaps("default").Get(ctx, "big", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := c.ServiceAccounts("default").CreateToken(ctx, "ci", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil || tr.Status.Token == "" {
		t.Fatalf("token request: %v", err)
	}
	w, err := c.Pods("default").Watch(ctx, metav1.ListOptions{TimeoutSeconds: new(int64)})
	if err != nil {
		t.Fatal(err)
	}
	for range w.ResultChan() {
	}

	reqs := map[uint64]model.K8sRequest{}
	for _, r := range s.journal.OfKind(model.KindK8sRequest) {
		d := r.Data.(model.K8sRequest)
		reqs[d.Seq] = d
	}
	seen := map[string]bool{}
	for _, r := range s.journal.OfKind(model.KindK8sResponse) {
		d := r.Data.(model.K8sResponse)
		q, ok := reqs[d.Seq]
		if !ok {
			continue
		}
		p, _ := r.Payload.([]byte)
		what := q.Verb + " " + q.Resource + "/" + q.Subresource + " " + q.Name
		seen[what] = true
		switch what {
		case "get secrets/ db":
			if !d.BodyRecorded || !strings.Contains(string(p), base64.StdEncoding.EncodeToString([]byte(MaskedValue))) {
				t.Errorf("secret's answer: %+v %s", d, p)
			}
		case "get configmaps/ small":
			if !d.BodyRecorded || d.BodyTruncated || !strings.Contains(string(p), "small-value") || int64(len(p)) != d.Bytes {
				t.Errorf("small answer: %+v %s", d, p)
			}
		case "get configmaps/ big":
			if !d.BodyRecorded || !d.BodyTruncated || len(p) != 2048 || d.Bytes <= 10000 {
				t.Errorf("big answer: %+v, %d bytes recorded", d, len(p))
			}
		case "create serviceaccounts/token ci":
			if !d.BodyRecorded || !strings.Contains(string(p), MaskedValue) || strings.Contains(string(p), tr.Status.Token) {
				t.Errorf("token answer: %+v %s", d, p)
			}
		case "watch pods/ ":
			if d.BodyRecorded || p != nil {
				t.Errorf("a watch was recorded: %+v", d)
			}
		}
	}
	for _, w := range []string{"get secrets/ db", "get configmaps/ small", "get configmaps/ big", "create serviceaccounts/token ci", "watch pods/ "} {
		if !seen[w] {
			t.Errorf("no response journaled for %s: %v", w, seen)
		}
	}
	// Neither the Secret's value nor the token is anywhere in the journal.
	for _, r := range s.journal.Records() {
		p, _ := r.Payload.([]byte)
		for _, v := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), tr.Status.Token} {
			if strings.Contains(string(p), v) {
				t.Errorf("%s entry holds a secret in clear", r.Kind)
			}
		}
	}
}

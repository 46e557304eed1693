package kubernetes

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/model"
)

func TestParseRequest(t *testing.T) {
	for _, c := range []struct {
		method, target string
		want           reqInfo
	}{
		{"GET", "/api/v1/namespaces/default/pods", reqInfo{true, "list", "", "v1", "pods", "", "default", ""}},
		{"GET", "/api/v1/namespaces/default/pods?watch=true", reqInfo{true, "watch", "", "v1", "pods", "", "default", ""}},
		{"GET", "/api/v1/namespaces/default/pods/shell", reqInfo{true, "get", "", "v1", "pods", "", "default", "shell"}},
		{"POST", "/api/v1/namespaces/prod/pods/shell/exec?command=sh", reqInfo{true, "exec", "", "v1", "pods", "exec", "prod", "shell"}},
		{"GET", "/api/v1/namespaces/prod/pods/shell/exec?command=sh", reqInfo{true, "exec", "", "v1", "pods", "exec", "prod", "shell"}},
		{"POST", "/api/v1/namespaces/prod/pods/shell/portforward", reqInfo{true, "portforward", "", "v1", "pods", "portforward", "prod", "shell"}},
		{"PATCH", "/apis/apps/v1/namespaces/x/deployments/web/scale", reqInfo{true, "patch", "apps", "v1", "deployments", "scale", "x", "web"}},
		{"DELETE", "/api/v1/namespaces/x/secrets", reqInfo{true, "deletecollection", "", "v1", "secrets", "", "x", ""}},
		{"GET", "/api/v1/secrets", reqInfo{true, "list", "", "v1", "secrets", "", "", ""}},
		{"DELETE", "/api/v1/namespaces/x", reqInfo{true, "delete", "", "v1", "namespaces", "", "", "x"}},
		{"GET", "/api/v1/watch/namespaces/x/secrets", reqInfo{true, "watch", "", "v1", "secrets", "", "x", ""}},
		// As the API server converts booleans: ?watch and ?watch=yes watch.
		{"GET", "/api/v1/namespaces/x/secrets?watch", reqInfo{true, "watch", "", "v1", "secrets", "", "x", ""}},
		{"GET", "/api/v1/namespaces/x/secrets?watch=TRUE", reqInfo{true, "watch", "", "v1", "secrets", "", "x", ""}},
		{"GET", "/api/v1/namespaces/x/secrets?watch=False", reqInfo{true, "list", "", "v1", "secrets", "", "x", ""}},
		{"GET", "/version", reqInfo{verb: "get"}},
	} {
		got := parseRequest(httptest.NewRequest(c.method, c.target, nil))
		if got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.method, c.target, got, c.want)
		}
	}
}

func TestMaskSecretJSON(t *testing.T) {
	list := `{"kind":"SecretList","items":[{"metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"stringData\":{\"k\":\"clear1\"}}"}},"data":{"p":"Y2xlYXIy"}}]}`
	table := `{"kind":"Table","rows":[{"cells":["a"],"object":{"kind":"Secret","data":{"p":"Y2xlYXIz"},"stringData":{"q":"clear4"}}}]}`
	for _, doc := range []string{list, table} {
		out, n, ok := maskSecretJSON([]byte(doc))
		if !ok || n == 0 {
			t.Fatalf("%s: ok %v n %d", doc, ok, n)
		}
		for _, clear := range []string{"clear1", "Y2xlYXIy", "Y2xlYXIz", "clear4"} {
			if strings.Contains(string(out), clear) {
				t.Errorf("%s left in %s", clear, out)
			}
		}
	}
	// Not JSON (YAML, protobuf, two documents): not maskable, so refused.
	for _, doc := range []string{"data:\n  p: Y2xlYXI=\n", "\x6b\x38\x73\x00", `{"data":{}} {"data":{"p":"x"}}`} {
		if _, _, ok := maskSecretJSON([]byte(doc)); ok {
			t.Errorf("%q was taken as maskable", doc)
		}
	}
}

// TestRetryNotReusedOnAnotherPod: a kept stream decision is reused only
// on the pod facts it was taken on; a pod made again privileged under the
// same name within the window is judged anew.
func TestRetryNotReusedOnAnotherPod(t *testing.T) {
	var r retries
	now := time.Now()
	k := retryKey{target: "k8s", tgid: 7, path: "/api/v1/namespaces/default/pods/p/exec"}
	plain := &model.K8sPod{ServiceAccount: "default"}
	r.keep(k, model.Decision{Action: model.Allow}, plain, now)
	if _, ok := r.take(k, &model.K8sPod{ServiceAccount: "default", Privileged: true}, now); ok {
		t.Errorf("the decision on an unprivileged pod was reused for a privileged one")
	}
	r.keep(k, model.Decision{Action: model.Allow}, plain, now)
	if _, ok := r.take(k, &model.K8sPod{ServiceAccount: "default"}, now); !ok {
		t.Errorf("the retry on the same pod facts was judged anew")
	}
}

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// tokenKubeconfig writes a kubeconfig that logs in with the bearer token
// in tokenFile. The token is not on kubectl's command line: interlock
// journals the command lines of the processes it serves.
func (k *kubeEnv) tokenKubeconfig(name, token string) string {
	k.t.Helper()
	tokenFile := filepath.Join(k.dir, name+".token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		k.t.Fatal(err)
	}
	trust, err := os.ReadFile(k.trust)
	if err != nil {
		k.t.Fatal(err)
	}
	path := filepath.Join(k.dir, "kubeconfig-"+name)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://%s", certificate-authority-data: %s}
users:
- name: test
  user: {tokenFile: %s}
contexts:
- name: test
  context: {cluster: test, user: test, namespace: default}
current-context: test
`, k.c.Host, base64.StdEncoding.EncodeToString(trust), tokenFile)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// TestKubeBearer: a pass_bearer target lets kubectl's service-account
// token through: the requests are journaled as the account, the
// account's RBAC still applies (a verb it lacks is refused by the API
// server and journaled so), a bogus token is refused and journaled, and
// the token is neither in the journal's files nor in an exported bundle.
func TestKubeBearer(t *testing.T) {
	k := newKubeEnvWith(t, "", "\n      pass_bearer: true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	token, err := k.c.ServiceAccountToken(ctx, "default", "ci")
	if err != nil {
		t.Fatal(err)
	}
	ci := k.tokenKubeconfig("ci", token)
	kubectl := func(kc string, args ...string) (string, string, int) {
		return k.runUnder(append([]string{"kubectl", "--kubeconfig", kc}, args...)...)
	}
	if out, stderr, code := kubectl(ci, "get", "pods"); code != 0 || !strings.Contains(out, "shell") {
		t.Fatalf("get pods with ci's token: exit %d %s %s", code, out, stderr)
	}
	const user = "system:serviceaccount:default:ci"
	if out, stderr, code := kubectl(ci, "get", "configmaps"); code == 0 || !strings.Contains(stderr, "forbidden") || !strings.Contains(stderr, user) {
		t.Errorf("get configmaps with ci's token: exit %d %s %s", code, out, stderr)
	}
	bogus := k.tokenKubeconfig("bogus", "bogus.token.value")
	if out, stderr, code := kubectl(bogus, "get", "pods"); code == 0 || !strings.Contains(stderr, "Unauthorized") && !strings.Contains(stderr, "must be logged in") {
		t.Errorf("get pods with a bogus token: exit %d %s %s", code, out, stderr)
	}

	// Port-forward opens its own upstream connection: it too calls as
	// the token's owner (who may, here), not as interlock impersonating
	// the process (who may not).
	if _, err := k.c.Client.RbacV1().Roles("default").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ci-forward"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create", "get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.c.Client.RbacV1().RoleBindings("default").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ci-forward"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "ci-forward"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ci", Namespace: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := newPodPort(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write(bytes.Repeat([]byte("d"), 2345))
	})
	local := testkit.FreePort(t, "127.0.0.1")
	logf := filepath.Join(k.dir, "pf-bearer.log")
	script := fmt.Sprintf(`kubectl --kubeconfig %s port-forward %s %d:%d >%s 2>&1 &
pf=$!
for i in $(seq 100); do grep -q Forwarding %s && break; sleep 0.1; done
%s -tcp 127.0.0.1:%d -send 1234
kill $pf`, ci, kubetest.PodName, local, pod.port, logf, logf, buildKubepf(t), local)
	if out, stderr, code := k.runUnder("sh", "-c", script); code != 0 || !strings.Contains(out, `"tcp_read":2345`) {
		log, _ := os.ReadFile(logf)
		t.Errorf("port-forward with ci's token: exit %d %s %s\n%s", code, out, stderr, log)
	}
	var forwarded bool
	waitFor(t, func() bool {
		for _, r := range k.portForwards(t) {
			if r.req.User == user && len(r.streams) == 1 && r.streams[0].BytesUp == 1234 && r.streams[0].BytesDown == 2345 {
				forwarded = true
			}
		}
		return forwarded
	})

	var podsOK, configmapsRefused, bogusRefused bool
	for _, r := range entriesOf[model.K8sRequest](k.env, model.KindK8sRequest) {
		switch {
		case r.User == user && r.Resource == "pods" && r.Verb == "list":
			podsOK = r.Source == "bearer-token" && r.TokenID != "" && r.Decision.Action == model.Allow
		case r.User == user && r.Resource == "configmaps":
			// Allowed by interlock, refused by the API server's RBAC.
			configmapsRefused = r.Decision.Action == model.Allow
		case strings.Contains(r.Decision.Reason, "bearer token refused") && strings.Contains(r.Decision.Reason, "does not accept"):
			bogusRefused = r.Decision.Action == model.Deny
		}
	}
	forbidden := false
	for _, r := range entriesOf[model.K8sResponse](k.env, model.KindK8sResponse) {
		forbidden = forbidden || r.Code == 403 && r.Error == ""
	}
	if !podsOK || !configmapsRefused || !forbidden || !bogusRefused {
		t.Errorf("journaled: pods listed as ci %v, configmaps asked as ci %v, a 403 %v, the bogus token refused %v", podsOK, configmapsRefused, forbidden, bogusRefused)
	}
	identities := entriesOf[model.K8sIdentity](k.env, model.KindK8sIdentity)
	if len(identities) == 0 || identities[0].User != user {
		t.Errorf("k8s.identity entries: %+v", identities)
	}

	// The token is in none of the journal's files, nor in a bundle.
	sig := token[len(token)-40:]
	for _, f := range []string{k.journal, k.journal + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(sig)) {
			t.Errorf("the token is in %s", f)
		}
	}
	bundle := filepath.Join(k.dir, "bundle.tar.gz")
	if _, stderr, code := k.interlock("journal", "export", "-q", "-c", k.cfgPath, "-o", bundle); code != 0 {
		t.Fatalf("journal export: %s", stderr)
	}
	f, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files++
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(sig)) {
			t.Errorf("the token is in the bundle's %s", h.Name)
		}
	}
	if files == 0 {
		t.Errorf("the bundle is empty")
	}
}

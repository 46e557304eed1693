package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// TestKubeRefusals: what a watched process might try to get past the
// kubernetes target is refused and journaled: a client certificate of
// another CA (a self-made "admin"), a bearer token of its own, a path the
// API server would read otherwise than policy did, a watch on secrets
// (whose values could not be masked in the stream).
func TestKubeRefusals(t *testing.T) {
	k := newKubeEnv(t, "")
	other, err := kubetest.NewCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Issue("admin", []string{"system:masters"})
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := os.ReadFile(k.trust)
	kc := filepath.Join(k.dir, "kubeconfig-forged")
	if err := kubetest.WriteKubeconfig(kc, "https://"+k.c.Host, trust, &forged); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := k.runUnder("kubectl", "--kubeconfig", kc, "get", "secrets"); code == 0 || !strings.Contains(stderr, "You must be logged in to the server") {
		t.Errorf("a certificate of another CA: exit %d %s %s", code, out, stderr)
	}
	curl := func(args ...string) string {
		out, stderr, _ := k.runUnder(append([]string{"curl", "-sS", "--cacert", k.trust, "--cert", k.dir + "/alice.crt", "--key", k.dir + "/alice.key"}, args...)...)
		return out + stderr
	}
	// alice's key pair is in the cluster's directory; copy it where the
	// run may read it.
	for _, f := range []string{"alice.crt", "alice.key"} {
		b, err := os.ReadFile(filepath.Join(k.c.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(k.dir, f), b, 0o600)
	}
	base := "https://" + k.c.Host
	if out := curl("-H", "Authorization: Bearer stolen", base+"/api/v1/namespaces/default/pods"); !strings.Contains(out, "may not send Authorization") {
		t.Errorf("a bearer token of the client's own: %s", out)
	}
	if out := curl("--path-as-is", base+"/api/v1/namespaces/default/configmaps/../secrets"); !strings.Contains(out, "not in canonical form") {
		t.Errorf("a path with ..: %s", out)
	}
	if out := curl("--path-as-is", base+"/api/v1/namespaces/default//secrets"); !strings.Contains(out, "not in canonical form") {
		t.Errorf("a path with //: %s", out)
	}
	// ?watch with no value is a watch to the API server too.
	for _, q := range []string{"?watch=true", "?watch", "?watch=yes"} {
		if out := curl(base + "/api/v1/namespaces/default/secrets" + q); !strings.Contains(out, "watching secrets is refused") {
			t.Errorf("a watch on secrets (%s): %s", q, out)
		}
	}
	// Each refusal is journaled as denied.
	denied := map[string]bool{}
	for _, r := range entriesOf[model.K8sRequest](k.env, model.KindK8sRequest) {
		if r.Decision.Action == model.Deny {
			denied[r.Decision.Reason] = true
		}
	}
	for _, why := range []string{"client sent Authorization", "path is not in canonical form"} {
		if !denied[why] {
			t.Errorf("no denial %q journaled: %v", why, denied)
		}
	}
	refusedCert := false
	for _, so := range k.sessions() {
		if so.Decision.Action == model.Deny && strings.Contains(so.Decision.Reason, "not issued by the cluster's client CA") {
			refusedCert = true
		}
	}
	if !refusedCert {
		t.Errorf("the forged certificate's session is not journaled as denied")
	}
}

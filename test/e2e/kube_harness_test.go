package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/inspect/tlsca"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// kubeEnv is a real API server (kubetest) behind a kubernetes target, and
// kubeconfigs for kubectl under `interlock run`: alice (group dev, may
// work with pods, configmaps and secrets in default and exec in prod too),
// bob (no RBAC at all), and one without a client certificate.
type kubeEnv struct {
	*env
	c *kubetest.Cluster
	// kc are the kubeconfigs by user ("" has no client certificate).
	kc map[string]string
	// trust is the CA bundle a client trusts: the cluster's and
	// interlock's.
	trust string
}

func newKubeEnv(t *testing.T, extra string) *kubeEnv {
	t.Helper()
	return newKubeEnvWith(t, extra, "")
}

// newKubeEnvWith is newKubeEnv with lines added to the target's
// kubernetes section (each "\n      key: value").
func newKubeEnvWith(t *testing.T, extra, kube string) *kubeEnv {
	t.Helper()
	testenv.Require(t, "kubernetes test cluster", kubetest.Prerequisites())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := kubetest.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	self, err := c.CA.Issue("interlock", nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := c.CA.Issue("alice", []string{kubetest.DevGroup})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := c.CA.Issue("bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Grant(ctx, "interlock"); err != nil {
		t.Fatal(err)
	}
	// A test may name the cluster CA's files in the target's section.
	caKey, err := x509.MarshalECPrivateKey(c.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	caKeyFile := filepath.Join(dir, "cluster-ca.key")
	if err := os.WriteFile(caKeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	kube = strings.NewReplacer("CLUSTER_CA_CRT", c.CA.CertFile, "CLUSTER_CA_KEY", caKeyFile).Replace(kube)
	e := newEnv(t, []target{{name: "k8s", protocol: "kubernetes", address: c.Host,
		extra: "kubernetes:\n      ca_file: " + c.CA.CertFile + "\n      client_ca_file: " + c.CA.CertFile +
			"\n      client_certificate_file: " + self.CertFile + "\n      client_key_file: " + self.KeyFile + kube}}, extra)
	// The kubeconfig's one change: it trusts interlock's CA too. The CA
	// is made now, as interlock would make it, so the files can be
	// written before the run.
	stateDir := filepath.Join(e.dir, "state")
	if _, err := tlsca.ServerCert(stateDir, "probe", "probe", []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	ilCA, err := os.ReadFile(tlsca.CAPath(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	clusterCA, _ := os.ReadFile(c.CA.CertFile)
	trust := append(append([]byte{}, clusterCA...), ilCA...)
	k := &kubeEnv{env: e, c: c, kc: map[string]string{}, trust: filepath.Join(e.dir, "trust.pem")}
	if err := os.WriteFile(k.trust, trust, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string]*kubetest.Pair{"alice": &alice, "bob": &bob, "": nil} {
		path := filepath.Join(e.dir, "kubeconfig-"+name)
		if err := kubetest.WriteKubeconfig(path, "https://"+c.Host, trust, pair); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, 0o644)
		k.kc[name] = path
	}
	return k
}

// kubectl runs kubectl as user under `interlock run`, with env added.
// pending is what `interlock approvals list` shows the daemon's user;
// empty when it cannot be read (callers wait for what they expect).
func (k *kubeEnv) pending(t *testing.T) pendingList {
	t.Helper()
	var list pendingList
	if o, _, code := asUser(t, "daemon", "approvals", "list", "-c", k.cfgPath, "--json"); code == 0 {
		json.Unmarshal([]byte(o), &list)
	}
	return list
}

// heldOne waits until exactly one request is held and returns it.
func (k *kubeEnv) heldOne(t *testing.T) model.ApprovalRequest {
	t.Helper()
	var list pendingList
	waitFor(t, func() bool { list = k.pending(t); return len(list) == 1 })
	return list[0].Request
}

// decide approves or denies request id as the daemon's user.
func (k *kubeEnv) decide(t *testing.T, id, verdict, reason string) {
	t.Helper()
	if o, stderr, code := asUser(t, "daemon", "approvals", verdict, id, "-c", k.cfgPath, "--reason", reason); code != 0 {
		t.Fatalf("%s: exit %d %s %s", verdict, code, o, stderr)
	}
}

func (k *kubeEnv) kubectl(user string, env []string, args ...string) (stdout, stderr string, code int) {
	k.t.Helper()
	argv := append([]string{"env"}, env...)
	argv = append(argv, "kubectl", "--kubeconfig", k.kc[user])
	return k.runUnder(append(argv, args...)...)
}

// TestKubeClusterCAServing (issue 20): given the cluster CA's key,
// interlock presents a certificate the cluster CA issued, so a kubeconfig
// that trusts the cluster CA alone (no change at all) works through
// interlock, and the request is journaled. (Without the cluster CA's key
// interlock presents its own CA's certificate, which that kubeconfig does
// not trust: the test fails.)
func TestKubeClusterCAServing(t *testing.T) {
	k := newKubeEnvWith(t, "", "\n      serving_ca_file: CLUSTER_CA_CRT\n      serving_ca_key_file: CLUSTER_CA_KEY")
	clusterCA, err := os.ReadFile(k.c.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := k.c.CA.Issue("alice", []string{kubetest.DevGroup})
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(k.dir, "kubeconfig-unchanged")
	if err := kubetest.WriteKubeconfig(plain, "https://"+k.c.Host, clusterCA, &alice); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := k.runUnder("kubectl", "--kubeconfig", plain, "get", "pods")
	if code != 0 || !strings.Contains(out, kubetest.PodName) {
		t.Fatalf("kubectl with an unchanged kubeconfig: exit %d %s %s", code, out, stderr)
	}
	found := false
	for _, r := range entriesOf[model.K8sRequest](k.env, model.KindK8sRequest) {
		found = found || r.User == "alice" && r.Resource == "pods" && r.Verb == "list"
	}
	if !found {
		t.Errorf("the request is not journaled: it did not go through interlock")
	}

}
